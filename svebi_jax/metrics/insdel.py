"""Insertion and deletion metrics (RISE's ``CausalMetric``), vectorised in JAX.

This module replicates ``CausalMetric`` from RISE (Petsiuk et al., 2018, ``evaluation.py`` of
``eclique/RISE``) step for step, but builds every perturbed image of a chunk at once with a rank
mask and runs one batched, jit-compiled forward pass per chunk instead of a Python loop.

One entry point, :func:`insertion_deletion`: it takes an attribution function
(``attr_fn(params, images, target) -> [B, H, W]``, :mod:`svebi_jax.attribution`) or maps
computed elsewhere (``[B, H, W]``), and the model (``apply_fn``, ``params``), and scores both
games (or the ones asked for). Parameters are arguments of the compiled computation: new
``params`` (e.g. another seed's model) and new images of the same shape reuse it.

Results say which direction is better (:attr:`CausalMetricResult.higher_is_better`: insertion
↑, deletion ↓). Other causal metrics (e.g. ROAD's remove-and-debias) follow the same shape: a
function of ``(attr_fn, apply_fn, params, images)`` returning per-image scores, their mean and
the direction.

For an image :math:`x` with :math:`P = HW` pixels, a saliency map :math:`s`, a substrate
:math:`z` and :math:`k` = ``pixels_per_step`` pixels per step, the pixels are ranked by
decreasing saliency (:math:`r_p \\in \\{0, \\dots, P-1\\}`) and the curve has :math:`n + 1`
points with :math:`n = \\lceil P / k \\rceil`:

.. math::

  x^{(i)}_{p} = \\begin{cases} f_p & r_p < i \\cdot k \\\\ s_p & \\text{otherwise}
  \\end{cases}, \\qquad
  \\text{curve}_i = \\mathrm{softmax}(g(x^{(i)}))_{c}, \\qquad
  c = \\arg\\max_k g(x)_k, \\qquad i = 0, \\dots, n,

where, for deletion, the start is :math:`s = x` and the finish is :math:`f = z`; for insertion,
:math:`s = z` and :math:`f = x`. All channels of a pixel move together. The normalised area
under the curve is RISE's trapezoidal rule on a unit interval:

.. math::

  \\mathrm{AUC} = \\frac{1}{n} \\Big( \\sum_{i=0}^{n} \\text{curve}_i
    - \\tfrac{1}{2}\\text{curve}_0 - \\tfrac{1}{2}\\text{curve}_n \\Big).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax import lax

from svebi_jax import _validation as V
from svebi_jax import batching
from svebi_jax._validation import is_tracer as _is_tracer
from svebi_jax.attribution import attribution_maps
from svebi_jax.protocols import ApplyFn, logits_of

__all__ = [
    "CausalMetricResult",
    "InsertionDeletion",
    "auc",
    "gaussian_blur",
    "gaussian_kernel",
    "auto_substrate",
    "insertion_deletion",
    "pixel_order",
]

_MODES = ("insertion", "deletion")
_SUBSTRATES = ("auto", "zeros", "blur")


@struct.dataclass
class CausalMetricResult:
    """Result of one causal game (a pytree; ``metric`` and ``higher_is_better`` are static).

    Attributes:
      curves: ``[B, n_steps + 1]`` float32, score of the original class after
        ``i * pixels_per_step`` pixels have been deleted (inserted), ``i = 0, ..., n_steps``.
      auc: ``[B]`` float32, per-image normalised AUC of ``curves`` (RISE's :func:`auc`).
      mean_auc: ``[]`` float32, mean of ``auc`` over images.
      auc_of_mean_curve: ``[]`` float32, AUC of the mean curve ``curves.mean(0)``; this is the
        number RISE's ``CausalMetric.evaluate`` prints. Because the AUC is linear in the curve it
        equals ``mean_auc`` up to floating-point rounding.
      classes: ``[B]`` int32, class predicted on the unperturbed images (``argmax`` of
        the model's logits), whose score the curves follow.
      metric: ``"insertion"`` or ``"deletion"``.
      higher_is_better: ``True`` for insertion (the class should come back fast), ``False``
        for deletion (it should go away fast).
      substrate: the substrate that was used: ``"zeros"``, ``"blur"`` or ``"array"`` (a
        given array); ``"auto"`` is reported as the one it chose.
      pixels_per_step: pixels changed per step of the curve.
    """

    curves: jax.Array
    auc: jax.Array
    mean_auc: jax.Array
    auc_of_mean_curve: jax.Array
    classes: jax.Array
    metric: str = struct.field(pytree_node=False, default="insertion")
    higher_is_better: bool = struct.field(pytree_node=False, default=True)
    substrate: str = struct.field(pytree_node=False, default="zeros")
    pixels_per_step: int = struct.field(pytree_node=False, default=1)


@struct.dataclass
class InsertionDeletion:
    """Both games for one attribution method (a pytree).

    Attributes:
      insertion: :class:`CausalMetricResult` of insertion (higher is better), or ``None``
        when not played (``games``).
      deletion: :class:`CausalMetricResult` of deletion (lower is better), or ``None``.
      maps: ``[B, H, W]`` float32 the attribution maps that were scored.
    """

    insertion: CausalMetricResult | None
    deletion: CausalMetricResult | None
    maps: jax.Array


def auc(curve: jax.Array) -> jax.Array:
    """Normalised area under a curve sampled at equally spaced points of ``[0, 1]``.

    Exactly RISE's ``auc``, applied along the last axis:

    .. math::

      \\mathrm{AUC} = \\frac{\\sum_{i=0}^{n} c_i - c_0 / 2 - c_n / 2}{n}.

    Args:
      curve: ``[..., n + 1]`` float array, ``n + 1 >= 2`` points per curve.

    Returns:
      ``[...]`` float array, the AUC of each curve.

    Raises:
      ValueError: if ``curve`` is a scalar or has fewer than 2 points on its last axis.
    """
    curve = jnp.asarray(curve)
    if curve.ndim == 0 or curve.shape[-1] < 2:
        raise ValueError(
            f"curve must have at least 2 points on its last axis, got shape {curve.shape}"
        )
    if not jnp.issubdtype(curve.dtype, jnp.inexact):
        curve = curve.astype(jnp.float32)
    n = curve.shape[-1] - 1
    return (curve.sum(axis=-1) - curve[..., 0] / 2 - curve[..., -1] / 2) / n


def pixel_order(saliency: jax.Array) -> jax.Array:
    """Flat pixel indices in order of decreasing saliency, as RISE computes them.

    RISE uses ``np.flip(np.argsort(saliency.reshape(-1, HW), axis=1), axis=-1)``. Here the
    argsort is stable, so among tied saliency values the pixel with the *larger* flat index
    comes first (stable ascending sort, then reversed). NumPy's default ``argsort``
    (introsort) makes no promise on ties, so RISE's own order may differ from this one on tied
    pixels only; for maps without ties the orders are identical.

    Args:
      saliency: ``[..., H, W]`` real array (higher = more important).

    Returns:
      ``[..., H * W]`` int32 array of row-major flat pixel indices, most salient first.
    """
    saliency = jnp.asarray(saliency)
    if saliency.ndim < 2:
        raise ValueError(f"saliency must have shape [..., H, W], got shape {saliency.shape}")
    flat = saliency.reshape(*saliency.shape[:-2], -1)
    order = jnp.argsort(flat, axis=-1, stable=True)
    return jnp.flip(order, axis=-1).astype(jnp.int32)


def gaussian_kernel(kernel_size: int = 11, sigma: float = 5.0) -> np.ndarray:
    """RISE's ``gkern`` blur kernel, computed in NumPy without SciPy.

    RISE builds the kernel as ``scipy.ndimage.gaussian_filter`` (``mode='reflect'``,
    ``truncate=4``) applied to a ``kernel_size x kernel_size`` Dirac delta. Since the filter is
    separable, the kernel is the outer product of the 1-D filtered delta :math:`k`:

    .. math::

      k_j = \\sum_{t=-R}^{R} w_t\\, \\delta_{\\rho(j + t)}, \\qquad
      w_t \\propto e^{-t^2 / (2\\sigma^2)}, \\qquad R = \\lfloor 4\\sigma + 1/2 \\rfloor,

    with :math:`\\rho` the half-sample-symmetric reflection into ``[0, kernel_size)``. Its entries
    sum to less than one whenever ``R > kernel_size // 2`` (as for RISE's ``(11, 5)``), exactly
    as in RISE.

    Args:
      kernel_size: odd positive int, side of the square kernel.
      sigma: positive float, standard deviation in pixels.

    Returns:
      ``[kernel_size, kernel_size]`` float32 NumPy array.

    Raises:
      ValueError: if ``kernel_size`` is not an odd positive int or ``sigma`` is not a finite
        positive number.
    """
    if (
        isinstance(kernel_size, bool)
        or not isinstance(kernel_size, int | np.integer)
        or kernel_size < 1
        or kernel_size % 2 == 0
    ):
        raise ValueError(f"kernel_size must be an odd positive int, got {kernel_size!r}")
    if isinstance(sigma, bool) or not isinstance(sigma, int | float | np.number):
        raise ValueError(f"sigma must be a finite positive number, got {sigma!r}")
    if not (math.isfinite(float(sigma)) and sigma > 0):
        raise ValueError(f"sigma must be a finite positive number, got {sigma!r}")
    kernel_size = int(kernel_size)
    sigma = float(sigma)
    radius = int(4.0 * sigma + 0.5)
    taps = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 / (sigma * sigma) * taps.astype(np.float64) ** 2)
    weights = weights / weights.sum()
    centre = kernel_size // 2
    period = 2 * kernel_size
    idx = np.mod(np.arange(kernel_size)[:, None] + taps[None, :], period)
    idx = np.where(idx >= kernel_size, period - 1 - idx, idx)  # [kernel_size, 2R + 1]
    k1 = np.where(idx == centre, weights[None, :], 0.0).sum(axis=1)
    return np.outer(k1, k1).astype(np.float32)


@functools.partial(jax.jit, static_argnames=("kernel_size", "sigma"))
def _blur(images: jax.Array, *, kernel_size: int, sigma: float) -> jax.Array:
    channels = images.shape[-1]
    kern = jnp.asarray(gaussian_kernel(kernel_size, sigma), dtype=images.dtype)
    kern = jnp.broadcast_to(kern[:, :, None, None], (kernel_size, kernel_size, 1, channels))
    pad = kernel_size // 2
    return lax.conv_general_dilated(
        images,
        kern,
        window_strides=(1, 1),
        padding=((pad, pad), (pad, pad)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=channels,
        precision=lax.Precision.HIGHEST,
    )


def gaussian_blur(images: jax.Array, *, kernel_size: int = 11, sigma: float = 5.0) -> jax.Array:
    """Per-channel Gaussian blur with zero padding: RISE's insertion substrate.

    RISE blurs with ``conv2d(x, gkern(11, 5), padding=11 // 2)``: every channel is convolved
    with the same :func:`gaussian_kernel`, independently of the other channels, and the image
    is padded with zeros so that the output keeps the input's size.

    Args:
      images: ``[B, H, W, C]`` float array.
      kernel_size: odd positive int, side of the kernel (RISE: 11).
      sigma: positive float, standard deviation in pixels (RISE: 5).

    Returns:
      ``[B, H, W, C]`` array of ``images``' dtype, the blurred images.

    Raises:
      ValueError: if ``images`` is not 4-D, or on a bad ``kernel_size`` / ``sigma``.
      TypeError: if ``images`` is not a floating-point array.
    """
    images = jnp.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must have shape [B, H, W, C], got shape {images.shape}")
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise TypeError(f"images must be a floating-point array, got dtype {images.dtype}")
    gaussian_kernel(kernel_size, sigma)  # validates eagerly
    return _blur(images, kernel_size=int(kernel_size), sigma=float(sigma))


def _check_positive_int(name: str, value, upper: int | None = None) -> int:
    value = V.check_positive_int(name, value)
    if upper is not None and value > upper:
        raise ValueError(f"{name} must be a positive int in [1, {upper}], got {value!r}")
    return value


def _chunked_map(fn: Callable[[jax.Array], Any], n: int, chunk_size: int) -> Any:
    """Applies ``fn`` to flat indices ``0..n-1`` in fixed-size chunks with ``lax.map``.

    ``fn`` maps ``[chunk]`` indices to an array (or a pytree of arrays) with a leading
    ``[chunk]`` axis; the result has a leading ``[n]`` axis.

    A chunk never exceeds ``n`` (fewer items than ``chunk_size`` are one chunk, not padding).
    """
    chunk_size = min(chunk_size, n)
    n_chunks = -(-n // chunk_size)
    idx = jnp.minimum(jnp.arange(n_chunks * chunk_size, dtype=jnp.int32), n - 1)
    out = lax.map(fn, idx.reshape(n_chunks, chunk_size))
    return jax.tree.map(lambda a: a.reshape(n_chunks * chunk_size, *a.shape[2:])[:n], out)


class _Logits:
    """``apply_fn`` seen as ``fn(params, images) -> logits`` (hashes like ``apply_fn``); an
    ``apply_fn`` may return the logits array itself."""

    def __init__(self, apply_fn):
        self.apply_fn = apply_fn

    def __call__(self, params, images):
        out = self.apply_fn(params, images)
        return out if isinstance(out, jax.Array | np.ndarray) else logits_of(out)

    def __hash__(self):
        return hash(self.apply_fn)

    def __eq__(self, other):
        return isinstance(other, _Logits) and other.apply_fn == self.apply_fn


@functools.partial(
    jax.jit,
    static_argnames=("predict_fn", "mode", "step", "chunk_size", "apply_softmax"),
)
def _insdel(
    params,
    images: jax.Array,
    saliency: jax.Array,
    substrate: jax.Array,
    *,
    predict_fn: Callable[[object, jax.Array], jax.Array],
    mode: str,
    step: int,
    chunk_size: int,
    apply_softmax: bool,
) -> CausalMetricResult:
    b, h, w, _ = images.shape
    hw = h * w
    n_steps = (hw + step - 1) // step  # the curves have n_steps + 1 points

    def scores(out, classes):
        out = out.astype(jnp.promote_types(out.dtype, jnp.float32))
        if apply_softmax:
            out = jax.nn.softmax(out, axis=-1)
        return jnp.take_along_axis(out, classes[:, None], axis=-1)[:, 0]

    # The unperturbed images (deletion's first point, insertion's last) give the class each
    # curve follows and that point's score: one forward pass per image, not two.
    def predict_original(idx):
        out = predict_fn(params, images[idx])
        classes = jnp.argmax(out, axis=-1).astype(jnp.int32)
        return classes, scores(out, classes)

    classes, unperturbed = _chunked_map(predict_original, b, chunk_size)

    # rank[b, p]: position of pixel p in the order of decreasing saliency.
    order = pixel_order(saliency)
    positions = jnp.arange(hw, dtype=jnp.int32)
    rank = jax.vmap(lambda o: jnp.zeros(hw, jnp.int32).at[o].set(positions))(order)

    if mode == "deletion":
        start, finish, first = images, substrate, 1
    else:
        start, finish, first = substrate, images, 0

    # Flat item k = image * n_steps + j: point first + j of that image's curve (the other
    # n_steps points; the unperturbed one is scored above), one perturbed image per item.
    def score_chunk(idx):
        img = idx // n_steps
        point = idx % n_steps + first
        changed = rank[img] < (point * step)[:, None]  # [chunk, HW]
        changed = changed.reshape(-1, h, w, 1)
        batch = jnp.where(changed, finish[img], start[img])
        return scores(predict_fn(params, batch), classes[img])

    perturbed = _chunked_map(score_chunk, b * n_steps, chunk_size).reshape(b, n_steps)
    pieces = (unperturbed[:, None], perturbed) if first else (perturbed, unperturbed[:, None])
    curves = jnp.concatenate(pieces, axis=1)
    # An image or map with NaN (checked eagerly; under the caller's jit they cannot raise)
    # gets a NaN curve: NaN saliency would otherwise rank as an arbitrary pixel order.
    valid = (
        V.rows_finite(images)
        & V.rows_finite(substrate)
        & ~jnp.any(jnp.isnan(saliency.reshape(b, -1)), axis=-1)
    )
    curves = V.flag_rows(curves, valid)
    return _result(curves, classes, mode)


def _result(curves: jax.Array, classes: jax.Array, mode: str) -> CausalMetricResult:
    """The :class:`CausalMetricResult` of ``[B, n + 1]`` curves (AUCs and means)."""
    per_image = auc(curves)
    return CausalMetricResult(
        curves=curves,
        auc=per_image,
        mean_auc=per_image.mean(),
        auc_of_mean_curve=auc(curves.mean(axis=0)),
        classes=classes,
        metric=mode,
        higher_is_better=mode == "insertion",
    )


def _check_game(images, saliency, mode, step, substrate, chunk_size, apply_softmax):
    """Validated ``(images, saliency, substrate, static kwargs)`` of one game."""
    V.check_choice("mode", mode, _MODES)
    if not isinstance(apply_softmax, bool):
        raise ValueError(f"apply_softmax must be a bool, got {apply_softmax!r}")
    images = jnp.asarray(V.check_images(images))
    saliency = jnp.asarray(saliency)
    b, h, w, _ = images.shape
    if saliency.shape != (b, h, w):
        raise ValueError(
            f"attributions must be [B, H, W] = {(b, h, w)} maps to match images, "
            f"got shape {saliency.shape}"
        )
    if jnp.issubdtype(saliency.dtype, jnp.complexfloating) or saliency.dtype == jnp.bool_:
        raise TypeError(f"attributions must be real numeric maps, got dtype {saliency.dtype}")
    step = _check_positive_int("pixels_per_step", step, upper=h * w)
    chunk_size = _check_positive_int("chunk_size", chunk_size)
    if (
        not _is_tracer(saliency)
        and jnp.issubdtype(saliency.dtype, jnp.inexact)
        and bool(jnp.any(jnp.isnan(saliency)))
    ):
        raise ValueError("attributions: the maps must not contain NaN")
    sub, name = _substrate(images, substrate, mode)
    static = dict(mode=mode, step=step, chunk_size=chunk_size, apply_softmax=apply_softmax)
    return images, saliency, sub, static, name


def auto_substrate(images, mode: str) -> str:
    """The substrate ``substrate="auto"`` chooses: ``"zeros"`` or ``"blur"``.

    Deletion: ``"zeros"`` (RISE's). Insertion: ``"zeros"`` when every image's border (its
    outermost ring of pixels, all channels) is exactly 0, i.e. the images lie on a black
    background (MNIST-like digits in ``[0, 1]``), where the blurred image would still show the
    object and start the game with most of the class evidence; ``"blur"`` (RISE's substrate
    for photographs) otherwise.

    Args:
      images: ``[B, H, W, C]`` concrete float images.
      mode: ``"insertion"`` or ``"deletion"``.

    Raises:
      ValueError: traced ``images`` (the rule reads their values; pass ``"zeros"`` or
        ``"blur"`` under ``jit``).
    """
    V.check_choice("mode", mode, _MODES)
    if mode == "deletion":
        return "zeros"
    if _is_tracer(images):
        raise ValueError(
            "substrate='auto' reads the images' border values, which are traced here (under "
            "jit); pass substrate='zeros' or 'blur'"
        )
    x = np.asarray(images)
    border = np.concatenate(
        [x[:, 0].reshape(-1), x[:, -1].reshape(-1), x[:, :, 0].reshape(-1), x[:, :, -1].reshape(-1)]
    )
    return "zeros" if not np.any(border) else "blur"


def _substrate(images, substrate, mode) -> tuple[jax.Array, str]:
    """``(substrate array, its name)`` of one game."""
    if isinstance(substrate, str):
        if substrate not in _SUBSTRATES:
            raise ValueError(
                f"substrate must be one of {_SUBSTRATES} or an array of shape {images.shape}, "
                f"got {substrate!r}"
            )
        if substrate == "auto":
            substrate = auto_substrate(images, mode)
        sub = jnp.zeros_like(images) if substrate == "zeros" else gaussian_blur(images)
        return sub, substrate
    if substrate is None:
        raise ValueError(
            f"substrate must be one of {_SUBSTRATES} or an array of shape {images.shape}, got None"
        )
    try:
        sub = jnp.asarray(substrate)
    except TypeError as err:
        raise ValueError(
            f"substrate must be one of {_SUBSTRATES} or an array of shape {images.shape}, "
            f"got {type(substrate).__name__}"
        ) from err
    if sub.shape != images.shape:
        raise ValueError(
            f"substrate array must have the images' shape {images.shape}, got {sub.shape}"
        )
    if not _is_tracer(sub) and not bool(jnp.all(jnp.isfinite(sub))):
        raise ValueError("substrate array must be finite (no NaN or inf)")
    return sub.astype(images.dtype), "array"


@functools.lru_cache(maxsize=16)
def _sharded_game(predict_fn, mode: str, step: int, chunk_size: int, apply_softmax: bool, mesh):
    """One game's ``(curves [B, n + 1], classes [B])``, data-parallel over ``mesh``."""
    from svebi_jax import sharding as S

    def core(params, images, saliency, substrate):
        r = _insdel(
            params,
            images,
            saliency,
            substrate,
            predict_fn=predict_fn,
            mode=mode,
            step=step,
            chunk_size=chunk_size,
            apply_softmax=apply_softmax,
        )
        return r.curves, r.classes

    return S.data_parallel(core, mesh, in_axes=(None, 0, 0, 0), out_axes=0)


def _play(params, images, saliency, substrate, *, predict_fn, mesh, **static):
    """One game on one device (:func:`_insdel`) or split over ``mesh``'s devices."""
    if mesh is None:
        return _insdel(params, images, saliency, substrate, predict_fn=predict_fn, **static)
    from svebi_jax import sharding as S

    fn = batching.cached_builder(
        _sharded_game,
        predict_fn,
        static["mode"],
        static["step"],
        static["chunk_size"],
        static["apply_softmax"],
        S.check_mesh(mesh),
    )
    curves, classes = fn(params, images, saliency, substrate)
    return _result(curves, classes, static["mode"])


def insertion_deletion(
    attributions: Callable | jax.Array,
    apply_fn: ApplyFn,
    params,
    images: jax.Array,
    *,
    target: jax.Array | None = None,
    pixels_per_step: int | None = None,
    substrate: str | jax.Array | dict[str, str | jax.Array] = "auto",
    games: Sequence[str] = _MODES,
    batch_size: int | None = None,
    chunk_size: int = 256,
    apply_softmax: bool = True,
    mesh=None,
) -> InsertionDeletion:
    """Insertion and deletion of an attribution method, exactly as RISE's ``CausalMetric``.

    Takes the maps (``attributions(params, images, target)`` in batches of ``batch_size``,
    or ``attributions`` itself when it is a ``[B, H, W]`` array) and plays the games of the
    module docstring on them with the model's logits (``apply_fn(params, x).logits``).

    Deletion starts from the image and, at each step, replaces the next ``pixels_per_step``
    most salient pixels (all channels together) by the substrate; insertion starts from the
    substrate and puts the image's pixels back in the same order. The curve records, at each
    of the ``n_steps + 1 = ceil(H * W / pixels_per_step) + 1`` points (both ends included), the
    probability of the class predicted on the unperturbed image. Pixel ranks come from
    :func:`pixel_order` (RISE's ``flip(argsort(.))`` with a stable sort). Every (image, point)
    pair is one perturbed image, evaluated ``chunk_size`` at a time by one jit-compiled,
    batched forward pass per chunk: ``B · (n_steps + 1)`` images per game. ``params`` are an
    argument of the compiled games, so scoring another model of the same architecture
    (another seed, a randomized copy) or other images of the same shape does not recompile.

    Args:
      attributions: ``attr_fn(params, images, target) -> [B, H, W]``
        (:mod:`svebi_jax.attribution`), or precomputed ``[B, H, W]`` maps (higher means more
        important).
      apply_fn: the model (:class:`svebi_jax.protocols.ApplyFn`); any
        ``apply_fn(params, images)`` returning logits (or an object with ``.logits``) works.
        It is a static argument of the compiled games: pass the same object to reuse them.
      params: its parameters.
      images: ``[B, H, W, C]`` float images.
      target: ``[B]`` classes the maps explain (passed to ``attr_fn``); default ``None``: each
        image's predicted class. The curves follow the class predicted on the unperturbed
        image (RISE).
      pixels_per_step: pixels changed per step, in ``[1, H * W]``; default ``W``, one image
        row per step (``H + 1`` curve points; RISE's 224 for 224 × 224 images, 28 for MNIST).
      substrate: what deleted pixels become / insertion starts from: ``"auto"`` (default,
        :func:`auto_substrate`: zeros for deletion; for insertion zeros when every image's
        border is 0, i.e. a black background as in MNIST, and RISE's blur otherwise),
        ``"zeros"`` (black), ``"blur"`` (:func:`gaussian_blur`, RISE's for photographs), a
        ``[B, H, W, C]`` array, or a dict ``{"insertion": ..., "deletion": ...}``. Each
        result reports the substrate used (:attr:`CausalMetricResult.substrate`).
      games: the games to play, a subset of ``("insertion", "deletion")`` (default both);
        a game not played is ``None`` in the result.
      batch_size: images per call of ``attr_fn`` (bounds its memory); default all at once.
      chunk_size: perturbed images per forward pass of the games (bounds memory to about
        ``3 * chunk_size`` images plus the model's activations).
      apply_softmax: score probabilities (``True``, RISE) or raw logits.
      mesh: optional :class:`jax.sharding.Mesh` (:func:`svebi_jax.sharding.make_mesh`): the
        games are played data-parallel, each device scoring the curves of its share of the
        images (:func:`svebi_jax.sharding.data_parallel`; the means are taken after). The
        maps are computed by ``attr_fn`` as given (build it with ``mesh=`` too, e.g.
        :func:`svebi_jax.attribution.grad2d`). ``None``: one device.

    Returns:
      :class:`InsertionDeletion` (``insertion`` ↑ and ``deletion`` ↓ results, each with
      ``curves [B, n_steps + 1]``, ``auc [B]``, ``mean_auc``, ``auc_of_mean_curve``,
      ``classes [B]``, ``substrate`` and ``pixels_per_step``; and the scored ``maps``).

    Raises:
      ValueError: bad ``pixels_per_step``, ``substrate``, ``games``, ``chunk_size``, maps
        that are not ``[B, H, W]``, NaN in the maps or non-finite images / substrate arrays
        (checked when concrete, i.e. outside ``jit``).
      TypeError: ``apply_fn`` not callable, or images / maps of the wrong dtype.
    """
    if not callable(apply_fn):
        raise TypeError(f"apply_fn must be callable, got {type(apply_fn).__name__}")
    images = jnp.asarray(V.check_images(images))
    subs = substrate if isinstance(substrate, dict) else {m: substrate for m in _MODES}
    if set(subs) != set(_MODES):
        raise ValueError(f"substrate dict must have the keys {_MODES}, got {sorted(subs)}")
    games = (games,) if isinstance(games, str) else tuple(games)
    if not games or len(set(games)) != len(games) or not set(games) <= set(_MODES):
        raise ValueError(f"games must be a non-empty subset of {_MODES}, got {games!r}")
    if pixels_per_step is None:
        pixels_per_step = int(images.shape[2])
    if callable(attributions):
        maps = attribution_maps(attributions, params, images, target=target, batch_size=batch_size)
    else:
        maps = jnp.asarray(attributions)
    played = {m: None for m in _MODES}
    for mode in games:
        *args, static, name = _check_game(
            images, maps, mode, pixels_per_step, subs[mode], chunk_size, apply_softmax
        )
        res = _play(params, *args, predict_fn=_Logits(apply_fn), mesh=mesh, **static)
        played[mode] = res.replace(substrate=name, pixels_per_step=static["step"])
    return InsertionDeletion(played["insertion"], played["deletion"], maps)
