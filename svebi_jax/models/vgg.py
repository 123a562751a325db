"""SVGG19: the SVEBI paper's AwA2 model, a spiking VGG19 initialized from ImageNet weights.

Topology (torchvision's VGG19, configuration "E"), with every ReLU replaced by LIF neurons
(:math:`\\beta = 0.95`, :math:`\\theta = 1`, ``T = 25``, direct input)::

    block b = 1..5:  [Conv3x3(pad 1) -> LIF] x (2, 2, 4, 4, 4)  -> MaxPool(2)
    Flatten -> fc1 (4096) -> LIF -> fc2 (4096) -> LIF -> fc3 (num_classes, integrator readout)

Layer names and torchvision's ``state_dict`` prefixes (:data:`TORCHVISION_VGG19_KEYS`)::

    conv1_1 features.0    conv1_2 features.2
    conv2_1 features.5    conv2_2 features.7
    conv3_1 features.10   conv3_2 features.12   conv3_3 features.14   conv3_4 features.16
    conv4_1 features.19   conv4_2 features.21   conv4_3 features.23   conv4_4 features.25
    conv5_1 features.28   conv5_2 features.30   conv5_3 features.32   conv5_4 features.34
    fc1 classifier.0      fc2 classifier.3      fc3 classifier.6

(the indices in between are torchvision's ReLU, MaxPool and Dropout modules, which have no
parameters). A 224×224 input gives a 7×7×512 map after the last pool, where torchvision's
``AdaptiveAvgPool2d((7, 7))`` is the identity, so the SVGG19 has no adaptive pool.

ImageNet weights are read from a user-supplied **npz** file (never a pickle). Convert
torchvision's checkpoint once, in an environment with torch::

    import numpy as np, torchvision
    sd = torchvision.models.vgg19(weights="IMAGENET1K_V1").state_dict()
    np.savez("vgg19_imagenet.npz", **{k: v.numpy() for k, v in sd.items()})

then::

    model = SVGG19(num_classes=50, rngs=nnx.Rngs(0))
    load_torchvision_vgg19(model, "vgg19_imagenet.npz")   # fc3 keeps its fresh init
    logits = model(imagenet_normalize(images))              # images [B, 224, 224, 3] in [0, 1]

A ``.safetensors`` file (``safetensors.torch.save_file(sd, path)``) is read too when the
optional ``safetensors`` package is installed.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from svebi_jax import _validation as V
from svebi_jax import layers as L
from svebi_jax.models.snn import SpikingNetwork

Array = jax.Array

#: Number of 3×3 conv layers in each of VGG19's five blocks.
VGG19_BLOCKS: tuple[int, ...] = (2, 2, 4, 4, 4)
#: Output channels of each block in VGG19.
VGG19_WIDTHS: tuple[int, ...] = (64, 128, 256, 512, 512)

#: torchvision's ImageNet normalization (``transforms.Normalize`` of its VGG19 weights).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: Output size of torchvision VGG's ``AdaptiveAvgPool2d`` in front of ``classifier.0``.
TORCHVISION_POOL_SIZE = 7


def _torchvision_keys() -> dict[str, str]:
    """``{layer_name: torchvision state_dict prefix}`` derived from the block structure."""
    keys: dict[str, str] = {}
    index = 0
    for b, n in enumerate(VGG19_BLOCKS, start=1):
        for i in range(1, n + 1):
            keys[f"conv{b}_{i}"] = f"features.{index}"
            index += 2  # Conv2d, ReLU
        index += 1  # MaxPool2d
    keys.update(fc1="classifier.0", fc2="classifier.3", fc3="classifier.6")
    return keys


#: ``{layer_name: torchvision prefix}``, e.g. ``"conv1_2": "features.2"``, ``"fc1":
#: "classifier.0"``; a layer's tensors are ``<prefix>.weight`` and ``<prefix>.bias``.
TORCHVISION_VGG19_KEYS: dict[str, str] = _torchvision_keys()


def _check_positive_int(value, name: str) -> int:
    return V.check_positive_int(name, value)


# ----------------------------------------------------------------------------- architecture


def svgg19_layers(
    num_classes: int = 50,
    *,
    widths: Sequence[int] = VGG19_WIDTHS,
    hidden: int = 4096,
    pool: str = "max",
) -> tuple[L.LayerSpec, ...]:
    """Layer specs of the spiking VGG19 (conv → LIF per layer, pool after each block).

    Args:
      num_classes: readout size ``K`` of ``fc3``.
      widths: output channels of the five blocks (VGG19: ``(64, 128, 256, 512, 512)``);
        shrink for tests.
      hidden: width of ``fc1`` and ``fc2`` (VGG19: 4096).
      pool: ``"max"`` (VGG19), or ``"avg"`` / ``"sum"`` for a NIR-exportable variant.

    Returns:
      The 16 ``Conv(f"conv{b}_{i}", widths[b-1], 3, padding=1)`` layers in blocks of
      ``(2, 2, 4, 4, 4)``, each followed by :class:`~svebi_jax.layers.LIF`, a 2×2 pool
      (``MaxPool(2)`` by default) after each block, then ``Flatten, fc1, LIF, fc2, LIF, fc3``.

    Raises:
      ValueError: if ``widths`` is not five positive integers or a size is not positive.
    """
    num_classes = _check_positive_int(num_classes, "num_classes")
    hidden = _check_positive_int(hidden, "hidden")
    widths = tuple(widths)
    if len(widths) != len(VGG19_BLOCKS):
        raise ValueError(f"widths must hold 5 block widths, got {widths!r}")
    widths = tuple(_check_positive_int(w, "widths entries") for w in widths)
    specs: list[L.LayerSpec] = []
    for b, (n, width) in enumerate(zip(VGG19_BLOCKS, widths, strict=True), start=1):
        for i in range(1, n + 1):
            specs += [L.Conv(f"conv{b}_{i}", width, 3, stride=1, padding=1), L.LIF()]
        specs.append(L.pool_spec(pool))
    specs += [
        L.Flatten(),
        L.Dense("fc1", hidden),
        L.LIF(),
        L.Dense("fc2", hidden),
        L.LIF(),
        L.Dense("fc3", num_classes),
    ]
    return tuple(specs)


def SVGG19(
    *,
    input_shape: tuple[int, int, int] = (224, 224, 3),
    num_classes: int = 50,
    config: L.SNNConfig | None = None,
    widths: Sequence[int] = VGG19_WIDTHS,
    hidden: int = 4096,
    pool: str = "max",
    rngs: nnx.Rngs,
) -> SpikingNetwork:
    """Builds the spiking VGG19 as a :class:`SpikingNetwork`.

    Args:
      input_shape: ``(H, W, C)`` of one image; ``H, W >= 32`` (five 2×2 pools).
      num_classes: readout size ``K`` (AwA2: 50).
      config: :class:`~svebi_jax.layers.SNNConfig`; default
        ``SNNConfig(num_steps=25, beta=0.95, threshold=1.0)`` (the paper's AwA2 setting).
      widths: block widths, see :func:`svgg19_layers`.
      hidden: width of ``fc1``/``fc2``.
      pool: ``"max"`` (VGG19), ``"avg"`` or ``"sum"`` (NIR-exportable) block pooling.
      rngs: ``nnx.Rngs`` for initialization (use :func:`load_torchvision_vgg19` for
        ImageNet weights).

    Returns:
      A :class:`SpikingNetwork` whose spiking conv layers are ``conv1_1 … conv5_4``.
    """
    config = config or L.SNNConfig(num_steps=25, beta=0.95, threshold=1.0)
    return SpikingNetwork(
        svgg19_layers(num_classes, widths=widths, hidden=hidden, pool=pool),
        input_shape=input_shape,
        config=config,
        rngs=rngs,
    )


# ----------------------------------------------------------------------------- weights


def imagenet_normalize(images: Array) -> Array:
    """Normalizes RGB images as torchvision's ImageNet-trained VGG19 expects.

    .. math::
        x'_{c} = \\frac{x_c - \\mu_c}{\\sigma_c},\\quad
        \\mu = (0.485, 0.456, 0.406),\\quad \\sigma = (0.229, 0.224, 0.225)

    Args:
      images: ``[..., H, W, 3]`` float images with values in ``[0, 1]`` (NHWC, RGB; e.g.
        ``[B, H, W, 3]`` or time-major ``[T, B, H, W, 3]``).

    Returns:
      Array of the same shape and floating dtype (integer input is cast to ``float32``, not
      rescaled: divide ``uint8`` images by 255 first).

    Raises:
      ValueError: if the last axis is not 3 (RGB).
    """
    images = jnp.asarray(images)
    if images.ndim < 1 or images.shape[-1] != 3:
        raise ValueError(
            f"images must be RGB with a last (channel) axis of size 3, got shape {images.shape}"
        )
    if not jnp.issubdtype(images.dtype, jnp.floating):
        images = images.astype(jnp.float32)
    mean = jnp.asarray(IMAGENET_MEAN, images.dtype)
    std = jnp.asarray(IMAGENET_STD, images.dtype)
    return (images - mean) / std


class ImagenetInput:
    """An ``apply_fn`` that takes ``[0, 1]`` images and normalizes them for the network.

    ``ImagenetInput(apply_fn)(params, images, **kw) = apply_fn(params,
    imagenet_normalize(images), **kw)``: explanation, perturbation and scoring functions
    then work in pixel space, where black is 0 (RISE's deletion substrate) and a blurred
    copy is a blurred photograph, while the network sees torchvision's normalized input.
    Normalizing in front of the network (not folded into ``conv1_1``) keeps its zero padding
    exactly torchvision's. ``.info`` is the wrapped function's
    :class:`~svebi_jax.protocols.ModelInfo`; instances hash by identity (one compile each).

    Args:
      apply_fn: the model's ``apply_fn`` (e.g. from :func:`svebi_jax.models.functional`).
    """

    def __init__(self, apply_fn):
        if not callable(apply_fn):
            raise TypeError(f"apply_fn must be callable, got {type(apply_fn).__name__}")
        self.apply_fn = apply_fn
        self.info = getattr(apply_fn, "info", None)

    def __call__(self, params, images, **kwargs):
        """``images``: ``[B, H, W, 3]`` (or ``[T, B, H, W, 3]``) floats in ``[0, 1]``."""
        images = jnp.asarray(images)
        if not jnp.issubdtype(images.dtype, jnp.floating):
            raise ValueError(
                f"images must be float RGB in [0, 1], got dtype {images.dtype} (divide uint8 "
                "images by 255)"
            )
        return self.apply_fn(params, imagenet_normalize(images), **kwargs)

    def __repr__(self) -> str:
        return f"ImagenetInput({self.apply_fn!r})"


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a torch-style ``state_dict`` saved as ``.npz`` (or ``.safetensors``).

    Never unpickles: ``.npz`` is read with ``allow_pickle=False``, and other formats (torch's
    ``.pth``/``.pt`` pickles) are refused.

    Args:
      path: ``*.npz`` file (``np.savez`` of ``{key: tensor.numpy()}``), or ``*.safetensors``
        when the optional ``safetensors`` package is installed.

    Returns:
      ``{key: array}``.

    Raises:
      ValueError: unknown file format or unreadable file.
      FileNotFoundError: if ``path`` does not exist.
      ImportError: for a ``.safetensors`` file when ``safetensors`` is not installed.
    """
    path = pathlib.Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".safetensors"):
        raise ValueError(
            f"unknown weights file format {suffix or '(no suffix)'!r} for {str(path)!r}: expected "
            "'.npz' (or '.safetensors'). Convert torchvision's .pth once with torch: "
            'np.savez(path, **{k: v.numpy() for k, v in torchvision.models.vgg19(weights="'
            'IMAGENET1K_V1").state_dict().items()})'
        )
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    if suffix == ".safetensors":
        try:
            from safetensors.numpy import load_file
        except ImportError as err:
            raise ImportError(
                f"reading {str(path)!r} needs the optional 'safetensors' package "
                "(pip install safetensors), or convert the weights to .npz"
            ) from err
        try:
            return dict(load_file(str(path)))
        except Exception as err:  # safetensors raises its own error types
            raise ValueError(f"cannot read safetensors file {str(path)!r}: {err}") from err
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: np.asarray(data[k]) for k in data.files}
    except Exception as err:  # BadZipFile, pickled object arrays, ...
        raise ValueError(f"cannot read npz weights file {str(path)!r}: {err}") from err


