"""Implementations of the explanation methods: SNN-Grad2D, SNN-IG2D, SAM, SNN Grad-CAM, spike
LRP, Temporal Spike Attribution and the trivial maps.

The public way to get a method is its factory in :mod:`svebi_jax.attribution`
(``attr_fn(params, images, target) -> [B, H, W]``). The functions here compute the maps (or,
for integrated gradients, the full result with its completeness check) directly, named for
what they return.
"""

from svebi_jax.methods.grad import grad2d_maps, per_step_gradients
from svebi_jax.methods.gradcam import gradcam_maps
from svebi_jax.methods.ig import IGResult, completeness, integrated_gradients_result
from svebi_jax.methods.lrp import lrp_maps
from svebi_jax.methods.spike_activation_map import sam_maps, sam_maps_from_spikes
from svebi_jax.methods.trivial import centered_gaussian_maps, input_intensity_maps, random_maps
from svebi_jax.methods.tsa import tsa_maps

__all__ = [
    "IGResult",
    "centered_gaussian_maps",
    "completeness",
    "grad2d_maps",
    "gradcam_maps",
    "input_intensity_maps",
    "integrated_gradients_result",
    "lrp_maps",
    "per_step_gradients",
    "random_maps",
    "sam_maps",
    "sam_maps_from_spikes",
    "tsa_maps",
]
