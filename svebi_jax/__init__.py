"""svebi_jax: JAX-native interpretation and explanation of spiking neural networks."""

__version__ = "0.1.0"
