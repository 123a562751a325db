"""SNN-Grad2D: vanilla-gradient saliency for spiking networks (Bitar et al., 2023).

Bitar, Rosales and Paulitsch, "Gradient-based feature-attribution explainability methods for
spiking neural networks" (Frontiers in Neuroscience 17, 2023) adapt Simonyan et al.'s
vanilla-gradient saliency to SNNs trained with surrogate gradients. No public code exists; this
module implements our reading of the method:

1. The network sees the input at every timestep. For a time-major input
   :math:`x_{1..T}` (with direct encoding, :math:`x_t = x` for all :math:`t`), the per-step
   attribution is the (surrogate) gradient of the target class's output :math:`y_c` with
   respect to the input *presented at step t*: :math:`g_t = \\partial y_c / \\partial x_t`
   (the "3D" map, :func:`per_step_gradients`).
2. The 2D map of a real-valued image is the sum of the per-step attributions over time.
   With direct input, :math:`x_t = x` for every step, so by the chain rule this sum *is* the
   gradient with respect to the static image:

   .. math::
       \\sum_{t=1}^{T} \\frac{\\partial y_c}{\\partial x_t}\\bigg|_{x_t = x}
       = \\frac{\\partial y_c(x, \\dots, x)}{\\partial x}.

   We compute the general (time-major) version and the tests check this identity.
3. As in Simonyan et al.'s saliency maps (and Captum's ``Saliency``, ``abs=True``), the map is
   the magnitude :math:`|\\cdot|` of the time-summed gradient, reduced over colour channels
   with a max (Simonyan et al. take :math:`\\max_c |w_{h,w,c}|`). The defaults
   ``absolute=True, channel_reduction="max"`` follow this reading. Note the order: the
   *signed* gradients are summed over time first, then the absolute value is taken, then the
   channels are reduced. For MNIST (``C = 1``) the channel reduction is the identity.

The target output :math:`y_c` is the logit (readout potential :math:`U[T]/T`, what ``apply_fn``
returns; ``output="logit"``, the default) or its softmax probability (``output="probability"``)
of the predicted class (``argmax`` of the logits of the unperturbed image) or of a given class.

All functions take the model as ``apply_fn(params, images, *, record=None, masks=None) ->
SNNOutput`` plus ``params`` (see :func:`svebi_jax.models.functional`); ``apply_fn`` must accept
a time-major ``[T, B, H, W, C]`` input and treat the images of a batch independently (no batch
statistics), since the per-image target scores are summed before differentiation. ``apply_fn``
is a static argument of the compiled computation: pass the same function object to reuse it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from svebi_jax._validation import is_tracer as _is_tracer

__all__ = [
    "CHANNEL_REDUCTIONS",
    "OUTPUTS",
    "grad2d",
    "per_step_gradients",
    "predicted_classes",
    "reduce_channels",
    "time_major",
]

Array = jax.Array
ApplyFn = Callable[..., Any]

OUTPUTS: tuple[str, ...] = ("logit", "probability")
CHANNEL_REDUCTIONS: tuple[str, ...] = ("sum", "max", "mean", "none")


# ----------------------------------------------------------------------------- validation
# (shared by the other baselines of this package)


def _check_choice(name: str, value, options: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive int (>= 1), got {value!r}")
    return int(value)


def _check_bool(name: str, value) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def _check_apply_fn(apply_fn) -> None:
    if not callable(apply_fn):
        raise TypeError(f"apply_fn must be callable, got {type(apply_fn).__name__}")


def _check_images(images, name: str = "images") -> Array:
    """Returns ``images`` as a float ``[B, H, W, C]`` array; raises on shape or NaN/inf."""
    images = jnp.asarray(images)
    if images.ndim != 4 or min(images.shape) < 1:
        raise ValueError(
            f"{name} must be a non-empty [B, H, W, C] array, got shape {tuple(images.shape)}"
        )
    if not jnp.issubdtype(images.dtype, jnp.floating):
        if jnp.issubdtype(images.dtype, jnp.complexfloating) or images.dtype == jnp.bool_:
            raise ValueError(f"{name} must be a real float array, got dtype {images.dtype}")
        images = images.astype(jnp.float32)
    if not _is_tracer(images) and not bool(jnp.all(jnp.isfinite(images))):
        raise ValueError(f"{name} must be finite (no NaN or inf values)")
    return images


def _num_classes(apply_fn: ApplyFn, params, images: Array) -> int:
    """``K`` from the logits' shape, by abstract evaluation (no computation)."""
    out = jax.eval_shape(lambda p, x: apply_fn(p, x), params, images)
    logits = out.logits if hasattr(out, "logits") else out[0]
    if len(logits.shape) != 2 or logits.shape[0] != images.shape[0]:
        raise ValueError(
            f"apply_fn must return logits of shape [B, K] = [{images.shape[0]}, K], got "
            f"{tuple(logits.shape)}"
        )
    return int(logits.shape[1])


