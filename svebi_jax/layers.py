"""Feed-forward spiking networks as data (layer specs) plus pure runners.

A network is a tuple of frozen layer specs, e.g. the paper's shallow MNIST SNN::

    (Conv("conv1", 12, 5), LIF(), MaxPool(2),
     Conv("conv2", 64, 5), LIF(), MaxPool(2),
     Flatten(), Dense("fc1", 128), LIF(), Dense("fc2", 10))

The last :class:`Dense` is the non-spiking integrator readout. Specs carry the geometry
(kernel, stride, padding), so shapes and receptive fields are derived from them
(:func:`layer_geometry`), and the same specs drive two exactly equivalent runners:

- ``"time_batched"`` (default): each synaptic layer computes its currents for all ``T`` steps
  in one batched conv/matmul over ``[T·B, ...]``, then the LIF is scanned over time. With direct
  input the first layer's current is the same at every step and is computed once.
- ``"stepwise"``: the whole network is advanced one timestep at a time inside one
  :func:`jax.lax.scan` (the textbook order of evaluation), used as the reference.

Parameters are a plain mapping ``{layer_name: {"kernel": ..., "bias": ...}}`` with flax's
layouts (conv kernel ``[kh, kw, C_in, C_out]``, dense kernel ``[F_in, F_out]``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from svebi_jax import _kernels, lif
from svebi_jax import _validation as V

Array = jax.Array
Params = Mapping[str, Mapping[str, Array]]
RunMode = Literal["time_batched", "stepwise"]
Record = Literal["mean", "spikes"] | None

#: Rematerialization policies of :attr:`SNNConfig.remat`.
REMAT_POLICIES: tuple[str, ...] = ("none", "chunk")
#: Product dtypes of :attr:`SNNConfig.compute_dtype`.
COMPUTE_DTYPES: tuple[str, ...] = ("float32", "bfloat16")


# ----------------------------------------------------------------------------- layer specs


@dataclasses.dataclass(frozen=True)
class Conv:
    """2-D convolution, NHWC, square kernel, symmetric integer padding (0 = ``VALID``).

    ``dilation`` spaces the kernel taps (effective window ``dilation·(kernel_size-1) + 1``);
    ``groups`` splits the channels into independent groups (kernel ``[k, k, C_in/groups,
    features]``, as in ``torch.nn.Conv2d``).
    """

    name: str
    features: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    use_bias: bool = True
    dilation: int = 1
    groups: int = 1


@dataclasses.dataclass(frozen=True)
class Dense:
    """Fully connected layer over the last axis."""

    name: str
    features: int
    use_bias: bool = True


@dataclasses.dataclass(frozen=True)
class MaxPool:
    """Max pooling over a square window (stride defaults to the window)."""

    window: int
    stride: int | None = None
    padding: int = 0


@dataclasses.dataclass(frozen=True)
class AvgPool:
    """Average pooling over a square window (stride defaults to the window)."""

    window: int
    stride: int | None = None
    padding: int = 0


@dataclasses.dataclass(frozen=True)
class SumPool:
    """Sum pooling over a square window (stride defaults to the window): ``window²`` × average."""

    window: int
    stride: int | None = None
    padding: int = 0


@dataclasses.dataclass(frozen=True)
class Scale:
    """Element-wise gain ``x ⊙ s`` with ``s = params[name]["scale"]`` (broadcast to ``[H, W, C]``
    or ``[F]``), e.g. NIR's ``Scale`` node."""

    name: str


@dataclasses.dataclass(frozen=True)
class Flatten:
    """Flattens ``[..., H, W, C]`` to ``[..., H·W·C]``."""


@dataclasses.dataclass(frozen=True)
class LIF:
    """LIF neurons on the output of the preceding synaptic layer.

    ``LIF()`` uses the network-wide dynamics of :class:`SNNConfig`. A *named* ``LIF(name)``
    reads per-layer (or per-neuron) parameters from ``params[name]``, arrays broadcastable to
    the layer's ``[H, W, C]`` (or ``[F]``) output, as imported from NIR graphs:

    - ``"beta"``, ``"threshold"`` (required): decay :math:`\\beta` and threshold :math:`\\theta`;
    - ``"gain"`` :math:`g`, ``"bias"`` :math:`b` (optional): the input current becomes
      :math:`g I + b`;
    - ``"alpha"`` (optional): a current-based synapse
      :math:`J[t] = \\alpha J[t-1] + g I[t]` feeds the membrane :math:`J[t] + b` instead;
    - ``"v_reset"`` (optional): reset potential of the ``"zero"`` reset.

    ``reset`` overrides :attr:`SNNConfig.reset` for this layer. Parameter arrays live in
    ``params`` (not in the hashable spec) so that specs stay static under ``jit``.
    """

    name: str | None = None
    reset: str | None = None

    def __post_init__(self):
        if self.reset is not None:
            lif.check_reset(self.reset)


LayerSpec = Conv | Dense | MaxPool | AvgPool | SumPool | Scale | Flatten | LIF

#: Pooling kinds the model builders offer (``pool=``); only ``"avg"`` and ``"sum"`` export to
#: NIR 1.0, which has no max-pooling node.
POOLS: dict[str, type] = {"max": MaxPool, "avg": AvgPool, "sum": SumPool}


def pool_spec(pool: str, window: int = 2) -> MaxPool | AvgPool | SumPool:
    """The pooling spec named ``pool`` (``"max"``, ``"avg"`` or ``"sum"``) over ``window``."""
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {tuple(POOLS)}, got {pool!r}")
    return POOLS[pool](window)


