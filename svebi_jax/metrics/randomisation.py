"""Quantus's randomisation metric random logit, native in JAX.

Follows Quantus 0.6.0's ``quantus.RandomLogit`` (Sixt et al., 2020) with its default
parameters; see :mod:`svebi_jax.metrics.faithfulness` for the conventions shared by the
Quantus metrics (preprocessing of the maps, ``target``).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import struct

from svebi_jax import _validation as V
from svebi_jax.attribution import attribution_maps
from svebi_jax.metrics.faithfulness import _key, _prepare, _preprocess
from svebi_jax.protocols import ApplyFn, logits_of

__all__ = ["RandomLogitResult", "random_logit", "random_off_classes", "ssim_1d"]

Array = jax.Array


@struct.dataclass
class RandomLogitResult:
    """Random logit of one method (a pytree; ``metric``, ``higher_is_better`` static).

    Attributes:
      scores: ``[B]`` float32 SSIM of the map of ``target`` and the map of ``random_target``.
      mean: ``[]`` their mean.
      target: ``[B]`` int32 the explained classes.
      random_target: ``[B]`` int32 the random other classes.
      maps: ``[B, H, W]`` the maps of ``target`` as given or computed.
      random_maps: ``[B, H, W]`` the maps of ``random_target``.
      metric: ``"random_logit"``.
      higher_is_better: ``False`` (a map should change with the class).
    """

    scores: Array
    mean: Array
    target: Array
    random_target: Array
    maps: Array
    random_maps: Array
    metric: str = struct.field(pytree_node=False, default="random_logit")
    higher_is_better: bool = struct.field(pytree_node=False, default=False)


def ssim_1d(a: Array, b: Array, *, win_size: int = 7, k1: float = 0.01, k2: float = 0.03) -> Array:
    """SSIM of flattened maps, as Quantus's ``ssim`` similarity computes it.

    Quantus flattens each map to a vector and calls ``skimage.metrics.structural_similarity``
    on the two vectors with ``data_range`` = the range of their union, i.e. the 1-D SSIM with
    a uniform window of ``win_size`` samples, sample covariances, and the mean over the
    windows that lie inside the vector (skimage crops the filter radius):

    .. math::

      S_i = \\frac{(2 \\mu_a \\mu_b + C_1)(2 \\sigma_{ab} + C_2)}
        {(\\mu_a^2 + \\mu_b^2 + C_1)(\\sigma_a^2 + \\sigma_b^2 + C_2)}, \\qquad
      C_1 = (k_1 R)^2,\\; C_2 = (k_2 R)^2,\\; R = \\max(a, b) - \\min(a, b),

    with means and (``n/(n-1)``-corrected) variances over the window
    :math:`[i, i + \\text{win\\_size})`; the result is the mean of :math:`S_i`. Two constant
    vectors with the same value have :math:`R = 0` and give NaN, as in skimage.

    Args:
      a: ``[B, ...]`` maps (flattened per row).
      b: ``[B, ...]`` maps of the same shape.
      win_size: odd window length, at most the number of features.

    Returns:
      ``[B]`` float32.
    """
    a = jnp.asarray(a, jnp.float32)
    a = a.reshape(a.shape[0], -1)
    b = jnp.asarray(b, jnp.float32).reshape(a.shape)
    n = a.shape[-1]
    if win_size % 2 == 0 or win_size > n:
        raise ValueError(f"win_size must be odd and at most {n} (the map's size), got {win_size}")
    m = n - win_size + 1

    def mean(v):
        return sum(v[:, i : i + m] for i in range(win_size)) / win_size

    ux, uy = mean(a), mean(b)
    cov = win_size / (win_size - 1)
    vx = cov * (mean(a * a) - ux * ux)
    vy = cov * (mean(b * b) - uy * uy)
    vxy = cov * (mean(a * b) - ux * uy)
    r = jnp.maximum(a.max(-1), b.max(-1)) - jnp.minimum(a.min(-1), b.min(-1))
    c1 = ((k1 * r) ** 2)[:, None]
    c2 = ((k2 * r) ** 2)[:, None]
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return s.mean(-1)


def random_off_classes(key: Array, target: Array, num_classes: int) -> Array:
    """A class other than ``target``, uniformly at random, per image (Quantus's draw).

    Quantus draws ``j ~ randint(0, K - 1)`` and takes the ``j``-th class of
    :math:`\\{0, \\dots, K - 1\\} \\setminus \\{y\\}`, i.e. ``j + (j >= y)``; ``j`` is
    drawn here by ``jax.random.randint(key, [B], 0, K - 1)``.

    Returns:
      ``[B]`` int32.
    """
    target = jnp.asarray(target, jnp.int32)
    j = jax.random.randint(key, target.shape, 0, num_classes - 1)
    return (j + (j >= target)).astype(jnp.int32)


def random_logit(
    attributions: Callable | Array,
    apply_fn: ApplyFn,
    params,
    images: Array,
    *,
    target: Array | None = None,
    attr_fn: Callable | None = None,
    num_classes: int | None = None,
    abs: bool = False,  # noqa: A002 (Quantus's name)
    normalise: bool = True,
    key: Array | None = None,
    batch_size: int | None = None,
) -> RandomLogitResult:
    """Random logit (Sixt et al., 2020), as Quantus's ``RandomLogit``.

    Each image is explained a second time for a class :math:`\\tilde y \\ne y` drawn
    uniformly among the others (:func:`random_off_classes`); the score is the similarity of
    the two (preprocessed) maps, :func:`ssim_1d`:

    .. math::

      \\mathrm{RL}(a, x) = \\mathrm{SSIM}\\big(a(x, y), a(x, \\tilde y)\\big).

    **Lower** is better: an explanation of a class should differ from that of another.

    Quantus's defaults, kept here: similarity ``ssim`` (on the flattened maps, window 7),
    ``abs=False``, ``normalise=True``, one random class per image. Quantus's
    ``num_classes=1000`` is ImageNet's class count; the default here is the model's own
    number of classes (what Quantus needs to be given for any other model). Quantus seeds
    NumPy with ``seed=42``; here the draw uses ``key`` (default ``jax.random.key(42)``).
    Quantus normalises each batch it explains by one maximum; here each map by its own (as
    Quantus with one image per batch); SSIM with a data range taken from the two maps is not
    invariant to scaling them differently, so the two can differ for batches of several
    images.

    Args:
      attributions: ``attr_fn(params, images, target) -> [B, H, W]`` or ``[B, H, W]`` maps
        of ``target`` (then ``attr_fn`` is required).
      apply_fn: the model.
      params: its parameters.
      images: ``[B, H, W, C]`` float images (``H * W >= 7``).
      target: ``[B]`` int classes (Quantus's ``y_batch``); default: predicted.
      attr_fn: the method that explains the random classes (default ``attributions`` when
        it is an ``attr_fn``).
      num_classes: number of classes ``K >= 2``; default the model's.
      abs, normalise: Quantus's preprocessing of the maps.
      key: PRNG key of the random classes.
      batch_size: images per ``attr_fn`` call.

    Returns:
      :class:`RandomLogitResult`.
    """
    if attr_fn is None:
        if not callable(attributions):
            raise ValueError(
                "random_logit explains a random class: pass attr_fn= with precomputed maps"
            )
        attr_fn = attributions
    elif not callable(attr_fn):
        raise TypeError(f"attr_fn must be callable, got {type(attr_fn).__name__}")
    images, maps, target, _ = _prepare(attributions, apply_fn, params, images, target, batch_size)
    b, h, w, _ = images.shape
    if h * w < 7:
        raise ValueError(f"images must have H * W >= 7 (SSIM's window), got {h} x {w}")
    if num_classes is None:
        shape = jax.eval_shape(lambda p, x: logits_of(apply_fn(p, x)), params, images).shape
        num_classes = int(shape[-1])
    num_classes = V.check_positive_int("num_classes", num_classes)
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2 (another class), got {num_classes}")
    V.check_classes(target, batch=b, num_classes=num_classes, name="target")
    normalise = V.check_bool("normalise", normalise)
    absolute = V.check_bool("abs", abs)
    off = random_off_classes(_key(key), target, num_classes)
    random_maps = attribution_maps(attr_fn, params, images, target=off, batch_size=batch_size)
    random_maps = jnp.asarray(random_maps, jnp.float32)
    scores = ssim_1d(
        _preprocess(maps, normalise, absolute), _preprocess(random_maps, normalise, absolute)
    )
    valid = ~jnp.any(jnp.isnan(maps.reshape(b, -1)), -1) & V.rows_finite(images)
    scores = V.flag_rows(scores, valid)
    return RandomLogitResult(
        scores=scores,
        mean=scores.mean(),
        target=target,
        random_target=off,
        maps=maps,
        random_maps=random_maps,
    )
