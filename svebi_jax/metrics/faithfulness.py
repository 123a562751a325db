"""Quantus's faithfulness metrics, native in JAX: pixel-flipping, region perturbation,
faithfulness correlation and monotonicity correlation.

Each function follows the definition and the **default parameters** of the corresponding
class of Quantus 0.6.0 (``quantus.PixelFlipping``, ``RegionPerturbation``,
``FaithfulnessCorrelation``, ``MonotonicityCorrelation``; Hedström et al., JMLR 2023) and
states them in its docstring. All share Quantus's conventions:

- **Features.** An image ``[H, W, C]`` has :math:`F = CHW` features, indexed as Quantus
  indexes its channel-first inputs (:math:`f = c \\cdot HW + p`, :math:`p` the row-major
  pixel). The ``[H, W]`` map is broadcast over the channels, so the :math:`C` features of a
  pixel share its attribution. For ``C = 1`` a feature is a pixel.
- **Preprocessing of the maps** (Quantus's ``normalise`` / ``abs``): ``normalise=True``
  divides each map by its maximum absolute value (``normalise_by_max``; an all-zero map is
  left as is), then ``abs=True`` takes absolute values. Quantus divides the whole batch it
  is given by *one* maximum; here each map is divided by its own, so a map's score never
  depends on the other images of the batch (Quantus with one image per call). The orders,
  correlations and ratios of this module are invariant to that scale.
- **Ties** in an ordering are broken by the feature index (stable sorts). NumPy's default
  ``argsort`` that Quantus uses makes no promise on ties, so orders can differ on tied
  attributions only.
- **Target**: ``target`` are the classes whose score is followed (Quantus's ``y_batch``);
  ``None`` takes each image's predicted class (``argmax`` of the logits).
- **Baselines** (``perturb_baseline``): ``"black"`` is the image's minimum over all its
  values, ``"white"`` its maximum, ``"mean"`` its mean (where the metric perturbs the
  original image), ``"uniform"`` one value drawn from :math:`U(0, 1)` per image and
  perturbation call (all features changed in that call take it), a number is used as is.

Everything is one jit-compiled computation per call: every perturbed image of every (image,
step) pair is built from a rank mask and scored in fixed-size chunks (``lax.map``), with no
Python loop over images or steps. ``apply_fn`` and an ``attr_fn`` are static arguments (pass
the same objects to reuse the compilation); ``params`` are an argument.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from svebi_jax import _validation as V
from svebi_jax.attribution import attribution_maps, predicted_classes
from svebi_jax.metrics.insdel import _chunked_map, _Logits
from svebi_jax.metrics.sanity import rankdata
from svebi_jax.protocols import ApplyFn

__all__ = [
    "CurveResult",
    "ScoreResult",
    "faithfulness_correlation",
    "faithfulness_subsets",
    "monotonicity_correlation",
    "monotonicity_uniform",
    "pixel_flipping",
    "region_patches",
    "region_perturbation",
]

Array = jax.Array

#: Default key of the sampling metrics (Quantus's ``RandomLogit`` seeds NumPy with 42).
DEFAULT_SEED = 42


# ----------------------------------------------------------------------------- results


@struct.dataclass
class CurveResult:
    """A perturbation curve per image (a pytree; ``metric``, ``higher_is_better`` static).

    Attributes:
      curves: ``[B, n]`` float32, one point per perturbation step (Quantus's per-sample
        output).
      auc: ``[B]`` float32, trapezoidal area under each curve with unit spacing
        (Quantus's ``calculate_auc``: :math:`\\sum_i c_i - (c_0 + c_{n-1})/2`; 0 for one
        point).
      mean_auc: ``[]`` float32, mean of ``auc`` (Quantus's ``get_auc_score``).
      target: ``[B]`` int32, the classes whose score the curves follow.
      maps: ``[B, H, W]`` the attribution maps as given or computed (before ``normalise`` /
        ``abs``).
      metric: the metric's name.
      higher_is_better: direction of ``auc`` (``None`` where there is none, e.g. a random
        order).
    """

    curves: Array
    auc: Array
    mean_auc: Array
    target: Array
    maps: Array
    metric: str = struct.field(pytree_node=False, default="")
    higher_is_better: bool | None = struct.field(pytree_node=False, default=None)


@struct.dataclass
class ScoreResult:
    """One score per image (a pytree; ``metric`` and ``higher_is_better`` are static).

    Attributes:
      scores: ``[B]`` float32, the per-image scores (Quantus's ``evaluation_scores``).
      mean: ``[]`` float32, their mean (Quantus's ``return_aggregate=True`` with
        ``np.mean``); NaN if any score is NaN.
      target: ``[B]`` int32 classes explained / scored, or ``None`` for metrics of the map
        alone.
      maps: ``[B, H, W]`` the attribution maps as given or computed (before ``normalise`` /
        ``abs``).
      metric: the metric's name.
      higher_is_better: whether a higher score is better.
    """

    scores: Array
    mean: Array
    target: Array | None
    maps: Array
    metric: str = struct.field(pytree_node=False, default="")
    higher_is_better: bool = struct.field(pytree_node=False, default=True)


# ----------------------------------------------------------------------------- shared helpers

_BASELINES = ("black", "white", "mean", "uniform")


def _key(key) -> Array:
    return jax.random.key(DEFAULT_SEED) if key is None else key


def _check_maps(maps, shape: tuple[int, int, int]) -> Array:
    """``[B, H, W]`` real maps (NaN refused when concrete) as a float32 array."""
    if not hasattr(maps, "shape") or not hasattr(maps, "dtype"):
        maps = np.asarray(maps)
    if tuple(maps.shape) != tuple(shape):
        raise ValueError(
            f"attributions must be an attr_fn or [B, H, W] = {tuple(shape)} maps matching "
            f"images, got shape {tuple(maps.shape)}"
        )
    dtype = np.dtype(maps.dtype)
    if dtype == np.bool_ or not (
        np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)
    ):
        raise ValueError(f"attributions must be real numeric maps, got dtype {dtype}")
    maps = jnp.asarray(maps).astype(jnp.float32)
    if not V.is_tracer(maps) and bool(jnp.any(jnp.isnan(maps))):
        raise ValueError("attributions must not contain NaN")
    return maps


def _prepare(
    attributions,
    apply_fn,
    params,
    images,
    target,
    batch_size,
    *,
    need_model: bool = True,
) -> tuple[Array, Array, Array | None, Callable | None]:
    """Validated ``(images, maps [B, H, W], target [B] | None, attr_fn | None)``."""
    images = jnp.asarray(V.check_images(images))
    b, h, w, _ = images.shape
    if need_model and not callable(apply_fn):
        raise TypeError(f"apply_fn must be callable, got {type(apply_fn).__name__}")
    if batch_size is not None:
        V.check_positive_int("batch_size", batch_size)
    attr_fn = attributions if callable(attributions) else None
    if target is not None:
        target = V.check_classes(target, batch=b, name="target")
    elif apply_fn is not None and (need_model or attr_fn is not None):
        target = predicted_classes(apply_fn, params, images)
    if attr_fn is not None:
        if apply_fn is None and target is None:
            raise ValueError("apply_fn is required with an attr_fn when target is None")
        maps = attribution_maps(attr_fn, params, images, target=target, batch_size=batch_size)
        maps = jnp.asarray(maps).astype(jnp.float32)
    else:
        maps = _check_maps(attributions, (b, h, w))
    return images, maps, target, attr_fn


def _preprocess(maps: Array, normalise: bool, absolute: bool) -> Array:
    """Quantus's ``normalise_by_max`` (per map) then ``abs``, on ``[N, ...]`` maps."""
    maps = maps.astype(jnp.float32)
    if normalise:
        axes = tuple(range(1, maps.ndim))
        peak = jnp.max(jnp.abs(maps), axis=axes, keepdims=True)
        maps = jnp.where(peak > 0, maps / jnp.where(peak > 0, peak, 1.0), maps)
    if absolute:
        maps = jnp.abs(maps)
    return maps


def _flat_cf(images: Array) -> Array:
    """``[B, H, W, C]`` -> ``[B, C·H·W]`` channel-first flat features (Quantus's order)."""
    b = images.shape[0]
    return jnp.moveaxis(images, -1, 1).reshape(b, -1)


def _unflat_cf(flat: Array, hwc: tuple[int, int, int]) -> Array:
    """``[N, C·H·W]`` channel-first features -> ``[N, H, W, C]`` images."""
    h, w, c = hwc
    return jnp.moveaxis(flat.reshape(-1, c, h, w), 1, -1)


def _feature_maps(maps: Array, channels: int) -> Array:
    """``[B, H, W]`` maps broadcast to the ``[B, C·H·W]`` channel-first features."""
    b = maps.shape[0]
    return jnp.tile(maps.reshape(b, -1), (1, channels))


def _inverse_permutation(order: Array) -> Array:
    """``rank[b, order[b, i]] = i`` for ``[B, N]`` permutations."""
    pos = jnp.arange(order.shape[-1], dtype=jnp.int32)
    return jax.vmap(lambda o: jnp.zeros_like(pos).at[o].set(pos))(order)


def _class_score(out: Array, classes: Array, apply_softmax: bool) -> Array:
    out = out.astype(jnp.promote_types(out.dtype, jnp.float32))
    if apply_softmax:
        out = jax.nn.softmax(out, axis=-1)
    return jnp.take_along_axis(out, classes[:, None], axis=-1)[:, 0]


def _trapz(curves: Array) -> Array:
    """``np.trapezoid(curves, dx=1, axis=-1)`` (0 for a single point)."""
    if curves.shape[-1] < 2:
        return jnp.zeros(curves.shape[:-1], curves.dtype)
    return curves.sum(-1) - (curves[..., 0] + curves[..., -1]) / 2


def _pearson(a: Array, b: Array) -> Array:
    """Pearson's r along the last axis (``scipy.stats.pearsonr``; NaN for a constant row)."""
    a = a.astype(jnp.float32)
    b = b.astype(jnp.float32)
    a = a - a.mean(-1, keepdims=True)
    b = b - b.mean(-1, keepdims=True)
    num = (a * b).sum(-1)
    den = jnp.sqrt((a * a).sum(-1)) * jnp.sqrt((b * b).sum(-1))
    r = jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), jnp.nan)
    return jnp.clip(r, -1.0, 1.0)


