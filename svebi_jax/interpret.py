"""Interpretation of filters: receptive fields and top-k average crops (the paper's Fig. 4).

A filter is visualized by the images that drive it most. For filter :math:`f` of layer
:math:`\\ell` (column of ``X``), take the :math:`k` images with the largest response
:math:`x_{n,f}`; in each, find the peak cell of its time-mean spike map,

.. math::
    (i_n, j_n) = \\arg\\max_{i,j} \\bar S_{n,f}[i, j]

(first maximum in row-major order; an image where the filter is silent gives cell (0, 0)),
crop the image to that cell's receptive field — the ``rf × rf`` window whose top-left pixel is

.. math::
    (t_n, l_n) = \\big(s + i_n J - \\tfrac{rf - 1}{2},\\ s + j_n J - \\tfrac{rf - 1}{2}\\big)

with start :math:`s`, jump :math:`J` and size :math:`rf` from
:func:`svebi_jax.layers.layer_geometry` — and average the crops. Windows that cross the image
border (padding layers) are **clipped**: each crop pixel is averaged only over the images in
which it lies inside the image,

.. math::
    \\bar P[a, b] = \\frac{\\sum_n [\\,\\text{inside}_n(a,b)\\,]\\ x_n[t_n + a, l_n + b]}
                        {\\max\\big(1, \\sum_n [\\,\\text{inside}_n(a,b)\\,]\\big)},

so a pixel that is outside for every image is 0.

The crops are taken with one ``lax.dynamic_slice`` per image, vmapped over images, from the
images zero-padded just as far as some window reaches outside them; the peaks come from one
batched, jit-compiled forward pass over the distinct top-k images of all requested filters.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from svebi_jax import _validation as V
from svebi_jax import batching
from svebi_jax import layers as L
from svebi_jax.protocols import ApplyFn, model_info
from svebi_jax.responses import FilterIndex

__all__ = [
    "interpret_filters",
    "receptive_field_box",
    "receptive_field_boxes",
    "top_k_crops",
    "window_origins",
]

Array = jax.Array


def _check_hw(image_shape) -> tuple[int, int]:
    shape = tuple(image_shape)
    if len(shape) not in (2, 3) or not all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in shape
    ):
        raise ValueError(f"image_shape must be (H, W) or (H, W, C) positive ints, got {shape!r}")
    return int(shape[0]), int(shape[1])


def window_origins(geometry: L.Geometry, i, j) -> tuple[np.ndarray, np.ndarray]:
    """Unclipped top-left input pixel ``(t, l)`` of the receptive fields of cells ``(i, j)``.

    Args:
      geometry: the layer's :class:`svebi_jax.layers.Geometry`.
      i, j: int arrays (any matching shape) of cell rows and columns.

    Returns:
      ``(top, left)`` int64 arrays of the shape of ``i``; may be negative or reach beyond the
      image for windows that extend into padding.
    """
    half = (geometry.rf - 1) / 2
    top = np.rint(geometry.start + np.asarray(i) * geometry.jump - half).astype(np.int64)
    left = np.rint(geometry.start + np.asarray(j) * geometry.jump - half).astype(np.int64)
    return top, left


def receptive_field_boxes(geometry: L.Geometry, i, j, image_shape: Sequence[int]) -> np.ndarray:
    """Receptive-field boxes of many cells, clipped to the image (vectorized).

    Args:
      geometry: the layer's :class:`svebi_jax.layers.Geometry`.
      i, j: ``[n]`` int cell rows in ``[0, height)`` and columns in ``[0, width)``.
      image_shape: ``(H, W)`` or ``(H, W, C)``.

    Returns:
      ``[n, 4]`` int64 half-open boxes ``(top, left, bottom, right)``: the cell sees
      ``image[top:bottom, left:right]``.

    Raises:
      ValueError: a cell outside the layer's map.
    """
    h, w = _check_hw(image_shape)
    i = np.atleast_1d(np.asarray(i))
    j = np.atleast_1d(np.asarray(j))
    if i.shape != j.shape or i.ndim != 1:
        raise ValueError(f"i and j must be [n] int arrays of one shape, got {i.shape}, {j.shape}")
    if not (np.issubdtype(i.dtype, np.integer) and np.issubdtype(j.dtype, np.integer)):
        raise ValueError(f"i and j must be integers, got dtypes {i.dtype}, {j.dtype}")
    if i.size and (i.min() < 0 or i.max() >= geometry.height):
        raise ValueError(f"i must lie in [0, {geometry.height}) (map height), got {i}")
    if j.size and (j.min() < 0 or j.max() >= geometry.width):
        raise ValueError(f"j must lie in [0, {geometry.width}) (map width), got {j}")
    top, left = window_origins(geometry, i, j)
    rf = geometry.rf
    return np.stack(
        [
            np.clip(top, 0, h),
            np.clip(left, 0, w),
            np.clip(top + rf, 0, h),
            np.clip(left + rf, 0, w),
        ],
        axis=-1,
    )


def receptive_field_box(
    geometry: L.Geometry, i: int, j: int, image_shape: Sequence[int]
) -> tuple[int, int, int, int]:
    """Receptive field of cell ``(i, j)``: half-open ``(top, left, bottom, right)``, clipped.

    E.g. for the shallow MNIST SNN, cell (0, 0) of ``conv2`` (``rf = 14``) gives
    ``(0, 0, 14, 14)``: it sees pixels 0..13 in both directions.

    Args:
      geometry: the layer's :class:`svebi_jax.layers.Geometry`.
      i, j: cell row and column.
      image_shape: ``(H, W)`` or ``(H, W, C)``.
    """
    for name, v in (("i", i), ("j", j)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise ValueError(f"{name} must be an int cell index, got {v!r}")
    box = receptive_field_boxes(geometry, [int(i)], [int(j)], image_shape)[0]
    return tuple(int(v) for v in box)


# ----------------------------------------------------------------------------- forward + crops


@functools.lru_cache(maxsize=32)
def _peak_fn(apply_fn: ApplyFn, layers: tuple[str, ...]):
    def fn(params, images):
        spikes = apply_fn(params, images, record="mean").spikes
        out = {}
        for name in layers:
            s = spikes[name]  # [B, h, w, c]
            flat = s.reshape(s.shape[0], -1, s.shape[-1])
            out[name] = jnp.argmax(flat, axis=1).astype(jnp.int32)  # [B, c] flat h*w index
        return out

    return jax.jit(fn)


@functools.partial(jax.jit, static_argnames=("rf",))
def _crop_sums(padded: Array, which: Array, tops: Array, lefts: Array, *, rf: int) -> Array:
    """Sums of ``rf × rf`` crops per filter.

    Args:
      padded: ``[U, H', W', C]`` zero-padded images (every window lies inside).
      which, tops, lefts: ``[F, k]`` int image rows of ``padded`` and window origins in
        padded coordinates.

    Returns:
      ``[F, rf, rf, C]`` float32 sums over the ``k`` crops of each filter.
    """
    c = padded.shape[-1]

    def crop(n, top, left):
        return jax.lax.dynamic_slice(padded, (n, top, left, 0), (1, rf, rf, c))[0]

    def per_filter(args):
        return jax.vmap(crop)(*args).sum(axis=0)

    return jax.lax.map(per_filter, (which, tops, lefts))


def _check_x(X, n: int, index: FilterIndex) -> np.ndarray:
    X = np.asarray(X)
    if X.shape != (n, index.num_filters):
        raise ValueError(
            f"X must be [N, m] = [{n}, {index.num_filters}] responses of these images, "
            f"got shape {X.shape}"
        )
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or inf values")
    return X


def interpret_filters(
    apply_fn: ApplyFn,
    params: Any,
    dataset_or_images: Any,
    X: Any,
    index: FilterIndex,
    relevant: Mapping[str, Sequence[int]],
    *,
    k: int = 100,
    geometry: Mapping[str, L.Geometry] | None = None,
    batch_size: int = 256,
) -> dict[str, dict[int, np.ndarray]]:
    """Top-k average receptive-field crops of many filters (e.g. all relevant to one class).

    One batched forward pass (chunked by ``batch_size``) runs over the distinct top-k images of
    all requested filters; crops are gathered with vmapped ``lax.dynamic_slice``.

    Args:
      apply_fn: ``apply_fn(params, images, *, record=...) -> SNNOutput`` (model protocol).
      params: parameter pytree of ``apply_fn``.
      dataset_or_images: a :class:`svebi_jax.data.Dataset` or ``[N, H, W, C]`` images — the
        images ``X`` was computed on.
      X: ``[N, m]`` float responses (``Responses.X``).
      index: :class:`~svebi_jax.responses.FilterIndex` of ``X``'s columns.
      relevant: ``{layer: [channels]}`` filters to interpret, e.g. ``relevant[c]`` of
        :func:`svebi_jax.relevance.relevant_filters` for class ``c``.
      k: number of top images per filter (``1 ≤ k ≤ N``); ties in ``X`` are broken by image
        order.
      geometry: ``{layer: Geometry}`` of the network; default ``apply_fn.info.geometry``.
      batch_size: images per forward batch (positive int).

    Returns:
      ``{layer: {channel: [rf, rf, C] float32 mean crop}}`` (clipped mean, see the module
      docstring), with layers and channels in the order given.

    Raises:
      ValueError: ``k`` out of range, unknown layer, channel out of range, ``X`` of the wrong
        shape, or a bad ``batch_size``.
    """
    if geometry is None:
        info = model_info(apply_fn)
        if info is None:
            raise ValueError("geometry is required for an apply_fn without .info")
        geometry = info.geometry
    images = getattr(dataset_or_images, "images", dataset_or_images)
    if V.is_tracer(images):
        raise TypeError("images must be concrete (interpret_filters streams on the host)")
    images = V.check_images(np.asarray(images))
    n, h, w, c = images.shape
    X = _check_x(X, n, index)
    k = V.check_positive_int("k", k)
    if k > n:
        raise ValueError(f"k must be <= N = {n} (number of images), got k = {k}")
    batch_size = V.check_positive_int("batch_size", batch_size)

    layers = tuple(relevant)
    cols = {}
    for layer in layers:
        cols[layer] = [index.column(layer, ch) for ch in relevant[layer]]  # validates
        if layer not in geometry:
            raise ValueError(f"geometry: unknown layer {layer!r}; geometry has {tuple(geometry)}")
    layers = tuple(n_ for n_ in layers if cols[n_])
    if not layers:
        return {layer: {} for layer in relevant}

    # Top-k images of every filter: [F, k], descending response, ties by image order.
    topk = {layer: np.argsort(-X[:, cols[layer]], axis=0, kind="stable")[:k].T for layer in layers}
    unique = np.unique(np.concatenate([t.ravel() for t in topk.values()]))
    b = batching.power_of_two_bucket(unique.size, batch_size)
    fn = batching.cached_builder(_peak_fn, apply_fn, layers)
    peaks = {
        layer: np.empty((unique.size, index.num_channels(layer)), np.int64) for layer in layers
    }
    for start, stop in batching.chunk_bounds(unique.size, b):
        out = fn(params, batching.pad_rows(images[unique[start:stop]], b))
        for layer in layers:
            peaks[layer][start:stop] = np.asarray(out[layer])[: stop - start]

    result: dict[str, dict[int, np.ndarray]] = {layer: {} for layer in relevant}
    for layer in layers:
        geo = L.Geometry(*geometry[layer])
        rf = int(geo.rf)
        chans = np.asarray(relevant[layer], np.int64)
        flat = peaks[layer][np.searchsorted(unique, topk[layer]), chans[:, None]]  # [F, k]
        top, left = window_origins(geo, flat // geo.width, flat % geo.width)
        top = np.clip(top, -rf, h)
        left = np.clip(left, -rf, w)
        # Zero-pad only as far as some window reaches outside the image.
        pad_t, pad_l = max(0, -int(top.min())), max(0, -int(left.min()))
        pad_b, pad_r = max(0, int(top.max()) + rf - h), max(0, int(left.max()) + rf - w)
        used = np.unique(topk[layer])
        padded = np.pad(images[used], ((0, 0), (pad_t, pad_b), (pad_l, pad_r), (0, 0)))
        sums = np.asarray(
            _crop_sums(
                jnp.asarray(padded),
                jnp.asarray(np.searchsorted(used, topk[layer]), jnp.int32),
                jnp.asarray(top + pad_t, jnp.int32),
                jnp.asarray(left + pad_l, jnp.int32),
                rf=rf,
            )
        )
        offs = np.arange(rf)
        rows_in = (top[..., None] + offs >= 0) & (top[..., None] + offs < h)  # [F, k, rf]
        cols_in = (left[..., None] + offs >= 0) & (left[..., None] + offs < w)
        counts = np.einsum("fka,fkb->fab", rows_in.astype(np.float32), cols_in.astype(np.float32))
        means = np.where(counts[..., None] > 0, sums / np.maximum(counts, 1.0)[..., None], 0.0)
        for f, ch in enumerate(chans):
            result[layer][int(ch)] = means[f].astype(np.float32)
    return result


def top_k_crops(
    apply_fn: ApplyFn,
    params: Any,
    dataset_or_images: Any,
    X: Any,
    index: FilterIndex,
    layer: str,
    channel: int,
    *,
    k: int = 100,
    geometry: Mapping[str, L.Geometry] | None = None,
    batch_size: int = 256,
) -> np.ndarray:
    """Average receptive-field crop of the top-k images of one filter.

    Args:
      apply_fn, params, dataset_or_images, X, index, geometry, batch_size: as in
        :func:`interpret_filters`.
      layer: conv layer name.
      channel: filter (channel) of ``layer``.
      k: number of top images (``1 ≤ k ≤ N``).

    Returns:
      ``[rf, rf, C]`` float32 mean crop (pixels outside the image excluded from the mean).

    Raises:
      ValueError: unknown layer, channel out of range, ``k`` out of range, bad ``X``.
    """
    index.column(layer, channel)
    out = interpret_filters(
        apply_fn,
        params,
        dataset_or_images,
        X,
        index,
        {layer: [channel]},
        k=k,
        geometry=geometry,
        batch_size=batch_size,
    )
    return out[layer][int(channel)]
