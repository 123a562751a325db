"""Flax NNX definition of a feed-forward spiking network built from layer specs.

The module is a thin holder of parameters: its forward pass calls the pure runners of
:mod:`svebi_jax.layers`. Use :func:`functional` to obtain ``(apply_fn, params)`` for the
functional API (explanations, metrics, training).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from svebi_jax import _validation as V
from svebi_jax import layers as L
from svebi_jax.protocols import ApplyFn, ModelInfo

Array = jax.Array


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
          Under a transformation (``jit``, ``grad``, ...) the rows of images with a NaN or
          inf pixel are NaN (logits and spike maps), since the check cannot raise there.

        Raises:
          ValueError: images of the wrong rank, size, channels or time length, integer
            images (refused, not rescaled), or (when concrete) NaN/inf pixels.
        """
        return run_checked(
            self.layers,
            self.weights(),
            images,
            config=self.config,
            input_shape=self.input_shape,
            mode=mode,
            record=record,
            masks=masks,
        )

    def __call__(self, images: Array, **kwargs) -> Array:
        """``[B, H, W, C] -> [B, K]`` logits (see :meth:`forward` for the options)."""
        return self.forward(images, **kwargs).logits


def run_checked(
    layers: Sequence[L.LayerSpec],
    params,
    images: Array,
    *,
    config: L.SNNConfig,
    input_shape: tuple[int, int, int],
    record: L.Record = None,
    masks: Mapping[str, Array] | None = None,
    mode: L.RunMode = "time_batched",
) -> L.SNNOutput:
    """:func:`~svebi_jax.layers.run_network` behind the model boundary's checks.

    Every ``apply_fn`` of the library (:func:`functional`, :func:`svebi_jax.interop.nir.from_nir`)
    runs through here: images are checked with :func:`svebi_jax._validation.check_images`
    (rank, ``input_shape``, ``T`` of a time-major input, float dtype, and finite values when
    concrete). Traced images cannot be checked, and NaN/inf pixels would otherwise give
    plausible logits (``H(NaN) = 0``: no spike), so the outputs of those images (logits and
    recorded spike maps) are set to NaN instead.

    Args:
      layers, params, config, record, masks, mode: as :func:`~svebi_jax.layers.run_network`.
      images: ``[B, H, W, C]`` float images or a time-major ``[T, B, H, W, C]`` input.
      input_shape: ``(H, W, C)`` the network takes.

    Returns:
      :class:`~svebi_jax.layers.SNNOutput`.
    """
    images = V.check_images(
        images, image_shape=input_shape, time_major=True, num_steps=config.num_steps
    )
    images = jnp.asarray(images)
    out = L.run_network(
        layers, params, images, config=config, mode=mode, record=record, masks=masks
    )
    if not V.is_tracer(images):
        return out  # checked above: every image is finite
    valid = V.rows_finite(images, axis=images.ndim - 4)
    logits = V.flag_rows(out.logits, valid)
    spikes = {n: V.flag_rows(v, valid, axis=v.ndim - 4) for n, v in out.spikes.items()}
    return L.SNNOutput(logits, spikes)


class FunctionalModel:
    """The pure ``apply_fn`` of a :class:`SpikingNetwork` (see :func:`functional`).

    ``apply_fn(params, images, *, record=None, masks=None, mode="time_batched")`` returns an
    :class:`~svebi_jax.layers.SNNOutput`. ``apply_fn.info`` is the model's static
    :class:`~svebi_jax.protocols.ModelInfo` (input shape, ``K``, ``T``, conv layers,
    geometry). Instances hash by identity, so jitted functions keyed by ``apply_fn`` compile
    once per model.
    """

    def __init__(self, graphdef, info: ModelInfo):
        self._graphdef = graphdef
        self.info = info

    def __call__(self, params, images, **kwargs) -> L.SNNOutput:
        return nnx.merge(self._graphdef, params).forward(images, **kwargs)

    def __repr__(self) -> str:
        i = self.info
        return (
            f"FunctionalModel(input_shape={i.input_shape}, num_classes={i.num_classes}, "
            f"num_steps={i.num_steps}, conv_layers={i.conv_layers})"
        )


def functional(model: SpikingNetwork) -> tuple[ApplyFn, nnx.State]:
    """Splits a model into a pure ``apply_fn`` and its parameter pytree.

    ``apply_fn(params, images, *, record=None, masks=None, mode="time_batched")`` returns an
    :class:`~svebi_jax.layers.SNNOutput`; it is a pure function of ``params`` and composes with
    ``jax.jit``, ``jax.vmap`` and ``jax.grad`` (it follows
    :class:`svebi_jax.protocols.ApplyFn`). ``apply_fn.info`` describes the model
    (:class:`~svebi_jax.protocols.ModelInfo`).

    Returns:
      ``(apply_fn, params)`` where ``params`` is the model's ``nnx.State``.
    """
    if not isinstance(model, SpikingNetwork):
        raise TypeError(f"model must be a SpikingNetwork, got {type(model).__name__}")
    graphdef, params = nnx.split(model)
    info = ModelInfo(
        input_shape=tuple(model.input_shape),
        num_classes=int(model.layers[-1].features),
        num_steps=int(model.config.num_steps),
        conv_layers=model.conv_layer_names,
        geometry=model.geometry,
    )
    return FunctionalModel(graphdef, info), params
