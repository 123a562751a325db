"""SNN Grad-CAM: class activation maps from surrogate gradients w.r.t. a layer's spikes.

Kim and Panda, "Visual explanations from spiking neural networks using inter-spike
intervals" (Scientific Reports 11, 19037, 2021) define an "SNN-crafted Grad-CAM" as the
baseline of their SAM. For a spiking conv layer with spikes :math:`A^k_{ij,t}` (channel
:math:`k`, position :math:`(i, j)`, step :math:`t`) and the score :math:`y^c` of class
:math:`c`, the channel weights are the (surrogate) gradients summed over positions and
steps,

.. math::
    \\alpha^{c}_{k} = \\frac{1}{Z} \\sum_{i,j} \\sum_{t}
        \\frac{\\partial y^c}{\\partial A^k_{ij,t}}, \\qquad Z = h \\cdot w,

and the map of step :math:`t` is the rectified weighted sum of the layer's spike maps

.. math::
    G^c_{ij,t} = \\operatorname{ReLU}\\Big(\\sum_k \\alpha^c_k A^k_{ij,t}\\Big).

(The paper's weights are the same at every step; ``channel_weights="per_step"`` offers
:math:`\\alpha^c_{k,t}`, the gradient summed over positions only, whose sum over steps is
:math:`\\alpha^c_k`.) One map per image aggregates the steps (``time_reduction="sum"``, default:
:math:`\\sum_t G^c_{ij,t}`; or one step), brings it to the image (receptive-field aligned, as
SVEBI's and SAM's maps, or a bilinear stretch) and min-max normalizes it to [0, 1].

The gradient w.r.t. the spikes is the gradient w.r.t. a zero "probe" added to the layer's
spikes in a traced forward pass (:func:`svebi_jax.methods._trace.forward_trace`, the same
ops and surrogate as the model's runner): downstream LIF layers contribute their surrogate
derivatives, exactly as in training. :math:`y^c` is the logit (readout potential / ``T``) or
its softmax probability.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from svebi_jax import _validation as V
from svebi_jax import heatmaps as H
from svebi_jax import layers as L
from svebi_jax.methods import _trace as TR

__all__ = [
    "CHANNEL_WEIGHTS",
    "OUTPUTS",
    "gradcam_maps",
    "gradcam_steps",
    "gradcam_weights",
]

Array = jax.Array

#: The explained score :math:`y^c`: the logit or its softmax probability.
OUTPUTS: tuple[str, ...] = ("logit", "probability")


def _scores(logits: Array, classes: Array, output: str) -> Array:
    """``[B]`` scores: the class's logit or its softmax probability."""
    if output == "probability":
        logits = jax.nn.softmax(logits, axis=-1)
    return jnp.take_along_axis(logits, classes[:, None], axis=-1)[:, 0]


def _check_time_reduction(time_reduction, num_steps: int):
    if time_reduction == "sum":
        return "sum"
    if isinstance(time_reduction, bool) or not isinstance(time_reduction, int):
        raise ValueError(
            f"time_reduction must be 'sum' or an int step index, got {time_reduction!r}"
        )
    if not -num_steps <= time_reduction < num_steps:
        raise ValueError(
            f"time_reduction step index must lie in [-{num_steps}, {num_steps - 1}], "
            f"got {time_reduction}"
        )
    return time_reduction


def _spike_grads(network, weights, images, classes, layer, output):
    """``(spikes, grads, classes)`` of ``layer``: both ``[T, B, h, w, K]``."""
    if classes is None:
        logits = TR.forward_trace(network, weights, images).logits
        classes = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    shape = TR.spiking_shapes(network, weights, images)[layer]

    def score(probe):
        trace = TR.forward_trace(network, weights, images, probe=probe, probe_layer=layer)
        spikes = next(
            r.spikes for r in trace.records if isinstance(r, TR.LIFRecord) and r.name == layer
        )
        return _scores(trace.logits, classes, output).sum(), spikes

    grads, spikes = jax.grad(score, has_aux=True)(jnp.zeros(shape, jnp.float32))
    return spikes, grads, classes


def _steps(spikes, grads, weights="summed"):
    """``(alpha [B, K] or [T, B, K], G [T, B, h, w])``."""
    h, w = spikes.shape[2:4]
    if weights == "per_step":
        alpha = grads.sum(axis=(2, 3)) / (h * w)
        return alpha, jax.nn.relu(jnp.einsum("tbhwk,tbk->tbhw", spikes, alpha))
    alpha = grads.sum(axis=(0, 2, 3)) / (h * w)
    return alpha, jax.nn.relu(jnp.einsum("tbhwk,bk->tbhw", spikes, alpha))


