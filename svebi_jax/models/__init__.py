"""Spiking network definitions (thin Flax NNX holders over :mod:`svebi_jax.layers`)."""

from svebi_jax.models.shallow import ShallowSNN, shallow_layers
from svebi_jax.models.snn import SpikingNetwork, functional
from svebi_jax.models.vgg import SVGG19, imagenet_normalize, load_torchvision_vgg19, svgg19_layers

__all__ = [
    "SVGG19",
    "ShallowSNN",
    "SpikingNetwork",
    "functional",
    "imagenet_normalize",
    "load_torchvision_vgg19",
    "shallow_layers",
    "svgg19_layers",
]
