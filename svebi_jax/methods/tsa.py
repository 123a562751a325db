"""Temporal Spike Attribution (TSA-S, TSA-NS), brought to convolutional spiking networks.

Nguyen, Krause and Wagner et al., "Explainable AI for spiking neural networks" / "Temporal
Spike Attribution: a local feature-based explanation for temporally coded spiking neural
networks" (2023; code ``ElisaNguyen/tsa-explanations``). TSA scores each input at each step
by the paths its spikes open through the network, weighted by how recently the spikes came,
by the normalized weights they travel and by the confidence of the explained class.

For step :math:`t \\in \\{0, \\dots, T-1\\}` the *temporal spike contribution score* of neuron
:math:`i` of layer :math:`l` (the input is :math:`l = 0`) with spike :math:`s^l_i[t]` is

.. math::
    \\mathrm{TSCS}^l_i[t] = \\beta^{T - t}\\, s^l_i[t] \\quad (\\text{TSA-S}), \\qquad
    \\mathrm{TSCS}^l_i[t] = \\beta^{T - t} \\Big(s^l_i[t] - \\frac{1 - s^l_i[t]}{n_l}\\Big)
    \\quad (\\text{TSA-NS}),

with :math:`\\beta` the membrane decay and :math:`n_l` the number of neurons of layer
:math:`l` (TSA-NS lets a *missing* spike count, negatively and weakly). The weights enter as
*weight contributions* :math:`\\hat W^l = \\operatorname{sign}(W^l)\\,(|W^l| - \\min|W^l|) /
(\\max|W^l| - \\min|W^l|)` (per layer, over the whole kernel). With :math:`D^l[t] =
\\operatorname{diag}(\\mathrm{TSCS}^l[t])` and :math:`p_c` the softmax probability of class
:math:`c` after the last step, the attribution of input :math:`i` at step :math:`t` is

.. math::
    A_{i,c}[t] = \\big(D^0[t]\\, \\hat W^0 D^1[t]\\, \\hat W^1 \\cdots D^{L-1}[t]\\,
    \\hat W^{L-1}\\big)_{i c}\\; p_c .

**Convolutional case.** A product :math:`\\hat W^l v` with a conv layer is the transpose of
that convolution with kernel :math:`\\hat W^l` applied to :math:`v` (no bias); pooling
between a spiking layer and the next synaptic layer is linearized at the spikes of step
:math:`t` (max pooling routes to the window's spiking neurons, ties shared equally; a window
without spikes spreads equally over it), ``Flatten`` reshapes. The network's direct image
input takes the role of the input spike train: :math:`s^0_i[t] = x_i` (an intensity in
[0, 1] reads as a spike probability; binary inputs give the paper's rule exactly). Every
map is computed for all steps at once (one backward pass over ``[T·B, ...]``).

The 2-D map sums :math:`A_{i,c}[t]` over steps and colour channels (signed);
``time_resolved`` returns the ``[T, B, H, W]`` maps.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from svebi_jax import _validation as V
from svebi_jax import layers as L
from svebi_jax.methods import _trace as TR

__all__ = ["VARIANTS", "tsa_maps", "tsa_steps", "weight_contributions"]

Array = jax.Array

#: TSA variants: ``"s"`` (spiking neurons only) and ``"ns"`` (non-spiking neurons count too).
VARIANTS: tuple[str, ...] = ("s", "ns")


def weight_contributions(kernel: Array) -> Array:
    """:math:`\\operatorname{sign}(W)(|W| - \\min|W|)/(\\max|W| - \\min|W|)` over all entries
    (a constant :math:`|W|` gives :math:`\\operatorname{sign}(W)`)."""
    a = jnp.abs(kernel)
    lo, hi = a.min(), a.max()
    rng = hi - lo
    norm = jnp.where(rng > 0, (a - lo) / jnp.where(rng > 0, rng, 1.0), 1.0)
    return jnp.sign(kernel) * norm


def _tscs(s, decay, variant, n):
    """``[T, B, ...]`` scores of spikes ``s`` with ``decay [T]`` = :math:`\\beta^{T-t}`."""
    d = decay.reshape((-1,) + (1,) * (s.ndim - 1))
    return d * (s if variant == "s" else s - (1.0 - s) / n)


def _backward_op(spec, x, static, r, weights, num_steps):
    """``r`` on the op's output (``[T, B, ...]``) -> on its input, through the op's linear
    map (normalized kernel, no bias) at the op's input of each step."""
    if static:
        x = jnp.broadcast_to(x, (num_steps,) + x.shape)
    if isinstance(spec, L.Flatten):
        return r.reshape(x.shape)
    params = weights
    if isinstance(spec, (L.Conv, L.Dense)):
        p = {"kernel": weight_contributions(weights[spec.name]["kernel"])}
        if spec.use_bias:
            p["bias"] = jnp.zeros_like(weights[spec.name]["bias"])
        params = {spec.name: p}
    t, b = x.shape[:2]
    xf = x.reshape((t * b,) + x.shape[2:])
    _, vjp = jax.vjp(lambda a: L._apply(a, spec, params), xf)
    (c,) = vjp(r.reshape((t * b,) + r.shape[2:]))
    return c.reshape(x.shape)