def _final_map(layers: Sequence[L.LayerSpec], input_shape) -> tuple[int, int, int]:
    """``(h, w, C)`` of the spatial map entering ``Flatten`` (after the last pool)."""
    layers = tuple(layers)
    flat = next(i for i, s in enumerate(layers) if isinstance(s, L.Flatten))
    last = max(i for i, s in enumerate(layers[:flat]) if isinstance(s, L.Conv))
    geo = L.layer_geometry(layers, input_shape)[layers[last].name]
    h, w = geo.height, geo.width
    for spec in layers[last + 1 : flat]:
        if isinstance(spec, (L.MaxPool, L.AvgPool)):
            k, s, p = spec.window, spec.stride or spec.window, spec.padding
            h, w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    return h, w, geo.channels


def adaptive_avg_pool_matrix(in_size: int, out_size: int) -> np.ndarray:
    """Matrix ``[out_size, in_size]`` of torch's ``AdaptiveAvgPool`` along one axis.

    Output cell ``i`` averages input cells ``floor(i·n/m) … ceil((i+1)·n/m) - 1`` (``n`` =
    ``in_size``, ``m`` = ``out_size``), as ``torch.nn.AdaptiveAvgPool2d`` does.
    """
    pool = np.zeros((out_size, in_size), np.float64)
    for i in range(out_size):
        lo = (i * in_size) // out_size
        hi = -((-(i + 1) * in_size) // out_size)
        pool[i, lo:hi] = 1.0 / (hi - lo)
    return pool


def _fc1_kernel(weight: np.ndarray, key: str, h: int, w: int, c: int) -> np.ndarray:
    """torch ``classifier.0.weight [out, C·7·7]`` → our NHWC-ordered kernel ``[h·w·C, out]``.

    torch flattens ``[C, H, W]`` (index ``c·H·W + y·W + x``); we flatten ``[H, W, C]`` (index
    ``y·W·C + x·C + c``). When the map is not 7×7, torchvision's ``AdaptiveAvgPool2d((7, 7))``
    (a linear map :math:`P`) is folded into the weight: :math:`W' = W (P_h \\otimes P_w)`.
    """
    out = weight.shape[0]
    size = TORCHVISION_POOL_SIZE
    if (h, w) == (size, size) or weight.shape[1] != c * size * size:
        if weight.shape[1] != c * h * w:
            raise ValueError(
                f"weights {key!r} has shape {tuple(weight.shape)}, expected ({out}, {c * h * w}) "
                f"for the {h}x{w}x{c} map entering fc1 (or ({out}, {c * size * size}) for "
                f"torchvision's AdaptiveAvgPool2d(({size}, {size})) in front of it)"
            )
        w4 = weight.reshape(out, c, h, w)
    else:  # fold torchvision's adaptive average pool to 7x7 into fc1
        ph = adaptive_avg_pool_matrix(h, size)
        pw = adaptive_avg_pool_matrix(w, size)
        w4 = np.einsum(
            "ocij,iy,jx->ocyx", weight.reshape(out, c, size, size).astype(np.float64), ph, pw
        ).astype(weight.dtype)
    return w4.transpose(2, 3, 1, 0).reshape(h * w * c, out)


def convert_torchvision_vgg19(
    state_dict: Mapping[str, np.ndarray],
    layers: Sequence[L.LayerSpec],
    input_shape: tuple[int, int, int],
    *,
    skip: Sequence[str] = (),
    strict: bool = True,
) -> dict[str, dict[str, np.ndarray]]:
    """Converts a torchvision VGG19 ``state_dict`` to ``{layer: {"kernel", "bias"}}`` arrays.

    Layouts: conv ``weight [O, I, 3, 3]`` (OIHW) → ``kernel [3, 3, I, O]`` (HWIO); linear
    ``weight [out, in]`` → ``kernel [in, out]``; ``classifier.0`` additionally has its input
    rows permuted from torch's NCHW flatten order to our NHWC order (see
    :func:`load_torchvision_vgg19`).

    Args:
      state_dict: ``{torchvision key: array}`` (see :data:`TORCHVISION_VGG19_KEYS`).
      layers: the network's specs (from :func:`svgg19_layers`).
      input_shape: ``(H, W, C)`` of one input image.
      skip: layer names not to convert (their keys are ignored if present).
      strict: if ``True``, every non-skipped layer must be in ``state_dict`` and every key of
        ``state_dict`` must belong to a layer; if ``False``, absent layers are left out of the
        result and extra keys are ignored.

    Returns:
      ``{layer_name: {"kernel": array, "bias": array}}`` (numpy, the file's dtype) for the
      converted layers.

    Raises:
      ValueError: naming the key for a missing key, an unexpected key (``strict``) or a shape
        mismatch (both shapes given), or naming the layer for an unknown ``skip`` entry or a
        layer that ``layers`` lacks.
    """
    layers = tuple(layers)
    synaptic = {s.name: s for s in layers if isinstance(s, (L.Conv, L.Dense))}
    unknown = [n for n in TORCHVISION_VGG19_KEYS if n not in synaptic]
    if unknown or len(synaptic) != len(TORCHVISION_VGG19_KEYS):
        raise ValueError(
            f"layers must be an SVGG19 network (svgg19_layers) with layers "
            f"{list(TORCHVISION_VGG19_KEYS)}, got {list(synaptic)}"
        )
    skip = tuple(skip)
    for name in skip:
        if name not in TORCHVISION_VGG19_KEYS:
            raise ValueError(
                f"skip: unknown layer {name!r}; expected names from {list(TORCHVISION_VGG19_KEYS)}"
            )
    fan_in = L.input_features(layers, input_shape)
    h, w, c = _final_map(layers, input_shape)
    known = {f"{p}.{t}" for p in TORCHVISION_VGG19_KEYS.values() for t in ("weight", "bias")}
    if strict:
        extra = sorted(k for k in state_dict if k not in known)
        if extra:
            raise ValueError(
                f"weights file has unexpected key {extra[0]!r} (not a VGG19 parameter); "
                f"unexpected: {extra}; pass strict=False to ignore"
            )

    out: dict[str, dict[str, np.ndarray]] = {}
    for name, prefix in TORCHVISION_VGG19_KEYS.items():
        if name in skip:
            continue
        spec = synaptic[name]
        wkey, bkey = f"{prefix}.weight", f"{prefix}.bias"
        missing = [k for k in (wkey, bkey) if k not in state_dict]
        if missing:
            if not strict and len(missing) == 2:
                continue
            raise ValueError(
                f"weights file is missing key {missing[0]!r} (layer {name!r}); "
                "pass it in skip=... to keep the layer's initialization"
            )
        weight = np.asarray(state_dict[wkey])
        bias = np.asarray(state_dict[bkey])
        if isinstance(spec, L.Conv):
            k = spec.kernel_size
            expected = (spec.features, fan_in[name], k, k)
        else:
            expected = (spec.features, fan_in[name])
        if name == "fc1" and weight.ndim == 2 and weight.shape[0] == spec.features:
            kernel = _fc1_kernel(weight, wkey, h, w, c)
        elif tuple(weight.shape) != expected:
            layout = "[out, in, kh, kw] (OIHW)" if isinstance(spec, L.Conv) else "[out, in]"
            raise ValueError(
                f"weights {wkey!r} (layer {name!r}) has shape {tuple(weight.shape)}, "
                f"expected {expected} {layout}"
            )
        elif isinstance(spec, L.Conv):
            kernel = weight.transpose(2, 3, 1, 0)
        else:
            kernel = weight.T
        if tuple(bias.shape) != (spec.features,):
            raise ValueError(
                f"weights {bkey!r} (layer {name!r}) has shape {tuple(bias.shape)}, "
                f"expected ({spec.features},)"
            )
        out[name] = {"kernel": np.ascontiguousarray(kernel), "bias": bias}
    return out


def load_torchvision_vgg19(
    model: SpikingNetwork,
    path: str | os.PathLike | Mapping[str, np.ndarray],
    *,
    skip: Sequence[str] | None = None,
    strict: bool = True,
) -> SpikingNetwork:
    """Loads torchvision VGG19 (ImageNet) weights into an :func:`SVGG19` model, in place.

    Conversions (torch → ours):

    - conv ``features.i.weight [O, I, 3, 3]`` (OIHW) → ``kernel [3, 3, I, O]`` (HWIO);
    - linear ``classifier.j.weight [out, in]`` → ``kernel [in, out]``; biases unchanged;
    - ``classifier.0`` (``fc1``): input rows permuted from torch's NCHW flatten order to ours,

      .. math::
          K[y W C + x C + c,\\ o] = W_{torch}[o,\\ c H W + y W + x]

      for the ``H×W×C`` map after the last pool (7×7×512 for 224×224 inputs, where
      torchvision's ``AdaptiveAvgPool2d((7, 7))`` is the identity). For another input size
      whose final map is not 7×7, the adaptive pool (linear, :func:`adaptive_avg_pool_matrix`)
      is folded into ``fc1``, so the network computes exactly what torchvision's VGG19 does
      on that input. A file whose ``classifier.0`` takes the ``H·W·C`` map directly is
      loaded without pooling.

    Args:
      model: a network built by :func:`SVGG19` (any ``widths``/``hidden`` matching the file).
      path: ``*.npz`` (or ``*.safetensors``) file of torchvision's ``state_dict`` (see the
        module docstring for the one-off conversion), or an in-memory ``{key: array}``.
      skip: layers to leave at their current values; default ``("fc3",)`` when the model's
        ``num_classes`` is not 1000 (a new readout), else ``()``.
      strict: if ``True`` (default), every non-skipped layer must be in the file and the file
        may hold no other keys; if ``False``, absent layers keep their values and extra keys
        are ignored.

    Returns:
      ``model``, updated in place (``nnx.update``); arrays are cast to the model's dtypes.

    Raises:
      ValueError: unknown file format, missing/unexpected key or shape mismatch (the message
        names the key and both shapes).
    """
    if not isinstance(model, SpikingNetwork):
        raise TypeError(f"model must be a SpikingNetwork built by SVGG19, got {type(model)}")
    if skip is None:
        skip = ("fc3",) if model.layers[-1].features != 1000 else ()
    if isinstance(path, Mapping):
        state_dict = {k: np.asarray(v) for k, v in path.items()}
    else:
        state_dict = read_state_dict(path)
    converted = convert_torchvision_vgg19(
        state_dict, model.layers, model.input_shape, skip=skip, strict=strict
    )
    state = nnx.state(model, nnx.Param)
    pure = nnx.to_pure_dict(state)
    for name, arrays in converted.items():
        for leaf, value in arrays.items():
            pure[name][leaf] = jnp.asarray(value, dtype=pure[name][leaf].dtype)
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(model, state)
    return model


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImagenetInput",
    "SVGG19",
    "TORCHVISION_VGG19_KEYS",
    "VGG19_BLOCKS",
    "VGG19_WIDTHS",
    "adaptive_avg_pool_matrix",
    "convert_torchvision_vgg19",
    "imagenet_normalize",
    "load_torchvision_vgg19",
    "read_state_dict",
    "svgg19_layers",
]
