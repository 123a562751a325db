"""SAM, the Spike Activation Map (Kim & Panda, 2021): gradient-free, from spike trains.

Kim and Panda, "Visual explanations from spiking neural networks using inter-spike intervals"
(Scientific Reports 11, 19037, 2021; arXiv:2103.14441). Official code:
``Intelligent-Computing-Lab-Yale/Visual-Explanations-from-Spiking-Neural-Networks-using-Interspike-Intervals``.

For a spiking layer with spikes :math:`S^k_{ij,t} \\in \\{0, 1\\}` (channel :math:`k`,
position :math:`(i, j)`, step :math:`t`), the paper defines the *temporal spike contribution*
:math:`e^{-\\gamma |t - t'|}` of a spike at :math:`t'`, the *neuronal contribution score*

.. math::
    \\mathrm{NCS}^k_{ij,t} = \\sum_{t' \\in P^k_{ij,t}} e^{-\\gamma (t - t')},

where :math:`P^k_{ij,t}` is the set of the neuron's firing times up to :math:`t`, and the
heatmap at step :math:`t`

.. math::
    M_{ij,t} = \\sum_k \\mathrm{NCS}^k_{ij,t}\\, S^k_{ij,t}

(only neurons spiking at :math:`t` count, weighted by how densely they fired recently, i.e.
short inter-spike intervals score high). ``gamma`` = 0.5 is the official code's default.

Our reading of the details, which this module documents as defaults:

- **Current spike included** (``include_current=True``): the paper calls :math:`P` the set of
  "previous" firing times; the official code appends the current step's spikes to the
  history before summing, so a spike at :math:`t' = t` contributes :math:`e^0 = 1`. With
  ``include_current=False`` only :math:`t' < t` counts (a neuron's first spike then scores
  0). The NCS is computed for all steps with one :func:`jax.lax.scan`:
  :math:`\\mathrm{NCS}_t = e^{-\\gamma} \\mathrm{NCS}_{t-1} + S_t` (inclusive) and
  :math:`\\mathrm{NCS}^{<}_t = e^{-\\gamma} \\mathrm{NCS}_{t-1}` (exclusive).
  (The official code also adds :math:`e^{-\\gamma t}` for every *silent* past step, because it
  writes :math:`\\Delta t = t - S_{t'} t'`; we read that as an implementation artefact and
  follow the paper's equation.)
- **One map per image** (``time_reduction="last"``): the paper shows one heatmap per
  timestep and defines no aggregate. For a single map we take the last step, whose NCS has
  accumulated the whole spike history; ``"sum"`` (sum over steps) and an integer step index
  are offered too.
- **Resolution and range**: the layer-resolution map is brought to the input size (default:
  bilinear :func:`jax.image.resize`; the official code min-max normalizes, then resizes with
  ``skimage.transform.resize``, order 1) and min-max normalized to [0, 1] per image; an
  all-constant (e.g. all-zero) map becomes all zeros. We normalize *after* upsampling, so the
  output is exactly in [0, 1] whatever ``upsample`` is.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from svebi_jax import _validation as V
from svebi_jax._validation import is_tracer as _is_tracer
from svebi_jax.heatmaps import minmax_normalize
from svebi_jax.methods.grad import (
    ApplyFn,
    _check_apply_fn,
    _check_bool,
    _check_images,
)

__all__ = [
    "TIME_REDUCTIONS",
    "UPSAMPLE_METHODS",
    "minmax_normalize",
    "neuronal_contribution_score",
    "resize_maps",
    "sam_maps",
    "sam_maps_from_spikes",
    "sam_heatmaps",
]

Array = jax.Array
Upsample = Callable[[Array], Array]

TIME_REDUCTIONS: tuple[str, ...] = ("last", "sum")
UPSAMPLE_METHODS: tuple[str, ...] = ("bilinear", "nearest")


def _check_gamma(gamma) -> None:
    if _is_tracer(gamma):
        return
    g = np.asarray(gamma, dtype=np.float64)
    if g.ndim != 0 or not np.isfinite(g) or g <= 0:
        raise ValueError(f"gamma must be a finite number > 0, got {gamma!r}")


def _check_spikes(spikes) -> Array:
    spikes = jnp.asarray(spikes)
    if spikes.ndim != 5 or min(spikes.shape) < 1:
        raise ValueError(
            f"spikes must be a non-empty time-major [T, B, H, W, C] array, got shape "
            f"{tuple(spikes.shape)}"
        )
    if not jnp.issubdtype(spikes.dtype, jnp.floating):
        spikes = spikes.astype(jnp.float32)
    return spikes


def _check_time_reduction(time_reduction, num_steps: int | None = None):
    if isinstance(time_reduction, str):
        if time_reduction not in TIME_REDUCTIONS:
            raise ValueError(
                f"time_reduction must be one of {TIME_REDUCTIONS} or an int step index, "
                f"got {time_reduction!r}"
            )
        return time_reduction
    if isinstance(time_reduction, bool) or not isinstance(time_reduction, int | np.integer):
        raise ValueError(
            f"time_reduction must be one of {TIME_REDUCTIONS} or an int step index, "
            f"got {time_reduction!r}"
        )
    if num_steps is not None and not -num_steps <= time_reduction < num_steps:
        raise ValueError(
            f"time_reduction step index must lie in [-{num_steps}, {num_steps - 1}], "
            f"got {time_reduction}"
        )
    return int(time_reduction)


def neuronal_contribution_score(
    spikes: Array, gamma: float | Array = 0.5, *, include_current: bool = True
) -> Array:
    """NCS of every neuron at every step, by a :func:`jax.lax.scan` recurrence.

    .. math::
        \\mathrm{NCS}_t = \\sum_{t' \\le t} e^{-\\gamma (t - t')} S_{t'}
        = e^{-\\gamma}\\,\\mathrm{NCS}_{t-1} + S_t

    (``include_current=False``: :math:`t' < t`, i.e. :math:`e^{-\\gamma}\\mathrm{NCS}_{t-1}`).

    Args:
      spikes: ``[T, ...]`` time-major spikes (binary, float or bool).
      gamma: decay :math:`\\gamma > 0` of the temporal spike contribution.
      include_current: whether the spike at :math:`t` itself counts (with weight 1).

    Returns:
      ``[T, ...]`` float NCS.

    Raises:
      ValueError: if ``gamma`` ≤ 0 or ``spikes`` has no time axis.
    """
    _check_gamma(gamma)
    include_current = _check_bool("include_current", include_current)
    spikes = jnp.asarray(spikes)
    if spikes.ndim < 1 or spikes.shape[0] < 1:
        raise ValueError(f"spikes must be time-major [T, ...], got shape {tuple(spikes.shape)}")
    if not jnp.issubdtype(spikes.dtype, jnp.floating):
        spikes = spikes.astype(jnp.float32)
    decay = jnp.exp(-jnp.asarray(gamma, spikes.dtype))

    def step(prev, s):
        past = decay * prev
        new = past + s
        return new, (new if include_current else past)

    _, ncs = jax.lax.scan(step, jnp.zeros_like(spikes[0]), spikes)
    return ncs


def sam_heatmaps(
    spikes: Array, gamma: float | Array = 0.5, *, include_current: bool = True
) -> Array:
    """Per-step SAM heatmaps at the layer's resolution, :math:`M_t = \\sum_k NCS^k_t S^k_t`.

    Args:
      spikes: ``[T, B, H, W, C]`` spike trains of one layer.
      gamma: :math:`\\gamma > 0`.
      include_current: see :func:`neuronal_contribution_score`.

    Returns:
      ``[T, B, H, W]`` float heatmaps (not normalized).
    """
    spikes = _check_spikes(spikes)
    ncs = neuronal_contribution_score(spikes, gamma, include_current=include_current)
    return (ncs * spikes).sum(axis=-1)


def resize_maps(maps: Array, size: tuple[int, int], method: str = "bilinear") -> Array:
    """Resizes ``[B, h, w]`` maps to ``[B, H, W]`` with :func:`jax.image.resize`.

    Args:
      maps: ``[B, h, w]`` float maps.
      size: ``(H, W)`` target size.
      method: ``"bilinear"`` (default) or ``"nearest"``.

    Returns:
      ``[B, H, W]`` float maps.
    """
    if method not in UPSAMPLE_METHODS:
        raise ValueError(
            f"upsample must be one of {UPSAMPLE_METHODS} or a callable, got {method!r}"
        )
    return jax.image.resize(maps, (maps.shape[0],) + tuple(size), method=method)


def _upsample_fn(upsample, size) -> Upsample:
    if upsample is None:
        upsample = "bilinear"
    if isinstance(upsample, str):
        if upsample not in UPSAMPLE_METHODS:
            raise ValueError(
                f"upsample must be one of {UPSAMPLE_METHODS} or a callable, got {upsample!r}"
            )
        return functools.partial(resize_maps, size=tuple(size), method=upsample)
    if not callable(upsample):
        raise ValueError(
            f"upsample must be one of {UPSAMPLE_METHODS} or a callable, got {upsample!r}"
        )
    return upsample


def _reduce_time(heat: Array, time_reduction) -> Array:
    if time_reduction == "last":
        return heat[-1]
    if time_reduction == "sum":
        return heat.sum(axis=0)
    return heat[time_reduction]


def sam_maps_from_spikes(
    spikes: Array,
    *,
    size: tuple[int, int],
    gamma: float | Array = 0.5,
    time_reduction: str | int = "last",
    include_current: bool = True,
    upsample: str | Upsample | None = None,
) -> Array:
    """SAM maps from recorded spike trains (see the module docstring).

    Args:
      spikes: ``[T, B, h, w, C]`` spike trains of one spiking layer.
      size: ``(H, W)`` input image size the maps are brought to.
      gamma: :math:`\\gamma > 0` (default 0.5).
      time_reduction: ``"last"`` (default: the heatmap at the last step), ``"sum"`` (sum of
        the per-step heatmaps) or an int step index (negative counts from the end).
      include_current: whether the spike at :math:`t` counts in its own NCS (default, as in the
        official code).
      upsample: ``None``/``"bilinear"`` (default), ``"nearest"``, or a callable mapping the
        ``[B, h, w]`` layer-resolution map to ``[B, H, W]`` (e.g. the receptive-field-aligned
        upsampling of :mod:`svebi_jax.heatmaps`).

    Returns:
      ``[B, H, W]`` float maps in [0, 1] (min-max normalized per image; constant → zeros).

    Raises:
      ValueError: on bad ``spikes``, ``gamma``, ``time_reduction``, ``upsample`` or a
        callable's output shape.
    """
    spikes = _check_spikes(spikes)
    _check_gamma(gamma)
    time_reduction = _check_time_reduction(time_reduction, spikes.shape[0])
    up = _upsample_fn(upsample, size)
    heat = sam_heatmaps(spikes, gamma, include_current=include_current)
    maps = up(_reduce_time(heat, time_reduction))
    expected = (spikes.shape[1],) + tuple(size)
    if tuple(maps.shape) != expected:
        raise ValueError(f"upsample must return maps of shape {expected}, got {maps.shape}")
    # NaN spikes (the model's flag for a non-finite image under jit) give NaN maps, not zeros.
    return V.flag_rows(minmax_normalize(maps), V.rows_finite(spikes, axis=1))


@functools.partial(jax.jit, static_argnames=("apply_fn", "layer"))
def _record_spikes(apply_fn, params, images, *, layer):
    return apply_fn(params, images, record="spikes").spikes[layer]


def sam_maps(
    apply_fn: ApplyFn,
    params,
    images: Array,
    *,
    layer: str,
    gamma: float | Array = 0.5,
    time_reduction: str | int = "last",
    include_current: bool = True,
    upsample: str | Upsample | None = None,
) -> Array:
    """SAM saliency of one spiking layer (Kim & Panda, 2021); no gradients, no class label.

    Runs ``apply_fn(params, images, record="spikes")`` to get the layer's ``[T, B, h, w, C]``
    spike trains, then :func:`sam_maps_from_spikes`.

    Args:
      apply_fn: the model, ``apply_fn(params, images, *, record="spikes") -> SNNOutput`` whose
        ``spikes`` maps layer names to ``[T, B, h, w, C]`` spike trains.
      params: the model's parameter pytree.
      images: ``[B, H, W, C]`` float images.
      layer: name of the recorded spiking layer (e.g. ``"conv2"``).
      gamma: :math:`\\gamma > 0` (default 0.5).
      time_reduction: ``"last"`` (default), ``"sum"`` or an int step index.
      include_current: count the spike at :math:`t` in its own NCS (default ``True``).
      upsample: ``None``/``"bilinear"`` (default), ``"nearest"`` or a callable
        ``[B, h, w] -> [B, H, W]``.

    Returns:
      ``[B, H, W]`` float32 maps in [0, 1].

    Raises:
      ValueError: on bad ``images``, an unknown ``layer``, ``gamma`` ≤ 0, an unknown
        ``time_reduction`` or ``upsample``.
    """
    _check_apply_fn(apply_fn)
    images = _check_images(images)
    _check_gamma(gamma)
    _check_time_reduction(time_reduction)
    _upsample_fn(upsample, images.shape[1:3])
    recorded = jax.eval_shape(lambda p, x: apply_fn(p, x, record="spikes").spikes, params, images)
    if not isinstance(layer, str) or layer not in recorded:
        raise ValueError(
            f"layer must be one of the recorded layers {tuple(recorded)}, got {layer!r}"
        )
    if len(recorded[layer].shape) != 5:
        raise ValueError(
            f"layer {layer!r}: apply_fn must record [T, B, H, W, C] spike trains, got shape "
            f"{tuple(recorded[layer].shape)}"
        )
    spikes = _record_spikes(apply_fn, params, images, layer=layer)
    return sam_maps_from_spikes(
        spikes,
        size=tuple(images.shape[1:3]),
        gamma=gamma,
        time_reduction=time_reduction,
        include_current=include_current,
        upsample=upsample,
    )
