"""SVEBI × Grad-CAM: SVEBI's relevant filters, weighted by their Grad-CAM channel weights.

The study's one new combination method. SVEBI sums the time-mean spike maps of the filters the
μ-lasso found relevant for the explained class :math:`j`, each with weight 1 (the paper's
binary weighting); SNN Grad-CAM weighs *every* filter :math:`k` of the layer by the surrogate
gradient of the class score w.r.t. its spikes, :math:`\\alpha^j_k`
(:func:`svebi_jax.methods.gradcam.gradcam_weights`). The combination keeps SVEBI's filter set
and takes Grad-CAM's weights, per image :math:`n`:

.. math::
    a_{n,k} = [m_{j,k} > 0]\\,\\operatorname{ReLU}(\\alpha^j_{n,k})
        \\quad(\\texttt{"gradient"}),\\qquad
    a_{n,k} = m_{j,k}\\,\\operatorname{ReLU}(\\alpha^j_{n,k})
        \\quad(\\texttt{"gradient_lasso"}),

with :math:`m_{j,k}` the class's (lasso-weighted) relevance mask row, and the layer map is
SVEBI's, :math:`\\operatorname{minmax}(\\operatorname{up}(\\sum_k a_{n,k} \\bar S_{n,k}))`
(receptive-field aligned, ``border``), :func:`svebi_jax.heatmaps.svebi_heatmaps` with these
per-image weights; ``layer="combined"`` fuses the layers' maps by their mean
(:func:`svebi_jax.heatmaps.combine`). A class without a relevant filter in the layer, or whose
relevant filters all have :math:`\\alpha \\le 0`, gets a zero map.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp

from svebi_jax import _validation as V
from svebi_jax import attribution
from svebi_jax import heatmaps as H
from svebi_jax.attribution import COMBINED, AttrFn
from svebi_jax.methods.gradcam import gradcam_weights
from svebi_jax.protocols import model_info

#: How the relevant filters are weighted (see the module docstring).
WEIGHTINGS: tuple[str, ...] = ("gradient", "gradient_lasso")
NAME = "SVEBI×Grad-CAM"


@dataclasses.dataclass(frozen=True)
class Combination:
    """One configuration of the combination: layer, weighting and the μ of the masks."""

    layer: str
    weighting: str
    mu: float = 2.0

    @property
    def label(self) -> str:
        return f"{NAME}[{self.layer},{self.weighting},mu={self.mu:g}]"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def relevant_gradcam(
    apply_fn,
    masks: Mapping[str, jax.Array],
    *,
    layer: str = COMBINED,
    weighting: str = "gradient",
    border: str = "taper",
) -> AttrFn:
    """SVEBI's relevant filters weighted by Grad-CAM's channel weights, as an ``attr_fn``.

    Args:
      apply_fn: a :func:`svebi_jax.models.functional` spiking model (Grad-CAM needs its layer
        specs).
      masks: ``{layer: [K, c]}`` relevance masks (0/1, or lasso weights for
        ``"gradient_lasso"``).
      layer: a conv layer of ``masks`` or ``"combined"`` (mean fusion of every layer).
      weighting: ``"gradient"`` or ``"gradient_lasso"`` (module docstring).
      border: SVEBI's aligned-placement border (``"taper"`` or ``"clamp"``).

    Returns:
      ``attr_fn(params, images [B, H, W, C], target [B] | None) -> [B, H, W]`` in [0, 1].
    """
    V.check_choice("weighting", weighting, WEIGHTINGS)
    V.check_choice("border", border, H.BORDERS)
    if layer != COMBINED and layer not in masks:
        raise ValueError(f"layer must be one of {(*masks, COMBINED)}, got {layer!r}")
    layers = tuple(masks) if layer == COMBINED else (layer,)
    masks = {n: jnp.asarray(masks[n], jnp.float32) for n in layers}
    info = model_info(apply_fn)
    if info is None:
        raise ValueError("apply_fn must be a svebi_jax.models.functional model (it has no .info)")
    geometry = info.geometry

    @jax.jit
    def maps(params, images, classes, alphas):
        spikes = apply_fn(params, images, record="mean").spikes
        weights = {}
        for n in layers:
            row = masks[n][classes]  # [B, c]
            keep = (row > 0).astype(jnp.float32) if weighting == "gradient" else row
            weights[n] = keep * jax.nn.relu(alphas[n])
        b = images.shape[0]
        hm = H.svebi_heatmaps(
            {n: spikes[n] for n in layers},
            jnp.arange(b),  # one "class" row per image: its own weights
            weights,
            geometry=geometry,
            image_shape=images.shape[1:3],
            layers=layers,
            filter_weighting="lasso",
            border=border,
        )
        return hm[layer] if layer != COMBINED else H.combine(hm, fusion="mean")

    def attr_fn(params, images, target=None):
        images = jnp.asarray(images, jnp.float32)
        if target is None:
            classes = attribution.predicted_classes(apply_fn, params, images)
        else:
            classes = jnp.asarray(target, jnp.int32)
        alphas = {n: gradcam_weights(apply_fn, params, images, classes, layer=n) for n in layers}
        return maps(params, images, classes, alphas)

    return attr_fn
