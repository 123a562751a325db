"""One callable shape for every explanation method: ``attr_fn(params, images, target)``.

Every method of the library — SVEBI per layer and placement, SNN-Grad2D, SNN-IG2D, SAM and
the trivial maps — is available as an **attribution function** built by a factory here (the
shape of Captum's ``attribute(inputs, target)`` and of optax's factories: configure once,
then call with the data):

.. code-block:: python

    attr_fn = attribution.grad2d(apply_fn)               # configure
    maps = attr_fn(params, images, target)               # [B, H, W]

``params`` is the model's parameter pytree, ``images`` ``[B, H, W, C]`` float images and
``target`` ``[B]`` int classes to explain (``None``: each image's predicted class; methods
that ignore the class, SAM and the trivial maps, accept and ignore it). The result is one
``[B, H, W]`` float map per image, higher meaning more important. Attribution functions are
pure in ``params`` and ``images``: they compose with ``jax.jit`` and ``jax.vmap`` (e.g. over a
batch of parameter sets), and the metrics of :mod:`svebi_jax.metrics` take them directly.

The factories take the model's ``apply_fn`` (:class:`svebi_jax.protocols.ApplyFn`); the one
from :func:`svebi_jax.models.functional` carries ``T``, the geometry and the conv layers, so
those need not be repeated.

SVEBI's options live in one dataclass, :class:`SVEBIOptions`, so that variants (how the
relevant filters' maps are weighted, fused across layers, placed on the image) are options of
one factory rather than forks of it. The relevant filters come from
:func:`svebi_jax.fit_relevance`; its :meth:`svebi_jax.Relevance.attribution` is :func:`svebi`
with the masks filled in:

.. code-block:: python

    rel = svebi_jax.fit_relevance(apply_fn, params, train_images, mu=2.0)
    attr_fn = rel.attribution("combined", SVEBIOptions(placement="aligned"))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from svebi_jax import _validation as V
from svebi_jax import batching
from svebi_jax import heatmaps as H
from svebi_jax import layers as L
from svebi_jax import relevance as _relevance
from svebi_jax.methods import grad as _grad
from svebi_jax.methods import ig as _ig
from svebi_jax.methods import spike_activation_map as _sam
from svebi_jax.methods import trivial as _trivial
from svebi_jax.methods.gradcam import make_attr_fn as gradcam
from svebi_jax.methods.lrp import make_attr_fn as lrp
from svebi_jax.methods.tsa import make_attr_fn as tsa
from svebi_jax.protocols import ApplyFn, model_info

__all__ = [
    "EMPTY_CLASS_RULES",
    "FUSIONS",
    "AttrFn",
    "SVEBIOptions",
    "attribution_maps",
    "centered_gaussian",
    "grad2d",
    "gradcam",
    "input_intensity",
    "integrated_gradients",
    "lrp",
    "predicted_classes",
    "random_map",
    "sam",
    "svebi",
    "svebi_variants",
    "tsa",
]

Array = jax.Array

#: How SVEBI's ``"combined"`` map fuses the per-layer maps (see :class:`SVEBIOptions`).
FUSIONS: tuple[str, ...] = H.FUSIONS
#: What SVEBI does for a class without relevant filters in a layer (see :class:`SVEBIOptions`).
EMPTY_CLASS_RULES: tuple[str, ...] = ("zeros", "smallest_mu")
#: The ``layer`` value that asks :func:`svebi` for the fused map of all layers.
COMBINED = "combined"


class AttrFn(Protocol):
    """``attr_fn(params, images [B, H, W, C], target [B] | None) -> [B, H, W]`` maps."""

    def __call__(self, params: Any, images: Array, target: Array | None = None) -> Array: ...


def predicted_classes(apply_fn: ApplyFn, params, images: Array) -> Array:
    """``[B]`` int32 classes the model predicts for ``images`` (``argmax`` of the logits)."""
    return _grad.predicted_classes(apply_fn, params, images)


def attribution_maps(
    attr_fn: AttrFn,
    params: Any,
    images: Array,
    *,
    target: Array | None = None,
    batch_size: int | None = None,
) -> Array:
    """``attr_fn``'s maps of ``images``, ``batch_size`` images per call, shape-checked.

    Args:
      attr_fn: ``attr_fn(params, images, target) -> [B, H, W]``.
      params: the model's parameters.
      images: ``[B, H, W, C]`` float images.
      target: ``[B]`` classes to explain, or ``None`` (the predicted ones).
      batch_size: images per call (bounds memory); default all at once.

    Returns:
      ``[B, H, W]`` maps.

    Raises:
      TypeError: ``attr_fn`` not callable. ValueError: bad ``target``/``batch_size``, or maps
        that are not ``[B, H, W]``.
    """
    if not callable(attr_fn):
        raise TypeError(f"attr_fn must be callable, got {type(attr_fn).__name__}")
    images = jnp.asarray(V.check_images(images))
    b = images.shape[0]
    batch_size = b if batch_size is None else V.check_positive_int("batch_size", batch_size)
    if target is not None:
        target = V.check_classes(target, batch=b, name="target")
    maps = batching.map_batches(
        lambda i: attr_fn(params, images[i], None if target is None else target[i]),
        np.arange(b),
        batch_size,
        pad=False,
    )
    maps = jnp.asarray(maps)
    if maps.shape != images.shape[:3]:
        raise ValueError(
            f"attr_fn must return [B, H, W] = {tuple(images.shape[:3])} maps, got {maps.shape}"
        )
    return maps


def _geometry(apply_fn, geometry) -> Mapping[str, L.Geometry]:
    if geometry is not None:
        return geometry
    info = model_info(apply_fn)
    if info is None:
        raise ValueError("geometry is required for an apply_fn without .info")
    return info.geometry


# ----------------------------------------------------------------------------- SVEBI


@dataclasses.dataclass(frozen=True)
class SVEBIOptions:
    """Options of the SVEBI attribution (frozen, hashable); the defaults are the paper's.

    For image :math:`n`, explained class :math:`j` and layer :math:`\\ell` the map is

    .. math::
        E^\\ell_n = \\operatorname{minmax}\\Big(\\operatorname{up}\\Big(\\sum_f a_{n,f}\\,
            \\tilde S_{n,f}\\Big)\\Big),\\qquad
        \\tilde S = \\sum_t w_t S[t],\\quad w_t = \\gamma^t / \\textstyle\\sum_{t'} \\gamma^{t'}

    Attributes:
      placement: where a map cell lands on the image: ``"aligned"`` (default, at its
        receptive field's centre) or ``"stretch"`` (the authors' resize of the whole map);
        see :mod:`svebi_jax.heatmaps`.
      fusion: how the ``"combined"`` map fuses the layers' min–max normalized maps:
        ``"mean"`` (paper; = the normalized sum) or ``"product"``
        (:func:`svebi_jax.heatmaps.combine`).
      filter_weighting: the filter weights :math:`a_{n,f}`: ``"binary"`` (paper: 1 for each
        relevant filter), ``"lasso"`` (the filter's lasso weight :math:`W_{fj}`; the masks
        must carry the weights: :meth:`svebi_jax.Relevance.attribution` passes its
        ``weighted_masks``, else ``masks_from_weights(..., keep_weights=True)``) or
        ``"response"`` (the filter's response to this image,
        :math:`\\lVert\\bar S_{n,f}\\rVert^2 / \\sum_{f'} \\lVert\\bar S_{n,f'}\\rVert^2`);
        see :func:`svebi_jax.heatmaps.svebi_heatmaps`.
      temporal_decay: :math:`\\gamma \\in (0, 1]` of the temporal weighting: 1 (paper) is the
        time mean :math:`\\bar S`; smaller values make earlier spikes weigh more
        (:func:`svebi_jax.heatmaps.temporal_reduce`).
      border: aligned maps beyond the outermost receptive-field centres: ``"taper"``
        (default: the edge cell spread over its receptive field with a tent weight;
        :func:`svebi_jax.heatmaps.interpolation_matrix`) or ``"clamp"`` (the edge value,
        the default before the study of ``experiments/svebi_study.py`` chose the taper on
        validation data in all of its 12 searches).
      empty_class: a class without a relevant filter in the layer at the chosen μ:
        ``"zeros"`` (paper: an all-zero map) or ``"smallest_mu"`` (the relevant filters at the
        smallest μ of the path where it has some,
        :func:`svebi_jax.relevance.fill_empty_from_path`; needs ``mask_path``).
    """

    placement: str = "aligned"
    fusion: str = "mean"
    filter_weighting: str = "binary"
    temporal_decay: float = 1.0
    border: str = "taper"
    empty_class: str = "zeros"

    def __post_init__(self):
        V.check_choice("placement", self.placement, H.PLACEMENTS)
        V.check_choice("fusion", self.fusion, FUSIONS)
        V.check_choice("filter_weighting", self.filter_weighting, H.FILTER_WEIGHTINGS)
        V.check_number("temporal_decay", self.temporal_decay, low=0.0, high=1.0, low_open=True)
        V.check_choice("border", self.border, H.BORDERS)
        V.check_choice("empty_class", self.empty_class, EMPTY_CLASS_RULES)


def _check_masks(masks, conv_layers) -> dict[str, Array]:
    if not isinstance(masks, Mapping) or not masks or not all(isinstance(k, str) for k in masks):
        raise ValueError(
            "masks must be a non-empty {layer: [K, c]} mapping (Relevance.masks, or "
            f"svebi_jax.relevance.masks_from_weights), got {V.describe(masks)}"
        )
    for name, m in masks.items():
        if conv_layers is not None and name not in conv_layers:
            raise ValueError(f"masks: unknown layer {name!r}; conv layers: {tuple(conv_layers)}")
        if len(jnp.shape(m)) != 2:
            raise ValueError(f"masks[{name!r}] must be [K, c], got shape {jnp.shape(m)}")
    return dict(masks)


def svebi_variants(
    apply_fn: ApplyFn,
    masks: Mapping[str, Array],
    *,
    geometry: Mapping[str, L.Geometry] | None = None,
    placements: Sequence[str] = ("aligned",),
    layers: Sequence[str] | None = None,
    fusion: str = "mean",
    options: SVEBIOptions | None = None,
    mask_path: Mapping[str, Array] | None = None,
) -> Callable[..., dict[tuple[str, str], Array]]:
    """Many SVEBI maps from one forward pass: every layer and the fused map, per placement.

    Returns a jitted ``fn(params, images, target=None) -> {(layer, placement): [B, H, W]}``
    with ``layer`` each of ``layers`` and ``"combined"`` (the fused map, see
    :class:`SVEBIOptions`); ``fn`` runs the network once for all of them. Use :func:`svebi`
    for a single map.

    Args:
      apply_fn: the model.
      masks: ``{layer: [K, c]}`` relevance masks (e.g.
        :func:`svebi_jax.relevance.masks_from_weights`).
      geometry: ``{layer: Geometry}``; default ``apply_fn.info.geometry``.
      placements: placements to compute, each ``"aligned"`` or ``"stretch"``.
      layers: layers to explain; default every layer of ``masks``.
      fusion: fusion of the ``"combined"`` map (``options.fusion`` wins when given).
      options: the other :class:`SVEBIOptions` (its ``placement`` is ignored here).
      mask_path: ``{layer: [P, K, c]}`` masks along the μ path (increasing μ), needed by
        ``options.empty_class="smallest_mu"``.

    Returns:
      The jitted function. A row of NaN marks an image whose pixels are not finite (only
      possible when ``images`` are traced; otherwise the check raises).
    """
    info = model_info(apply_fn)
    masks = _check_masks(masks, None if info is None else info.conv_layers)
    geometry = _geometry(apply_fn, geometry)
    placements = tuple(V.check_choice("placement", p, H.PLACEMENTS) for p in placements)
    opts = SVEBIOptions(fusion=fusion) if options is None else options
    if not isinstance(opts, SVEBIOptions):
        raise TypeError(f"options must be an SVEBIOptions, got {type(opts).__name__}")
    layers = tuple(masks) if layers is None else tuple(layers)
    for n in layers:
        if n not in masks or n not in geometry:
            raise ValueError(f"layers: unknown layer {n!r}; masks have {tuple(masks)}")
    if opts.empty_class == "smallest_mu":
        if mask_path is None:
            raise ValueError(
                "mask_path ({layer: [P, K, c]}) is required for empty_class='smallest_mu'"
            )
        masks = _relevance.fill_empty_from_path(masks, mask_path)
    record = "mean" if opts.temporal_decay == 1.0 else "spikes"

    @jax.jit
    def fn(params, images, target=None):
        out = apply_fn(params, images, record=record)
        spikes = out.spikes
        if record == "spikes":
            spikes = {k: H.temporal_reduce(v, opts.temporal_decay) for k, v in spikes.items()}
        cls = jnp.argmax(out.logits, axis=-1) if target is None else target
        maps = {}
        for placement in placements:
            hm = H.svebi_heatmaps(
                spikes,
                cls,
                masks,
                geometry=geometry,
                image_shape=images.shape[1:3],
                placement=placement,
                layers=layers,
                filter_weighting=opts.filter_weighting,
                border=opts.border,
            )
            hm[COMBINED] = H.combine(hm, fusion=opts.fusion)
            maps |= {(k, placement): v for k, v in hm.items()}
        return V.flag_rows(maps, V.rows_finite(out.logits))

    def call(params, images, target=None):
        images = _checked(apply_fn, params, images)
        if target is not None:
            target = V.check_classes(
                target, batch=images.shape[0], num_classes=_num_classes(masks), name="target"
            )
        return fn(params, images, target)

    return call


def svebi(
    apply_fn: ApplyFn,
    masks: Mapping[str, Array],
    *,
    layer: str = COMBINED,
    geometry: Mapping[str, L.Geometry] | None = None,
    options: SVEBIOptions = SVEBIOptions(),
    mask_path: Mapping[str, Array] | None = None,
) -> AttrFn:
    """SVEBI attribution of one layer (or of all layers fused), as an ``attr_fn``.

    For image :math:`n` and class :math:`j` = ``target[n]``, the map of layer :math:`\\ell`
    is the min–max normalized, upsampled sum of the time-mean spike maps of ``j``'s relevant
    filters (:func:`svebi_jax.heatmaps.svebi_heatmaps`); ``layer="combined"`` fuses the
    layers (``options.fusion``).

    Args:
      apply_fn: the model.
      masks: ``{layer: [K, c]}`` relevance masks (:attr:`svebi_jax.Relevance.masks`, i.e.
        :func:`svebi_jax.relevance.masks_from_weights` of the lasso weights).
      layer: a conv layer of ``masks``, or ``"combined"`` (default).
      geometry: ``{layer: Geometry}``; default ``apply_fn.info.geometry``.
      options: :class:`SVEBIOptions` (placement, fusion, filter weighting, temporal
        weighting, border, empty-class rule).
      mask_path: ``{layer: [P, K, c]}`` masks along the μ path, increasing μ (only for
        ``options.empty_class="smallest_mu"``).

    Returns:
      ``attr_fn(params, images, target=None) -> [B, H, W]`` in ``[0, 1]`` (all zeros where the
      class has no relevant filter in the layer; all NaN for a ``target`` outside ``[0, K)``
      that is traced under ``jit``, where it cannot raise).
    """
    if not isinstance(options, SVEBIOptions):
        raise TypeError(f"options must be an SVEBIOptions, got {type(options).__name__}")
    if layer != COMBINED and (not isinstance(masks, Mapping) or layer not in masks):
        known = tuple(masks) if isinstance(masks, Mapping) else ()
        raise ValueError(f"layer must be one of {known + (COMBINED,)}, got {layer!r}")
    many = svebi_variants(
        apply_fn,
        masks,
        geometry=geometry,
        placements=(options.placement,),
        layers=None if layer == COMBINED else (layer,),
        options=options,
        mask_path=mask_path,
    )

    def attr_fn(params, images, target=None):
        return many(params, images, target)[(layer, options.placement)]

    return attr_fn


def _num_classes(masks) -> int:
    return int(jnp.shape(next(iter(masks.values())))[0])


def _checked(apply_fn, params, images) -> Array:
    info = model_info(apply_fn)
    return jnp.asarray(
        V.check_images(images, image_shape=None if info is None else info.input_shape)
    )


# ----------------------------------------------------------------------------- gradients


def grad2d(
    apply_fn: ApplyFn,
    *,
    num_steps: int | None = None,
    output: str = "logit",
    absolute: bool = True,
    channel_reduction: str = "max",
    mesh=None,
) -> AttrFn:
    """SNN-Grad2D (:func:`svebi_jax.methods.grad2d_maps`) as an ``attr_fn``.

    Args:
      apply_fn: the model (must accept time-major inputs).
      num_steps: ``T``, the network's timesteps; default ``apply_fn.info.num_steps``.
      output, absolute, channel_reduction: see :func:`svebi_jax.methods.grad2d_maps`
        (``channel_reduction="none"`` is not an attribution map and is refused).
      mesh: optional :class:`jax.sharding.Mesh`: maps computed data-parallel over its
        devices (:mod:`svebi_jax.sharding`).
    """
    num_steps = _grad._num_steps(apply_fn, num_steps)
    V.check_choice("output", output, _grad.OUTPUTS)
    V.check_bool("absolute", absolute)
    V.check_choice("channel_reduction", channel_reduction, ("sum", "max", "mean"))

    def attr_fn(params, images, target=None):
        return _grad.grad2d_maps(
            apply_fn,
            params,
            images,
            target,
            num_steps=num_steps,
            output=output,
            absolute=absolute,
            channel_reduction=channel_reduction,
            mesh=mesh,
        )

    return attr_fn


def integrated_gradients(
    apply_fn: ApplyFn,
    *,
    num_steps: int | None = None,
    path_steps: int = 50,
    baseline: Array | None = None,
    method: str = "riemann_midpoint",
    chunk_size: int = 10,
    output: str = "logit",
    absolute: bool = False,
    channel_reduction: str = "sum",
    mesh=None,
) -> AttrFn:
    """SNN-IG2D (:func:`svebi_jax.methods.integrated_gradients_result`) as an ``attr_fn``.

    Args:
      apply_fn: the model (must accept time-major inputs).
      num_steps: ``T``, the network's timesteps; default ``apply_fn.info.num_steps``.
      path_steps: points on the integration path from ``baseline`` to the image (not ``T``).
      baseline, method, chunk_size, output, absolute, channel_reduction: see
        :func:`svebi_jax.methods.integrated_gradients_result`.
      mesh: optional :class:`jax.sharding.Mesh`: maps computed data-parallel over its
        devices (:mod:`svebi_jax.sharding`).
    """
    num_steps = _grad._num_steps(apply_fn, num_steps)
    _ig.ig_alphas(path_steps, method)  # validates both
    V.check_positive_int("chunk_size", chunk_size)
    V.check_choice("output", output, _grad.OUTPUTS)
    V.check_bool("absolute", absolute)
    V.check_choice("channel_reduction", channel_reduction, ("sum", "max", "mean"))

    def attr_fn(params, images, target=None):
        return _ig.integrated_gradients_result(
            apply_fn,
            params,
            images,
            target,
            num_steps=num_steps,
            path_steps=path_steps,
            baseline=baseline,
            method=method,
            chunk_size=chunk_size,
            output=output,
            absolute=absolute,
            channel_reduction=channel_reduction,
            mesh=mesh,
        ).attributions

    return attr_fn


# ----------------------------------------------------------------------------- SAM, trivial


def sam(
    apply_fn: ApplyFn,
    *,
    layer: str,
    placement: str = "aligned",
    geometry: Mapping[str, L.Geometry] | None = None,
    gamma: float = 0.5,
    time_reduction: str | int = "last",
    include_current: bool = True,
) -> AttrFn:
    """SAM (:func:`svebi_jax.methods.sam_maps`) of one spiking layer as an ``attr_fn``.

    The class is ignored (SAM explains what the layer fired on, not a class).

    Args:
      apply_fn: the model (must record ``"spikes"``).
      layer: the conv layer.
      placement: ``"aligned"`` (default: cells at their receptive-field centres, as SVEBI's
        maps; needs the geometry) or ``"stretch"`` (bilinear resize, SAM's own code).
      geometry: ``{layer: Geometry}``; default ``apply_fn.info.geometry``.
      gamma, time_reduction, include_current: see :func:`svebi_jax.methods.sam_maps`.
    """
    V.check_choice("placement", placement, H.PLACEMENTS)
    if not isinstance(layer, str):
        raise ValueError(f"layer must be a conv layer name, got {layer!r}")
    geo = None
    if placement == "aligned":
        geometry = _geometry(apply_fn, geometry)
        if layer not in geometry:
            raise ValueError(f"layer must be one of {tuple(geometry)}, got {layer!r}")
        geo = geometry[layer]

    def attr_fn(params, images, target=None):
        upsample = None
        if geo is not None:
            hw = tuple(jnp.shape(images)[1:3])

            def upsample(m):
                return H.upsample_aligned(m, geo, hw)

        return _sam.sam_maps(
            apply_fn,
            params,
            images,
            layer=layer,
            gamma=gamma,
            time_reduction=time_reduction,
            include_current=include_current,
            upsample=upsample,
        )

    return attr_fn


def random_map(key: Array) -> AttrFn:
    """Uniform noise in ``[0, 1)`` (:func:`svebi_jax.methods.random_maps`) as an ``attr_fn``.

    The same ``key`` gives the same maps for every call of the same batch shape.
    """

    def attr_fn(params, images, target=None):
        return _trivial.random_maps(key, images)

    return attr_fn


def input_intensity() -> AttrFn:
    """The image itself (channel mean, :func:`svebi_jax.methods.input_intensity_maps`)."""

    def attr_fn(params, images, target=None):
        return _trivial.input_intensity_maps(images)

    return attr_fn


def centered_gaussian(sigma_fraction: float = 0.25) -> AttrFn:
    """A centred Gaussian bump (:func:`svebi_jax.methods.centered_gaussian_maps`)."""
    V.check_number("sigma_fraction", sigma_fraction, low=0.0, low_open=True)

    def attr_fn(params, images, target=None):
        return _trivial.centered_gaussian_maps(images, sigma_fraction)

    return attr_fn
