"""Insertion and deletion metrics (RISE's ``CausalMetric``), vectorised in JAX.

This module replicates ``CausalMetric`` from RISE (Petsiuk et al., 2018, ``evaluation.py`` of
``eclique/RISE``) step for step, but builds every perturbed image of a chunk at once with a rank
mask and runs one batched, jit-compiled forward pass per chunk instead of a Python loop.

Two entry points:

- :func:`insertion_deletion` takes an attribution function
  (``attr_fn(params, images, target) -> [B, H, W]``, :mod:`svebi_jax.attribution`) and the
  model (``apply_fn``, ``params``), computes the maps and scores both games. Parameters are
  arguments of the compiled computation: new ``params`` (e.g. another seed's model) and new
  images of the same shape reuse it.
- :func:`insertion_deletion_from_maps` scores maps computed elsewhere with a
  ``predict_fn(images) -> logits``.

Results say which direction is better (:attr:`CausalMetricResult.higher_is_better`: insertion
↑, deletion ↓). Other causal metrics (e.g. ROAD's remove-and-debias) follow the same shape: a
function of ``(attr_fn, apply_fn, params, images)`` returning per-image scores, their mean and
the direction.

For an image :math:`x` with :math:`P = HW` pixels, a saliency map :math:`s`, a substrate
:math:`z` and ``step`` pixels per step, the pixels are ranked by decreasing saliency
(:math:`r_p \\in \\{0, \\dots, P-1\\}`) and the curve has :math:`n + 1` points with
:math:`n = \\lceil P / \\text{step} \\rceil`:

.. math::

  x^{(i)}_{p} = \\begin{cases} f_p & r_p < i \\cdot \\text{step} \\\\ s_p & \\text{otherwise}
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
from collections.abc import Callable
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
    "insertion_deletion",
    "insertion_deletion_from_maps",
    "pixel_order",
]

_MODES = ("insertion", "deletion")
_SUBSTRATES = ("zeros", "blur")


@struct.dataclass
class CausalMetricResult:
    """Result of one causal game (a pytree; ``metric`` and ``higher_is_better`` are static).

    Attributes:
      curves: ``[B, n_steps + 1]`` float32, score of the original class after ``i * step``
        pixels have been deleted (inserted), ``i = 0, ..., n_steps``.
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
    """

    curves: jax.Array
    auc: jax.Array
    mean_auc: jax.Array
    auc_of_mean_curve: jax.Array
    classes: jax.Array
    metric: str = struct.field(pytree_node=False, default="insertion")
    higher_is_better: bool = struct.field(pytree_node=False, default=True)


@struct.dataclass
class InsertionDeletion:
    """Both games for one attribution method (a pytree).

    Attributes:
      insertion: :class:`CausalMetricResult` of insertion (higher is better).
      deletion: :class:`CausalMetricResult` of deletion (lower is better).
      maps: ``[B, H, W]`` float32 the attribution maps that were scored.
    """

    insertion: CausalMetricResult
    deletion: CausalMetricResult
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


class _FixedParams:
    """A ``predict_fn(images)`` seen as ``fn(params, images)`` (hashes like ``predict_fn``)."""

    def __init__(self, predict_fn):
        self.predict_fn = predict_fn

    def __call__(self, params, images):
        return self.predict_fn(images)

    def __hash__(self):
        return hash(self.predict_fn)

    def __eq__(self, other):
        return isinstance(other, _FixedParams) and other.predict_fn == self.predict_fn


class _Logits:
    """``apply_fn`` seen as ``fn(params, images) -> logits`` (hashes like ``apply_fn``)."""

    def __init__(self, apply_fn):
        self.apply_fn = apply_fn

    def __call__(self, params, images):
        return logits_of(self.apply_fn(params, images))

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


def insertion_deletion_from_maps(
    predict_fn: Callable[[jax.Array], jax.Array],
    images: jax.Array,
    saliency: jax.Array,
    *,
    mode: str,
    step: int,
    substrate: str | jax.Array | None = None,
    chunk_size: int = 256,
    apply_softmax: bool = True,
) -> CausalMetricResult:
    """Insertion or deletion curves and AUCs, exactly as RISE's ``CausalMetric``.

    Deletion starts from the image and, at each step, replaces the next ``step`` most salient
    pixels (all channels together) by the substrate; insertion starts from the substrate and
    puts the image's pixels back in the same order. The curve records, at each of the
    ``n_steps + 1 = ceil(H * W / step) + 1`` points (both ends included), the probability of the
    class predicted on the unperturbed image. For 28x28 images and ``step=28``: 29 points.

    Pixel ranks come from :func:`pixel_order` (RISE's ``flip(argsort(.))`` with a stable sort,
    see there for ties). The unperturbed images are scored first (they give the classes, and
    deletion's first / insertion's last point); every other (image, point) pair becomes one
    perturbed image, built with a rank mask ``rank < i * step``. The pairs are evaluated
    ``chunk_size`` at a time by one jit-compiled, batched call of ``predict_fn`` per chunk
    (``lax.map`` over chunks): ``B · (n_steps + 1)`` images in all, one per curve point (RISE's
    ``evaluate`` scores the unperturbed images twice, ``B · (n_steps + 2)``).

    ``predict_fn`` must be a pure function whose outputs for one image do not depend on the
    other images of its batch (no batch statistics). It is a static argument of the compiled
    computation: pass the same function object to reuse the compilation.

    Args:
      predict_fn: pure function mapping ``[N, H, W, C]`` float images to ``[N, K]`` class
        logits (``apply_softmax=True``) or probabilities (``apply_softmax=False``). It is called
        with ``N = chunk_size``.
      images: ``[B, H, W, C]`` float array, the unperturbed (model-ready) images.
      saliency: ``[B, H, W]`` real array, one map per image; higher means more important.
      mode: ``"insertion"`` or ``"deletion"``.
      step: int in ``[1, H * W]``, pixels changed per step.
      substrate: what deleted pixels become / insertion starts from: ``"zeros"`` (black),
        ``"blur"`` (:func:`gaussian_blur` of the images, 11x11 kernel, sigma 5, zero padding,
        per channel), or a ``[B, H, W, C]`` float array. Default ``None`` follows RISE:
        ``"zeros"`` for deletion, ``"blur"`` for insertion. For MNIST-like data whose
        insertion game starts from a black image, pass ``substrate="zeros"`` explicitly.
      chunk_size: positive int, number of perturbed images per forward pass (bounds memory to
        about ``3 * chunk_size`` images plus the model's activations).
      apply_softmax: whether to apply a softmax to ``predict_fn``'s outputs before reading the
        score (RISE's model ends with a softmax, so its scores are probabilities).

    Returns:
      A :class:`CausalMetricResult` with ``curves`` ``[B, n_steps + 1]``, ``auc`` ``[B]``,
      ``mean_auc`` ``[]``, ``auc_of_mean_curve`` ``[]``, ``classes`` ``[B]`` and the
      direction (``higher_is_better``: insertion ``True``, deletion ``False``).

    Raises:
      ValueError: on a bad ``mode``, ``step``, ``substrate``, ``chunk_size``, on shapes that do
        not match (``images`` ``[B, H, W, C]``, ``saliency`` ``[B, H, W]``), or on NaN in
        ``saliency`` / non-finite values in ``images`` or a substrate array (checked when the
        values are concrete, i.e. outside ``jit``).
      TypeError: if ``predict_fn`` is not callable or ``images`` is not floating point.
    """
    if not callable(predict_fn):
        raise TypeError(f"predict_fn must be callable, got {type(predict_fn).__name__}")
    args = _check_game(images, saliency, mode, step, substrate, chunk_size, apply_softmax)
    return _insdel(None, *args[:3], predict_fn=_FixedParams(predict_fn), **args[3])


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
            f"saliency must have shape [B, H, W] = {(b, h, w)} to match images, "
            f"got shape {saliency.shape}"
        )
    if jnp.issubdtype(saliency.dtype, jnp.complexfloating) or saliency.dtype == jnp.bool_:
        raise TypeError(f"saliency must be a real numeric array, got dtype {saliency.dtype}")
    step = _check_positive_int("step", step, upper=h * w)
    chunk_size = _check_positive_int("chunk_size", chunk_size)
    if (
        not _is_tracer(saliency)
        and jnp.issubdtype(saliency.dtype, jnp.inexact)
        and bool(jnp.any(jnp.isnan(saliency)))
    ):
        raise ValueError("saliency must not contain NaN")
    sub = _substrate(images, substrate, mode)
    static = dict(mode=mode, step=step, chunk_size=chunk_size, apply_softmax=apply_softmax)
    return images, saliency, sub, static


def _substrate(images, substrate, mode):
    if substrate is None:
        substrate = "zeros" if mode == "deletion" else "blur"
    if isinstance(substrate, str):
        if substrate not in _SUBSTRATES:
            raise ValueError(
                f"substrate must be one of {_SUBSTRATES} or an array of shape {images.shape}, "
                f"got {substrate!r}"
            )
        return jnp.zeros_like(images) if substrate == "zeros" else gaussian_blur(images)
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
    return sub.astype(images.dtype)


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
    attr_fn: Callable,
    apply_fn: ApplyFn,
    params,
    images: jax.Array,
    *,
    step: int,
    substrate: str | jax.Array | dict[str, str | jax.Array] | None = None,
    target: jax.Array | None = None,
    batch_size: int | None = None,
    chunk_size: int = 256,
    apply_softmax: bool = True,
    mesh=None,
) -> InsertionDeletion:
    """Insertion and deletion of an attribution method, exactly as RISE's ``CausalMetric``.

    Computes ``maps = attr_fn(params, images, target)`` (in batches of ``batch_size``), then
    plays both games of :func:`insertion_deletion_from_maps` on them with the model's
    logits (``apply_fn(params, x).logits``). ``params`` are an argument of the compiled
    games, so scoring another model of the same architecture (another seed, a randomized
    copy) or other images of the same shape does not recompile.

    Args:
      attr_fn: ``attr_fn(params, images, target) -> [B, H, W]`` (:mod:`svebi_jax.attribution`).
      apply_fn: the model (:class:`svebi_jax.protocols.ApplyFn`).
      params: its parameters.
      images: ``[B, H, W, C]`` float images.
      step: pixels changed per step, in ``[1, H * W]``.
      substrate: ``"zeros"``, ``"blur"``, a ``[B, H, W, C]`` array, or a dict
        ``{"insertion": ..., "deletion": ...}``; default RISE's (blur for insertion, zeros
        for deletion). For MNIST-like data pass ``"zeros"``.
      target: ``[B]`` classes the maps explain; default ``None``: each image's predicted
        class (the class whose probability the curves follow).
      batch_size: images per call of ``attr_fn`` (bounds its memory); default all at once.
      chunk_size: perturbed images per forward pass of the games.
      apply_softmax: score probabilities (``True``, RISE) or raw logits.
      mesh: optional :class:`jax.sharding.Mesh` (:func:`svebi_jax.sharding.make_mesh`): the
        games are played data-parallel, each device scoring the curves of its share of the
        images (:func:`svebi_jax.sharding.data_parallel`; the means are taken after). The
        maps are computed by ``attr_fn`` as given (build it with ``mesh=`` too, e.g.
        :func:`svebi_jax.attribution.grad2d`). ``None``: one device.

    Returns:
      :class:`InsertionDeletion` (``insertion`` ↑ and ``deletion`` ↓ results, ``maps``).

    Raises:
      ValueError/TypeError: as :func:`insertion_deletion_from_maps`, and when ``attr_fn``
        does not return ``[B, H, W]`` maps.
    """
    if not callable(attr_fn):
        raise TypeError(f"attr_fn must be callable, got {type(attr_fn).__name__}")
    if not callable(apply_fn):
        raise TypeError(f"apply_fn must be callable, got {type(apply_fn).__name__}")
    images = jnp.asarray(V.check_images(images))
    subs = substrate if isinstance(substrate, dict) else {m: substrate for m in _MODES}
    if set(subs) != set(_MODES):
        raise ValueError(f"substrate dict must have the keys {_MODES}, got {sorted(subs)}")
    maps = attribution_maps(attr_fn, params, images, target=target, batch_size=batch_size)
    games = {}
    for mode in _MODES:
        args = _check_game(images, maps, mode, step, subs[mode], chunk_size, apply_softmax)
        games[mode] = _play(params, *args[:3], predict_fn=_Logits(apply_fn), mesh=mesh, **args[3])
    return InsertionDeletion(games["insertion"], games["deletion"], maps)