def _check_classes(classes, batch: int, num_classes: int) -> Array | None:
    """Returns ``classes`` as an int32 ``[B]`` array (or ``None``); raises when out of range."""
    if classes is None:
        return None
    classes = jnp.asarray(classes)
    if not jnp.issubdtype(classes.dtype, jnp.integer):
        raise ValueError(f"classes must be integer class indices, got dtype {classes.dtype}")
    if classes.ndim == 0:
        classes = jnp.broadcast_to(classes, (batch,))
    if classes.shape != (batch,):
        raise ValueError(
            f"classes must be an int or a [B] = [{batch}] array, got shape {classes.shape}"
        )
    if not _is_tracer(classes):
        c = np.asarray(classes)
        if np.any(c < 0) or np.any(c >= num_classes):
            raise ValueError(
                f"classes must lie in [0, {num_classes - 1}] (K = {num_classes} classes), "
                f"got values in [{c.min()}, {c.max()}]"
            )
    return classes.astype(jnp.int32)


# ----------------------------------------------------------------------------- helpers


def reduce_channels(maps: Array, reduction: str = "max", *, absolute: bool = True) -> Array:
    """Optional absolute value, then a reduction over the channel axis.

    Args:
      maps: ``[B, H, W, C]`` float attributions.
      reduction: ``"sum"``, ``"max"``, ``"mean"`` or ``"none"`` (keep ``[B, H, W, C]``).
      absolute: take :math:`|\\cdot|` element-wise *before* reducing (Simonyan et al.'s
        :math:`\\max_c |g_c|`).

    Returns:
      ``[B, H, W]`` (or ``[B, H, W, C]`` for ``"none"``) float array.
    """
    _check_choice("channel_reduction", reduction, CHANNEL_REDUCTIONS)
    maps = jnp.abs(maps) if absolute else maps
    if reduction == "sum":
        return maps.sum(axis=-1)
    if reduction == "max":
        return maps.max(axis=-1)
    if reduction == "mean":
        return maps.mean(axis=-1)
    return maps


def time_major(images: Array, num_steps: int) -> Array:
    """``[B, H, W, C] -> [T, B, H, W, C]``: the direct input, one copy per step."""
    return jnp.broadcast_to(images, (num_steps,) + images.shape)


def _logits(apply_fn: ApplyFn, params, inputs: Array) -> Array:
    out = apply_fn(params, inputs)
    return out.logits if hasattr(out, "logits") else out[0]


def _scores(logits: Array, classes: Array, output: str) -> Array:
    """``[B]`` target output: the class's logit or its softmax probability."""
    if output == "probability":
        logits = jax.nn.softmax(logits, axis=-1)
    return jnp.take_along_axis(logits, classes[:, None], axis=-1)[:, 0]


def _step_grads(apply_fn, params, seq: Array, classes: Array, output: str) -> Array:
    """``[T, N, H, W, C]`` gradient of the per-image target scores w.r.t. the input sequence.

    The scores of the ``N`` images are summed before differentiation, which gives every image's
    own gradient because ``apply_fn`` treats the images of a batch independently.
    """

    def total(x):
        return _scores(_logits(apply_fn, params, x), classes, output).sum()

    return jax.grad(total)(seq)


def _resolve_classes(apply_fn, params, images: Array, classes: Array | None) -> Array:
    if classes is None:
        return jnp.argmax(_logits(apply_fn, params, images), axis=-1).astype(jnp.int32)
    return classes


@functools.partial(jax.jit, static_argnames=("apply_fn", "num_steps", "output"))
def _per_step_core(apply_fn, params, images, classes, *, num_steps, output):
    classes = _resolve_classes(apply_fn, params, images, classes)
    grads = _step_grads(apply_fn, params, time_major(images, num_steps), classes, output)
    return grads, classes


