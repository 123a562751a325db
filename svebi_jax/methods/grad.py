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

import jax
import jax.numpy as jnp

from svebi_jax import _validation as V
from svebi_jax.protocols import ApplyFn, logits_of, model_info

__all__ = [
    "CHANNEL_REDUCTIONS",
    "OUTPUTS",
    "grad2d_maps",
    "per_step_gradients",
    "predicted_classes",
    "reduce_channels",
    "time_major",
]

Array = jax.Array

OUTPUTS: tuple[str, ...] = ("logit", "probability")
CHANNEL_REDUCTIONS: tuple[str, ...] = ("sum", "max", "mean", "none")


# ----------------------------------------------------------------------------- validation
# (shared by the other baselines of this package; the rules live in svebi_jax._validation)

_check_choice = V.check_choice
_check_positive_int = V.check_positive_int
_check_bool = V.check_bool


def _check_apply_fn(apply_fn) -> None:
    if not callable(apply_fn):
        raise TypeError(f"apply_fn must be callable, got {type(apply_fn).__name__}")


def _check_images(images, name: str = "images") -> Array:
    """``images`` as a float ``[B, H, W, C]`` JAX array (see ``_validation.check_images``)."""
    return jnp.asarray(V.check_images(images, name=name))


def _num_steps(apply_fn, num_steps) -> int:
    """``T``: the given ``num_steps``, else the one ``apply_fn.info`` carries."""
    if num_steps is None:
        info = model_info(apply_fn)
        if info is None:
            raise ValueError(
                "num_steps (T, the network's timesteps) is required for an apply_fn without "
                ".info (models.functional attaches it)"
            )
        return info.num_steps
    num_steps = V.check_positive_int("num_steps (T, the network's timesteps)", num_steps)
    info = model_info(apply_fn)
    if info is not None and num_steps != info.num_steps:
        raise ValueError(
            f"num_steps is T, the network's timesteps (this apply_fn runs T = "
            f"{info.num_steps}), got {num_steps}; the points of integrated gradients' path "
            "are path_steps"
        )
    return num_steps


def _num_classes(apply_fn: ApplyFn, params, images: Array) -> int:
    """``K`` from the logits' shape, by abstract evaluation (no computation)."""
    out = jax.eval_shape(lambda p, x: apply_fn(p, x), params, images)
    logits = logits_of(out)
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
    return V.check_classes(classes, batch=batch, num_classes=num_classes, name="target")


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
    return logits_of(apply_fn(params, inputs))


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
    # Non-finite images (possible only under the caller's jit) give NaN, not plausible maps.
    return V.flag_rows(grads, V.rows_finite(images), axis=1), classes


@functools.lru_cache(maxsize=16)
def _sharded_per_step(apply_fn, num_steps: int, output: str, mesh):
    """:func:`_per_step_core` run data-parallel over ``mesh`` (time-major grads: batch axis 1)."""
    from svebi_jax import sharding as S

    def core(params, images, classes):
        return _per_step_core(apply_fn, params, images, classes, num_steps=num_steps, output=output)

    return S.data_parallel(core, mesh, in_axes=(None, 0, 0), out_axes=(1, 0))


def per_step_core(apply_fn, params, images, classes, *, num_steps, output, mesh=None):
    """``(grads [T, B, ...], classes [B])`` on one device or data-parallel over ``mesh``."""
    if mesh is None:
        return _per_step_core(apply_fn, params, images, classes, num_steps=num_steps, output=output)
    from svebi_jax import batching
    from svebi_jax import sharding as S

    fn = batching.cached_builder(_sharded_per_step, apply_fn, num_steps, output, S.check_mesh(mesh))
    return fn(params, images, classes)


def _validate(apply_fn, params, images, classes, num_steps, output):
    _check_apply_fn(apply_fn)
    images = _check_images(images)
    num_steps = _num_steps(apply_fn, num_steps)
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
    target: Array | int | None = None,
    *,
    num_steps: int | None = None,
    output: str = "logit",
    mesh=None,
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
      target: ``[B]`` int (or one int for all) classes to explain; default: the predicted
        ones.
      num_steps: ``T``, the number of timesteps of the network (int ≥ 1); default
        ``apply_fn.info.num_steps``.
      output: ``"logit"`` (default) or ``"probability"`` (softmax of the logits).
      mesh: optional :class:`jax.sharding.Mesh` (:func:`svebi_jax.sharding.make_mesh`): the
        images are split over its devices, parameters replicated
        (:func:`svebi_jax.sharding.data_parallel`); ``None``: one device.

    Returns:
      ``[T, B, H, W, C]`` float32 signed gradients :math:`g_t`.

    Raises:
      ValueError: on bad ``images`` (shape, NaN/inf), ``target`` out of ``[0, K)``,
        ``num_steps`` < 1 or an unknown ``output``.
    """
    images, target, num_steps = _validate(apply_fn, params, images, target, num_steps, output)
    grads, _ = per_step_core(
        apply_fn, params, images, target, num_steps=num_steps, output=output, mesh=mesh
    )
    return grads


def grad2d_maps(
    apply_fn: ApplyFn,
    params,
    images: Array,
    target: Array | int | None = None,
    *,
    num_steps: int | None = None,
    output: str = "logit",
    absolute: bool = True,
    channel_reduction: str = "max",
    mesh=None,
) -> Array:
    """SNN-Grad2D saliency maps: per-step input gradients summed over time (module docstring).

    The maps themselves; :func:`svebi_jax.attribution.grad2d` is the attribution function.

    .. math::
        M_{h,w} = \\operatorname{reduce}_c \\left| \\sum_{t=1}^{T}
        \\frac{\\partial y_c}{\\partial x_{t,h,w,c}} \\right|

    Args:
      apply_fn: the model, ``apply_fn(params, inputs) -> SNNOutput`` (time-major inputs
        accepted).
      params: the model's parameter pytree.
      images: ``[B, H, W, C]`` float images.
      target: ``[B]`` int (or one int) classes to explain; default: the predicted classes.
      num_steps: ``T``, the network's timesteps (int ≥ 1); default ``apply_fn.info.num_steps``.
      output: ``"logit"`` (default: readout potential / T) or ``"probability"``.
      absolute: take the absolute value of the time-summed gradient (default ``True``).
      channel_reduction: ``"max"`` (default, Simonyan et al.), ``"sum"``, ``"mean"`` or
        ``"none"``.
      mesh: optional :class:`jax.sharding.Mesh`: data parallel over its devices (see
        :func:`per_step_gradients`).

    Returns:
      ``[B, H, W]`` float32 saliency (``[B, H, W, C]`` when ``channel_reduction="none"``).

    Raises:
      ValueError: on bad ``images``, ``target``, ``num_steps``, ``output`` or
        ``channel_reduction``.
    """
    _check_choice("channel_reduction", channel_reduction, CHANNEL_REDUCTIONS)
    absolute = _check_bool("absolute", absolute)
    grads = per_step_gradients(
        apply_fn, params, images, target, num_steps=num_steps, output=output, mesh=mesh
    )
    return reduce_channels(grads.sum(axis=0), channel_reduction, absolute=absolute)