def _resolved(apply_fn, params, images, network):
    network, weights = TR.resolve(apply_fn, params, network)
    TR.check_supported(network, weights)
    return network, weights


@functools.partial(
    jax.jit, static_argnames=("apply_fn", "network", "layer", "output", "channel_weights")
)
def _steps_core(apply_fn, params, images, classes, *, network, layer, output, channel_weights):
    net, weights = _resolved(apply_fn, params, images, network)
    spikes, grads, classes = _spike_grads(net, weights, images, classes, layer, output)
    alpha, steps = _steps(spikes, grads, channel_weights)
    return steps, alpha, classes


#: How the channel weights treat time: summed over steps (the paper) or one per step.
CHANNEL_WEIGHTS: tuple[str, ...] = ("summed", "per_step")


def _validate(apply_fn, params, images, target, network, layer, output, channel_weights):
    if not callable(apply_fn):
        raise TypeError(f"apply_fn must be callable, got {type(apply_fn).__name__}")
    images = jnp.asarray(V.check_images(images))
    network = TR.check_network(network)
    V.check_choice("output", output, OUTPUTS)
    V.check_choice("channel_weights", channel_weights, CHANNEL_WEIGHTS)
    net, _ = TR.resolve(apply_fn, params, network)
    conv = L.conv_layer_names(net.layers)
    if not isinstance(layer, str) or layer not in conv:
        raise ValueError(f"layer must be one of the spiking conv layers {conv}, got {layer!r}")
    if target is not None:
        k = net.layers[-1].features
        target = V.check_classes(target, batch=images.shape[0], num_classes=k, name="target")
    return images, target, network, net


def gradcam_weights(
    apply_fn,
    params,
    images,
    target=None,
    *,
    layer: str,
    network=None,
    output: str = "logit",
    channel_weights: str = "summed",
) -> Array:
    """The channel weights :math:`\\alpha^c_k` (module docstring).

    Args:
      apply_fn: the model (a :func:`svebi_jax.models.functional` model, or any ``apply_fn``
        with ``network``).
      params: its parameters.
      images: ``[B, H, W, C]`` float images.
      target: ``[B]`` int classes (``None``: the predicted ones).
      layer: a spiking conv layer.
      network: ``(layers, config)`` for an ``apply_fn`` that does not carry its specs.
      output: ``"logit"`` (default) or ``"probability"``.
      channel_weights: ``"summed"`` (default, the paper's :math:`\\alpha^c_k`: gradients
        summed over positions and steps) or ``"per_step"`` (one weight per step,
        :math:`\\alpha^c_{k,t} = \\frac{1}{Z}\\sum_{i,j} \\partial y^c / \\partial
        A^k_{ij,t}`, so :math:`\\sum_t \\alpha^c_{k,t} = \\alpha^c_k`).

    Returns:
      ``[B, K_layer]`` (``[T, B, K_layer]`` for ``"per_step"``) float weights.
    """
    images, target, network, _ = _validate(
        apply_fn, params, images, target, network, layer, output, channel_weights
    )
    return _steps_core(
        apply_fn,
        params,
        images,
        target,
        network=network,
        layer=layer,
        output=output,
        channel_weights=channel_weights,
    )[1]


def gradcam_steps(
    apply_fn,
    params,
    images,
    target=None,
    *,
    layer: str,
    network=None,
    output: str = "logit",
    channel_weights: str = "summed",
) -> Array:
    """Per-step Grad-CAM maps :math:`G^c_{ij,t}` at the layer's resolution, ``[T, B, h, w]``.

    Same arguments as :func:`gradcam_weights`; the maps are neither upsampled nor normalized.
    """
    images, target, network, _ = _validate(
        apply_fn, params, images, target, network, layer, output, channel_weights
    )
    return _steps_core(
        apply_fn,
        params,
        images,
        target,
        network=network,
        layer=layer,
        output=output,
        channel_weights=channel_weights,
    )[0]


_MAP_STATIC = (
    "apply_fn",
    "network",
    "layer",
    "output",
    "channel_weights",
    "time_reduction",
    "placement",
)


@functools.partial(jax.jit, static_argnames=_MAP_STATIC)
def _map_core(
    apply_fn,
    params,
    images,
    classes,
    *,
    network,
    layer,
    output,
    channel_weights,
    time_reduction,
    placement,
):
    steps, _, _ = _steps_core.__wrapped__(
        apply_fn,
        params,
        images,
        classes,
        network=network,
        layer=layer,
        output=output,
        channel_weights=channel_weights,
    )
    m = steps.sum(axis=0) if time_reduction == "sum" else steps[time_reduction]
    net, _ = _resolved(apply_fn, params, images, network)
    hw = tuple(images.shape[1:3])
    if placement == "aligned":
        geo = L.layer_geometry(net.layers, tuple(images.shape[1:]))[layer]
        m = H.upsample_aligned(m, geo, hw)
    else:
        m = H.upsample_stretch(m, hw)
    return V.flag_rows(H.minmax_normalize(m), V.rows_finite(images))


