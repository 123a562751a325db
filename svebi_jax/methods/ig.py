"""SNN-IG2D: integrated gradients for spiking networks (Bitar et al., 2023).

Integrated gradients (Sundararajan et al., 2017) along the straight path from a baseline
:math:`b` (default: the all-black image, zeros) to the image :math:`x`, with the SNN's
surrogate gradients. Our reading of Bitar et al.'s SNN-IG2D (no public code exists): as for
:mod:`~svebi_jax.methods.grad`, the gradient is taken w.r.t. the input presented at each
timestep (time-major input, every step on the same path point), the per-step attributions
are summed over time, and multiplied by :math:`x - b`:

.. math::
    A_{h,w,c} = (x - b)_{h,w,c} \\sum_{t=1}^{T} \\int_0^1
      \\frac{\\partial y_c}{\\partial x_{t,h,w,c}}\\bigg|_{x_{1..T} = b + \\alpha (x - b)}
      d\\alpha
    \\approx (x - b)_{h,w,c} \\sum_{k} w_k \\sum_{t=1}^{T} g_{t,h,w,c}(\\alpha_k).

(With direct input the time-sum equals the gradient w.r.t. the static image, so this is
ordinary IG of the map :math:`x \\mapsto y_c(x, \\dots, x)`.)

Quadrature (``method``), ``n`` = ``path_steps`` (the number of points on the path from the
baseline to the image; named apart from ``num_steps``, the network's ``T`` timesteps, on
purpose: the two are unrelated and both are "steps"):

- ``"riemann_midpoint"`` (default): :math:`\\alpha_k = (k + 1/2)/n`, :math:`w_k = 1/n`,
  :math:`k = 0..n-1` — second-order accurate and never evaluates the gradient exactly at the
  baseline or the image.
- ``"riemann_left"`` / ``"riemann_right"``: :math:`\\alpha_k = k/n` / :math:`(k+1)/n`,
  :math:`w_k = 1/n`.
- ``"trapezoid"``: :math:`\\alpha_k = k/n`, :math:`k = 0..n` (``n + 1`` gradient
  evaluations), :math:`w_k = 1/n` except :math:`1/(2n)` at both ends.
- ``"gausslegendre"``: ``n`` Gauss–Legendre nodes on [0, 1] (Captum's default).

Completeness: for a differentiable model :math:`\\sum_{h,w,c} A_{h,w,c} \\to y_c(x) - y_c(b)`
as ``path_steps`` grows. The SNN's forward pass is piecewise constant in the input (binary
spikes) while its backward pass uses a surrogate derivative, so the path integral of the
surrogate gradient is *not* the output difference: the gap
:math:`\\sum A - (y_c(x) - y_c(b))` does not vanish in general. It is reported (not hidden)
by :func:`integrated_gradients_result` and :func:`completeness`.

Gradients are computed ``chunk_size`` path points at a time: the chunk's path images are
stacked into one batch of ``chunk_size * B`` images and differentiated together, and the
chunks are looped over with :func:`jax.lax.map` inside one compiled computation.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from svebi_jax import _validation as V
from svebi_jax import batching
from svebi_jax.methods.grad import (
    CHANNEL_REDUCTIONS,
    OUTPUTS,
    ApplyFn,
    _check_apply_fn,
    _check_bool,
    _check_choice,
    _check_classes,
    _check_images,
    _check_positive_int,
    _logits,
    _num_classes,
    _num_steps,
    _resolve_classes,
    _scores,
    _step_grads,
    reduce_channels,
    time_major,
)

__all__ = [
    "IG_METHODS",
    "Completeness",
    "IGResult",
    "completeness",
    "ig_alphas",
    "integrated_gradients_result",
]

Array = jax.Array

IG_METHODS: tuple[str, ...] = (
    "riemann_midpoint",
    "riemann_left",
    "riemann_right",
    "trapezoid",
    "gausslegendre",
)


class Completeness(NamedTuple):
    """Completeness check of an attribution (all ``[B]`` float32).

    Attributes:
      sum_attributions: :math:`\\sum_{h,w,c} A_{h,w,c}` of the signed attributions.
      output_delta: :math:`y_c(x) - y_c(b)` for the target class.
      gap: ``sum_attributions - output_delta``.
      relative_gap: ``|gap| / max(|output_delta|, 1e-12)``.
    """

    sum_attributions: Array
    output_delta: Array
    gap: Array
    relative_gap: Array


class IGResult(NamedTuple):
    """Result of :func:`integrated_gradients_result`.

    Attributes:
      attributions: ``[B, H, W]`` float32 map after ``absolute`` / ``channel_reduction``
        (``[B, H, W, C]`` for ``"none"``).
      signed: ``[B, H, W, C]`` float32 signed attributions :math:`A` (before abs/reduction).
      classes: ``[B]`` int32 target classes.
      completeness: :class:`Completeness` of ``signed`` (``[B]`` fields).
      completeness_gap: ``[B]`` float32, shortcut for ``completeness.gap``.
    """

    attributions: Array
    signed: Array
    classes: Array
    completeness: Completeness
    completeness_gap: Array


def ig_alphas(path_steps: int, method: str = "riemann_midpoint") -> tuple[np.ndarray, np.ndarray]:
    """Path points and quadrature weights on [0, 1].

    Args:
      path_steps: number of intervals / nodes (int ≥ 1).
      method: one of :data:`IG_METHODS` (see the module docstring).

    Returns:
      ``(alphas, weights)``, float64 NumPy arrays of length ``path_steps`` (``path_steps + 1`` for
      ``"trapezoid"``); the weights sum to 1.

    Raises:
      ValueError: if ``path_steps`` < 1 or ``method`` is unknown.
    """
    n = _check_positive_int("path_steps", path_steps)
    _check_choice("method", method, IG_METHODS)
    k = np.arange(n, dtype=np.float64)
    w = np.full(n, 1.0 / n)
    if method == "riemann_midpoint":
        return (k + 0.5) / n, w
    if method == "riemann_left":
        return k / n, w
    if method == "riemann_right":
        return (k + 1.0) / n, w
    if method == "trapezoid":
        a = np.arange(n + 1, dtype=np.float64) / n
        w = np.full(n + 1, 1.0 / n)
        w[0] = w[-1] = 0.5 / n
        return a, w
    x, w = np.polynomial.legendre.leggauss(n)
    return (x + 1.0) / 2.0, w / 2.0


def _completeness(signed, f_x, f_b) -> Completeness:
    total = signed.reshape(signed.shape[0], -1).sum(axis=-1)
    delta = f_x - f_b
    gap = total - delta
    rel = jnp.abs(gap) / jnp.maximum(jnp.abs(delta), 1e-12)
    return Completeness(total, delta, gap, rel)


@functools.partial(jax.jit, static_argnames=("apply_fn", "num_steps", "output", "chunk_size"))
def _ig_core(
    apply_fn, params, images, baseline, classes, alphas, weights, *, num_steps, output, chunk_size
):
    b = images.shape[0]
    classes = _resolve_classes(apply_fn, params, images, classes)
    diff = images - baseline
    chunk_classes = jnp.tile(classes, chunk_size)

    def chunk(aw):
        a, w = aw  # [chunk]
        path = baseline[None] + a[:, None, None, None, None] * diff[None]  # [chunk, B, H, W, C]
        flat = path.reshape((chunk_size * b,) + images.shape[1:])
        g = _step_grads(apply_fn, params, time_major(flat, num_steps), chunk_classes, output)
        g = g.sum(axis=0).reshape((chunk_size,) + images.shape)  # sum over time
        return jnp.tensordot(w, g, axes=1)  # [B, H, W, C]

    n_chunks = alphas.shape[0] // chunk_size
    parts = jax.lax.map(
        chunk, (alphas.reshape(n_chunks, chunk_size), weights.reshape(n_chunks, chunk_size))
    )
    signed = diff * parts.sum(axis=0)
    f_x = _scores(_logits(apply_fn, params, images), classes, output)
    f_b = _scores(_logits(apply_fn, params, baseline), classes, output)
    # Non-finite images (possible only under the caller's jit) give NaN, not plausible maps.
    valid = V.rows_finite(images) & V.rows_finite(baseline)
    signed = V.flag_rows(signed, valid)
    return signed, classes, V.flag_rows(_completeness(signed, f_x, f_b), valid)


@functools.lru_cache(maxsize=16)
def _ig_runner(apply_fn, num_steps: int, output: str, chunk_size: int, mesh):
    """:func:`_ig_core` on one device (``mesh=None``) or data-parallel over ``mesh``."""
    from svebi_jax import sharding as S

    def core(params, images, baseline, classes, alphas, weights):
        return _ig_core(
            apply_fn,
            params,
            images,
            baseline,
            classes,
            alphas,
            weights,
            num_steps=num_steps,
            output=output,
            chunk_size=chunk_size,
        )

    if mesh is None:
        return core
    return S.data_parallel(
        core, S.check_mesh(mesh), in_axes=(None, 0, 0, 0, None, None), out_axes=0
    )


def _check_baseline(baseline, images: Array) -> Array:
    if baseline is None:
        return jnp.zeros_like(images)
    baseline = jnp.asarray(baseline, images.dtype)
    if baseline.shape == images.shape[1:]:
        baseline = jnp.broadcast_to(baseline, images.shape)
    if baseline.shape != images.shape:
        raise ValueError(
            f"baseline must have the images' shape {tuple(images.shape)} or one image's shape "
            f"{tuple(images.shape[1:])}, got {tuple(baseline.shape)}"
        )
    if not isinstance(baseline, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(baseline))):
        raise ValueError("baseline must be finite (no NaN or inf values)")
    return baseline


def integrated_gradients_result(
    apply_fn: ApplyFn,
    params,
    images: Array,
    target: Array | int | None = None,
    *,
    num_steps: int | None = None,
    path_steps: int = 50,
    baseline: Array | None = None,
    method: str = "riemann_midpoint",
    chunk_size: int = 10,
    output: str = "logit",
    absolute: bool = False,
    channel_reduction: str = "sum",
    mesh=None,
) -> IGResult:
    """SNN-IG2D attributions and their completeness gap (see the module docstring).

    The full :class:`IGResult`; :func:`svebi_jax.attribution.integrated_gradients` is the
    attribution function (its ``attributions`` maps).

    Defaults: zeros baseline, 50 midpoint-Riemann points, the target logit, *signed*
    attributions summed over channels. Summing keeps IG's additivity (the map sums to the
    attribution total used by the completeness check); for MNIST (``C = 1``) the reduction is
    the identity. Pass ``absolute=True`` for magnitude maps.

    Args:
      apply_fn: the model, ``apply_fn(params, inputs) -> SNNOutput``; must accept time-major
        ``[T, N, H, W, C]`` inputs and treat the images of a batch independently.
      params: the model's parameter pytree.
      images: ``[B, H, W, C]`` float images.
      target: ``[B]`` int (or one int) classes to explain; default: the classes predicted on
        ``images``.
      num_steps: ``T``, the network's timesteps (int ≥ 1); default
        ``apply_fn.info.num_steps``.
      path_steps: number of points on the integration path (int ≥ 1; ``"trapezoid"``
        evaluates ``path_steps + 1``). Unrelated to ``num_steps``.
      baseline: ``[B, H, W, C]`` or ``[H, W, C]`` float baseline; default zeros (black).
      method: quadrature, one of :data:`IG_METHODS`.
      chunk_size: path points differentiated together (int ≥ 1; the batch of one gradient
        call holds ``chunk_size * B`` images). The points are padded with zero-weight copies
        to a multiple of ``chunk_size``.
      output: ``"logit"`` (default) or ``"probability"``.
      absolute: take :math:`|A|` element-wise before the channel reduction (default ``False``).
      channel_reduction: ``"sum"`` (default), ``"max"``, ``"mean"`` or ``"none"``.
      mesh: optional :class:`jax.sharding.Mesh` (:func:`svebi_jax.sharding.make_mesh`): the
        images (and baselines, classes) are split over its devices, parameters replicated
        (:func:`svebi_jax.sharding.data_parallel`); ``None``: one device.

    Returns:
      :class:`IGResult` (maps, signed attributions, classes, completeness).

    Raises:
      ValueError: on bad ``images``, ``target``, ``baseline``, ``num_steps``, ``path_steps``,
        ``chunk_size``, ``method``, ``output`` or ``channel_reduction``.
    """
    _check_apply_fn(apply_fn)
    images = _check_images(images)
    num_steps = _num_steps(apply_fn, num_steps)
    chunk_size = _check_positive_int("chunk_size", chunk_size)
    _check_choice("output", output, OUTPUTS)
    _check_choice("channel_reduction", channel_reduction, CHANNEL_REDUCTIONS)
    absolute = _check_bool("absolute", absolute)
    alphas, weights = ig_alphas(path_steps, method)
    baseline = _check_baseline(baseline, images)
    classes = _check_classes(target, images.shape[0], _num_classes(apply_fn, params, images))

    chunk_size = min(chunk_size, alphas.shape[0])
    pad = (-alphas.shape[0]) % chunk_size
    alphas = np.concatenate([alphas, np.full(pad, alphas[-1])])
    weights = np.concatenate([weights, np.zeros(pad)])
    alphas = jnp.asarray(alphas, images.dtype)
    weights = jnp.asarray(weights, images.dtype)
    run = batching.cached_builder(_ig_runner, apply_fn, num_steps, output, chunk_size, mesh)
    signed, classes, comp = run(params, images, baseline, classes, alphas, weights)
    maps = reduce_channels(signed, channel_reduction, absolute=absolute)
    return IGResult(maps, signed, classes, comp, comp.gap)


def completeness(
    apply_fn: ApplyFn,
    params,
    images: Array,
    attributions: Array,
    target: Array | int | None = None,
    *,
    baseline: Array | None = None,
    output: str = "logit",
) -> Completeness:
    """Completeness check of signed attributions against the model's output difference.

    .. math::
        \\text{gap} = \\sum_{h,w,c} A_{h,w,c} - \\big(y_c(x) - y_c(b)\\big)

    Args:
      apply_fn: the model, ``apply_fn(params, images) -> SNNOutput``.
      params: the model's parameter pytree.
      images: ``[B, H, W, C]`` float images :math:`x`.
      attributions: ``[B, H, W, C]`` (or ``[B, H, W]`` channel-summed) signed attributions.
      target: ``[B]`` int classes to explain; default: the predicted classes.
      baseline: ``[B, H, W, C]`` or ``[H, W, C]`` baseline :math:`b`; default zeros.
      output: ``"logit"`` or ``"probability"``.

    Returns:
      :class:`Completeness` with ``[B]`` fields.

    Raises:
      ValueError: on bad ``images``, ``attributions``, ``target``, ``baseline`` or ``output``.
    """
    _check_apply_fn(apply_fn)
    images = _check_images(images)
    _check_choice("output", output, OUTPUTS)
    attributions = jnp.asarray(attributions)
    if attributions.shape not in (images.shape, images.shape[:3]):
        raise ValueError(
            f"attributions must have shape {tuple(images.shape)} or {tuple(images.shape[:3])}, "
            f"got {tuple(attributions.shape)}"
        )
    baseline = _check_baseline(baseline, images)
    classes = _check_classes(target, images.shape[0], _num_classes(apply_fn, params, images))
    classes = _resolve_classes(apply_fn, params, images, classes)
    f_x = _scores(_logits(apply_fn, params, images), classes, output)
    f_b = _scores(_logits(apply_fn, params, baseline), classes, output)
    return _completeness(attributions, f_x, f_b)