@dataclasses.dataclass(frozen=True)
class SNNConfig:
    """Network-wide neuron and simulation settings (static, hashable).

    Attributes:
      num_steps: ``T``, timesteps per forward pass (≥ 1).
      beta: LIF decay :math:`\\beta \\in [0, 1]`.
      threshold: firing threshold :math:`\\theta > 0`.
      reset: ``"subtract"`` (paper), ``"subtract_then_leak"`` (authors' code), ``"zero"`` or
        ``"none"`` (see :mod:`svebi_jax.lif`).
      surrogate: surrogate-gradient name, see :func:`svebi_jax.lif.spike_function`.
      surrogate_slope: slope of the sigmoid surrogate.
      readout_beta: leak of the non-spiking integrator readout (1 = pure integrator).
      detach_reset: stop gradients through the reset term.

    Execution options of the ``"time_batched"`` runner (they change how the work is ordered,
    never the spikes; see :func:`run_time_batched`):

    Attributes:
      time_chunk: timesteps per chunk ``T_c``: the runner scans over ``ceil(T / T_c)`` chunks
        and runs every layer time-batched inside a chunk, carrying the LIF states between
        chunks, so only one chunk's ``[T_c, B, ...]`` activations exist at a time. ``None``
        (default): automatic — on CPU the chunk whose activations fit a cache-sized working
        set (``T_c = 1`` for the paper's networks), elsewhere ``T`` (or ``round(√T)`` with
        ``remat="chunk"``).
      batch_chunk: images per batch chunk ``B_c``: the batch runs as ``ceil(B / B_c)``
        independent pieces (``lax.map``). ``None`` (default): automatic, like ``time_chunk``
        (on CPU at most as many images as fit the working set; elsewhere the whole batch).
      remat: ``"none"`` (default: the backward pass keeps every activation) or ``"chunk"``
        (:func:`jax.checkpoint` around each time chunk: only the LIF states at chunk
        boundaries are kept and a chunk is recomputed in the backward pass; memory
        ``O(T/T_c · state + T_c · activations)`` instead of ``O(T · activations)``).
      compute_dtype: ``"float32"`` (default) or ``"bfloat16"``: dtype of the convolution and
        matmul products (accumulated in float32). Spikes are exact in bfloat16; images and
        weights are rounded. Membrane potentials, readout and parameters stay float32.
    """

    num_steps: int = 10
    beta: float = 0.95
    threshold: float = 1.0
    reset: lif.ResetMode = "subtract"
    surrogate: str = "triangle"
    surrogate_slope: float = 5.0
    readout_beta: float = 1.0
    detach_reset: bool = False
    time_chunk: int | None = None
    batch_chunk: int | None = None
    remat: str = "none"
    compute_dtype: str = "float32"

    def __post_init__(self):
        if not isinstance(self.num_steps, int) or self.num_steps < 1:
            raise ValueError(f"num_steps (T) must be an integer >= 1, got {self.num_steps!r}")
        for name in ("time_chunk", "batch_chunk"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{name} must be None (automatic) or an integer >= 1, got {v!r}")
        if self.remat not in REMAT_POLICIES:
            raise ValueError(f"remat must be one of {REMAT_POLICIES}, got {self.remat!r}")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(
                f"compute_dtype must be one of {COMPUTE_DTYPES}, got {self.compute_dtype!r}"
            )
        lif.check_beta(self.beta)
        lif.check_beta(self.readout_beta)
        lif.check_threshold(self.threshold)
        lif.check_reset(self.reset)
        if self.surrogate not in lif.SURROGATES:
            raise ValueError(f"surrogate must be one of {lif.SURROGATES}, got {self.surrogate!r}")


class SNNOutput(NamedTuple):
    """Output of a spiking network's forward pass.

    Attributes:
      logits: ``[B, K]`` readout potential after the last step divided by ``T``.
      spikes: ``{conv_layer_name: array}`` recorded spike maps of every spiking conv layer
        (LIF output before pooling): ``[B, H, W, C]`` time-means :math:`\\bar S` when
        ``record="mean"``, ``[T, B, H, W, C]`` spike trains when ``record="spikes"``, and
        empty when nothing is recorded.
    """

    logits: Array
    spikes: dict[str, Array]


# ----------------------------------------------------------------------------- geometry


class Geometry(NamedTuple):
    """Shape and receptive field of a layer's output, in input-pixel units.

    Attributes:
      height, width, channels: output map size.
      rf: receptive-field side length in input pixels.
      jump: distance in input pixels between adjacent output cells.
      start: input-pixel coordinate (pixel centres at 0, 1, …) of the centre of output cell
        0's receptive field; cell ``i`` is centred at ``start + i·jump`` (may be fractional,
        and lies outside the image when padding reaches beyond it).
    """

    height: int
    width: int
    channels: int
    rf: int
    jump: int
    start: float


def _window(spec) -> tuple[int, int, int]:
    """``(effective window, stride, padding)`` of a conv (dilation included) or pool spec."""
    if isinstance(spec, Conv):
        return spec.dilation * (spec.kernel_size - 1) + 1, spec.stride, spec.padding
    return spec.window, spec.stride or spec.window, spec.padding


def _walk(layers: Sequence[LayerSpec], input_shape: tuple[int, int, int]):
    """Yields ``(spec, in_channels, Geometry after spec)`` through the layer sequence."""
    h, w, c = (int(v) for v in input_shape)
    rf, jump, start = 1, 1, 0.0
    flat = False
    for spec in layers:
        c_in = c
        if isinstance(spec, (Conv, MaxPool, AvgPool, SumPool)):
            if flat:
                raise ValueError(f"layers: {spec} follows Flatten/Dense; spatial layers come first")
            k, s, p = _window(spec)
            nh = (h + 2 * p - k) // s + 1
            nw = (w + 2 * p - k) // s + 1
            if nh < 1 or nw < 1:
                raise ValueError(
                    f"layers: {spec} does not fit its {h}x{w} input (window {k}, padding {p})"
                )
            h, w = nh, nw
            start = start + ((k - 1) / 2 - p) * jump
            rf = rf + (k - 1) * jump
            jump = jump * s
            if isinstance(spec, Conv):
                c = spec.features
        elif isinstance(spec, Flatten):
            c, h, w, flat = h * w * c, 1, 1, True
        elif isinstance(spec, Dense):
            if not flat and (h, w) != (1, 1):
                raise ValueError(f"layers: Dense {spec.name!r} needs a Flatten before it")
            flat = True
            c = spec.features
            rf, jump, start = max(input_shape[:2]), 1, (max(input_shape[:2]) - 1) / 2
        yield spec, c_in, Geometry(h, w, c, rf, jump, start)


def layer_geometry(
    layers: Sequence[LayerSpec], input_shape: tuple[int, int, int]
) -> dict[str, Geometry]:
    """Output geometry of every named synaptic layer (conv maps before pooling).

    Standard receptive-field arithmetic: for a window ``k``, stride ``s``, padding ``p``,

    .. math::
        n' = \\lfloor (n + 2p - k)/s \\rfloor + 1,\\quad r' = r + (k-1)j,\\quad
        j' = js,\\quad c' = c + \\left(\\tfrac{k-1}{2} - p\\right) j

    Args:
      layers: the network's layer specs.
      input_shape: ``(H, W, C)`` of one input image.

    Returns:
      ``{name: Geometry}`` for every :class:`Conv` (spatial) and :class:`Dense` (``height =
      width = 1``, ``channels = features``; its rf covers the whole input).

    Raises:
      ValueError: if a window does not fit its input.
    """
    return {
        spec.name: geo
        for spec, _, geo in _walk(layers, input_shape)
        if isinstance(spec, (Conv, Dense))
    }


def input_features(
    layers: Sequence[LayerSpec], input_shape: tuple[int, int, int]
) -> dict[str, int]:
    """``{name: C_in}`` of every synaptic layer (input channels or flattened features)."""
    return {
        spec.name: c_in
        for spec, c_in, _ in _walk(layers, input_shape)
        if isinstance(spec, (Conv, Dense))
    }


def conv_layer_names(layers: Sequence[LayerSpec]) -> tuple[str, ...]:
    """Names of the spiking conv layers (a :class:`Conv` followed by :class:`LIF`), in order."""
    names = []
    for spec, nxt in zip(layers, tuple(layers[1:]) + (None,), strict=True):
        if isinstance(spec, Conv) and isinstance(nxt, LIF):
            names.append(spec.name)
    return tuple(names)


def validate_layers(layers: Sequence[LayerSpec]) -> None:
    """Checks the layer sequence: unique names, LIF after synaptic layers, Dense readout last."""
    layers = tuple(layers)
    if not layers or not isinstance(layers[-1], Dense):
        raise ValueError("layers must end with a Dense readout layer")
    names = [s.name for s in layers if isinstance(s, (Conv, Dense, Scale))]
    names += [s.name for s in layers if isinstance(s, LIF) and s.name is not None]
    if len(set(names)) != len(names):
        raise ValueError(f"layers: layer names must be unique, got {names}")
    prev = None
    for spec in layers:
        if isinstance(spec, LIF) and not isinstance(prev, (Conv, Dense)):
            raise ValueError("layers: LIF must directly follow a Conv or Dense layer")
        if not isinstance(spec, LayerSpec):
            raise ValueError(f"layers: unknown layer spec {spec!r}")
        prev = spec


# ----------------------------------------------------------------------------- ops


def _conv(x: Array, p: Mapping[str, Array], spec: Conv) -> Array:
    if spec.dilation == 1 and spec.groups == 1:  # both runners' convolution
        y = _kernels.conv(x, p["kernel"], spec.stride, spec.padding)
    else:
        y = jax.lax.conv_general_dilated(
            x,
            p["kernel"],
            window_strides=(spec.stride, spec.stride),
            padding=((spec.padding, spec.padding), (spec.padding, spec.padding)),
            rhs_dilation=(spec.dilation, spec.dilation),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=spec.groups,
        )
    return y + p["bias"] if spec.use_bias else y


def _pool(x: Array, spec: MaxPool | AvgPool | SumPool) -> Array:
    k, s, p = _window(spec)
    if s == k and p == 0:
        # Non-overlapping windows: a reshape + reduce is exact (VALID floors the size) and its
        # backward pass is ~2.5x faster on CPU than reduce_window's select-and-scatter. Tied
        # maxima (common with binary spikes) share the gradient equally.
        n, h, w, c = x.shape
        hh, ww = h // k, w // k
        x = x[:, : hh * k, : ww * k, :].reshape(n, hh, k, ww, k, c)
        if isinstance(spec, SumPool):
            return x.sum(axis=(2, 4))
        return x.max(axis=(2, 4)) if isinstance(spec, MaxPool) else x.mean(axis=(2, 4))
    pad = ((0, 0), (p, p), (p, p), (0, 0))
    if isinstance(spec, MaxPool):
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, k, k, 1), (1, s, s, 1), pad)
    summed = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, k, k, 1), (1, s, s, 1), pad)
    return summed if isinstance(spec, SumPool) else summed / (k * k)