@functools.lru_cache(maxsize=16)
def _sharded(apply_fn, options, mesh):
    from svebi_jax import sharding as S

    def core(params, images, classes):
        return _map_core(apply_fn, params, images, classes, **dict(options))

    return S.data_parallel(core, mesh, in_axes=(None, 0, 0), out_axes=0)


def gradcam_maps(
    apply_fn,
    params,
    images,
    target=None,
    *,
    layer: str,
    network=None,
    output: str = "logit",
    channel_weights: str = "summed",
    time_reduction: str | int = "sum",
    placement: str = "aligned",
    mesh=None,
) -> Array:
    """SNN Grad-CAM maps (see the module docstring), ``[B, H, W]`` in [0, 1].

    Args:
      apply_fn: the model (a :func:`svebi_jax.models.functional` model, or any ``apply_fn``
        with ``network``).
      params: its parameters.
      images: ``[B, H, W, C]`` float images.
      target: ``[B]`` int classes to explain (``None``: the predicted ones).
      layer: a spiking conv layer (e.g. ``"conv2"``).
      network: ``(layers, config)`` for an ``apply_fn`` that does not carry its specs (e.g.
        ``(net.layers, net.config)`` of :func:`svebi_jax.interop.nir.from_nir`).
      output: ``"logit"`` (default) or ``"probability"``: the score :math:`y^c`.
      channel_weights: ``"summed"`` (default, the paper's) or ``"per_step"`` (see
        :func:`gradcam_weights`).
      time_reduction: ``"sum"`` (default: :math:`\\sum_t G_t`) or an int step index.
      placement: ``"aligned"`` (default: cells at their receptive-field centres,
        :func:`svebi_jax.heatmaps.upsample_aligned`) or ``"stretch"`` (bilinear resize).
      mesh: optional :class:`jax.sharding.Mesh`: maps computed data-parallel over its devices.

    Returns:
      ``[B, H, W]`` float32 maps, min-max normalized per image (a constant map gives zeros).

    Raises:
      ValueError: bad ``images``, ``target``, ``layer``, ``network``, ``output``,
        ``channel_weights``, ``time_reduction`` or ``placement``.
    """
    images, target, network, net = _validate(
        apply_fn, params, images, target, network, layer, output, channel_weights
    )
    time_reduction = _check_time_reduction(time_reduction, net.config.num_steps)
    V.check_choice("placement", placement, H.PLACEMENTS)
    options = dict(
        network=network,
        layer=layer,
        output=output,
        channel_weights=channel_weights,
        time_reduction=time_reduction,
        placement=placement,
    )
    if mesh is None:
        return _map_core(apply_fn, params, images, target, **options)
    from svebi_jax import batching
    from svebi_jax import sharding as S

    fn = batching.cached_builder(
        _sharded, apply_fn, tuple(sorted(options.items())), S.check_mesh(mesh)
    )
    return fn(params, images, target)


def make_attr_fn(
    apply_fn,
    *,
    layer: str,
    network=None,
    output: str = "logit",
    channel_weights: str = "summed",
    time_reduction: str | int = "sum",
    placement: str = "aligned",
    mesh=None,
):
    """SNN Grad-CAM of one spiking conv layer as an ``attr_fn(params, images, target)``.

    Exposed as :func:`svebi_jax.attribution.gradcam`; the options are those of
    :func:`gradcam_maps`. Returns ``[B, H, W]`` maps in [0, 1].
    """
    if not callable(apply_fn):
        raise TypeError(f"apply_fn must be callable, got {type(apply_fn).__name__}")
    if not isinstance(layer, str):
        raise ValueError(f"layer must be a spiking conv layer name, got {layer!r}")
    network = TR.check_network(network)
    V.check_choice("output", output, OUTPUTS)
    V.check_choice("channel_weights", channel_weights, CHANNEL_WEIGHTS)
    V.check_choice("placement", placement, H.PLACEMENTS)
    if time_reduction != "sum" and (
        isinstance(time_reduction, bool) or not isinstance(time_reduction, int)
    ):
        raise ValueError(
            f"time_reduction must be 'sum' or an int step index, got {time_reduction!r}"
        )

    def attr_fn(params, images, target=None):
        return gradcam_maps(
            apply_fn,
            params,
            images,
            target,
            layer=layer,
            network=network,
            output=output,
            channel_weights=channel_weights,
            time_reduction=time_reduction,
            placement=placement,
            mesh=mesh,
        )

    return attr_fn
