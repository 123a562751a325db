"""Relevant filters of each class from the μ-lasso weights.

The μ-lasso (:mod:`svebi_jax.lasso`) returns :math:`W \\in \\mathbb{R}_{\\ge 0}^{m \\times C}`;
filter :math:`f` (a column of ``X``) is *relevant* to class :math:`j` when

.. math::
    W_{fj} > \\tau \\qquad (\\tau = \\texttt{threshold} \\ge 0,\\ \\text{default } 0),

and the relevant filters of a class are ranked by decreasing weight. A class that the network
never predicts has an all-zero column of ``W`` and therefore no relevant filter.

Representation: ``relevant[class][layer]`` is the list of channels, for **every** class
``0..C-1`` and **every** layer of the :class:`~svebi_jax.responses.FilterIndex` (a layer
without relevant filters maps to an empty list), so consumers never need ``.get`` defaults.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from svebi_jax import _validation as V
from svebi_jax._validation import as_class_vector
from svebi_jax.responses import FilterIndex

__all__ = [
    "Relevant",
    "fill_empty_from_path",
    "has_relevant_filters",
    "layer_distribution",
    "masks_from_weights",
    "relevance_masks",
    "relevance_masks_path",
    "relevant_filters",
]

#: ``{class: {layer: [channels sorted by descending weight]}}``
Relevant = dict[int, dict[str, list[int]]]


def relevant_filters(W, index: FilterIndex, *, threshold: float = 0.0) -> Relevant:
    """Relevant filters of every class, ranked by decreasing weight.

    Args:
      W: ``[m, C]`` float lasso weights (one μ; select a row of a μ-path result first).
      index: :class:`~svebi_jax.responses.FilterIndex` of the ``m`` columns of ``X``.
      threshold: finite :math:`\\tau \\ge 0`; filter ``f`` is relevant to class ``j`` when
        ``W[f, j] > threshold``.

    Returns:
      ``{j: {layer: [channel, ...]}}`` for every class ``j = 0..C-1`` and every layer of
      ``index`` (in index order; empty list when none). Channels are sorted by descending
      ``W[f, j]``; ties keep ascending channel order.

    Raises:
      ValueError: ``W`` not 2-D, its row count differs from ``index.num_filters``, contains
        NaN/inf, or a bad ``threshold``.
    """
    if isinstance(W, jax.core.Tracer):
        raise TypeError("W must be concrete (relevant_filters returns Python lists)")
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2:
        raise ValueError(
            f"W must be [m, C] lasso weights for one mu, got shape {W.shape}"
            + ("; select one mu of the path, e.g. W[i]" if W.ndim == 3 else "")
        )
    if W.shape[0] != index.num_filters:
        raise ValueError(
            f"W must have m = {index.num_filters} rows (index.num_filters), got shape {W.shape}"
        )
    if not np.all(np.isfinite(W)):
        raise ValueError("W contains NaN or inf values")
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, numbers.Real)
        or not math.isfinite(threshold)
        or threshold < 0
    ):
        raise ValueError(f"threshold must be a finite number >= 0, got {threshold!r}")

    out: Relevant = {}
    for j in range(W.shape[1]):
        per_layer = {}
        for layer in index.layers:
            w = W[index.columns(layer), j]
            chans = np.flatnonzero(w > threshold)
            order = np.argsort(-w[chans], kind="stable")
            per_layer[layer] = [int(c) for c in chans[order]]
        out[j] = per_layer
    return out


def layer_distribution(relevant: Mapping[int, Mapping[str, Sequence[int]]]) -> dict[str, int]:
    """Number of relevant filters per layer, summed over classes (the paper's Fig. 3c).

    A filter relevant to several classes is counted once per class.

    Args:
      relevant: output of :func:`relevant_filters`.

    Returns:
      ``{layer: count}`` in the order layers first appear in ``relevant``.
    """
    counts: dict[str, int] = {}
    for per_layer in relevant.values():
        for layer, chans in per_layer.items():
            counts[layer] = counts.get(layer, 0) + len(chans)
    return counts


def relevance_masks(
    relevant: Mapping[int, Mapping[str, Sequence[int]]],
    index: FilterIndex,
    num_classes: int,
) -> dict[str, np.ndarray]:
    """Relevant filters as dense 0/1 masks, for vectorized heatmaps and ablations.

    Args:
      relevant: ``{class: {layer: [channels]}}`` (e.g. :func:`relevant_filters`); classes and
        layers may be missing (no relevant filter).
      index: :class:`~svebi_jax.responses.FilterIndex` giving the layers and channel counts.
      num_classes: ``K``, number of mask rows (positive int).

    Returns:
      ``{layer: [K, C_l]}`` float32 masks for every layer of ``index``;
      ``mask[layer][j, c] = 1`` iff channel ``c`` of ``layer`` is relevant to class ``j``.

    Raises:
      ValueError: a class outside ``[0, num_classes)``, an unknown layer or a channel out of
        range.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    masks = {
        n: np.zeros((num_classes, c), np.float32)
        for n, c in zip(index.layers, index.channels, strict=True)
    }
    for j, per_layer in relevant.items():
        if isinstance(j, bool) or not isinstance(j, numbers.Integral) or not 0 <= j < num_classes:
            raise ValueError(f"relevant: class must be an int in [0, {num_classes}), got {j!r}")
        for layer, chans in per_layer.items():
            for c in chans:
                index.column(layer, c)  # validates the layer name and the channel range
            masks[layer][int(j), np.asarray(chans, dtype=np.int64)] = 1.0
    return masks


def has_relevant_filters(
    relevance_masks: Mapping[str, jax.Array], classes: jax.Array
) -> dict[str, jax.Array]:
    """Which images a layer can explain: their class has at least one relevant filter there.

    A class with no relevant filter in a layer gets an all-zero SVEBI heatmap from that layer
    (:func:`svebi_jax.heatmaps.svebi_heatmaps`): it is not an explanation, and an evaluation
    should say how many images it concerns (the *coverage*) instead of scoring it silently.
    Pure and jittable.

    Args:
      relevance_masks: ``{layer: [K, C_l]}`` float masks (:func:`relevance_masks`).
      classes: ``[B]`` int classes explained, in ``[0, K)``.

    Returns:
      ``{layer: [B]}`` bool, ``True`` where ``relevance_masks[layer][classes[b]]`` has a
      positive entry.

    Raises:
      ValueError: ``classes`` not a 1-D int array, or a mask that is not ``[K, C]``.
    """
    classes = as_class_vector(classes)
    out = {}
    for layer, mask in relevance_masks.items():
        mask = jnp.asarray(mask)
        if mask.ndim != 2:
            raise ValueError(
                f"relevance_masks[{layer!r}] must be [K, C], got shape {tuple(mask.shape)}"
            )
        out[layer] = jnp.any(mask[classes] > 0, axis=-1)
    return out


def masks_from_weights(
    W, index: FilterIndex, *, threshold: float = 0.0, keep_weights: bool = False
) -> dict[str, jax.Array]:
    """Relevance masks straight from the lasso weights (pure, jittable, vmappable).

    .. math::
        \\text{mask}_\\ell[\\dots, j, c] = [\\,W[\\dots, \\text{col}_\\ell(c), j] > \\tau\\,]

    the same 0/1 masks as ``relevance_masks(relevant_filters(W, index), index, K)``, without
    the detour through Python lists, so they can be built inside ``jit`` and for a whole μ
    path (or a batch of models) at once. A NaN weight gives a NaN mask entry (the flag of a
    failed solve, e.g. a ``mu_lasso`` result under ``jit`` with invalid input), which makes
    the heatmaps that use it NaN instead of silently empty. With ``keep_weights=True`` the
    masks carry the lasso weights of the relevant filters instead of 1
    (:math:`W[\\dots] \\cdot [W[\\dots] > \tau]`), for lasso-weighted heatmaps.

    Args:
      W: ``[..., m, K]`` float lasso weights (``mu_lasso(...).W``; ``[P, m, K]`` for a path).
      index: :class:`~svebi_jax.responses.FilterIndex` of the ``m`` columns of ``X``.
      threshold: :math:`\\tau \\ge 0` (finite), as in :func:`relevant_filters`.
      keep_weights: keep the weights of relevant filters instead of 1.

    Returns:
      ``{layer: [..., K, C_l]}`` float32 masks for every layer of ``index``.

    Raises:
      ValueError: ``W`` not ``[..., m, K]`` with ``m = index.num_filters``, a bad
        ``threshold``, or (when concrete) ``W`` containing NaN/inf.
    """
    if not isinstance(index, FilterIndex):
        raise TypeError(f"index must be a FilterIndex, got {type(index).__name__}")
    threshold = V.check_number("threshold", threshold, low=0.0)
    shape = tuple(np.shape(W))
    if len(shape) < 2 or shape[-2] != index.num_filters:
        raise ValueError(
            f"W must be [..., m, K] with m = {index.num_filters} (index.num_filters), "
            f"got shape {shape}"
        )
    if V.all_finite(W) is False:
        raise ValueError("W contains NaN or inf values")
    W = jnp.asarray(W)
    masks = {}
    for layer in index.layers:
        w = jnp.swapaxes(W[..., index.columns(layer), :], -1, -2)  # [..., K, C_l]
        m = (w > threshold).astype(jnp.float32)
        if keep_weights:
            m = m * w.astype(jnp.float32)
        masks[layer] = jnp.where(jnp.isnan(w), jnp.nan, m)
    return masks


def fill_empty_from_path(
    masks: Mapping[str, jax.Array], mask_path: Mapping[str, jax.Array]
) -> dict[str, jax.Array]:
    """A class without relevant filters in a layer takes them from the smallest μ that has some.

    For each layer and class :math:`j` whose row ``masks[layer][j]`` has no positive entry,

    .. math::
        \text{out}[j] = \text{path}[p^*, j],\\qquad
        p^* = \\min\\{p : \\exists c,\\ \text{path}[p, j, c] > 0\\}

    (``mask_path`` ordered by increasing μ); rows with relevant filters, and classes that
    have none anywhere on the path, are kept as they are. Pure and jittable.

    Args:
      masks: ``{layer: [K, C]}`` masks at the chosen μ (0/1 or weights).
      mask_path: ``{layer: [P, K, C]}`` masks along the μ path, increasing μ (e.g.
        ``masks_from_weights(W_path, index)``), for at least the layers of ``masks``.

    Returns:
      ``{layer: [K, C]}`` float32 masks.

    Raises:
      ValueError: a layer missing from ``mask_path`` or shapes that do not match.
    """
    out = {}
    for layer, m in masks.items():
        if layer not in mask_path:
            raise ValueError(f"mask_path: missing layer {layer!r}; has {tuple(mask_path)}")
        m = jnp.asarray(m, jnp.float32)
        path = jnp.asarray(mask_path[layer], jnp.float32)
        if path.ndim != 3 or path.shape[1:] != m.shape:
            raise ValueError(
                f"mask_path[{layer!r}] must be [P, {m.shape[0]}, {m.shape[1]}], got {path.shape}"
            )
        has = jnp.any(path > 0, axis=-1)  # [P, K]
        first = jnp.argmax(has, axis=0)  # [K] first μ with a relevant filter
        fallback = path[first, jnp.arange(m.shape[0])]  # [K, C]
        empty = ~jnp.any(m > 0, axis=-1) & ~jnp.any(jnp.isnan(m), axis=-1)
        out[layer] = jnp.where((empty & jnp.any(has, axis=0))[:, None], fallback, m)
    return out


def relevance_masks_path(
    W_path, index: FilterIndex, num_classes: int, *, threshold: float = 0.0
) -> dict[str, np.ndarray]:
    """Relevance masks along a μ path, stacked (the input of the ablation curve).

    Args:
      W_path: ``[P, m, K]`` lasso weights, one ``[m, K]`` per μ (``mu_lasso(X, L, mus).W``).
      index: :class:`~svebi_jax.responses.FilterIndex` of the ``m`` columns.
      num_classes: ``K`` (positive int).
      threshold: weight above which a filter is relevant (see :func:`relevant_filters`).

    Returns:
      ``{layer: [P, K, C_l]}`` float32 0/1 masks; slice ``p`` equals
      ``relevance_masks(relevant_filters(W_path[p], index), index, num_classes)``.

    Raises:
      ValueError: ``W_path`` not ``[P, m, K]`` with ``m`` = ``index``'s column count and
        ``K = num_classes``, NaN/inf weights or a bad ``threshold``.
    """
    num_classes = V.check_positive_int("num_classes", num_classes)
    if np.ndim(W_path) != 3 or np.shape(W_path)[0] < 1 or np.shape(W_path)[2] != num_classes:
        raise ValueError(
            f"W_path must be [P, m, K] with P >= 1 and K = {num_classes}, got shape "
            f"{np.shape(W_path)}"
        )
    masks = masks_from_weights(np.asarray(W_path), index, threshold=threshold)
    return {name: np.asarray(m) for name, m in masks.items()}
