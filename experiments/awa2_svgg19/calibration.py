"""A random initialization under which a deep SNN fires: per-layer, data-driven rescaling.

Without ImageNet weights a freshly initialized SVGG19 is silent: every layer passes on fewer
spikes than it receives (LeCun-normal weights, θ = 1), and by ``conv3_1`` nothing fires, so
the readout is constant, the surrogate gradients vanish and nothing can be trained or
explained. The paper starts from ImageNet weights, which fire; for a run without them
(``--weights`` omitted) :func:`calibrate_firing` rescales each synaptic layer, input to
output, on a few training images (in the spirit of LSUV, Mishkin & Matas 2016):

* conv layer :math:`\\ell`: its kernel and bias are multiplied by
  :math:`\\operatorname{clip}((r^*/r_\\ell)^{0.7}, 1/2, 2)` (by 2 while it is silent),
  ``iterations`` times, where :math:`r_\\ell` is the layer's mean firing rate (time-mean
  spikes over images, positions and channels) and :math:`r^*` = ``target_rate``;
* ``fc1``, ``fc2``: kernel and bias are divided by the standard deviation (over images and
  neurons) of the layer's time-mean input current, so that current has unit spread (θ = 1).

The readout keeps its initialization. The rescaled network is a starting point only: it is
then trained like any other, and the report says the initialization was random.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from svebi_jax import layers as L


def calibrate_firing(
    layers, weights: dict, images, *, config: L.SNNConfig, target_rate=0.15, iterations=6
) -> tuple[dict, dict[str, float]]:
    """Rescales ``weights`` so that every spiking layer fires (see the module docstring).

    Args:
      layers: the network's layer specs (e.g. :func:`svebi_jax.models.vgg.svgg19_layers`).
      weights: ``{layer: {"kernel", "bias"}}`` arrays (not modified).
      images: ``[B, H, W, C]`` float network inputs (already normalized).
      config: the network's :class:`~svebi_jax.layers.SNNConfig`.
      target_rate: :math:`r^*`, the conv layers' target mean firing rate in ``(0, 1)``.
      iterations: rescaling rounds per conv layer.

    Returns:
      ``(weights, rates)``: the rescaled weights and each conv layer's final mean rate.
    """
    layers = tuple(layers)
    weights = {k: dict(v) for k, v in weights.items()}
    images = jnp.asarray(images)

    @jax.jit
    def rates(w):
        out = L.run_network(layers, w, images, config=config, record="mean")
        return {k: v.mean() for k, v in out.spikes.items()}

    def scale(name, factor):
        weights[name] = {k: v * factor for k, v in weights[name].items()}

    for name in L.conv_layer_names(layers):
        for _ in range(iterations):
            r = float(rates(weights)[name])
            scale(name, 2.0 if r == 0 else float(np.clip((target_rate / r) ** 0.7, 0.5, 2.0)))
    synaptic = [i for i, s in enumerate(layers) if isinstance(s, L.Dense)][:-1]
    for i in synaptic:  # fc1, fc2: the prefix ending in the layer reads out its mean current
        prefix = layers[: i + 1]
        sub = {s.name: weights[s.name] for s in prefix if isinstance(s, L.Conv | L.Dense)}
        current = L.run_network(prefix, sub, images, config=config).logits
        scale(layers[i].name, 1.0 / max(float(jnp.std(current)), 1e-6))
    return weights, {k: round(float(v), 4) for k, v in rates(weights).items()}