def _spearman(a: Array, b: Array) -> Array:
    """Spearman's rho along the last axis with average ranks of ties (``scipy.stats``)."""
    return _pearson(rankdata(a, ties="average"), rankdata(b, ties="average"))


def _check_baseline(value, allowed: tuple[str, ...]) -> str | float:
    if isinstance(value, str):
        return V.check_choice("perturb_baseline", value, allowed)
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ValueError(f"perturb_baseline must be one of {allowed} or a number, got {value!r}")
    return V.check_number("perturb_baseline", value)


def _image_fill(kind, x_flat: Array) -> Array:
    """``[B]`` baseline value of a non-random ``kind`` per image of ``[B, F]`` features."""
    if kind == "black":
        return x_flat.min(-1)
    if kind == "white":
        return x_flat.max(-1)
    if kind == "mean":
        return x_flat.mean(-1)
    return jnp.full(x_flat.shape[:1], kind, x_flat.dtype)


def _item_uniform(key: Array, items: Array) -> Array:
    """One :math:`U(0, 1)` draw per flat item index (``[N]`` -> ``[N]`` float32)."""
    return jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(key, i)))(items)


def _valid_rows(images: Array, maps: Array) -> Array:
    b = images.shape[0]
    return V.rows_finite(images) & ~jnp.any(jnp.isnan(maps.reshape(b, -1)), axis=-1)


