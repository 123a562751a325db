"""Quantus's complexity metrics, native in JAX: sparseness and complexity.

Both are functions of the map alone; they follow Quantus 0.6.0's ``quantus.Sparseness``
(Chalasani et al., 2020) and ``quantus.Complexity`` (Bhatt et al., 2020) with their default
parameters. See :mod:`svebi_jax.metrics.faithfulness` for the conventions shared by the
Quantus metrics (preprocessing of the maps, ``target``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from svebi_jax import _validation as V
from svebi_jax.metrics.faithfulness import ScoreResult, _prepare, _preprocess, _score_result
from svebi_jax.protocols import ApplyFn

__all__ = ["complexity", "gini_index", "sparseness"]

Array = jax.Array

#: The constant Quantus adds to every attribution before the Gini index.
SPARSENESS_EPS = 1e-7
#: The constant inside Quantus's logarithm of the complexity.
COMPLEXITY_EPS = 1e-12


def gini_index(values: Array) -> Array:
    """Gini index of each row of ``[..., n]`` non-negative values (Quantus's formula).

    With :math:`v_{(1)} \\le \\dots \\le v_{(n)}` the sorted values,

    .. math::

      G(v) = \\frac{\\sum_{i=1}^{n} (2i - n - 1)\\, v_{(i)}}{n \\sum_{i=1}^{n} v_{(i)}},

    0 for equal values, :math:`1 - 1/n` for a single non-zero value.

    Returns:
      ``[...]`` float32.
    """
    v = jnp.sort(jnp.asarray(values, jnp.float32), axis=-1)
    n = v.shape[-1]
    i = jnp.arange(1, n + 1, dtype=jnp.float32)
    return ((2 * i - n - 1) * v).sum(-1) / (n * v.sum(-1))


@functools.partial(jax.jit, static_argnames=("normalise", "absolute"))
def _sparseness(maps, *, normalise, absolute):
    a = _preprocess(maps, normalise, absolute).reshape(maps.shape[0], -1)
    return gini_index(a + SPARSENESS_EPS)


@functools.partial(jax.jit, static_argnames=("normalise", "absolute"))
def _complexity(maps, *, normalise, absolute):
    a = _preprocess(maps, normalise, absolute).reshape(maps.shape[0], -1)
    p = a / jnp.abs(a).sum(-1, keepdims=True)
    return -(p * jnp.log(p + COMPLEXITY_EPS)).sum(-1)


def _map_metric(
    fn,
    name,
    higher,
    attributions,
    apply_fn,
    params,
    images,
    target,
    batch_size,
    absolute,
    normalise,
) -> ScoreResult:
    images, maps, target, _ = _prepare(
        attributions, apply_fn, params, images, target, batch_size, need_model=False
    )
    scores = fn(
        maps,
        normalise=V.check_bool("normalise", normalise),
        absolute=V.check_bool("abs", absolute),
    )
    scores = V.flag_rows(scores, ~jnp.any(jnp.isnan(maps.reshape(maps.shape[0], -1)), -1))
    return _score_result(scores, target, maps, name, higher)


def sparseness(
    attributions: Callable | Array,
    apply_fn: ApplyFn | None,
    params,
    images: Array,
    *,
    target: Array | None = None,
    abs: bool = True,  # noqa: A002 (Quantus's name)
    normalise: bool = True,
    batch_size: int | None = None,
) -> ScoreResult:
    """Sparseness (Chalasani et al., 2020), as Quantus's ``Sparseness``: the Gini index of
    the map.

    .. math::

      \\mathrm{Sp}(a) = G(\\tilde a + 10^{-7}), \\qquad
      \\tilde a = \\Big| \\frac{a}{\\max_p |a_p|} \\Big|,

    with :func:`gini_index` over the :math:`HW` pixels. **Higher** is better (a map that
    concentrates on few features); it is 0 for a uniform map and about :math:`1 - 1/HW` for
    a single pixel.

    Quantus's defaults, kept here: ``abs=True``, ``normalise=True``, the constant
    :math:`10^{-7}` added before sorting. Quantus normalises its whole batch by one maximum;
    here each map by its own (the Gini index is scale-invariant, so the two differ only
    through the added constant, far below float32 resolution for maps of ordinary size).

    Args:
      attributions: ``attr_fn(params, images, target) -> [B, H, W]`` or ``[B, H, W]`` maps.
      apply_fn: the model (used only to explain with an ``attr_fn``; ``None`` with maps).
      params: its parameters (idem).
      images: ``[B, H, W, C]`` float images (their shape checks the maps').
      target: ``[B]`` int classes to explain with an ``attr_fn``; default: predicted.
      abs, normalise: Quantus's preprocessing of the maps.
      batch_size: images per ``attr_fn`` call.

    Returns:
      :class:`~svebi_jax.metrics.faithfulness.ScoreResult` (``higher_is_better=True``).
    """
    return _map_metric(
        _sparseness,
        "sparseness",
        True,
        attributions,
        apply_fn,
        params,
        images,
        target,
        batch_size,
        abs,
        normalise,
    )


def complexity(
    attributions: Callable | Array,
    apply_fn: ApplyFn | None,
    params,
    images: Array,
    *,
    target: Array | None = None,
    abs: bool = True,  # noqa: A002 (Quantus's name)
    normalise: bool = True,
    batch_size: int | None = None,
) -> ScoreResult:
    """Complexity (Bhatt et al., 2020), as Quantus's ``Complexity``: the entropy of the map's
    fractional contributions.

    .. math::

      \\mathrm{Cx}(a) = -\\sum_{p} q_p \\log(q_p + 10^{-12}), \\qquad
      q_p = \\frac{\\tilde a_p}{\\sum_{p'} |\\tilde a_{p'}|},

    with :math:`\\tilde a` the preprocessed map over the :math:`HW` pixels (natural
    logarithm). **Lower** is better (a less complex map); it is :math:`\\log HW` for a
    uniform map and 0 for a single pixel.

    Quantus's defaults, kept here: ``abs=True``, ``normalise=True`` (by the maximum absolute
    value; per map here, see :func:`sparseness`), the constant :math:`10^{-12}` inside the
    logarithm. With ``abs=False`` a negative :math:`q_p` gives NaN, as in Quantus.

    Args:
      attributions: ``attr_fn(params, images, target) -> [B, H, W]`` or ``[B, H, W]`` maps.
      apply_fn: the model (used only to explain with an ``attr_fn``; ``None`` with maps).
      params: its parameters (idem).
      images: ``[B, H, W, C]`` float images (their shape checks the maps').
      target: ``[B]`` int classes to explain with an ``attr_fn``; default: predicted.
      abs, normalise: Quantus's preprocessing of the maps.
      batch_size: images per ``attr_fn`` call.

    Returns:
      :class:`~svebi_jax.metrics.faithfulness.ScoreResult` (``higher_is_better=False``).
    """
    return _map_metric(
        _complexity,
        "complexity",
        False,
        attributions,
        apply_fn,
        params,
        images,
        target,
        batch_size,
        abs,
        normalise,
    )
