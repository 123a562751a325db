"""Spiking network definitions (thin Flax NNX holders over :mod:`svebi_jax.layers`)."""

from svebi_jax.models.shallow import ShallowSNN, shallow_layers
from svebi_jax.models.snn import SpikingNetwork, functional

__all__ = ["ShallowSNN", "SpikingNetwork", "functional", "shallow_layers"]