def _tsa_trace(network, weights, images, classes, variant, beta):
    layers, config = network
    num_steps = config.num_steps
    trace = TR.forward_trace(network, weights, images)
    if classes is None:
        classes = jnp.argmax(trace.logits, axis=-1).astype(jnp.int32)
    probs = jax.nn.softmax(trace.logits, axis=-1)
    k = trace.logits.shape[-1]
    p_c = jnp.take_along_axis(probs, classes[:, None], axis=-1)
    r = p_c * jax.nn.one_hot(classes, k, dtype=probs.dtype)
    r = jnp.broadcast_to(r, (num_steps,) + r.shape)
    decay = jnp.asarray(beta, jnp.float32) ** (num_steps - jnp.arange(num_steps, dtype=jnp.float32))
    for i in range(len(layers) - 1, -1, -1):
        spec, rec = layers[i], trace.records[i]
        if isinstance(rec, TR.LIFRecord):
            n = int(jnp.size(rec.spikes[0, 0]))
            r = r * _tscs(rec.spikes, decay, variant, n)
        else:
            r = _backward_op(spec, rec.x, rec.static, r, weights, num_steps)
    x = jnp.broadcast_to(images, (num_steps,) + images.shape)
    return r * _tscs(x, decay, variant, int(jnp.size(images[0])))


def _beta_of(network, beta):
    if beta is not None:
        return beta
    return network.config.beta


@functools.partial(
    jax.jit, static_argnames=("apply_fn", "network", "variant", "beta", "time_resolved")
)
def _core(apply_fn, params, images, classes, *, network, variant, beta, time_resolved):
    net, weights = TR.resolve(apply_fn, params, network)
    a = _tsa_trace(net, weights, images, classes, variant, _beta_of(net, beta)).sum(axis=-1)
    a = V.flag_rows(a, V.rows_finite(images), axis=1)
    return a if time_resolved else a.sum(axis=0)


def _validate(apply_fn, params, images, target, network, variant, beta):
    if not callable(apply_fn):
        raise TypeError(f"apply_fn must be callable, got {type(apply_fn).__name__}")
    images = jnp.asarray(V.check_images(images))
    network = TR.check_network(network)
    V.check_choice("variant", variant, VARIANTS)
    if beta is not None:
        beta = V.check_number("beta", beta, low=0.0, high=1.0)
    net, weights = TR.resolve(apply_fn, params, network)
    TR.check_supported(net, weights)
    if target is not None:
        k = net.layers[-1].features
        target = V.check_classes(target, batch=images.shape[0], num_classes=k, name="target")
    return images, target, network, beta


