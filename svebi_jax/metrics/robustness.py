"""Quantus's robustness metric max-sensitivity, native in JAX.

Follows Quantus 0.6.0's ``quantus.MaxSensitivity`` (Yeh et al., 2019) with its default
parameters; see :mod:`svebi_jax.metrics.faithfulness` for the conventions shared by the
Quantus metrics (features, preprocessing of the maps, ``target``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from svebi_jax import _validation as V
from svebi_jax.metrics.faithfulness import (
    ScoreResult,
    _flat_cf,
    _key,
    _prepare,
    _preprocess,
    _score_result,
    _unflat_cf,
    _valid_rows,
)
from svebi_jax.metrics.insdel import _chunked_map, _Logits
from svebi_jax.protocols import ApplyFn

__all__ = ["max_sensitivity", "max_sensitivity_noise"]

Array = jax.Array


def max_sensitivity_noise(
    key: Array,
    items: Array,
    num_features: int,
    lower_bound: float = 0.2,
    upper_bound: float | None = None,
) -> Array:
    """The input noise of :func:`max_sensitivity`, one vector per flat item.

    Item ``i * nr_samples + k`` is sample ``k`` of image ``i``; its noise is drawn with
    ``jax.random.fold_in(key, item)`` from :math:`U(-l, l)` (``upper_bound=None``) or
    :math:`U(l, u)`, as Quantus's ``batch_uniform_noise``, over the image's ``C·H·W``
    channel-first features (exposed so that the same draws can be fed to another
    implementation).

    Returns:
      ``[N, num_features]`` float32.
    """
    lo, hi = (-lower_bound, lower_bound) if upper_bound is None else (lower_bound, upper_bound)

    def one(i):
        k = jax.random.fold_in(key, i)
        return jax.random.uniform(k, (num_features,), minval=lo, maxval=hi)

    return jax.vmap(one)(jnp.asarray(items))


@functools.partial(
    jax.jit,
    static_argnames=(
        "attr_fn",
        "predict_fn",
        "nr_samples",
        "lower_bound",
        "upper_bound",
        "nan_on_change",
        "chunk_size",
        "normalise",
        "absolute",
    ),
)
def _max_sensitivity(
    params,
    images,
    maps,
    target,
    key,
    *,
    attr_fn,
    predict_fn,
    nr_samples,
    lower_bound,
    upper_bound,
    nan_on_change,
    chunk_size,
    normalise,
    absolute,
):
    b, h, w, c = images.shape
    x = _flat_cf(images)
    a0 = _preprocess(maps, normalise, absolute).reshape(b, -1)
    den = jnp.linalg.norm(a0, axis=-1)
    if nan_on_change:
        classes = _chunked_map(
            lambda i: jnp.argmax(predict_fn(params, images[i]), -1), b, chunk_size
        )

    def score(idx):
        img = idx // nr_samples
        noise = max_sensitivity_noise(key, idx, x.shape[1], lower_bound, upper_bound)
        xp = _unflat_cf(x[img] + noise.astype(x.dtype), (h, w, c))
        ap = _preprocess(attr_fn(params, xp, target[img]), normalise, absolute)
        s = jnp.linalg.norm(a0[img] - ap.reshape(ap.shape[0], -1), axis=-1) / den[img]
        if nan_on_change:
            changed = jnp.argmax(predict_fn(params, xp), -1) != classes[img]
            s = jnp.where(changed, jnp.nan, s)
        return s

    sims = _chunked_map(score, b * nr_samples, chunk_size).reshape(b, nr_samples)
    scores = jnp.max(sims, axis=-1) if nan_on_change else jnp.nanmax(sims, axis=-1)
    return V.flag_rows(scores, _valid_rows(images, maps))


def max_sensitivity(
    attributions: Callable | Array,
    apply_fn: ApplyFn,
    params,
    images: Array,
    *,
    target: Array | None = None,
    attr_fn: Callable | None = None,
    nr_samples: int = 200,
    lower_bound: float = 0.2,
    upper_bound: float | None = None,
    abs: bool = False,  # noqa: A002 (Quantus's name)
    normalise: bool = False,
    return_nan_when_prediction_changes: bool = False,
    key: Array | None = None,
    batch_size: int | None = None,
    chunk_size: int = 64,
) -> ScoreResult:
    """Max-sensitivity (Yeh et al., 2019), as Quantus's ``MaxSensitivity``.

    The image is perturbed ``nr_samples`` times by uniform noise on every feature, the
    target class is explained again on each perturbed image, and the score is the largest
    relative change of the map (Frobenius norms of the flattened maps):

    .. math::

      \\mathrm{MS}(a, x) = \\max_{k = 1, \\dots, N}
        \\frac{\\lVert a(x) - a(x + \\varepsilon_k) \\rVert_F}{\\lVert a(x) \\rVert_F},
      \\qquad \\varepsilon_k \\sim U(-l, l)^{CHW}.

    **Lower** is better (a robust explanation). The maps are preprocessed as Quantus does
    (``normalise``, ``abs``) before the norms.

    Quantus's defaults, kept here: ``nr_samples=200``, ``lower_bound=0.2`` with
    ``upper_bound=None`` (noise :math:`U(-0.2, 0.2)`, ``batch_uniform_noise``; Quantus's
    docstring names ``gaussian_noise`` but its code uses uniform noise), ``abs=False``,
    ``normalise=False``, similarity ``difference``, numerator and denominator ``fro_norm``,
    ``return_nan_when_prediction_changes=False`` (then the max ignores NaN, ``np.nanmax``;
    with ``True`` a sample whose predicted class changed is NaN and so is the max). The noise
    is drawn by :func:`max_sensitivity_noise`.

    Args:
      attributions: ``attr_fn(params, images, target) -> [B, H, W]`` or ``[B, H, W]`` maps
        of the unperturbed images (then ``attr_fn`` is required).
      apply_fn: the model.
      params: its parameters.
      images: ``[B, H, W, C]`` float images.
      target: ``[B]`` int classes explained (Quantus's ``y_batch``); default: predicted.
      attr_fn: the method that explains the perturbed images (jittable; default
        ``attributions`` when it is an ``attr_fn``).
      nr_samples: positive int, perturbations per image.
      lower_bound: positive float, noise bound :math:`l`.
      upper_bound: ``None`` or a float above ``lower_bound`` (noise :math:`U(l, u)`).
      abs, normalise: Quantus's preprocessing of the maps.
      return_nan_when_prediction_changes: see above.
      key: PRNG key of the noise (default ``jax.random.key(42)``).
      batch_size: images per ``attr_fn`` call for the unperturbed maps.
      chunk_size: perturbed images per ``attr_fn`` call.

    Returns:
      :class:`~svebi_jax.metrics.faithfulness.ScoreResult` (``higher_is_better=False``).
    """
    if attr_fn is None:
        if not callable(attributions):
            raise ValueError(
                "max_sensitivity explains perturbed images: pass attr_fn= with precomputed maps"
            )
        attr_fn = attributions
    elif not callable(attr_fn):
        raise TypeError(f"attr_fn must be callable, got {type(attr_fn).__name__}")
    images, maps, target, _ = _prepare(attributions, apply_fn, params, images, target, batch_size)
    nr_samples = V.check_positive_int("nr_samples", nr_samples)
    lower_bound = V.check_number("lower_bound", lower_bound)
    if upper_bound is None:
        V.check_number("lower_bound", lower_bound, low=0.0, low_open=True)
    else:
        upper_bound = V.check_number("upper_bound", upper_bound)
        if upper_bound <= lower_bound:
            raise ValueError(
                f"upper_bound must be larger than lower_bound = {lower_bound}, got {upper_bound}"
            )
    scores = _max_sensitivity(
        params,
        images,
        maps,
        target,
        _key(key),
        attr_fn=attr_fn,
        predict_fn=_Logits(apply_fn),
        nr_samples=nr_samples,
        lower_bound=lower_bound,
        upper_bound=upper_bound,
        nan_on_change=V.check_bool(
            "return_nan_when_prediction_changes", return_nan_when_prediction_changes
        ),
        chunk_size=V.check_positive_int("chunk_size", chunk_size),
        normalise=V.check_bool("normalise", normalise),
        absolute=V.check_bool("abs", abs),
    )
    return _score_result(scores, target, maps, "max_sensitivity", False)
