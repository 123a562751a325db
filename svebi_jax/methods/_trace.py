"""A traced forward pass of a layer-spec SNN: every layer's inputs, currents and potentials.

Grad-CAM, spike LRP and TSA need more than an ``apply_fn`` returns: the input of every
synaptic and pooling layer, every LIF population's input current :math:`I[t]` and pre-reset
potential :math:`U[t]`, and (for Grad-CAM) the gradient of a class score with respect to one
layer's spikes. :func:`forward_trace` re-runs the network's layer specs with the library's
own ops (:func:`svebi_jax.layers._apply`, :func:`svebi_jax.lif.lif_scan`) in the textbook
time-major order and records all of it; its logits and spikes equal
:func:`svebi_jax.layers.run_network`'s (the tests check this).

:func:`network_of` finds the specs: a model from :func:`svebi_jax.models.functional` carries
them; any other ``apply_fn`` (e.g. :func:`svebi_jax.interop.nir.from_nir`'s) needs them passed
as ``network=(layers, config)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from svebi_jax import layers as L
from svebi_jax import lif

Array = jax.Array


class Network(NamedTuple):
    """The static description a traced forward pass needs.

    Attributes:
      layers: the layer specs, ending with the :class:`~svebi_jax.layers.Dense` readout.
      config: the :class:`~svebi_jax.layers.SNNConfig`.
    """

    layers: tuple[L.LayerSpec, ...]
    config: L.SNNConfig


def check_network(network) -> Network | None:
    """``network`` as a :class:`Network` (``None`` passes); a clear error otherwise."""
    if network is None:
        return None
    ok = isinstance(network, Sequence) and len(network) == 2
    if ok:
        layers, config = network
        ok = isinstance(config, L.SNNConfig) and isinstance(layers, Sequence) and bool(layers)
    if not ok:
        raise ValueError(
            "network must be (layers, config): the layer specs and their SNNConfig (e.g. "
            f"NIRNetwork.layers, NIRNetwork.config), got {type(network).__name__}"
        )
    layers = tuple(layers)
    L.validate_layers(layers)
    return Network(layers, config)


def resolve(apply_fn, params, network: Network | None = None) -> tuple[Network, Mapping]:
    """``(Network, weights)`` of a model: its layer specs and config, and ``params`` as the
    runner's ``{layer: {"kernel", "bias", ...}}`` mapping.

    A model from :func:`svebi_jax.models.functional` carries its specs; any other
    ``apply_fn`` needs ``network=(layers, config)``.

    Raises:
      ValueError: neither ``network`` nor a :func:`~svebi_jax.models.functional` model.
    """
    graphdef = getattr(apply_fn, "_graphdef", None)
    if graphdef is not None and network is None:
        from flax import nnx

        model = nnx.merge(graphdef, params)
        return Network(tuple(model.layers), model.config), model.weights()
    if network is None:
        raise ValueError(
            "network=(layers, config) is required for an apply_fn that is not a "
            "svebi_jax.models.functional model (e.g. (net.layers, net.config) of from_nir)"
        )
    network = check_network(network)
    if graphdef is not None:
        from flax import nnx

        params = nnx.merge(graphdef, params).weights()
    return network, params


class LIFRecord(NamedTuple):
    """One LIF population over time (all ``[T, B, ...]``).

    Attributes:
      name: the synaptic layer that feeds it (the spike map's name).
      synaptic: the synaptic layer's output :math:`Z[t]` (before gain and bias).
      current: the membrane input :math:`I[t] = g Z[t] + b` (``g = 1, b = 0`` for a plain LIF).
      membrane: pre-reset potentials :math:`U[t]`.
      spikes: spikes :math:`S[t]` (plus the probe, if any).
    """

    name: str
    synaptic: Array
    current: Array
    membrane: Array
    spikes: Array


class OpRecord(NamedTuple):
    """One stateless op: its input ``x`` and output ``z``.

    ``static``: ``x`` is ``[B, ...]`` (the same at every step, the direct image input), else
    ``x`` and ``z`` are ``[T, B, ...]``.
    """

    spec: Any
    x: Array
    z: Array
    static: bool


class Trace(NamedTuple):
    """A traced forward pass: ``records`` in layer order and the ``[B, K]`` logits."""

    records: tuple
    logits: Array
    readout_beta: Any


def check_supported(network: Network, params) -> None:
    """Refuses what the traced pass does not model: current-based synapses (``alpha``)."""
    for spec in network.layers:
        if isinstance(spec, L.LIF) and spec.name is not None:
            p = params.get(spec.name, {}) if isinstance(params, Mapping) else {}
            if "alpha" in p:
                raise ValueError(
                    f"layer {spec.name!r}: current-based synapses (LIF 'alpha') are not "
                    "supported by this method"
                )


def forward_trace(
    network: Network,
    params: Mapping[str, Any],
    images: Array,
    *,
    probe: Array | None = None,
    probe_layer: str | None = None,
) -> Trace:
    """Runs ``network`` on ``[B, H, W, C]`` images (direct input) and records every layer.

    Args:
      network: :class:`Network`.
      params: ``{layer: {"kernel", "bias", ...}}``.
      images: ``[B, H, W, C]`` float images, fed at each of the ``T`` steps.
      probe: optional ``[T, B, h, w, c]`` array added to the spikes of ``probe_layer``
        (zeros leave the pass unchanged; its gradient is the gradient w.r.t. the spikes).
      probe_layer: the spiking conv layer the probe is added to.

    Returns:
      :class:`Trace`.
    """
    layers, config = network
    num_steps = config.num_steps
    spike_fn = lif.spike_function(
        config.surrogate, threshold=config.threshold, slope=config.surrogate_slope
    )
    x, static = images, True
    records = []
    for i, spec in enumerate(layers):
        if not isinstance(spec, L.LIF):
            z = L._apply(x, spec, params) if static else L._apply_time(x, spec, params)
            records.append(OpRecord(spec, x, z, static))
            x = z
            continue
        p = params[spec.name] if spec.name is not None else {}
        syn = jnp.broadcast_to(x, (num_steps,) + x.shape) if static else x
        cur = syn * p["gain"] if "gain" in p else syn
        cur = cur + p["bias"] if "bias" in p else cur
        settings = L._neuron_settings(spec, params, config)
        s, u = lif.lif_scan(cur, **settings, surrogate=spike_fn, detach_reset=config.detach_reset)
        name = layers[i - 1].name
        if probe is not None and name == probe_layer:
            s = s + probe
        records.append(LIFRecord(name, syn, cur, u, s))
        x, static = s, False
    beta = L._readout_beta(layers, params, config)
    currents = jnp.broadcast_to(x, (num_steps,) + x.shape) if static else x
    logits = lif.integrator_readout(currents, beta=beta)
    return Trace(tuple(records), logits, beta)


def spiking_shapes(network: Network, params, images) -> dict[str, tuple[int, ...]]:
    """``{conv layer: (T, B, h, w, c)}`` spike shapes, by abstract evaluation."""
    conv = set(L.conv_layer_names(network.layers))

    def spikes(p, x):
        trace = forward_trace(network, p, x)
        return {r.name: r.spikes for r in trace.records if isinstance(r, LIFRecord)}

    shapes = jax.eval_shape(spikes, params, images)
    return {k: tuple(v.shape) for k, v in shapes.items() if k in conv}