def _validate(apply_fn, params, images, classes, num_steps, output):
    _check_apply_fn(apply_fn)
    images = _check_images(images)
    num_steps = _check_positive_int("num_steps", num_steps)
    _check_choice("output", output, OUTPUTS)
    k = _num_classes(apply_fn, params, images)
    classes = _check_classes(classes, images.shape[0], k)
    return images, classes, num_steps


# ----------------------------------------------------------------------------- public API


def predicted_classes(apply_fn: ApplyFn, params, images: Array) -> Array:
    """``[B]`` int32 ``argmax`` of the logits of ``images`` (``[B, H, W, C]`` float)."""
    _check_apply_fn(apply_fn)
    images = _check_images(images)
    return jnp.argmax(_logits(apply_fn, params, images), axis=-1).astype(jnp.int32)


def per_step_gradients(
    apply_fn: ApplyFn,
    params,
    images: Array,
    classes: Array | int | None = None,
    *,
    num_steps: int,
    output: str = "logit",
) -> Array:
    """Per-timestep input gradients (the "3D" SNN-Grad attribution).

    The image is presented at every step as a time-major input :math:`x_{1..T}` and

    .. math::
        g_t = \\frac{\\partial y_c(x_1, \\dots, x_T)}{\\partial x_t}\\bigg|_{x_t = x},
        \\qquad t = 1, \\dots, T,

    with :math:`y_c` the target class's logit (or probability), differentiated through the
    network's surrogate gradients.

    Args:
      apply_fn: the model, ``apply_fn(params, inputs) -> SNNOutput``; must accept time-major
        ``[T, B, H, W, C]`` inputs.
      params: the model's parameter pytree.
      images: ``[B, H, W, C]`` float images.
      classes: ``[B]`` int (or one int for all) target classes; default: the predicted ones.
      num_steps: ``T``, the number of timesteps of the network (int ≥ 1).
      output: ``"logit"`` (default) or ``"probability"`` (softmax of the logits).

    Returns:
      ``[T, B, H, W, C]`` float32 signed gradients :math:`g_t`.

    Raises:
      ValueError: on bad ``images`` (shape, NaN/inf), ``classes`` out of ``[0, K)``,
        ``num_steps`` < 1 or an unknown ``output``.
    """
    images, classes, num_steps = _validate(apply_fn, params, images, classes, num_steps, output)
    grads, _ = _per_step_core(apply_fn, params, images, classes, num_steps=num_steps, output=output)
    return grads


def grad2d(
    apply_fn: ApplyFn,
    params,
    images: Array,
    classes: Array | int | None = None,
    *,
    num_steps: int,
    output: str = "logit",
    absolute: bool = True,
    channel_reduction: str = "max",
) -> Array:
    """SNN-Grad2D saliency: per-step input gradients summed over time (see module docstring).

    .. math::
        M_{h,w} = \\operatorname{reduce}_c \\left| \\sum_{t=1}^{T}
        \\frac{\\partial y_c}{\\partial x_{t,h,w,c}} \\right|

    Args:
      apply_fn: the model, ``apply_fn(params, inputs) -> SNNOutput`` (time-major inputs
        accepted).
      params: the model's parameter pytree.
      images: ``[B, H, W, C]`` float images.
      classes: ``[B]`` int (or one int) target classes; default: the predicted classes.
      num_steps: ``T`` (int ≥ 1).
      output: ``"logit"`` (default: readout potential / T) or ``"probability"``.
      absolute: take the absolute value of the time-summed gradient (default ``True``).
      channel_reduction: ``"max"`` (default, Simonyan et al.), ``"sum"``, ``"mean"`` or
        ``"none"``.

    Returns:
      ``[B, H, W]`` float32 saliency (``[B, H, W, C]`` when ``channel_reduction="none"``).

    Raises:
      ValueError: on bad ``images``, ``classes``, ``num_steps``, ``output`` or
        ``channel_reduction``.
    """
    _check_choice("channel_reduction", channel_reduction, CHANNEL_REDUCTIONS)
    absolute = _check_bool("absolute", absolute)
    grads = per_step_gradients(
        apply_fn, params, images, classes, num_steps=num_steps, output=output
    )
    return reduce_channels(grads.sum(axis=0), channel_reduction, absolute=absolute)
