"""The model protocol every function of svebi_jax takes: ``apply_fn(params, images, ...)``.

A model is a pure function plus its parameters, so explanation, scoring and training compose
with ``jax.jit``, ``jax.vmap`` and ``jax.grad`` and with any JAX model that follows this
protocol (not only the Flax NNX models of :mod:`svebi_jax.models`):

.. code-block:: python

    out = apply_fn(params, images)                       # SNNOutput
    out.logits                                           # [B, K]
    apply_fn(params, images, record="mean").spikes       # {conv layer: [B, h, w, c]}
    apply_fn(params, images, record="spikes").spikes     # {conv layer: [T, B, h, w, c]}
    apply_fn(params, images, masks={"conv2": m}).logits  # m: [C] or [B, C] spike multiplier

``images`` are ``[B, H, W, C]`` (fed at every step) or time-major ``[T, B, H, W, C]``.
Functions that only need logits accept any callable returning an object with ``.logits``
(or a tuple whose first item is the logits). :func:`svebi_jax.models.functional` returns an
``apply_fn`` that also carries the model's static description (:class:`ModelInfo`), which
factories use as defaults (e.g. ``T`` for the gradient baselines).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax

from svebi_jax.layers import Geometry, Record, SNNOutput

__all__ = ["ApplyFn", "ModelInfo", "logits_of", "model_info"]


@runtime_checkable
class ApplyFn(Protocol):
    """``apply_fn(params, images, *, record=None, masks=None) -> SNNOutput`` (pure)."""

    def __call__(
        self,
        params: Any,
        images: jax.Array,
        *,
        record: Record = None,
        masks: Mapping[str, jax.Array] | None = None,
    ) -> SNNOutput: ...


class ModelInfo(NamedTuple):
    """Static description of a model, attached to the ``apply_fn`` of ``functional``.

    Attributes:
      input_shape: ``(H, W, C)`` of one image.
      num_classes: ``K``, the readout size.
      num_steps: ``T``, timesteps per forward pass.
      conv_layers: names of the spiking conv layers, input to output.
      geometry: ``{layer: Geometry}`` of every synaptic layer.
    """

    input_shape: tuple[int, int, int]
    num_classes: int
    num_steps: int
    conv_layers: tuple[str, ...]
    geometry: dict[str, Geometry]


def model_info(apply_fn) -> ModelInfo | None:
    """The :class:`ModelInfo` an ``apply_fn`` carries (``None`` for a plain function)."""
    info = getattr(apply_fn, "info", None)
    return info if isinstance(info, ModelInfo) else None


def logits_of(out) -> jax.Array:
    """The ``[B, K]`` logits of an ``apply_fn`` output (``.logits`` or the first item)."""
    return out.logits if hasattr(out, "logits") else out[0]
