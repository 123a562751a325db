"""The paper's shallow MNIST SNN (§5.1): 2 conv + 2 fc layers, T = 10, direct input."""

from __future__ import annotations

from flax import nnx

from svebi_jax import layers as L
from svebi_jax.models.snn import SpikingNetwork


def shallow_layers(
    num_classes: int = 10,
    channels: tuple[int, int] = (12, 64),
    hidden: int = 128,
    *,
    pool: str = "max",
):
    """Layer specs: conv5×5 → LIF → pool2 → conv5×5 → LIF → pool2 → fc → LIF → fc readout.

    Conv layers use valid padding, so a 28×28 input gives spike maps of 24×24×12 (``conv1``)
    and 8×8×64 (``conv2``), recorded before pooling. ``pool`` is ``"max"`` (the paper),
    ``"avg"`` or ``"sum"``; the latter two export to NIR (:func:`svebi_jax.interop.nir.to_nir`).
    """
    c1, c2 = channels
    return (
        L.Conv("conv1", c1, 5),
        L.LIF(),
        L.pool_spec(pool),
        L.Conv("conv2", c2, 5),
        L.LIF(),
        L.pool_spec(pool),
        L.Flatten(),
        L.Dense("fc1", hidden),
        L.LIF(),
        L.Dense("fc2", num_classes),
    )


def ShallowSNN(
    *,
    input_shape: tuple[int, int, int] = (28, 28, 1),
    num_classes: int = 10,
    config: L.SNNConfig | None = None,
    channels: tuple[int, int] = (12, 64),
    hidden: int = 128,
    pool: str = "max",
    rngs: nnx.Rngs,
) -> SpikingNetwork:
    """Builds the shallow SNN as a :class:`SpikingNetwork` (default ``T = 10``, ``β = 0.95``).

    Args:
      input_shape: ``(H, W, C)`` of one image.
      num_classes: readout size ``K``.
      config: :class:`~svebi_jax.layers.SNNConfig`; default ``SNNConfig(num_steps=10)``.
      channels: output channels of ``conv1`` and ``conv2``.
      hidden: width of ``fc1``.
      pool: ``"max"`` (the paper), ``"avg"`` or ``"sum"`` (NIR-exportable) pooling.
      rngs: ``nnx.Rngs`` for initialization.
    """
    config = config or L.SNNConfig(num_steps=10)
    return SpikingNetwork(
        shallow_layers(num_classes, channels, hidden, pool=pool),
        input_shape=input_shape,
        config=config,
        rngs=rngs,
    )
