"""A ``call_model_function`` that runs PAIR's ``saliency`` methods on svebi_jax SNNs.

PAIR's framework-agnostic ``saliency.core`` (Grad, SmoothGrad, Integrated Gradients,
Guided IG, Blur IG, XRAI, Grad-CAM, ...) asks the model for numbers through one function,
``call_model_function(x_value_batch, call_model_args, expected_keys) -> dict``.
:func:`call_model_function` builds it for a model ``apply_fn`` and its ``params``:

.. code-block:: python

    import saliency.core as saliency
    fn = call_model_function(apply_fn, params, layer="conv2")
    mask = saliency.IntegratedGradients().GetMask(image, fn, {"target": 3}, x_steps=25,
                                                  x_baseline=np.zeros_like(image), batch_size=8)

``x_value_batch`` is ``[B, H, W, C]`` (channels last, as the network takes). The keys:

- ``INPUT_OUTPUT_GRADIENTS``: :math:`\\partial y_c / \\partial x`, ``[B, H, W, C]``: the
  (surrogate) gradient of the explained score w.r.t. the image, which is fed at every step,
  so it is the sum over steps of the per-step input gradients (SNN-Grad's identity,
  :mod:`svebi_jax.methods.grad`).
- ``OUTPUT_LAYER_VALUES``: :math:`y_c`, ``[B]``.
- ``CONVOLUTION_LAYER_VALUES`` / ``CONVOLUTION_OUTPUT_GRADIENTS`` (need ``layer``): the
  spike counts :math:`\\sum_t S[t]` of the spiking conv layer, ``[B, h, w, c]``, and the
  gradient of :math:`y_c` w.r.t. its spikes summed over steps,
  :math:`\\sum_t \\partial y_c / \\partial S[t]` (so ``saliency``'s Grad-CAM weights are the
  SNN Grad-CAM weights of :mod:`svebi_jax.methods.gradcam`, up to the factor ``1/(h w)``,
  and its map is :math:`\\operatorname{ReLU}(\\sum_k \\alpha_k \\sum_t S^k[t])`, the ReLU
  taken after the sum over steps).

The explained class comes from ``call_model_args``: ``{"target": c}`` (an int, or ``[B]``
ints) or the int itself; :math:`y_c` is its logit (``output="logit"``, default) or softmax
probability.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from svebi_jax import _validation as V
from svebi_jax import layers as L
from svebi_jax.methods import _trace as TR
from svebi_jax.methods import gradcam as _gradcam
from svebi_jax.protocols import logits_of

__all__ = [
    "CONVOLUTION_LAYER_VALUES",
    "CONVOLUTION_OUTPUT_GRADIENTS",
    "INPUT_OUTPUT_GRADIENTS",
    "OUTPUT_LAYER_VALUES",
    "call_model_function",
]

# The key strings of saliency.core.base (repeated so that this module imports without it).
CONVOLUTION_LAYER_VALUES = "CONVOLUTION_LAYER_VALUES"
CONVOLUTION_OUTPUT_GRADIENTS = "CONVOLUTION_OUTPUT_GRADIENTS"
INPUT_OUTPUT_GRADIENTS = "INPUT_OUTPUT_GRADIENTS"
OUTPUT_LAYER_VALUES = "OUTPUT_LAYER_VALUES"
_KEYS = (
    CONVOLUTION_LAYER_VALUES,
    CONVOLUTION_OUTPUT_GRADIENTS,
    INPUT_OUTPUT_GRADIENTS,
    OUTPUT_LAYER_VALUES,
)


def _target(call_model_args, batch: int) -> np.ndarray:
    target = call_model_args
    if isinstance(call_model_args, Mapping):
        if "target" not in call_model_args:
            raise ValueError(
                "call_model_args must hold the explained class as {'target': c}, got keys "
                f"{list(call_model_args)}"
            )
        target = call_model_args["target"]
    if target is None:
        raise ValueError(
            "call_model_args must give the explained class ({'target': c} or c); saliency's "
            "path methods need one fixed class"
        )
    target = np.asarray(target)
    if not np.issubdtype(target.dtype, np.integer) or target.ndim > 1:
        raise ValueError(f"target must be an int or [B] ints, got {target!r}")
    return np.broadcast_to(target, (batch,)).astype(np.int32)


def call_model_function(
    apply_fn,
    params,
    *,
    layer: str | None = None,
    network=None,
    output: str = "logit",
):
    """Builds ``call_model_function(x_value_batch, call_model_args=None, expected_keys=None)``.

    Args:
      apply_fn: the model (``apply_fn(params, images) -> SNNOutput``).
      params: its parameters.
      layer: the spiking conv layer of the ``CONVOLUTION_*`` keys (Grad-CAM, XRAI does not
        need it); ``None``: those keys are refused.
      network: ``(layers, config)`` for the ``CONVOLUTION_*`` keys of an ``apply_fn`` that is
        not a :func:`svebi_jax.models.functional` model.
      output: ``"logit"`` (default) or ``"probability"``: the explained score :math:`y_c`.

    Returns:
      The function; it returns ``{key: np.ndarray}`` for the expected keys (default
      ``[INPUT_OUTPUT_GRADIENTS]``), see the module docstring.

    Raises:
      ValueError: (when called) an unknown key, a ``CONVOLUTION_*`` key without ``layer``, or
        no explained class in ``call_model_args``.
    """
    if not callable(apply_fn):
        raise TypeError(f"apply_fn must be callable, got {type(apply_fn).__name__}")
    V.check_choice("output", output, _gradcam.OUTPUTS)
    network = TR.check_network(network)
    if layer is not None and not isinstance(layer, str):
        raise ValueError(f"layer must be a spiking conv layer name or None, got {layer!r}")

    @jax.jit
    def input_grads(params, x, target):
        def total(x):
            s = _gradcam._scores(logits_of(apply_fn(params, x)), target, output)
            return s.sum(), s

        return jax.grad(total, has_aux=True)(x)

    @jax.jit
    def conv(params, x, target):
        net, weights = TR.resolve(apply_fn, params, network)
        spikes, grads, _ = _gradcam._spike_grads(net, weights, x, target, layer, output)
        return spikes.sum(axis=0), grads.sum(axis=0)

    def fn(x_value_batch, call_model_args=None, expected_keys=None):
        keys = [INPUT_OUTPUT_GRADIENTS] if expected_keys is None else list(expected_keys)
        for k in keys:
            if k not in _KEYS:
                raise ValueError(f"expected_keys: unknown key {k!r}; known: {_KEYS}")
        x = np.asarray(x_value_batch, np.float32)
        x = jnp.asarray(V.check_images(x, name="x_value_batch"))
        target = jnp.asarray(_target(call_model_args, x.shape[0]))
        out = {}
        if INPUT_OUTPUT_GRADIENTS in keys or OUTPUT_LAYER_VALUES in keys:
            grads, scores = input_grads(params, x, target)
            if INPUT_OUTPUT_GRADIENTS in keys:
                out[INPUT_OUTPUT_GRADIENTS] = np.asarray(grads)
            if OUTPUT_LAYER_VALUES in keys:
                out[OUTPUT_LAYER_VALUES] = np.asarray(scores)
        if CONVOLUTION_LAYER_VALUES in keys or CONVOLUTION_OUTPUT_GRADIENTS in keys:
            if layer is None:
                raise ValueError(
                    "the CONVOLUTION_* keys need call_model_function(..., layer=<spiking conv "
                    "layer>)"
                )
            conv_layers = L.conv_layer_names(TR.resolve(apply_fn, params, network)[0].layers)
            if layer not in conv_layers:
                raise ValueError(
                    f"layer must be one of the spiking conv layers {conv_layers}, got {layer!r}"
                )
            values, grads = conv(params, x, target)
            if CONVOLUTION_LAYER_VALUES in keys:
                out[CONVOLUTION_LAYER_VALUES] = np.asarray(values)
            if CONVOLUTION_OUTPUT_GRADIENTS in keys:
                out[CONVOLUTION_OUTPUT_GRADIENTS] = np.asarray(grads)
        return out

    return fn
