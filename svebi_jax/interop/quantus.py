"""Bridges to Quantus: an ``explain_func`` from an ``attr_fn``, a torch view of a JAX model.

Quantus (Hedström et al., JMLR 2023) scores explanations of PyTorch/TensorFlow models. Its
metrics take ``explain_func(model, inputs, targets, **kwargs) -> np.ndarray`` and a model
they can call:

.. code-block:: python

    import quantus
    model = TorchModel(apply_fn, params)                      # torch.nn.Module, NCHW
    explain = quantus_explain_func(attribution.lrp(apply_fn), params)
    scores = quantus.FaithfulnessCorrelation(nr_runs=10)(
        model=model, x_batch=x_nchw, y_batch=y, explain_func=explain, channel_first=True)

- :func:`quantus_explain_func` wraps any ``attr_fn(params, images, target) -> [B, H, W]``.
  Quantus hands PyTorch models ``[B, C, H, W]`` (channel-first) NumPy batches and
  TensorFlow models ``[B, H, W, C]``; the layout is taken from ``channel_first`` or, when
  ``None``, inferred as Quantus does (channels first when ``C`` is the smallest of the three
  image axes; :func:`quantus.helpers.utils.infer_channel_first`). The maps come back with a
  singleton channel axis in the same layout (``[B, 1, H, W]`` or ``[B, H, W, 1]``) as float32.
  ``targets`` are Quantus's ``y_batch`` (``[B]`` ints; ``None`` explains the predicted
  classes). The ``model`` argument is not used: the ``attr_fn`` explains the JAX model with
  ``params``, so metrics that randomise the torch model's layers (MPRT) do not apply.
- :func:`TorchModel` builds a ``torch.nn.Module`` whose ``forward`` runs the JAX model on the
  NumPy view of a ``[B, C, H, W]`` (or, with ``channel_first=False``, ``[B, H, W, C]``)
  tensor and returns the ``[B, K]`` logits as a tensor (no torch autograd). It is in
  evaluation mode, as Quantus requires; Quantus adds the softmax where a metric asks for it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from svebi_jax import _validation as V
from svebi_jax.protocols import logits_of

__all__ = ["TorchModel", "infer_channel_first", "quantus_explain_func"]


def infer_channel_first(x) -> bool:
    """Quantus's rule for a ``[B, a, b, c]`` batch: channels first iff ``a < b`` and ``a < c``
    (channels last iff ``c < a`` and ``c < b``); ambiguous shapes raise ``ValueError``."""
    shape = np.shape(x)
    if len(shape) != 4:
        raise ValueError(f"inputs must be a [B, C, H, W] or [B, H, W, C] batch, got {shape}")
    _, a, b, c = shape
    if a < b and a < c:
        return True
    if c < a and c < b:
        return False
    raise ValueError(
        f"inputs of shape {shape}: cannot infer the channel axis; pass channel_first=True/False"
    )


def _to_nhwc(x, channel_first) -> tuple[np.ndarray, bool]:
    x = np.asarray(x, np.float32)
    cf = infer_channel_first(x) if channel_first is None else bool(channel_first)
    return (np.transpose(x, (0, 2, 3, 1)) if cf else x), cf


def quantus_explain_func(attr_fn, params, *, channel_first: bool | None = None):
    """``explain_func(model, inputs, targets, **kwargs) -> np.ndarray`` for Quantus.

    Args:
      attr_fn: ``attr_fn(params, images [B, H, W, C], target [B] | None) -> [B, H, W]``
        (e.g. from :mod:`svebi_jax.attribution`).
      params: the model's parameters passed to ``attr_fn``.
      channel_first: layout of Quantus's ``inputs``: ``True`` (``[B, C, H, W]``, PyTorch
        models), ``False`` (``[B, H, W, C]``) or ``None`` (inferred per call, see the module
        docstring).

    Returns:
      The ``explain_func``; it returns float32 ``[B, 1, H, W]`` (channel-first) or
      ``[B, H, W, 1]`` maps.
    """
    if not callable(attr_fn):
        raise TypeError(f"attr_fn must be callable, got {type(attr_fn).__name__}")
    if channel_first is not None:
        V.check_bool("channel_first", channel_first)

    def explain_func(model=None, inputs=None, targets=None, **kwargs) -> np.ndarray:
        if inputs is None:
            raise ValueError("explain_func needs inputs (Quantus's x_batch)")
        x, cf = _to_nhwc(inputs, channel_first)
        target = None
        if targets is not None:
            target = np.asarray(targets)
            if target.ndim == 0:
                target = np.broadcast_to(target, (x.shape[0],))
            target = jnp.asarray(V.check_classes(target, batch=x.shape[0], name="targets"))
        maps = np.asarray(attr_fn(params, jnp.asarray(x), target), np.float32)
        if maps.shape != x.shape[:3]:
            raise ValueError(
                f"attr_fn must return [B, H, W] = {x.shape[:3]} maps, got {maps.shape}"
            )
        return maps[:, None] if cf else maps[..., None]

    return explain_func


def _torch():
    try:
        import torch
    except ImportError as err:  # pragma: no cover - torch comes with the interop extra
        raise ImportError("TorchModel needs PyTorch: pip install torch") from err
    return torch


@functools.lru_cache(maxsize=16)
def _jitted_logits(apply_fn):
    """One compiled ``(params, images) -> logits`` per model, shared by its torch views."""
    return jax.jit(lambda p, x: logits_of(apply_fn(p, x)))


def TorchModel(apply_fn, params, *, channel_first: bool = True):  # noqa: N802 - a class factory
    """A ``torch.nn.Module`` view of a JAX model (see the module docstring).

    Args:
      apply_fn: the model (``apply_fn(params, images) -> SNNOutput``).
      params: its parameters.
      channel_first: the tensors' layout: ``[B, C, H, W]`` (default, PyTorch's) or
        ``[B, H, W, C]``.

    Returns:
      A ``torch.nn.Module`` in evaluation mode; ``module(x)`` returns ``[B, K]`` float32
      logits; ``module.apply_fn`` and ``module.params`` hold the JAX model.
    """
    torch = _torch()
    channel_first = V.check_bool("channel_first", channel_first)
    logits = _jitted_logits(apply_fn)

    class _JaxModule(torch.nn.Module):
        """Runs a JAX ``apply_fn`` on NumPy views of torch tensors (forward only)."""

        def __init__(self):
            super().__init__()
            self.apply_fn, self.params, self.channel_first = apply_fn, params, channel_first
            self.eval()

        def forward(self, x):
            a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
            a, _ = _to_nhwc(a, self.channel_first)
            out = np.asarray(logits(self.params, jnp.asarray(a)), np.float32)
            return torch.from_numpy(out.copy())

    return _JaxModule()
