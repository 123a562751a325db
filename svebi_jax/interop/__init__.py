"""Bridges between svebi_jax and other ecosystems.

- :mod:`svebi_jax.interop.nir` — spiking networks to and from NIR (snnTorch, Norse, spyx, ...).
"""

from svebi_jax.interop import nir

__all__ = ["nir"]
