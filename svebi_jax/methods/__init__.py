"""Comparison saliency methods: SNN-Grad2D, SNN-IG2D, SAM and trivial maps."""

from svebi_jax.methods.grad import grad2d, per_step_gradients
from svebi_jax.methods.ig import IGResult, completeness, integrated_gradients
from svebi_jax.methods.spike_activation_map import sam, sam_from_spikes
from svebi_jax.methods.trivial import centered_gaussian, input_intensity, random_map

__all__ = [
    "IGResult",
    "centered_gaussian",
    "completeness",
    "grad2d",
    "input_intensity",
    "integrated_gradients",
    "per_step_gradients",
    "random_map",
    "sam",
    "sam_from_spikes",
]