class _Exec(NamedTuple):
    """How the time-batched runner computes its synaptic layers (static).

    Attributes:
      dtype: product dtype of convolutions and matmuls (float32 accumulation).
      conv_rows: images per convolution call (``None``: one call), see
        :func:`svebi_jax._kernels.map_rows`.
      spike_dtype: set (bfloat16) when the op's input is known to be binary spikes: the
        backward pass keeps that input in this exact, narrower dtype.
    """

    dtype: object = jnp.float32
    conv_rows: int | None = None
    spike_dtype: object = None


def _apply(x: Array, spec: LayerSpec, params: Params, ex: _Exec | None = None) -> Array:
    """Applies a stateless op to a ``[N, ...]`` batch (N may be T·B).

    ``ex=None`` is the reference arithmetic (plain ``lax`` ops, autodiff gradients); an
    :class:`_Exec` selects the time-batched runner's kernels (same forward values in float32,
    GEMM gradients, chunked rows, optional bfloat16 products).
    """
    if isinstance(spec, Conv):
        if ex is None or spec.dilation != 1 or spec.groups != 1:
            return _conv(x, params[spec.name], spec)
        p = params[spec.name]
        y = _kernels.conv2d(
            x, p["kernel"], spec.stride, spec.padding, ex.dtype, ex.conv_rows, ex.spike_dtype
        )
        return y + p["bias"] if spec.use_bias else y
    if ex is not None and _is_plain_max_pool(spec):
        return _kernels.max_pool(
            x, spec.window, ex.spike_dtype or x.dtype, ex.spike_dtype is not None
        )
    if isinstance(spec, (MaxPool, AvgPool, SumPool)):
        return _pool(x, spec)
    if isinstance(spec, Scale):
        return x * params[spec.name]["scale"]
    if isinstance(spec, Flatten):
        return x.reshape(x.shape[0], -1)
    if isinstance(spec, Dense):
        p = params[spec.name]
        y = x @ p["kernel"] if ex is None else _kernels.dense(x, p["kernel"], ex.dtype)
        return y + p["bias"] if spec.use_bias else y
    raise ValueError(f"unknown layer spec {spec!r}")


