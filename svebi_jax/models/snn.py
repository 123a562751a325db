"""Flax NNX definition of a feed-forward spiking network built from layer specs.

The module is a thin holder of parameters: its forward pass calls the pure runners of
:mod:`svebi_jax.layers`. Use :func:`functional` to obtain ``(apply_fn, params)`` for the
functional API (explanations, metrics, training).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from svebi_jax import layers as L

Array = jax.Array
ApplyFn = Callable[..., L.SNNOutput]


class SpikingNetwork(nnx.Module):
    """A feed-forward SNN: conv/dense layers with LIF neurons and an integrator readout.

    Args:
      layers: layer specs (see :mod:`svebi_jax.layers`) ending with the :class:`Dense` readout.
      input_shape: ``(H, W, C)`` of one input image.
      config: network-wide :class:`~svebi_jax.layers.SNNConfig` (``T``, ``beta``, ...).
      rngs: ``nnx.Rngs`` for parameter initialization.

    The parameters of layer ``name`` live at ``model.<name>.kernel`` / ``.bias`` (flax layout).
    """

    def __init__(
        self,
        layers: Sequence[L.LayerSpec],
        *,
        input_shape: tuple[int, int, int],
        config: L.SNNConfig,
        rngs: nnx.Rngs,
    ):
        layers = tuple(layers)
        L.validate_layers(layers)
        self.layers = layers
        self.input_shape = tuple(int(v) for v in input_shape)
        self.config = config
        fan_in = L.input_features(layers, self.input_shape)
        for spec in layers:
            if isinstance(spec, L.Conv):
                k = spec.kernel_size
                mod = nnx.Conv(
                    fan_in[spec.name],
                    spec.features,
                    kernel_size=(k, k),
                    strides=spec.stride,
                    padding=[(spec.padding, spec.padding)] * 2,
                    kernel_dilation=spec.dilation,
                    feature_group_count=spec.groups,
                    use_bias=spec.use_bias,
                    rngs=rngs,
                )
                setattr(self, spec.name, mod)
            elif isinstance(spec, L.Dense):
                mod = nnx.Linear(
                    fan_in[spec.name], spec.features, use_bias=spec.use_bias, rngs=rngs
                )
                setattr(self, spec.name, mod)

    @property
    def conv_layer_names(self) -> tuple[str, ...]:
        """Names of the spiking conv layers, input to output."""
        return L.conv_layer_names(self.layers)

    @property
    def geometry(self) -> dict[str, L.Geometry]:
        """Output geometry (map size, receptive field) of every synaptic layer."""
        return L.layer_geometry(self.layers, self.input_shape)

    def weights(self) -> dict[str, dict[str, Array]]:
        """The parameters as a plain ``{name: {"kernel", "bias"}}`` mapping of arrays."""
        out = {}
        for spec in self.layers:
            if isinstance(spec, (L.Conv, L.Dense)):
                mod = getattr(self, spec.name)
                p = {"kernel": mod.kernel[...]}
                if spec.use_bias:
                    p["bias"] = mod.bias[...]
                out[spec.name] = p
        return out

    def forward(
        self,
        images: Array,
        *,
        record: L.Record = None,
        masks: Mapping[str, Array] | None = None,
        mode: L.RunMode = "time_batched",
    ) -> L.SNNOutput:
        """Runs the network.

        Args:
          images: ``[B, H, W, C]`` images fed directly at each of the ``T`` steps, or a
            time-major ``[T, B, H, W, C]`` input.
          record: ``None``, ``"mean"`` (time-mean spike maps :math:`\\bar S`,
            ``[B, H, W, C]`` per conv layer) or ``"spikes"`` (``[T, B, H, W, C]``).
          masks: ``{conv_layer: [C] or [B, C]}`` multiplied into that layer's spikes.
          mode: ``"time_batched"`` (default) or ``"stepwise"`` (reference).

        Returns:
          :class:`~svebi_jax.layers.SNNOutput` (``[B, K]`` logits and recorded spike maps).
        """
        images = jnp.asarray(images)
        L.check_inputs(images, self.input_shape, self.config.num_steps)
        return L.run_network(
            self.layers,
            self.weights(),
            images,
            config=self.config,
            mode=mode,
            record=record,
            masks=masks,
        )

    def __call__(self, images: Array, **kwargs) -> Array:
        """``[B, H, W, C] -> [B, K]`` logits (see :meth:`forward` for the options)."""
        return self.forward(images, **kwargs).logits


def functional(model: SpikingNetwork) -> tuple[ApplyFn, nnx.State]:
    """Splits a model into a pure ``apply_fn`` and its parameter pytree.

    ``apply_fn(params, images, *, record=None, masks=None, mode="time_batched")`` returns an
    :class:`~svebi_jax.layers.SNNOutput`; it is a pure function of ``params`` and composes with
    ``jax.jit``, ``jax.vmap`` and ``jax.grad``.

    Returns:
      ``(apply_fn, params)`` where ``params`` is the model's ``nnx.State``.
    """
    graphdef, params = nnx.split(model)

    def apply_fn(params, images, **kwargs) -> L.SNNOutput:
        return nnx.merge(graphdef, params).forward(images, **kwargs)

    return apply_fn, params