def _curve_result(curves, target, maps, metric, higher) -> CurveResult:
    auc = _trapz(curves)
    return CurveResult(
        curves=curves,
        auc=auc,
        mean_auc=auc.mean(),
        target=target,
        maps=maps,
        metric=metric,
        higher_is_better=higher,
    )


def _score_result(scores, target, maps, metric, higher) -> ScoreResult:
    return ScoreResult(
        scores=scores,
        mean=scores.mean(),
        target=target,
        maps=maps,
        metric=metric,
        higher_is_better=higher,
    )


def _statics(chunk_size, apply_softmax, normalise, absolute) -> dict[str, Any]:
    return dict(
        chunk_size=V.check_positive_int("chunk_size", chunk_size),
        apply_softmax=V.check_bool("apply_softmax", apply_softmax),
        normalise=V.check_bool("normalise", normalise),
        absolute=V.check_bool("abs", absolute),
    )


def _check_features_in_step(features_in_step, hw: int) -> int:
    step = V.check_positive_int("features_in_step", features_in_step)
    if hw % step:
        raise ValueError(
            f"features_in_step must divide H * W = {hw} (Quantus's assert_features_in_step), "
            f"got {step}"
        )
    return step


# ----------------------------------------------------------------------------- pixel-flipping


@functools.partial(
    jax.jit,
    static_argnames=(
        "predict_fn",
        "step",
        "baseline",
        "chunk_size",
        "apply_softmax",
        "normalise",
        "absolute",
    ),
)
def _pixel_flipping(
    params,
    images,
    maps,
    target,
    key,
    *,
    predict_fn,
    step,
    baseline,
    chunk_size,
    apply_softmax,
    normalise,
    absolute,
):
    b, h, w, c = images.shape
    nf = c * h * w
    n_steps = -(-nf // step)
    x = _flat_cf(images)
    a = _feature_maps(_preprocess(maps, normalise, absolute), c)
    rank = _inverse_permutation(jnp.argsort(-a, axis=-1, stable=True))  # [B, F]
    if baseline == "uniform":
        # Quantus draws one value per image and call; the pixels of step j keep step j's.
        u = jax.random.uniform(key, (b, n_steps))
        fill = jnp.take_along_axis(u, rank // step, axis=-1).astype(x.dtype)  # [B, F]
    else:
        fill = jnp.broadcast_to(_image_fill(baseline, x)[:, None], x.shape)

    def score(idx):
        img = idx // n_steps
        j = idx % n_steps
        flipped = rank[img] < ((j + 1) * step)[:, None]
        batch = _unflat_cf(jnp.where(flipped, fill[img], x[img]), (h, w, c))
        return _class_score(predict_fn(params, batch), target[img], apply_softmax)

    curves = _chunked_map(score, b * n_steps, chunk_size).reshape(b, n_steps)
    return V.flag_rows(curves, _valid_rows(images, maps))


def pixel_flipping(
    attributions: Callable | Array,
    apply_fn: ApplyFn,
    params,
    images: Array,
    *,
    target: Array | None = None,
    features_in_step: int = 1,
    perturb_baseline: str | float = "black",
    abs: bool = False,  # noqa: A002 (Quantus's name)
    normalise: bool = True,
    apply_softmax: bool = True,
    key: Array | None = None,
    batch_size: int | None = None,
    chunk_size: int = 256,
) -> CurveResult:
    """Pixel-flipping (Bach et al., 2015), as Quantus's ``PixelFlipping``.

    The features are flipped to the baseline in order of decreasing attribution,
    ``features_in_step`` at a time and cumulatively; after each step the model's score of
    the target class is recorded. With :math:`\\pi` the features sorted by decreasing
    (preprocessed) attribution, :math:`s` = ``features_in_step``, :math:`F = CHW`:

    .. math::

      x^{(j)}_f = \\begin{cases} v_f & \\mathrm{rank}_\\pi(f) < (j + 1) s \\\\
        x_f & \\text{otherwise} \\end{cases}, \\qquad
      \\text{curve}_j = p_y(x^{(j)}), \\qquad j = 0, \\dots, \\lceil F / s \\rceil - 1,

    with :math:`p_y` the softmax probability (``apply_softmax``) of class :math:`y`. The
    unperturbed image is not a point of the curve (as in Quantus). A faithful map makes the
    score fall fast: **lower** ``auc`` is better (Quantus's ``ScoreDirection.LOWER``).

    Quantus's defaults, kept here: ``features_in_step=1`` (one feature per step: for a
    ``C``-channel image one channel value; it must divide ``H * W``, Quantus's assert),
    ``perturb_baseline="black"`` (the image's minimum), ``abs=False``, ``normalise=True``
    (by the maximum absolute value), ``softmax=True``. Quantus returns the curves
    (``return_auc_per_sample=False``); ``auc`` is its ``calculate_auc`` (trapezoids, unit
    spacing).

    Args:
      attributions: ``attr_fn(params, images, target) -> [B, H, W]`` or precomputed
        ``[B, H, W]`` maps.
      apply_fn: the model (:class:`svebi_jax.protocols.ApplyFn`); its logits are scored.
      params: its parameters.
      images: ``[B, H, W, C]`` float images.
      target: ``[B]`` int classes (Quantus's ``y_batch``); default: the predicted ones.
      features_in_step: positive int dividing ``H * W``.
      perturb_baseline: ``"black"``, ``"white"``, ``"uniform"`` or a number.
      abs: take absolute values of the (normalised) maps.
      normalise: divide each map by its maximum absolute value.
      apply_softmax: score probabilities (``True``) or logits.
      key: PRNG key of the ``"uniform"`` baseline (default ``jax.random.key(42)``).
      batch_size: images per ``attr_fn`` call (default all).
      chunk_size: perturbed images per forward pass.

    Returns:
      :class:`CurveResult` with ``curves`` ``[B, ceil(CHW / features_in_step)]``.

    Raises:
      ValueError: on bad shapes, options, NaN maps or non-finite images (when concrete).
      TypeError: if ``apply_fn`` is not callable.
    """
    images, maps, target, _ = _prepare(attributions, apply_fn, params, images, target, batch_size)
    _, h, w, _ = images.shape
    step = _check_features_in_step(features_in_step, h * w)
    baseline = _check_baseline(perturb_baseline, ("black", "white", "uniform"))
    curves = _pixel_flipping(
        params,
        images,
        maps,
        target,
        _key(key),
        predict_fn=_Logits(apply_fn),
        step=step,
        baseline=baseline,
        **_statics(chunk_size, apply_softmax, normalise, abs),
    )
    return _curve_result(curves, target, maps, "pixel_flipping", False)


# ----------------------------------------------------------------------------- region perturbation

_ORDERS = ("morf", "lerf", "random")


def _padding(size: int, patch: int) -> tuple[int, int]:
    """Quantus's ``get_padding_size``: ``(floor, ceil)`` halves up to a multiple of ``patch``."""
    rem = size % patch
    if rem == 0:
        return 0, 0
    total = patch - rem
    return total // 2, total - total // 2


def region_patches(shape: tuple[int, int], patch_size: int) -> tuple[np.ndarray, int]:
    """Patch index of every pixel of an ``[H, W]`` image, and the number of patches.

    Quantus pads the image symmetrically (``floor`` before, ``ceil`` after) to a multiple of
    ``patch_size`` and tiles the padded image with non-overlapping ``patch_size`` squares in
    row-major order; this is that tiling restricted to the image.

    Returns:
      ``([H, W] int32 patch ids, number of patches)``.
    """
    h, w = shape
    (top, bottom), (left, right) = _padding(h, patch_size), _padding(w, patch_size)
    n_w = (w + left + right) // patch_size
    n_h = (h + top + bottom) // patch_size
    rows = (np.arange(h) + top) // patch_size
    cols = (np.arange(w) + left) // patch_size
    return (rows[:, None] * n_w + cols[None, :]).astype(np.int32), n_h * n_w


@functools.partial(
    jax.jit,
    static_argnames=(
        "predict_fn",
        "patch_size",
        "order",
        "n_eval",
        "baseline",
        "chunk_size",
        "apply_softmax",
        "normalise",
        "absolute",
    ),
)
def _region_perturbation(
    params,
    images,
    maps,
    target,
    key,
    *,
    predict_fn,
    patch_size,
    order,
    n_eval,
    baseline,
    chunk_size,
    apply_softmax,
    normalise,
    absolute,
):
    b, h, w, c = images.shape
    pid_np, n_patches = region_patches((h, w), patch_size)
    pid = jnp.asarray(pid_np)
    a = _preprocess(maps, normalise, absolute)
    # Patch sums of the map broadcast over the C channels (padding contributes zeros).
    sums = jax.vmap(lambda m: jnp.zeros(n_patches, m.dtype).at[pid.ravel()].add(m.ravel()))(a)
    sums = sums * c
    k_order, k_fill = jax.random.split(key)
    if order == "morf":
        perm = jnp.argsort(-sums, axis=-1, stable=True)
    elif order == "lerf":
        perm = jnp.argsort(sums, axis=-1, stable=True)
    else:
        keys = jax.random.split(k_order, b)
        perm = jax.vmap(lambda k: jax.random.permutation(k, n_patches))(keys)
    prank = _inverse_permutation(perm.astype(jnp.int32))  # [B, P]
    pix_rank = prank[:, pid]  # [B, H, W]: step at which each pixel is perturbed
    x = images
    if baseline == "uniform":
        u = jax.random.uniform(k_fill, (b, n_patches)).astype(x.dtype)
        fill = jnp.take_along_axis(u, pix_rank.reshape(b, -1), axis=-1).reshape(b, h, w, 1)
    else:
        fill = _image_fill(baseline, x.reshape(b, -1))[:, None, None, None]
    fill = jnp.broadcast_to(fill, x.shape)

    def original(idx):
        return _class_score(predict_fn(params, x[idx]), target[idx], apply_softmax)

    y = _chunked_map(original, b, chunk_size)

    def score(idx):
        img = idx // n_eval
        j = idx % n_eval
        gone = (pix_rank[img] <= j[:, None, None])[..., None]
        batch = jnp.where(gone, fill[img], x[img])
        return y[img] - _class_score(predict_fn(params, batch), target[img], apply_softmax)

    curves = _chunked_map(score, b * n_eval, chunk_size).reshape(b, n_eval)
    return V.flag_rows(curves, _valid_rows(images, maps))


def region_perturbation(
    attributions: Callable | Array,
    apply_fn: ApplyFn,
    params,
    images: Array,
    *,
    target: Array | None = None,
    patch_size: int = 8,
    order: str = "morf",
    regions_evaluation: int = 100,
    perturb_baseline: str | float = "black",
    abs: bool = False,  # noqa: A002 (Quantus's name)
    normalise: bool = True,
    apply_softmax: bool = True,
    key: Array | None = None,
    batch_size: int | None = None,
    chunk_size: int = 256,
) -> CurveResult:
    """Region perturbation (Samek et al., 2016), as Quantus's ``RegionPerturbation``.

    The image is padded (Quantus: symmetric, ``floor``/``ceil``) to a multiple of
    ``patch_size`` and tiled by non-overlapping ``patch_size`` × ``patch_size`` patches
    (all channels); patches are ranked by the sum of the (preprocessed) attribution they
    cover: most relevant first (``"morf"``), least relevant first (``"lerf"``) or in a
    random order (``"random"``). The first ``min(regions_evaluation, P)`` patches are set to
    the baseline one more per step, cumulatively, and the curve records the drop of the
    target's score:

    .. math::

      \\text{curve}_j = p_y(x) - p_y(x^{(j)}), \\qquad
      x^{(j)} = x \\text{ with patches } \\pi_0, \\dots, \\pi_j \\text{ set to the baseline}.

    For ``"morf"`` a faithful map makes the score drop early, so a **higher** ``auc`` (area
    over the perturbation curve, AOPC, up to normalisation) is better; for ``"lerf"`` lower
    is better; ``"random"`` has no direction (``higher_is_better=None``). Quantus 0.6.0 tags
    the class ``ScoreDirection.LOWER`` whatever the order, which contradicts its own curve of
    *drops*; the direction here follows the definition.

    Quantus's defaults, kept here: ``patch_size=8``, ``order="morf"``,
    ``regions_evaluation=100``, ``perturb_baseline="black"`` (the image's minimum),
    ``abs=False``, ``normalise=True``, ``softmax=True``. A 28×28 image is padded to 32×32:
    16 patches, so the curve has 16 points.

    Args:
      attributions: ``attr_fn(params, images, target) -> [B, H, W]`` or ``[B, H, W]`` maps.
      apply_fn: the model; its logits are scored.
      params: its parameters.
      images: ``[B, H, W, C]`` float images.
      target: ``[B]`` int classes; default: the predicted ones.
      patch_size: positive int, side of the square patches.
      order: ``"morf"``, ``"lerf"`` or ``"random"``.
      regions_evaluation: positive int, the most patches perturbed.
      perturb_baseline: ``"black"``, ``"white"``, ``"uniform"`` or a number.
      abs, normalise: Quantus's preprocessing of the maps (see the module docstring).
      apply_softmax: score probabilities (``True``) or logits.
      key: PRNG key of a random order / uniform baseline (default ``jax.random.key(42)``).
      batch_size: images per ``attr_fn`` call.
      chunk_size: perturbed images per forward pass.

    Returns:
      :class:`CurveResult` with ``curves`` ``[B, min(regions_evaluation, P)]``.
    """
    images, maps, target, _ = _prepare(attributions, apply_fn, params, images, target, batch_size)
    _, h, w, _ = images.shape
    patch_size = V.check_positive_int("patch_size", patch_size)
    V.check_choice("order", order, _ORDERS)
    regions_evaluation = V.check_positive_int("regions_evaluation", regions_evaluation)
    baseline = _check_baseline(perturb_baseline, ("black", "white", "uniform"))
    n_patches = region_patches((h, w), patch_size)[1]
    curves = _region_perturbation(
        params,
        images,
        maps,
        target,
        _key(key),
        predict_fn=_Logits(apply_fn),
        patch_size=patch_size,
        order=order,
        n_eval=min(regions_evaluation, n_patches),
        baseline=baseline,
        **_statics(chunk_size, apply_softmax, normalise, abs),
    )
    higher = {"morf": True, "lerf": False, "random": None}[order]
    return _curve_result(curves, target, maps, "region_perturbation", higher)


# ----------------------------------------------------------------------------- faithfulness corr.


def faithfulness_subsets(key: Array, items: Array, num_features: int, subset_size: int) -> Array:
    """The random feature subsets of :func:`faithfulness_correlation`, one per flat item.

    Item ``i * nr_runs + r`` is run ``r`` of image ``i``; its subset is ``subset_size``
    distinct features of ``[0, num_features)`` drawn uniformly without replacement with
    ``jax.random.fold_in(key, item)`` (exposed so that the same draws can be fed to another
    implementation).

    Returns:
      ``[N, subset_size]`` int32 feature indices (channel-first flat, see the module).
    """

    def one(i):
        k = jax.random.fold_in(key, i)
        return jax.random.choice(k, num_features, (subset_size,), replace=False)

    return jax.vmap(one)(jnp.asarray(items)).astype(jnp.int32)


@functools.partial(
    jax.jit,
    static_argnames=(
        "predict_fn",
        "nr_runs",
        "subset_size",
        "baseline",
        "chunk_size",
        "apply_softmax",
        "normalise",
        "absolute",
    ),
)
def _faithfulness_correlation(
    params,
    images,
    maps,
    target,
    key,
    *,
    predict_fn,
    nr_runs,
    subset_size,
    baseline,
    chunk_size,
    apply_softmax,
    normalise,
    absolute,
):
    b, h, w, c = images.shape
    nf = c * h * w
    x = _flat_cf(images)
    a = _feature_maps(_preprocess(maps, normalise, absolute), c)
    k_fill = jax.random.split(key)[1]
    fill_img = None if baseline == "uniform" else _image_fill(baseline, x)

    def original(idx):
        return _class_score(predict_fn(params, images[idx]), target[idx], apply_softmax)

    y = _chunked_map(original, b, chunk_size)

    def score(idx):
        img = idx // nr_runs
        subset = faithfulness_subsets(key, idx, nf, subset_size)  # [chunk, S]
        mask = jax.vmap(lambda s: jnp.zeros(nf, bool).at[s].set(True))(subset)
        if baseline == "uniform":
            fill = _item_uniform(k_fill, idx).astype(x.dtype)
        else:
            fill = fill_img[img]
        batch = _unflat_cf(jnp.where(mask, fill[:, None], x[img]), (h, w, c))
        delta = y[img] - _class_score(predict_fn(params, batch), target[img], apply_softmax)
        att = jnp.take_along_axis(a[img], subset, axis=-1).sum(-1)
        return jnp.stack([att, delta], axis=-1)

    res = _chunked_map(score, b * nr_runs, chunk_size).reshape(b, nr_runs, 2)
    scores = _pearson(res[..., 0], res[..., 1])
    return V.flag_rows(scores, _valid_rows(images, maps))


def faithfulness_correlation(
    attributions: Callable | Array,
    apply_fn: ApplyFn,
    params,
    images: Array,
    *,
    target: Array | None = None,
    nr_runs: int = 100,
    subset_size: int = 224,
    perturb_baseline: str | float = "black",
    abs: bool = False,  # noqa: A002 (Quantus's name)
    normalise: bool = True,
    apply_softmax: bool = False,
    key: Array | None = None,
    batch_size: int | None = None,
    chunk_size: int = 256,
) -> ScoreResult:
    """Faithfulness correlation (Bhatt et al., 2020), as Quantus's ``FaithfulnessCorrelation``.

    In each of ``nr_runs`` runs a random subset :math:`S_r` of ``subset_size`` features is
    set to the baseline (from the original image each time); the score is Pearson's
    correlation, over the runs, between the attribution of the subset and the drop of the
    target's output:

    .. math::

      \\rho = \\mathrm{corr}_r\\Big( \\sum_{f \\in S_r} a_f,\\;
        g_y(x) - g_y(x_{[S_r \\leftarrow v]}) \\Big) \\in [-1, 1],

    **higher** is better. :math:`g_y` is the target's logit (Quantus's ``softmax=False``
    for this metric) or probability (``apply_softmax=True``).

    Quantus's defaults, kept here: ``nr_runs=100``, ``subset_size=224`` (a fixed number of
    features whatever the image size; Quantus requires ``subset_size < H * W``),
    ``perturb_baseline="black"``, ``abs=False``, ``normalise=True``, ``softmax=False``.
    Quantus's default ``return_aggregate=True`` returns only the mean over images
    (``mean`` here); ``scores`` are the per-image correlations.

    Random subsets: drawn with ``key`` by :func:`faithfulness_subsets` (uniform without
    replacement, as Quantus's ``np.random.choice(F, S, replace=False)``).

    Args:
      attributions: ``attr_fn(params, images, target) -> [B, H, W]`` or ``[B, H, W]`` maps.
      apply_fn: the model; its logits are scored.
      params: its parameters.
      images: ``[B, H, W, C]`` float images.
      target: ``[B]`` int classes; default: the predicted ones.
      nr_runs: positive int, runs per image (at least 2).
      subset_size: positive int smaller than ``H * W``.
      perturb_baseline: ``"black"``, ``"white"``, ``"mean"``, ``"uniform"`` or a number.
      abs, normalise: Quantus's preprocessing of the maps.
      apply_softmax: correlate probabilities instead of logits.
      key: PRNG key of the subsets (default ``jax.random.key(42)``).
      batch_size: images per ``attr_fn`` call.
      chunk_size: perturbed images per forward pass.

    Returns:
      :class:`ScoreResult` (``higher_is_better=True``).
    """
    images, maps, target, _ = _prepare(attributions, apply_fn, params, images, target, batch_size)
    _, h, w, _ = images.shape
    nr_runs = V.check_positive_int("nr_runs", nr_runs)
    if nr_runs < 2:
        raise ValueError(f"nr_runs must be at least 2 (a correlation), got {nr_runs}")
    subset_size = V.check_positive_int("subset_size", subset_size)
    if subset_size >= h * w:
        raise ValueError(
            f"subset_size must be smaller than H * W = {h * w} (Quantus's "
            f"assert_value_smaller_than_input_size), got {subset_size}"
        )
    baseline = _check_baseline(perturb_baseline, _BASELINES)
    scores = _faithfulness_correlation(
        params,
        images,
        maps,
        target,
        _key(key),
        predict_fn=_Logits(apply_fn),
        nr_runs=nr_runs,
        subset_size=subset_size,
        baseline=baseline,
        **_statics(chunk_size, apply_softmax, normalise, abs),
    )
    return _score_result(scores, target, maps, "faithfulness_correlation", True)


# ----------------------------------------------------------------------------- monotonicity corr.


def monotonicity_uniform(key: Array, items: Array) -> Array:
    """The ``"uniform"`` baseline values of :func:`monotonicity_correlation`, per flat item.

    Item ``(i * n_steps + j) * nr_samples + k`` is sample ``k`` of step ``j`` of image ``i``;
    its value is :math:`U(0, 1)` drawn with ``jax.random.fold_in(key, item)`` (exposed so
    that the same draws can be fed to another implementation).

    Returns:
      ``[N]`` float32.
    """
    return _item_uniform(key, jnp.asarray(items))


@functools.partial(
    jax.jit,
    static_argnames=(
        "predict_fn",
        "step",
        "nr_samples",
        "eps",
        "baseline",
        "chunk_size",
        "apply_softmax",
        "normalise",
        "absolute",
    ),
)
def _monotonicity_correlation(
    params,
    images,
    maps,
    target,
    key,
    *,
    predict_fn,
    step,
    nr_samples,
    eps,
    baseline,
    chunk_size,
    apply_softmax,
    normalise,
    absolute,
):
    b, h, w, c = images.shape
    nf = c * h * w
    n_steps = -(-nf // step)
    x = _flat_cf(images)
    a = _feature_maps(_preprocess(maps, normalise, absolute), c)
    rank = _inverse_permutation(jnp.argsort(a, axis=-1, stable=True))  # ascending
    group = rank // step  # [B, F]: the step at which each feature is perturbed
    fill_img = None if baseline == "uniform" else _image_fill(baseline, x)

    def original(idx):
        return _class_score(predict_fn(params, images[idx]), target[idx], apply_softmax)

    y = _chunked_map(original, b, chunk_size)
    inv = jnp.where(jnp.abs(y) >= eps, 1.0 / jnp.where(y == 0, 1.0, jnp.abs(y)), 1.0) ** 2

    def score(idx):
        img = idx // (n_steps * nr_samples)
        j = (idx // nr_samples) % n_steps
        if baseline == "uniform":
            fill = monotonicity_uniform(key, idx).astype(x.dtype)
        else:
            fill = fill_img[img]
        changed = group[img] == j[:, None]
        batch = _unflat_cf(jnp.where(changed, fill[:, None], x[img]), (h, w, c))
        return _class_score(predict_fn(params, batch), target[img], apply_softmax)

    preds = _chunked_map(score, b * n_steps * nr_samples, chunk_size)
    preds = preds.reshape(b, n_steps, nr_samples)
    variances = jnp.mean((preds - y[:, None, None]) ** 2, axis=-1) * inv[:, None]
    atts = jax.vmap(lambda av, g: jnp.zeros(n_steps, av.dtype).at[g].add(av))(a, group)
    scores = _spearman(atts, variances)
    return V.flag_rows(scores, _valid_rows(images, maps))


def monotonicity_correlation(
    attributions: Callable | Array,
    apply_fn: ApplyFn,
    params,
    images: Array,
    *,
    target: Array | None = None,
    nr_samples: int = 100,
    features_in_step: int = 1,
    eps: float = 1e-5,
    perturb_baseline: str | float = "uniform",
    abs: bool = True,  # noqa: A002 (Quantus's name)
    normalise: bool = True,
    apply_softmax: bool = True,
    key: Array | None = None,
    batch_size: int | None = None,
    chunk_size: int = 256,
) -> ScoreResult:
    """Monotonicity correlation (Nguyen & Martínez, 2020), as Quantus's
    ``MonotonicityCorrelation``.

    The features are grouped by increasing (preprocessed) attribution, ``features_in_step``
    per group :math:`G_j`. Each group alone (from the original image) is set to the baseline
    ``nr_samples`` times; the variance of the target's probability around its unperturbed
    value, scaled by the inverse squared prediction, is correlated (Spearman, ties averaged)
    with the group's attribution:

    .. math::

      \\nu_j = \\frac{1}{N} \\sum_{k=1}^{N} \\big(p_y(x_{[G_j \\leftarrow v_{jk}]})
        - p_y(x)\\big)^2 \\cdot \\frac{1}{p_y(x)^2}, \\qquad
      \\rho = \\mathrm{spearman}_j\\Big(\\sum_{f \\in G_j} a_f,\\; \\nu_j\\Big),

    where :math:`1/p_y(x)^2` is replaced by 1 when :math:`|p_y(x)| <` ``eps``. **Higher**
    is better.

    Quantus's defaults, kept here: ``nr_samples=100``, ``features_in_step=1`` (must divide
    ``H * W``), ``eps=1e-5``, ``perturb_baseline="uniform"`` (a fresh :math:`U(0, 1)` value
    per sample for the whole group, drawn by :func:`monotonicity_uniform`), ``abs=True``,
    ``normalise=True``, ``softmax=True``. The cost is :math:`B \\cdot \\lceil CHW / s \\rceil
    \\cdot N` forward passes (78,400 per 28×28 image with the defaults).

    Args:
      attributions: ``attr_fn(params, images, target) -> [B, H, W]`` or ``[B, H, W]`` maps.
      apply_fn: the model; its logits are scored.
      params: its parameters.
      images: ``[B, H, W, C]`` float images.
      target: ``[B]`` int classes; default: the predicted ones.
      nr_samples: positive int, baseline draws per group.
      features_in_step: positive int dividing ``H * W``.
      eps: non-negative float, smallest prediction that is inverted.
      perturb_baseline: ``"uniform"``, ``"black"``, ``"white"``, ``"mean"`` or a number.
      abs, normalise: Quantus's preprocessing of the maps.
      apply_softmax: score probabilities (``True``) or logits.
      key: PRNG key of the uniform baseline (default ``jax.random.key(42)``).
      batch_size: images per ``attr_fn`` call.
      chunk_size: perturbed images per forward pass.

    Returns:
      :class:`ScoreResult` (``higher_is_better=True``).
    """
    images, maps, target, _ = _prepare(attributions, apply_fn, params, images, target, batch_size)
    _, h, w, _ = images.shape
    step = _check_features_in_step(features_in_step, h * w)
    nr_samples = V.check_positive_int("nr_samples", nr_samples)
    eps = V.check_number("eps", eps, low=0.0)
    baseline = _check_baseline(perturb_baseline, _BASELINES)
    scores = _monotonicity_correlation(
        params,
        images,
        maps,
        target,
        _key(key),
        predict_fn=_Logits(apply_fn),
        step=step,
        nr_samples=nr_samples,
        eps=eps,
        baseline=baseline,
        **_statics(chunk_size, apply_softmax, normalise, abs),
    )
    return _score_result(scores, target, maps, "monotonicity_correlation", True)