def _apply_time(x: Array, spec: LayerSpec, params: Params, ex: _Exec | None = None) -> Array:
    """Applies an op to ``[T, B, ...]`` as one batched op over ``[T·B, ...]``."""
    t, b = x.shape[:2]
    y = _apply(x.reshape((t * b,) + x.shape[2:]), spec, params, ex)
    return y.reshape((t, b) + y.shape[1:])


def _mask(spikes: Array, mask: Array | None, time_axis: bool) -> Array:
    """Multiplies spikes ``[(T,) B, ..., C]`` by a ``[C]`` or ``[B, C]`` channel mask."""
    if mask is None:
        return spikes
    mask = jnp.asarray(mask, spikes.dtype)
    if mask.ndim == 2:  # [B, C] -> broadcast over spatial axes
        mask = mask.reshape(
            (mask.shape[0],) + (1,) * (spikes.ndim - 2 - time_axis) + mask.shape[1:]
        )
    return spikes * mask


def _check_masks(masks, layers) -> None:
    if masks is None:
        return
    valid = conv_layer_names(layers) + tuple(
        s.name for s, n in zip(layers[:-1], layers[1:], strict=True) if isinstance(n, LIF)
    )
    for name in masks:
        if name not in valid:
            raise ValueError(f"masks: unknown spiking layer {name!r}; expected one of {valid}")


def _check_params(params, layers) -> None:
    """Every synaptic layer has its ``kernel`` (and ``bias``) in ``params``."""
    if not isinstance(params, Mapping):
        raise ValueError(
            f"params must be a {{layer: {{'kernel', 'bias'}}}} mapping, got {type(params).__name__}"
        )
    for spec in layers:
        if isinstance(spec, (Conv, Dense)):
            need = ("kernel", "bias") if spec.use_bias else ("kernel",)
            have = params.get(spec.name)
            missing = [k for k in need if not isinstance(have, Mapping) or k not in have]
            if missing:
                raise ValueError(
                    f"params: layer {spec.name!r} lacks {missing}; params has layers "
                    f"{sorted(params)}"
                )


def _spiking_name(layers, i) -> str | None:
    """Name of the synaptic layer feeding the LIF at position ``i``."""
    return layers[i - 1].name


# ----------------------------------------------------------------------------- chunking

#: Working set (bytes of float32 activations per synaptic layer call) that the automatic
#: chunking of the time-batched runner targets on CPU: XLA:CPU's convolutions run ~2x faster
#: per FLOP when a call's input and output stay cache-sized (measured on the shallow SNN's
#: conv2, 2 AVX2 cores: ~60 GFLOP/s per core at 100 images per call, ~30 at 1,000).
CPU_WORKING_SET_BYTES = 4 << 20
#: The chunk loop is unrolled (straight-line code, no stacked residual buffers) when it has
#: at most this many synaptic-layer calls; longer loops stay a ``lax.scan`` (compile time).
_MAX_UNROLLED_LAYERS = 64


class Chunking(NamedTuple):
    """Resolved execution plan of :func:`run_time_batched` (see :func:`plan_chunks`).

    Attributes:
      time_chunk: timesteps per chunk ``T_c`` (``1 <= T_c <= T``).
      batch_chunk: images per batch chunk ``B_c`` (``1 <= B_c <= B``).
      conv_rows: images per convolution call inside a chunk (``None``: one call).
    """

    time_chunk: int
    batch_chunk: int
    conv_rows: int | None


def _row_bytes(layers: Sequence[LayerSpec], params: Params, row_shape, dtype) -> int:
    """Largest float32 activation of one image at one step over all layers (abstract)."""
    shapes = []

    def walk(x):
        for spec in layers:
            if not isinstance(spec, LIF):
                x = _apply(x, spec, params)
            shapes.append(x.shape)
        return x

    jax.eval_shape(walk, jax.ShapeDtypeStruct((1,) + tuple(row_shape), dtype))
    return max(4 * int(np.prod(s)) for s in shapes)


