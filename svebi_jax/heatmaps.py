"""SVEBI heatmaps: where an image drives the filters that are relevant to its class.

For image :math:`n` explained as class :math:`j` and a conv layer :math:`\\ell` with relevant
filter set :math:`\\mathcal R_j^\\ell` (a 0/1 row ``mask[j]``), the layer's heatmap is

.. math::
    E^\\ell_n = \\operatorname{minmax}\\Big(\\operatorname{up}\\Big(
        \\sum_{f \\in \\mathcal R_j^\\ell} \\bar S_{n,f}\\Big)\\Big),\\qquad
    \\operatorname{minmax}(E) = \\frac{E - \\min E}{\\max E - \\min E}

(``minmax`` of a constant map is the zero map), where :math:`\\operatorname{up}` brings the
``h × w`` map to the ``H × W`` input in one of two ways:

- ``"aligned"`` (default): cell :math:`(i, k)` is placed at the centre of its receptive field,
  input coordinates :math:`(s + i\\,J,\\ s + k\\,J)` with start :math:`s` and jump :math:`J`
  from :func:`svebi_jax.layers.layer_geometry`; pixels between centres are bilinearly
  interpolated and pixels beyond the outermost centres hold the edge value. This is one
  separable linear map, :math:`\\operatorname{up}(M) = A_H M A_W^\\top`, with

  .. math::
      (A_H)_{y i} = \\max\\!\\big(0,\\ 1 - \\lvert u_y - i \\rvert\\big),\\qquad
      u_y = \\operatorname{clip}\\!\\Big(\\frac{y - s}{J},\\ 0,\\ h - 1\\Big),
      \\quad y = 0..H-1,\\ i = 0..h-1

  (see :func:`interpolation_matrix`): exact, computed once per geometry, and applied as two
  small matrix products. With ``border="taper"`` (the default of the explanation functions;
  ``"clamp"`` is the above) the map outside the region the cells' centres cover is defined
  differently: instead of holding the edge value, the edge cell is spread over
  its receptive field with a linear (tent) weight that falls from 1 at its centre to 0 at the
  receptive field's edge, :math:`(A_H)_{y i} \\leftarrow \\tau_y (A_H)_{y i}`,
  :math:`\\tau_y = \\operatorname{clip}(1 - d_y / (r/2), 0, 1)` with :math:`d_y` the distance
  of pixel :math:`y` beyond the outermost centre and :math:`r` the receptive-field side.
- ``"stretch"`` (the authors' code): ``jax.image.resize(M, (H, W), "bilinear")`` of the whole
  map, i.e. the map is stretched over the image regardless of where its receptive fields lie.

Everything is vectorized over the batch (``jax.vmap``) and jittable.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from svebi_jax import _validation as V
from svebi_jax import layers as L
from svebi_jax._validation import is_tracer as _is_tracer

__all__ = [
    "BORDERS",
    "FILTER_WEIGHTINGS",
    "FUSIONS",
    "PLACEMENTS",
    "combine",
    "filter_weights",
    "interpolation_matrix",
    "minmax_normalize",
    "svebi_heatmaps",
    "temporal_reduce",
    "upsample_aligned",
    "upsample_stretch",
]

Array = jax.Array
Placement = Literal["aligned", "stretch"]
PLACEMENTS: tuple[str, ...] = ("aligned", "stretch")
#: What an aligned map is beyond the outermost cell centres (see :func:`interpolation_matrix`).
BORDERS: tuple[str, ...] = ("clamp", "taper")
#: How the relevant filters' maps are weighted (see :func:`svebi_heatmaps`).
FILTER_WEIGHTINGS: tuple[str, ...] = ("binary", "lasso", "response")
#: How per-layer maps are fused (see :func:`combine`).
FUSIONS: tuple[str, ...] = ("mean", "product")


def _check_placement(placement) -> None:
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")


def _image_hw(image_shape) -> tuple[int, int]:
    shape = tuple(image_shape)
    if len(shape) not in (2, 3) or not all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in shape
    ):
        raise ValueError(f"image_shape must be (H, W) or (H, W, C) positive ints, got {shape!r}")
    return int(shape[0]), int(shape[1])


# ----------------------------------------------------------------------------- upsampling


def interpolation_matrix(
    n_out: int,
    n_in: int,
    *,
    start: float,
    jump: float,
    border: str = "clamp",
    rf: float | None = None,
) -> np.ndarray:
    """Matrix of the receptive-field-aligned 1-D interpolation (see the module docstring).

    Cell ``i`` of the input axis sits at output coordinate ``start + i * jump``; output pixel
    ``y`` takes the linear interpolation between its two neighbouring cell centres, clamped to
    the edge cells beyond the outermost centres (``border="clamp"``: rows sum to 1), or
    tapered there (``border="taper"``): row ``y`` is multiplied by

    .. math::
        \\tau_y = \\operatorname{clip}\\Big(1 - \\frac{d_y}{r / 2},\\ 0,\\ 1\\Big),\\qquad
        d_y = \\max\\big(0,\\ s - y,\\ y - s - (n_\\text{in} - 1) J\\big),

    i.e. the edge cell covers its receptive field (side :math:`r`) with a tent weight.

    Args:
      n_out: output length (input pixels, e.g. ``H``).
      n_in: number of map cells (e.g. ``h``).
      start: coordinate of cell 0's centre (``Geometry.start``).
      jump: spacing between cell centres (``Geometry.jump`` > 0).
      border: ``"clamp"`` (default) or ``"taper"``.
      rf: receptive-field side :math:`r > 0` in pixels (required for ``"taper"``).

    Returns:
      ``[n_out, n_in]`` float32 matrix :math:`A`.
    """
    if n_out < 1 or n_in < 1:
        raise ValueError(f"n_out and n_in must be >= 1, got n_out={n_out}, n_in={n_in}")
    if not jump > 0:
        raise ValueError(f"jump must be > 0, got {jump!r}")
    y = np.arange(n_out, dtype=np.float64)
    u = np.clip((y - start) / jump, 0.0, n_in - 1)
    a = np.maximum(0.0, 1.0 - np.abs(u[:, None] - np.arange(n_in, dtype=np.float64)[None, :]))
    V.check_choice("border", border, BORDERS)
    if border == "taper":
        if rf is None or not rf > 0:
            raise ValueError(
                f"rf must be a receptive-field side > 0 for border='taper', got {rf!r}"
            )
        d = np.maximum(0.0, np.maximum(start - y, y - start - (n_in - 1) * jump))
        a = a * np.clip(1.0 - d / (rf / 2.0), 0.0, 1.0)[:, None]
    return a.astype(np.float32)


@functools.lru_cache(maxsize=128)
def _matrices(
    geometry: L.Geometry, hw: tuple[int, int], border: str = "clamp"
) -> tuple[np.ndarray, np.ndarray]:
    g = geometry
    kw = dict(start=g.start, jump=g.jump, border=border, rf=g.rf)
    return (
        interpolation_matrix(hw[0], g.height, **kw),
        interpolation_matrix(hw[1], g.width, **kw),
    )


def _check_map_geometry(maps, geometry: L.Geometry, name: str = "maps") -> None:
    if maps.ndim < 2 or tuple(maps.shape[-2:]) != (geometry.height, geometry.width):
        raise ValueError(
            f"{name} must be [..., {geometry.height}, {geometry.width}] to match the geometry "
            f"(height, width), got shape {tuple(maps.shape)}"
        )


def upsample_aligned(
    maps: Array, geometry: L.Geometry, image_shape: Sequence[int], *, border: str = "taper"
) -> Array:
    """Receptive-field-aligned bilinear upsampling :math:`A_H M A_W^\\top`.

    Args:
      maps: ``[..., h, w]`` float maps with ``(h, w) = (geometry.height, geometry.width)``.
      geometry: the layer's :class:`svebi_jax.layers.Geometry`.
      image_shape: ``(H, W)`` or ``(H, W, C)`` of the input image.
      border: ``"taper"`` (default) or ``"clamp"`` (see :func:`interpolation_matrix`).

    Returns:
      ``[..., H, W]`` float32 maps in input-pixel coordinates.
    """
    hw = _image_hw(image_shape)
    maps = jnp.asarray(maps, jnp.float32)
    _check_map_geometry(maps, geometry)
    a_h, a_w = _matrices(L.Geometry(*geometry), hw, V.check_choice("border", border, BORDERS))
    return jnp.einsum("Yh,...hw,Xw->...YX", a_h, maps, a_w)


def upsample_stretch(maps: Array, image_shape: Sequence[int]) -> Array:
    """The authors' upsampling: bilinear ``jax.image.resize`` of the whole map to ``(H, W)``.

    Args:
      maps: ``[..., h, w]`` float maps.
      image_shape: ``(H, W)`` or ``(H, W, C)``.

    Returns:
      ``[..., H, W]`` float32 maps.
    """
    h, w = _image_hw(image_shape)
    maps = jnp.asarray(maps, jnp.float32)
    if maps.ndim < 2:
        raise ValueError(f"maps must be [..., h, w], got shape {tuple(maps.shape)}")
    return jax.image.resize(maps, maps.shape[:-2] + (h, w), "bilinear")


def minmax_normalize(maps: Array) -> Array:
    """Min–max normalizes each ``[H, W]`` map of ``[..., H, W]`` to ``[0, 1]``.

    A constant (e.g. all-zero) map becomes all zeros; a map holding NaN (a flag from
    upstream, e.g. NaN relevance masks of a failed solve) stays all NaN, never zeros.
    """
    maps = jnp.asarray(maps, jnp.float32)
    lo = jnp.min(maps, axis=(-2, -1), keepdims=True)
    hi = jnp.max(maps, axis=(-2, -1), keepdims=True)
    rng = hi - lo
    ok = rng > 0
    flat = jnp.where(jnp.isnan(rng), jnp.nan, 0.0)  # NaN min/max: the map is flagged
    return jnp.where(ok, (maps - lo) / jnp.where(ok, rng, 1.0), flat)


# ----------------------------------------------------------------------------- heatmaps


def _default_layers(masks: Mapping[str, Any], layers) -> tuple[str, ...]:
    return tuple(masks) if layers is None else tuple(layers)


def _target_vector(target) -> Array:
    target = jnp.asarray(target)
    if target.ndim != 1 or not jnp.issubdtype(target.dtype, jnp.integer):
        raise ValueError(f"target must be a [B] int array, got {target.dtype} {target.shape}")
    return target


def svebi_heatmaps(
    spike_means: Mapping[str, Array],
    target: Array,
    masks: Mapping[str, Array],
    *,
    geometry: Mapping[str, L.Geometry],
    image_shape: Sequence[int],
    placement: Placement = "aligned",
    layers: Sequence[str] | None = None,
    filter_weighting: str = "binary",
    border: str = "taper",
) -> dict[str, Array]:
    """SVEBI heatmaps of a batch from its spike maps, one per layer (pure, vmapped, jittable).

    The layer-by-layer function under the SVEBI attribution; to explain images with a
    network, use :meth:`svebi_jax.Relevance.attribution` or
    :func:`svebi_jax.attribution.svebi` (one forward pass, any layer or the fused map).

    The layer map before upsampling is :math:`\\sum_f a_{n,f}\\,\\bar S_{n,f}` with the
    filter weights :math:`a_{n,f}` of ``filter_weighting`` (``m = mask[j]``, :math:`j` the
    explained class):

    .. math::
        \\text{binary (paper):}\\ a_{n,f} = [m_f > 0],\\qquad
        \\text{lasso:}\\ a_{n,f} = m_f,\\qquad
        \\text{response:}\\ a_{n,f} = [m_f > 0]\\,
            \\frac{\\lVert \\bar S_{n,f} \\rVert^2}{\\sum_{f'} \\lVert \\bar S_{n,f'} \\rVert^2}

    (``lasso`` needs masks that carry the lasso weights, e.g.
    ``masks_from_weights(W, index, keep_weights=True)``; ``response`` is the image's own
    energy share of the filter, the paper's response :math:`x_{n,f}`, 0 for a silent layer).

    Args:
      spike_means: ``{layer: [B, h, w, c]}`` float time-mean spike maps :math:`\\bar S`.
      target: ``[B]`` int class explained for each image, in ``[0, K)``.
      masks: ``{layer: [K, c]}`` float relevance masks (0/1 from
        :attr:`svebi_jax.Relevance.masks` / :func:`svebi_jax.relevance.masks_from_weights`;
        real weights give a weighted sum).
      geometry: ``{layer: Geometry}`` from :func:`svebi_jax.layers.layer_geometry` (static).
      image_shape: ``(H, W)`` or ``(H, W, C)`` of the input (static).
      placement: ``"aligned"`` (default) or ``"stretch"`` (static); see the module docstring.
      layers: layers to explain (static); default every layer of ``masks``.
      filter_weighting: ``"binary"`` (default, the paper's), ``"lasso"`` or ``"response"``.
      border: aligned maps beyond the outermost centres: ``"taper"`` (default; chosen on
        validation data, ``experiments/svebi_study.py``) or ``"clamp"`` (the edge value)
        (see :func:`interpolation_matrix`).

    Returns:
      ``{layer: [B, H, W]}`` float32 heatmaps, each image's map min–max normalized to
      ``[0, 1]`` (zeros when the class has no relevant filter there or they are silent). A
      ``target`` outside ``[0, K)`` that could not be refused because it is traced (under
      ``jit``) gives that image all-NaN maps, never another class's.

    Raises:
      ValueError: unknown placement or layer, inconsistent shapes, or (when concrete) a
        ``target`` outside ``[0, K)``.
    """
    _check_placement(placement)
    V.check_choice("filter_weighting", filter_weighting, FILTER_WEIGHTINGS)
    V.check_choice("border", border, BORDERS)
    hw = _image_hw(image_shape)
    layers = _default_layers(masks, layers)
    if not layers:
        raise ValueError("layers must name at least one layer, got ()")
    classes = _target_vector(target)
    out = {}
    for name in layers:
        for what, table in (
            ("spike_means", spike_means),
            ("masks", masks),
            ("geometry", geometry),
        ):
            if name not in table:
                raise ValueError(f"layers: unknown layer {name!r}; {what} has {tuple(table)}")
        s = jnp.asarray(spike_means[name], jnp.float32)
        mask = jnp.asarray(masks[name], jnp.float32)
        geo = L.Geometry(*geometry[name])
        if s.ndim != 4 or s.shape[0] != classes.shape[0]:
            raise ValueError(
                f"spike_means[{name!r}] must be [B, h, w, c] with B = {classes.shape[0]} "
                f"(len(target)), got shape {s.shape}"
            )
        if tuple(s.shape[1:3]) != (geo.height, geo.width):
            raise ValueError(
                f"spike_means[{name!r}] must be [B, {geo.height}, {geo.width}, c] to match "
                f"geometry[{name!r}], got shape {s.shape}"
            )
        if mask.ndim != 2 or mask.shape[1] != s.shape[-1]:
            raise ValueError(f"masks[{name!r}] must be [K, {s.shape[-1]}], got shape {mask.shape}")
        if not _is_tracer(classes):
            c = np.asarray(classes)
            if c.size and (c.min() < 0 or c.max() >= mask.shape[0]):
                raise ValueError(
                    f"target must lie in [0, {mask.shape[0]}) (rows of the relevance masks), "
                    f"got values in [{c.min()}, {c.max()}]"
                )
        if placement == "aligned":
            a_h, a_w = (jnp.asarray(a) for a in _matrices(geo, hw, border))
            up = lambda m, a_h=a_h, a_w=a_w: a_h @ m @ a_w.T
        else:
            up = lambda m: jax.image.resize(m, hw, "bilinear")

        def one(s_n, cls_n, mask=mask, up=up):
            # an out-of-range class (only possible when traced) would be clamped by the
            # indexing to another class's row: flag it with NaN instead
            ok = (cls_n >= 0) & (cls_n < mask.shape[0])
            row = jnp.where(ok, mask[jnp.clip(cls_n, 0, mask.shape[0] - 1)], jnp.nan)
            agg = jnp.einsum("hwc,c->hw", s_n, filter_weights(s_n, row, filter_weighting))
            return minmax_normalize(up(agg))

        out[name] = jax.vmap(one)(s, classes)
    return out


def filter_weights(spike_map: Array, mask_row: Array, filter_weighting: str) -> Array:
    """Weights :math:`a_f` of one image's filters (see :func:`svebi_heatmaps`).

    Args:
      spike_map: ``[h, w, c]`` the image's (time-reduced) spike maps of one layer.
      mask_row: ``[c]`` the explained class's mask row (0/1 or lasso weights; NaN flags).
      filter_weighting: ``"binary"``, ``"lasso"`` or ``"response"``.

    Returns:
      ``[c]`` float32 weights (NaN where ``mask_row`` is NaN).
    """
    m = jnp.asarray(mask_row, jnp.float32)
    on = jnp.where(jnp.isnan(m), jnp.nan, (m > 0).astype(jnp.float32))
    if filter_weighting == "binary":
        return on
    if filter_weighting == "lasso":
        return jnp.where(m > 0, m, jnp.where(jnp.isnan(m), jnp.nan, 0.0))
    energy = jnp.sum(jnp.square(spike_map), axis=(0, 1))
    total = jnp.sum(energy)
    return on * jnp.where(total > 0, energy / jnp.where(total > 0, total, 1.0), 0.0)


def temporal_reduce(spikes: Array, decay: float = 1.0) -> Array:
    """Weighted time average of spike trains: earlier steps weigh more when ``decay < 1``.

    .. math::
        \\tilde S = \\sum_{t=0}^{T-1} w_t\\, S[t],\\qquad
        w_t = \\frac{\\gamma^t}{\\sum_{t'=0}^{T-1} \\gamma^{t'}}

    With :math:`\\gamma = 1` (default) this is the paper's time mean :math:`\\bar S`.

    Args:
      spikes: ``[T, ...]`` time-major spike trains.
      decay: :math:`\\gamma \\in (0, 1]`.

    Returns:
      ``[...]`` float32 weighted means.
    """
    decay = V.check_number("decay", decay, low=0.0, high=1.0, low_open=True)
    spikes = jnp.asarray(spikes, jnp.float32)
    w = np.power(decay, np.arange(spikes.shape[0], dtype=np.float64))
    w = jnp.asarray(w / w.sum(), jnp.float32)
    return jnp.tensordot(w, spikes, axes=1)


def combine(
    heatmaps: Mapping[str, Array], layers: Sequence[str] | None = None, *, fusion: str = "mean"
) -> Array:
    """Combined heatmap: min–max normalized fusion of the per-layer heatmaps.

    .. math::
        \\text{mean:}\\ E = \\operatorname{minmax}\\Big(\\tfrac{1}{L}\\sum_\\ell E^\\ell\\Big)
        \\ (= \\operatorname{minmax}(\\textstyle\\sum_\\ell E^\\ell)),\\qquad
        \\text{product:}\\ E = \\operatorname{minmax}\\Big(\\prod_\\ell E^\\ell\\Big)

    (the product keeps only what every layer marks; a layer with an all-zero map zeroes it).

    Args:
      heatmaps: ``{layer: [B, H, W]}`` (e.g. from :func:`svebi_heatmaps`).
      layers: layers to fuse; default all of ``heatmaps``.
      fusion: ``"mean"`` (default, the paper's) or ``"product"``.

    Returns:
      ``[B, H, W]`` float32 map in ``[0, 1]``.
    """
    layers = tuple(heatmaps) if layers is None else tuple(layers)
    if not layers:
        raise ValueError("layers must name at least one heatmap, got ()")
    for n in layers:
        if n not in heatmaps:
            raise ValueError(f"layers: unknown layer {n!r}; heatmaps has {tuple(heatmaps)}")
    V.check_choice("fusion", fusion, FUSIONS)
    stacked = jnp.stack([jnp.asarray(heatmaps[n], jnp.float32) for n in layers])
    fused = stacked.mean(axis=0) if fusion == "mean" else jnp.prod(stacked, axis=0)
    return minmax_normalize(fused)
