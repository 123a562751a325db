"""Bridges between svebi_jax and other ecosystems.

- :mod:`svebi_jax.interop.nir` — spiking networks to and from NIR (snnTorch, Norse, spyx, ...).
- :mod:`svebi_jax.interop.quantus` — Quantus's ``explain_func`` from an ``attr_fn``, and a
  ``torch.nn.Module`` view of a JAX model (:func:`~svebi_jax.interop.quantus.TorchModel`).
- :mod:`svebi_jax.interop.saliency` — a ``call_model_function`` for PAIR's ``saliency``
  methods (Grad, SmoothGrad, IG, Guided IG, Blur IG, XRAI, Grad-CAM).
"""

from svebi_jax.interop import nir, quantus, saliency
from svebi_jax.interop.quantus import TorchModel, quantus_explain_func
from svebi_jax.interop.saliency import call_model_function

__all__ = [
    "TorchModel",
    "call_model_function",
    "nir",
    "quantus",
    "quantus_explain_func",
    "saliency",
]