def plan_chunks(
    layers: Sequence[LayerSpec],
    params: Params,
    inputs_shape: tuple[int, ...],
    config: SNNConfig,
    *,
    backend: str | None = None,
) -> Chunking:
    """Chooses the time and batch chunks of :func:`run_time_batched` (static, no compute).

    Explicit :attr:`SNNConfig.time_chunk` / :attr:`SNNConfig.batch_chunk` are used as given
    (clipped to ``T`` and ``B``); a network with a current-based synapse (a named
    :class:`LIF` with ``"alpha"``) always runs all ``T`` steps in one time chunk.
    Automatic values depend on the backend:

    - CPU: ``R = max(1, CPU_WORKING_SET_BYTES // r)`` rows, where ``r`` is the largest
      per-image activation of any layer; ``B_c = ceil(B / ceil(B / R))`` (equal pieces) and
      ``T_c = max(1, R // B_c)`` rounded down to a divisor of ``T``; convolutions also split
      their rows into pieces of ``R`` images. The shallow SNN at ``B = 100`` gets
      ``T_c = 1, B_c = 100``; SVGG19 at 224² gets ``T_c = B_c = 1``.
    - other backends: ``T_c = T`` (``round(√T)`` with ``remat="chunk"``), ``B_c = B``.

    Args:
      layers: the network's layer specs.
      params: its parameters (only shapes are used).
      inputs_shape: ``(B, H, W, C)`` or time-major ``(T, B, H, W, C)`` (or ``[B, F]``).
      config: :class:`SNNConfig`.
      backend: ``jax.default_backend()`` when ``None``.

    Returns:
      :class:`Chunking`.
    """
    num_steps = config.num_steps
    time_major = _is_time_major(inputs_shape, layers)
    batch = inputs_shape[1] if time_major else inputs_shape[0]
    row_shape = inputs_shape[2:] if time_major else inputs_shape[1:]
    backend = backend or jax.default_backend()
    rows = None
    if backend == "cpu":
        r = _row_bytes(layers, params, row_shape, jnp.float32)
        rows = max(1, CPU_WORKING_SET_BYTES // r)
    if config.batch_chunk is not None:
        bc = min(config.batch_chunk, batch)
    elif rows is not None:
        bc = -(-batch // -(-batch // rows))
    else:
        bc = batch
    if config.time_chunk is not None:
        tc = min(config.time_chunk, num_steps)
    elif rows is not None:
        tc = max(1, min(num_steps, rows // bc))
        while num_steps % tc:
            tc -= 1
    elif config.remat == "chunk":
        tc = max(1, round(num_steps**0.5))
    else:
        tc = num_steps
    if any(isinstance(s, LIF) and s.name is not None and "alpha" in params[s.name] for s in layers):
        tc = num_steps  # a current-based synapse's state is not carried between chunks
    return Chunking(tc, bc, rows)


def _is_time_major(inputs_shape, layers) -> bool:
    """Whether an input shape carries a leading time axis (one more axis than an image)."""
    # Images are [B, H, W, C] (time-major [T, B, H, W, C]); a network that starts with a
    # Dense layer may also take flat [B, F] (time-major [T, B, F]) inputs.
    if len(inputs_shape) == 5:
        return True
    return len(inputs_shape) == 3 and isinstance(layers[0], Dense)


# ----------------------------------------------------------------------------- runners


def _run_layers(
    layers: tuple[LayerSpec, ...],
    start: int,
    stop: int,
    params: Params,
    x: Array,
    membranes,
    masks: Mapping[str, Array],
    *,
    num_steps: int,
    static: bool,
    config: SNNConfig,
    ex: _Exec,
    record: Record,
):
    """Runs ``layers[start:stop]`` over one time chunk of ``num_steps`` steps.

    Args:
      x: ``[B, ...]`` input that is the same at each step of the chunk (``static``), or
        ``[num_steps, B, ...]``.
      membranes: tuple of ``[B, ...]`` potentials :math:`U` carried in from the previous
        chunk, one per LIF layer in the range (``None``: at rest). The pending spikes are
        :math:`S = H(U - \\theta)`, recomputed (so only :math:`U` is carried).
      masks: ``{layer: [C] or [B, C]}`` spike masks.

    Returns:
      ``(out, static, new_membranes, recorded)``: the last layer's output (``[B, ...]`` if
      still ``static``, else ``[num_steps, B, ...]``), whether it is static, the potentials
      after the chunk's last step, and ``{conv layer: [num_steps, B, ...]}`` spikes.
    """
    conv_names = conv_layer_names(layers)
    spike_fn = lif.spike_function(
        config.surrogate, threshold=config.threshold, slope=config.surrogate_slope
    )
    new_membranes, recorded = [], {}
    binary = False  # x holds unmasked spikes (0/1): kept in bfloat16 for backward passes
    i, k = start, 0
    while i < stop:
        spec = layers[i]
        i += 1
        if not isinstance(spec, LIF):
            op_ex = ex._replace(spike_dtype=jnp.bfloat16 if binary else None)
            binary = binary and isinstance(spec, (MaxPool, Flatten))
            x = _apply(x, spec, params, op_ex) if static else _apply_time(x, spec, params, op_ex)
            continue
        name = _spiking_name(layers, i - 1)
        settings = _neuron_settings(spec, params, config)
        p = params[spec.name] if spec.name is not None else {}
        if "alpha" in p:  # a synaptic current: plan_chunks runs all T steps in one chunk
            x = _neuron_currents(x, spec, params, num_steps, static)
            static = False
        else:  # gain and bias keep a static current static
            x = x * p["gain"] if "gain" in p else x
            x = x + p["bias"] if "bias" in p else x
        shape = x.shape if static else x.shape[1:]
        if membranes is None:
            state = lif.init_state(shape, x.dtype)
        else:
            u = membranes[k]
            state = lif.LIFState(u, spike_fn(u - settings["threshold"]).astype(u.dtype))
        k += 1
        nxt = layers[i] if i < stop else None
        dyn = lif.static_dynamics(
            settings["beta"],
            settings["threshold"],
            settings["reset"],
            spike_fn,
            config.detach_reset,
        )
        if (
            dyn is not None
            and settings["v_reset"] is None
            and _is_plain_max_pool(nxt)
            and masks.get(name) is None
            and not (record is not None and name in conv_names)
        ):
            # LIF + max pooling fused: only the potentials are kept for the backward pass.
            x, membrane = _kernels.lif_max_pool(
                x,
                state.membrane,
                state.spikes,
                dyn,
                num_steps if static else None,
                nxt.window,
                True if num_steps <= 12 else 4,
            )
            i += 1
        else:
            x, membrane = lif.lif_scan(
                x,
                **settings,
                surrogate=spike_fn,
                detach_reset=config.detach_reset,
                initial_state=state,
                num_steps=num_steps if static else None,
            )
            x = _mask(x, masks.get(name), time_axis=True)
            if record is not None and name in conv_names:
                recorded[name] = x
        new_membranes.append(membrane[-1])
        static, binary = False, masks.get(name) is None
    return x, static, tuple(new_membranes), recorded


def _is_plain_max_pool(spec) -> bool:
    """A :class:`MaxPool` with non-overlapping windows and no padding."""
    return isinstance(spec, MaxPool) and _window(spec)[1:] == (spec.window, 0)


def _readout_update(u: Array, currents: Array, beta) -> Array:
    """Integrator readout advanced over a chunk: ``U ← β U + I[t]`` for each step."""
    if not isinstance(beta, jax.core.Tracer) and np.all(np.asarray(beta) == 1.0):
        return u + jnp.sum(currents, axis=0)
    u, _ = jax.lax.scan(lambda v, i: (beta * v + i, None), u, currents)
    return u


def _segments(layers: tuple[LayerSpec, ...], start: int) -> list[tuple[int, int]]:
    """``[(start, stop)]`` pieces run one after the other, each with its own time chunks: the
    spatial trunk and, after a :class:`Flatten`, the dense head (whose matmuls then see all
    ``T`` steps at once instead of re-reading their weights once per chunk)."""
    flat = next((i for i, s in enumerate(layers) if isinstance(s, Flatten) and i > start), None)
    if flat is None:
        return [(start, len(layers))]
    trunk, head = layers[start:flat], layers[flat:]
    if any(isinstance(s, LIF) for s in trunk) and any(isinstance(s, LIF) for s in head):
        return [(start, flat), (flat, len(layers))]
    return [(start, len(layers))]


def _sum_dtype(name: str, masks, num_steps: int):
    """Exact accumulator of a layer's spike counts: uint8 for unmasked spikes and ``T <= 255``."""
    return jnp.uint8 if masks.get(name) is None and num_steps <= 255 else jnp.float32


def _run_segment(
    layers: tuple[LayerSpec, ...],
    start: int,
    stop: int,
    params: Params,
    x: Array,
    masks: Mapping[str, Array],
    *,
    static: bool,
    time_chunk: int,
    readout: bool,
    config: SNNConfig,
    ex: _Exec,
    record: Record,
):
    """Runs ``layers[start:stop]`` over all ``T`` steps in chunks of ``time_chunk`` steps.

    The chunks are a :func:`jax.lax.scan` (unrolled when short) carrying the LIF potentials,
    the spike counts of ``record="mean"`` and, for the ``readout`` segment, the integrator's
    potential. With ``config.remat == "chunk"`` each chunk is a :func:`jax.checkpoint`.

    Returns:
      ``(out, static, recorded)``: ``out`` is the ``[B, K]`` readout potential (``readout``)
      or the segment's output ``[T, B, ...]`` (or ``[B, ...]`` if ``static``);
      ``recorded`` holds ``[B, ...]`` spike counts (``"mean"``) or ``[T, B, ...]`` spikes.
    """
    num_steps = config.num_steps
    run = functools.partial(
        _run_layers, layers, start, stop, params, masks=masks, config=config, ex=ex, record=record
    )
    # Shapes of the carry from one abstract step at rest.
    out_a, _, mem_a, rec_a = jax.eval_shape(
        lambda: run(x if static else x[:1], None, num_steps=1, static=static)
    )
    static_a = static and not any(isinstance(s, LIF) for s in layers[start:stop])
    membranes = tuple(jnp.zeros(a.shape, a.dtype) for a in mem_a)
    sums = {}
    if record == "mean":
        sums = {
            k: jnp.zeros(v.shape[1:], _sum_dtype(k, masks, num_steps)) for k, v in rec_a.items()
        }
    u = jnp.zeros(out_a.shape[1:] if not static_a else out_a.shape, out_a.dtype)

    def chunk(carry, xs, n):
        membranes, u, sums = carry
        out, out_static, membranes, rec = run(
            x if static else xs, membranes, num_steps=n, static=static
        )
        if out_static:  # no LIF in the segment: a constant output
            out = jnp.broadcast_to(out, (n,) + out.shape)
        ys = {}
        if readout:
            u = _readout_update(u, out, _readout_beta(layers, params, config))
        else:
            ys["out"] = out
        if record == "mean":
            sums = {k: sums[k] + jnp.sum(v, axis=0).astype(sums[k].dtype) for k, v in rec.items()}
        elif record == "spikes":
            ys.update(rec)
        return (membranes, u, sums), ys

    n_full, tail = divmod(num_steps, time_chunk)
    carry = (membranes, u, sums)
    pieces = []
    for n, count in ((time_chunk, n_full), (tail, 1 if tail else 0)):
        if not count:
            continue
        offset = n_full * time_chunk if n == tail and n != time_chunk else 0
        body = functools.partial(chunk, n=n)
        if config.remat == "chunk":
            body = jax.checkpoint(body, prevent_cse=False)
        if count == 1:
            xs = None if static else x[offset : offset + n]
            carry, ys = body(carry, xs)
        else:
            xs = None if static else x[: count * n].reshape((count, n) + x.shape[1:])
            synaptic = sum(isinstance(s, (Conv, Dense)) for s in layers[start:stop])
            short = count * synaptic <= _MAX_UNROLLED_LAYERS
            # Only a plain forward/backward pass is unrolled (~10 % faster training on CPU).
            # Rematerialized chunks stay a rolled loop (unrolled, XLA merges the recomputation
            # with the forward pass and keeps everything alive), and so does spike recording
            # (XLA's scheduler may keep every step's maps of an unrolled loop alive at once).
            unroll = count if short and config.remat == "none" and record is None else 1
            carry, ys = jax.lax.scan(body, carry, xs, length=count, unroll=unroll)
            ys = {k: v.reshape((count * n,) + v.shape[2:]) for k, v in ys.items()}
        pieces.append(ys)
    _, u, sums = carry
    ys = {
        k: jnp.concatenate([p[k] for p in pieces]) if len(pieces) > 1 else pieces[0][k]
        for k in pieces[0]
    }
    out = u if readout else ys.pop("out")
    return out, False, (sums if record == "mean" else ys)


def _run_batch(
    layers: tuple[LayerSpec, ...],
    params: Params,
    inputs: Array,
    masks: Mapping[str, Array],
    *,
    config: SNNConfig,
    record: Record,
    time_chunk: int,
    ex: _Exec,
):
    """The time-chunked forward pass of one batch (see :func:`run_time_batched`).

    Returns:
      ``(logits [B, K], recorded)`` with ``recorded`` as in :class:`SNNOutput`.
    """
    num_steps = config.num_steps
    static = not _is_time_major(inputs.shape, layers)
    x = inputs
    # A direct (static) input: the leading stateless ops run once, not once per step.
    start = 0
    if static:
        while start < len(layers) - 1 and not isinstance(layers[start], LIF):
            x = _apply(x, layers[start], params, ex)
            start += 1
    if static and not any(isinstance(s, LIF) for s in layers):  # constant readout current
        x = _apply(x, layers[-1], params, ex)
        x = jnp.broadcast_to(x, (num_steps,) + x.shape)
        return lif.integrator_readout(x, beta=_readout_beta(layers, params, config)), {}
    recorded = {}
    segments = _segments(layers, start) if time_chunk < num_steps else [(start, len(layers))]
    for s, e in segments:
        last = e == len(layers)
        x, static, rec = _run_segment(
            layers,
            s,
            e,
            params,
            x,
            masks,
            static=static,
            time_chunk=time_chunk if not (last and s > start) else num_steps,
            readout=last,
            config=config,
            ex=ex,
            record=record,
        )
        recorded.update(rec)
    logits = x / num_steps
    if record == "mean":
        recorded = {k: v.astype(jnp.float32) / num_steps for k, v in recorded.items()}
    return logits, recorded


def _neuron_settings(spec: LIF, params: Params, config: SNNConfig) -> dict:
    """``beta, threshold, reset, v_reset`` of a LIF spec (``params[name]`` for a named one)."""
    reset = spec.reset or config.reset
    if spec.name is None:
        return dict(beta=config.beta, threshold=config.threshold, reset=reset, v_reset=None)
    p = params[spec.name]
    v_reset = p["v_reset"] if "v_reset" in p else None
    return dict(beta=p["beta"], threshold=p["threshold"], reset=reset, v_reset=v_reset)


def _neuron_currents(x: Array, spec: LIF, params: Params, num_steps: int, static: bool) -> Array:
    """Time-major ``[T, ...]`` membrane input of a LIF layer from its synaptic output ``x``.

    ``x`` is ``[B, ...]`` when ``static`` (the same current at every step), else ``[T, B, ...]``.
    A named LIF applies its gain, current-based synapse and bias (see :class:`LIF`).
    """
    p = params[spec.name] if spec.name is not None else {}
    if "gain" in p:
        x = x * p["gain"]
    if "alpha" in p:
        x = jnp.broadcast_to(x, (num_steps,) + x.shape) if static else x
        static = False
        alpha = p["alpha"]
        _, x = jax.lax.scan(lambda j, i: (alpha * j + i,) * 2, jnp.zeros_like(x[0]), x)
    if "bias" in p:
        x = x + p["bias"]
    return jnp.broadcast_to(x, (num_steps,) + x.shape) if static else x


def _readout_beta(layers, params: Params, config: SNNConfig):
    """Leak of the readout: ``params[readout]["beta"]`` (per neuron) or the config's scalar."""
    p = params[layers[-1].name]
    return p["beta"] if "beta" in p else config.readout_beta


def run_time_batched(
    layers: Sequence[LayerSpec],
    params: Params,
    inputs: Array,
    *,
    config: SNNConfig,
    record: Record = None,
    masks: Mapping[str, Array] | None = None,
) -> SNNOutput:
    """Time-batched forward pass, chunked over time and batch (see the module docstring).

    Inside a time chunk of ``T_c`` steps every synaptic layer computes its currents for all
    ``T_c`` steps in one batched conv/matmul over ``[T_c·B_c, ...]`` and its LIF population
    is scanned over the chunk; the LIF states (and the readout potential and, for
    ``record="mean"``, the spike sums) are carried from chunk to chunk by a
    :func:`jax.lax.scan`. Batch chunks of ``B_c`` images run independently under
    :func:`jax.lax.map`. With a direct input, the layers in front of the first LIF run once.
    The chunk sizes (:func:`plan_chunks`), :attr:`SNNConfig.remat` and
    :attr:`SNNConfig.compute_dtype` change the order of the work only: in float32 the spikes
    equal :func:`run_stepwise`'s exactly, logits and gradients to float rounding.

    Args:
      layers: layer specs ending with the :class:`Dense` readout.
      params: ``{name: {"kernel", "bias"}}``.
      inputs: ``[B, H, W, C]`` image fed directly at every step, or ``[T, B, H, W, C]`` a
        time-varying input (time-major).
      config: :class:`SNNConfig` (dynamics and execution options).
      record: ``None``, ``"mean"`` (``[B, H, W, C]`` time-mean spike maps) or ``"spikes"``
        (``[T, B, H, W, C]``) for every spiking conv layer.
      masks: optional ``{layer_name: [C] or [B, C]}`` multiplied into that layer's output
        spikes (ablation without model surgery).

    Returns:
      :class:`SNNOutput`.
    """
    layers = tuple(layers)
    masks = dict(masks or {})
    plan = plan_chunks(layers, params, tuple(inputs.shape), config)
    ex = _Exec(jnp.dtype(config.compute_dtype).type, plan.conv_rows)
    time_major = _is_time_major(inputs.shape, layers)
    batch = inputs.shape[1] if time_major else inputs.shape[0]
    run = functools.partial(
        _run_batch,
        layers,
        params,
        config=config,
        record=record,
        time_chunk=plan.time_chunk,
        ex=ex,
    )
    if plan.batch_chunk >= batch:
        return SNNOutput(*run(inputs, masks))
    # Batch chunks: per-image masks ([B, C]) are split with the images; [C] masks are shared.
    shared = {k: v for k, v in masks.items() if jnp.ndim(v) < 2}
    per_image = {k: v for k, v in masks.items() if jnp.ndim(v) >= 2}
    x = jnp.moveaxis(inputs, 1, 0) if time_major else inputs

    def piece(xb, mb):
        xb = jnp.moveaxis(xb, 0, 1) if time_major else xb
        logits, rec = run(xb, {**shared, **mb})
        if record == "spikes":
            rec = {k: jnp.moveaxis(v, 1, 0) for k, v in rec.items()}
        return logits, rec

    logits, rec = _map_batch(piece, x, per_image, plan.batch_chunk)
    if record == "spikes":
        rec = {k: jnp.moveaxis(v, 0, 1) for k, v in rec.items()}
    return SNNOutput(logits, rec)


def _map_batch(fn, x: Array, tree, chunk: int):
    """``fn(x, tree)`` over consecutive chunks of the leading axis of ``x`` and ``tree``'s
    leaves (``lax.map`` over full chunks, one call for the rest); outputs concatenated."""
    n = x.shape[0]
    full = (n // chunk) * chunk

    def split(a):
        return a[:full].reshape((n // chunk, chunk) + a.shape[1:])

    out = jax.lax.map(lambda args: fn(*args), (split(x), jax.tree.map(split, tree)))
    out = jax.tree.map(lambda a: a.reshape((full,) + a.shape[2:]), out)
    if full == n:
        return out
    rest = fn(x[full:], jax.tree.map(lambda a: a[full:], tree))
    return jax.tree.map(lambda a, b: jnp.concatenate([a, b], axis=0), out, rest)


def run_stepwise(
    layers: Sequence[LayerSpec],
    params: Params,
    inputs: Array,
    *,
    config: SNNConfig,
    record: Record = None,
    masks: Mapping[str, Array] | None = None,
) -> SNNOutput:
    """Reference forward pass: the whole network advances one timestep per scan step.

    Same arguments and result as :func:`run_time_batched`.
    """
    layers = tuple(layers)
    conv_names = set(conv_layer_names(layers))
    spike_fn = lif.spike_function(
        config.surrogate, threshold=config.threshold, slope=config.surrogate_slope
    )
    lif_positions = [i for i, s in enumerate(layers) if isinstance(s, LIF)]
    num_steps = config.num_steps
    readout_beta = _readout_beta(layers, params, config)
    if inputs.ndim == 5:
        xs = inputs
    else:
        xs = jnp.broadcast_to(inputs, (num_steps,) + inputs.shape)

    def step(carry, x_t):
        states, u_out = carry
        new_states = []
        rec = {}
        x = x_t
        k = 0
        for i, spec in enumerate(layers):
            if isinstance(spec, LIF):
                p = params[spec.name] if spec.name is not None else {}
                x = x * p["gain"] if "gain" in p else x
                if states is not None:
                    state, syn = states[k]
                else:  # abstract first step: (LIF state, synaptic current or None)
                    state = lif.init_state(x.shape, x.dtype)
                    syn = jnp.zeros_like(x) if "alpha" in p else None
                if syn is not None:
                    syn = x = p["alpha"] * syn + x
                x = x + p["bias"] if "bias" in p else x
                state, (s, _) = lif.lif_step(
                    state,
                    x,
                    **_neuron_settings(spec, params, config),
                    spike_fn=spike_fn,
                    detach_reset=config.detach_reset,
                )
                new_states.append((state, syn))
                k += 1
                name = _spiking_name(layers, i)
                s = _mask(s, (masks or {}).get(name), time_axis=False)
                if name in conv_names:
                    rec[name] = s
                x = s
            else:
                x = _apply(x, spec, params)
        u_prev = jnp.zeros_like(x) if u_out is None else u_out
        u_new = readout_beta * u_prev + x
        return (tuple(new_states), u_new), rec

    # Shapes of the carry from one abstract step starting at rest.
    (state_shapes, u_shape), _ = jax.eval_shape(lambda x: step((None, None), x), xs[0])
    init_states = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), state_shapes)
    assert len(init_states) == len(lif_positions)
    init = (init_states, jnp.zeros(u_shape.shape, u_shape.dtype))
    (_, u_final), rec = jax.lax.scan(step, init, xs)
    recorded = {}
    if record is not None:
        recorded = {n: (v.mean(axis=0) if record == "mean" else v) for n, v in rec.items()}
    return SNNOutput(u_final / num_steps, recorded)


def run_network(
    layers: Sequence[LayerSpec],
    params: Params,
    inputs: Array,
    *,
    config: SNNConfig,
    mode: RunMode = "time_batched",
    record: Record = None,
    masks: Mapping[str, Array] | None = None,
) -> SNNOutput:
    """Runs a spiking network given as specs (dispatches on ``mode``).

    Args:
      layers: layer specs ending with the :class:`Dense` readout.
      params: ``{name: {"kernel", "bias"}}``.
      inputs: ``[B, H, W, C]`` direct input, or time-major ``[T, B, H, W, C]``.
      config: :class:`SNNConfig`.
      mode: ``"time_batched"`` (default, fast) or ``"stepwise"`` (reference).
      record: ``None``, ``"mean"`` or ``"spikes"``; see :class:`SNNOutput`.
      masks: ``{layer_name: [C] or [B, C]}`` multiplied into that layer's spikes.

    Returns:
      :class:`SNNOutput` with ``[B, K]`` logits.

    Raises:
      ValueError: unknown ``mode``/``record``/mask layer, inputs that are not a float
        ``[B, H, W, C]``/``[T, B, H, W, C]`` array, or (when concrete) NaN/inf inputs.
    """
    if record not in (None, "mean", "spikes"):
        raise ValueError(f"record must be None, 'mean' or 'spikes', got {record!r}")
    _check_masks(masks, tuple(layers))
    _check_params(params, tuple(layers))
    inputs = jnp.asarray(V.check_images(inputs, name="inputs", time_major=True))
    if mode == "time_batched":
        return run_time_batched(layers, params, inputs, config=config, record=record, masks=masks)
    if mode == "stepwise":
        return run_stepwise(layers, params, inputs, config=config, record=record, masks=masks)
    raise ValueError(f"mode must be 'time_batched' or 'stepwise', got {mode!r}")