def tsa_steps(
    apply_fn, params, images, target=None, *, network=None, variant: str = "s", beta=None
) -> Array:
    """Time-resolved TSA maps :math:`\\sum_c A_{i,c}[t]` over colour channels, ``[T, B, H, W]``.

    Same arguments as :func:`tsa_maps` (without ``time_resolved``/``mesh``).
    """
    images, target, network, beta = _validate(
        apply_fn, params, images, target, network, variant, beta
    )
    return _core(
        apply_fn,
        params,
        images,
        target,
        network=network,
        variant=variant,
        beta=beta,
        time_resolved=True,
    )


@functools.lru_cache(maxsize=16)
def _sharded(apply_fn, network, variant, beta, time_resolved, mesh):
    from svebi_jax import sharding as S

    def core(params, images, classes):
        return _core(
            apply_fn,
            params,
            images,
            classes,
            network=network,
            variant=variant,
            beta=beta,
            time_resolved=time_resolved,
        )

    return S.data_parallel(core, mesh, in_axes=(None, 0, 0), out_axes=1 if time_resolved else 0)


def tsa_maps(
    apply_fn,
    params,
    images,
    target=None,
    *,
    network=None,
    variant: str = "s",
    beta: float | None = None,
    time_resolved: bool = False,
    mesh=None,
) -> Array:
    """Temporal Spike Attribution maps (see the module docstring).

    Args:
      apply_fn: the model (a :func:`svebi_jax.models.functional` model, or any ``apply_fn``
        with ``network``).
      params: its parameters.
      images: ``[B, H, W, C]`` float images.
      target: ``[B]`` int classes to explain (``None``: the predicted ones).
      network: ``(layers, config)`` for an ``apply_fn`` that does not carry its specs.
      variant: ``"s"`` (TSA-S, default) or ``"ns"`` (TSA-NS).
      beta: :math:`\\beta` of the temporal scores; default the network's ``config.beta``.
      time_resolved: return the ``[T, B, H, W]`` maps of every step instead of their sum.
      mesh: optional :class:`jax.sharding.Mesh`: maps computed data-parallel over its devices.

    Returns:
      ``[B, H, W]`` (or ``[T, B, H, W]``) float32 signed attributions.

    Raises:
      ValueError: bad ``images``, ``target``, ``network``, ``variant`` or ``beta``.
    """
    time_resolved = V.check_bool("time_resolved", time_resolved)
    images, target, network, beta = _validate(
        apply_fn, params, images, target, network, variant, beta
    )
    if mesh is None:
        return _core(
            apply_fn,
            params,
            images,
            target,
            network=network,
            variant=variant,
            beta=beta,
            time_resolved=time_resolved,
        )
    from svebi_jax import batching
    from svebi_jax import sharding as S

    fn = batching.cached_builder(
        _sharded, apply_fn, network, variant, beta, time_resolved, S.check_mesh(mesh)
    )
    return fn(params, images, target)


def make_attr_fn(
    apply_fn,
    *,
    network=None,
    variant: str = "s",
    beta: float | None = None,
    time_resolved: bool = False,
    mesh=None,
):
    """Temporal Spike Attribution as an ``attr_fn(params, images, target)`` (:func:`tsa_maps`'s
    options).

    Exposed as :func:`svebi_jax.attribution.tsa`. Returns ``[B, H, W]`` signed maps
    (``[T, B, H, W]`` with ``time_resolved=True``).
    """
    if not callable(apply_fn):
        raise TypeError(f"apply_fn must be callable, got {type(apply_fn).__name__}")
    network = TR.check_network(network)
    V.check_choice("variant", variant, VARIANTS)
    if beta is not None:
        V.check_number("beta", beta, low=0.0, high=1.0)
    V.check_bool("time_resolved", time_resolved)

    def attr_fn(params, images, target=None):
        return tsa_maps(
            apply_fn,
            params,
            images,
            target,
            network=network,
            variant=variant,
            beta=beta,
            time_resolved=time_resolved,
            mesh=mesh,
        )

    return attr_fn
