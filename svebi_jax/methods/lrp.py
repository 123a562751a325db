"""Spike-based layer-wise relevance propagation (LRP-ε through layers and time).

Relevance starts at the explained logit and flows, layer by layer and step by step, back to
the input pixels, following the spiking LRP rules of EventRPG (Sun et al., "EventRPG:
Event data augmentation with relevance propagation guidance", ICLR 2024: SLRP/SLTRP) with
the ε-rule (Bach et al., 2015) at every sum. With :math:`\\operatorname{st}(z) = z + \\epsilon
\\operatorname{sign}(z)` (:math:`\\operatorname{sign}(0) = 1`):

- **Readout** (integrator, leak :math:`\\beta_r`): the logit
  :math:`y_c = \\frac{1}{T}\\sum_t \\beta_r^{T-1-t} I^{out}_c[t]` is a sum, so the current of
  step :math:`t` gets exactly :math:`R^{out}_c[t] = \\beta_r^{T-1-t} I^{out}_c[t] / T`
  (nothing absorbed; other classes get 0).
- **Conv / Dense** :math:`z_j = \\sum_i x_i w_{ij} + b_j` (per step, :math:`x` the spikes of
  the layer below or, for the first layer, the image presented at step :math:`t`):

  .. math::
      R_i = \\sum_j \\frac{x_i w_{ij}}{\\operatorname{st}(z_j)} R_j,

  absorbing the bias share :math:`\\sum_j b_j R_j/\\operatorname{st}(z_j)` and the ε share
  :math:`\\sum_j R_j (1 - z_j/\\operatorname{st}(z_j))`.
- **Pooling** (max, average, sum) and ``Scale``: :math:`R_i = x_i \\, \\partial_{x_i} z_j \\,
  R_j / z_j` (:math:`0` where :math:`z_j = 0`); for max pooling the gradient picks the
  maximum (tied maxima of binary spikes share equally), so relevance is conserved.
- **LIF** (any reset, with the library's update :math:`U[t] = P[t] + I[t]`, where
  :math:`P[t] = U[t] - I[t]` is the leaked, reset-corrected past: :math:`\\beta U[t-1] -
  \\theta S[t-1]` for the subtractive reset): the relevance of a spike :math:`S[t] =
  H(U[t] - \\theta)` passes to its potential (as through a ReLU; SLRP), and the potential's
  relevance is split between the present input and the past (SLTRP), backwards in time:

  .. math::
      R_{U[t]} = R_{S[t]} + R_{P[t+1]}, \\qquad
      R_{I[t]} = \\frac{I[t]}{\\operatorname{st}(U[t])} R_{U[t]}, \\qquad
      R_{P[t]} = \\frac{P[t]}{\\operatorname{st}(U[t])} R_{U[t]}

  (:math:`R_{P[t]}` is the relevance of :math:`U[t-1]` through the leak and reset, so the
  leak and the reset carry relevance to earlier steps instead of absorbing it; only the ε
  share is absorbed). A named LIF's gain and bias :math:`I = g Z + b` are an ε-rule again
  (the bias share absorbed).

**Conservation**: at every layer, the relevance that enters from above equals the relevance
passed below plus the absorbed bias and ε shares (:class:`LayerBudget`), and the relevance
that enters the readout is the explained logit :math:`y_c`; so

.. math::
    \\sum_{t, h, w, c} R^{input}_{t,hwc} = y_c - \\sum_{\\text{layers}}
    (\\text{bias} + \\epsilon \\text{ shares}).

The input relevance of step :math:`t` is that of the image presented at step :math:`t`
(``time_resolved``); the 2-D map sums it over steps and colour channels (signed).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from svebi_jax import _validation as V
from svebi_jax import layers as L
from svebi_jax.methods import _trace as TR

__all__ = ["LRPResult", "LayerBudget", "lrp_maps", "lrp_relevance"]

Array = jax.Array


class LayerBudget(NamedTuple):
    """Relevance bookkeeping of one layer, each ``[B]``.

    ``upper = lower + bias + eps + other`` (to float rounding): ``upper`` enters from the
    layer above, ``lower`` is passed to the layer's input, ``bias`` and ``eps`` are the
    shares the ε-rule absorbs, ``other`` what has no input to go to (relevance on a pooling
    output of zero, the rest potential before the first step; 0 in exact arithmetic).
    """

    upper: Array
    lower: Array
    bias: Array
    eps: Array
    other: Array


class LRPResult(NamedTuple):
    """Spike LRP of a batch.

    Attributes:
      input: ``[T, B, H, W, C]`` signed relevance of the image presented at each step.
      score: ``[B]`` the explained logits :math:`y_c`.
      classes: ``[B]`` the explained classes.
      budgets: ``{layer label: LayerBudget}``, labels ``"<index>_<name>"`` in layer order
        (LIF populations are ``"<index>_lif_<synaptic layer>"``).
    """

    input: Array
    score: Array
    classes: Array
    budgets: dict


def _sign0(z):
    return jnp.where(z >= 0, 1.0, -1.0).astype(z.dtype)


def _stab(z, eps):
    return z + eps * _sign0(z)


def _per_image(a):
    """``[T, B, ...]`` -> ``[B]`` sums."""
    return a.reshape(a.shape[:2] + (-1,)).sum(axis=(0, 2))


def _relprop_op(spec, x, z, static, r, weights, eps, num_steps):
    """Relevance ``r`` on ``z`` (``[T, B, ...]``) -> ``(r on x [T, B, ...], budget parts)``."""
    if static:
        x = jnp.broadcast_to(x, (num_steps,) + x.shape)
        z = jnp.broadcast_to(z, (num_steps,) + z.shape)
    zero = jnp.zeros(r.shape[1:2], r.dtype)
    if isinstance(spec, L.Flatten):
        return r.reshape(x.shape), zero, zero, zero
    t, b = x.shape[:2]
    xf = x.reshape((t * b,) + x.shape[2:])
    if isinstance(spec, (L.Conv, L.Dense)):
        st = _stab(z, eps)
        s = r / st
        p = weights[spec.name]
        bias = _per_image(s * p["bias"]) if spec.use_bias else zero
        eps_part = _per_image(r - z * s)
        other = zero
    else:  # pooling, Scale: no bias, no ε; relevance on z = 0 has nowhere to go
        nz = z != 0
        s = jnp.where(nz, r / jnp.where(nz, z, 1.0), 0.0)
        bias = eps_part = zero
        other = _per_image(jnp.where(nz, 0.0, r))
    _, vjp = jax.vjp(lambda a: L._apply(a, spec, weights), xf)
    (c,) = vjp(s.reshape((t * b,) + s.shape[2:]))
    rx = (xf * c).reshape(x.shape)
    return rx, bias, eps_part, other


def _relprop_lif(rec: TR.LIFRecord, r_spikes, weights, spec, eps):
    """Relevance of the spikes -> relevance of the synaptic output ``Z`` (all ``[T, B, ...]``)."""
    u, cur = rec.membrane, rec.current
    past = u - cur

    def step(carry, xs):
        rs, u_t, i_t, p_t = xs
        ru = rs + carry
        st = _stab(u_t, eps)
        ri = i_t / st * ru
        rp = p_t / st * ru
        return rp, (ri, ru - ri - rp)

    left, (r_cur, eps_t) = jax.lax.scan(
        step, jnp.zeros_like(u[0]), (r_spikes, u, cur, past), reverse=True
    )
    eps_part = _per_image(eps_t)
    other = left.reshape(left.shape[0], -1).sum(axis=1)
    p = weights[spec.name] if spec.name is not None else {}
    zero = jnp.zeros(r_spikes.shape[1:2], r_spikes.dtype)
    if "gain" not in p and "bias" not in p:
        return r_cur, zero, eps_part, other
    syn = rec.synaptic
    gz = syn * p["gain"] if "gain" in p else syn
    st = _stab(cur, eps)
    s = r_cur / st
    r_syn = gz * s
    bias = _per_image(s * p["bias"]) if "bias" in p else zero
    return r_syn, bias, eps_part + _per_image(r_cur - cur * s), other


def _label(i, spec, layers):
    if isinstance(spec, L.LIF):
        return f"{i:02d}_lif_{layers[i - 1].name}"
    name = getattr(spec, "name", None) or type(spec).__name__.lower()
    return f"{i:02d}_{name}"


def _lrp_trace(network, weights, images, classes, eps):
    layers, config = network
    num_steps = config.num_steps
    trace = TR.forward_trace(network, weights, images)
    if classes is None:
        classes = jnp.argmax(trace.logits, axis=-1).astype(jnp.int32)
    score = jnp.take_along_axis(trace.logits, classes[:, None], axis=-1)[:, 0]
    readout = trace.records[-1]
    cur = readout.z
    if readout.static:
        cur = jnp.broadcast_to(cur, (num_steps,) + cur.shape)
    t = jnp.arange(num_steps, dtype=cur.dtype)
    decay = jnp.asarray(trace.readout_beta, cur.dtype) ** (num_steps - 1 - t)[:, None, None]
    onehot = jax.nn.one_hot(classes, cur.shape[-1], dtype=cur.dtype)
    r = decay * cur * onehot / num_steps
    budgets = {}
    for i in range(len(layers) - 1, -1, -1):
        spec, rec = layers[i], trace.records[i]
        upper = _per_image(r)
        if isinstance(rec, TR.LIFRecord):
            r, bias, eps_part, other = _relprop_lif(rec, r, weights, spec, eps)
        else:
            r, bias, eps_part, other = _relprop_op(
                spec, rec.x, rec.z, rec.static, r, weights, eps, num_steps
            )
        budgets[_label(i, spec, layers)] = LayerBudget(upper, _per_image(r), bias, eps_part, other)
    return LRPResult(r, score, classes, dict(sorted(budgets.items())))


@functools.partial(jax.jit, static_argnames=("apply_fn", "network", "epsilon"))
def _core(apply_fn, params, images, classes, *, network, epsilon):
    net, weights = TR.resolve(apply_fn, params, network)
    res = _lrp_trace(net, weights, images, classes, epsilon)
    valid = V.rows_finite(images)
    return res._replace(input=V.flag_rows(res.input, valid, axis=1))


def _validate(apply_fn, params, images, target, network, epsilon):
    if not callable(apply_fn):
        raise TypeError(f"apply_fn must be callable, got {type(apply_fn).__name__}")
    images = jnp.asarray(V.check_images(images))
    network = TR.check_network(network)
    epsilon = float(V.check_number("epsilon", epsilon, low=0.0))
    net, weights = TR.resolve(apply_fn, params, network)
    TR.check_supported(net, weights)
    if target is not None:
        k = net.layers[-1].features
        target = V.check_classes(target, batch=images.shape[0], num_classes=k, name="target")
    return images, target, network, epsilon


def lrp_relevance(
    apply_fn, params, images, target=None, *, network=None, epsilon: float = 1e-6
) -> LRPResult:
    """Spike LRP-ε relevance of the input and every layer's budget (module docstring).

    Args:
      apply_fn: the model (a :func:`svebi_jax.models.functional` model, or any ``apply_fn``
        with ``network``).
      params: its parameters.
      images: ``[B, H, W, C]`` float images.
      target: ``[B]`` int classes to explain (``None``: the predicted ones).
      network: ``(layers, config)`` for an ``apply_fn`` that does not carry its specs.
      epsilon: :math:`\\epsilon \\ge 0` of the stabilizer (default ``1e-6``).

    Returns:
      :class:`LRPResult`.

    Raises:
      ValueError: bad ``images``, ``target``, ``network`` or ``epsilon``, or a network with a
        current-based synapse.
    """
    images, target, network, epsilon = _validate(apply_fn, params, images, target, network, epsilon)
    return _core(apply_fn, params, images, target, network=network, epsilon=epsilon)


@functools.partial(jax.jit, static_argnames=("apply_fn", "network", "epsilon", "time_resolved"))
def _map_core(apply_fn, params, images, classes, *, network, epsilon, time_resolved):
    rel = _core.__wrapped__(
        apply_fn, params, images, classes, network=network, epsilon=epsilon
    ).input.sum(axis=-1)
    return rel if time_resolved else rel.sum(axis=0)


@functools.lru_cache(maxsize=16)
def _sharded(apply_fn, network, epsilon, time_resolved, mesh):
    from svebi_jax import sharding as S

    def core(params, images, classes):
        return _map_core(
            apply_fn,
            params,
            images,
            classes,
            network=network,
            epsilon=epsilon,
            time_resolved=time_resolved,
        )

    return S.data_parallel(core, mesh, in_axes=(None, 0, 0), out_axes=1 if time_resolved else 0)


def lrp_maps(
    apply_fn,
    params,
    images,
    target=None,
    *,
    network=None,
    epsilon: float = 1e-6,
    time_resolved: bool = False,
    mesh=None,
) -> Array:
    """Spike LRP-ε maps: the input relevance summed over colour channels (and steps).

    Args:
      apply_fn, params, images, target, network, epsilon: see :func:`lrp_relevance`.
      time_resolved: return the ``[T, B, H, W]`` relevance of the image presented at each
        step instead of its sum over steps.
      mesh: optional :class:`jax.sharding.Mesh`: maps computed data-parallel over its devices.

    Returns:
      ``[B, H, W]`` (or ``[T, B, H, W]``) float32 signed relevance; its sum is the explained
      logit minus the absorbed shares (:class:`LayerBudget`).
    """
    time_resolved = V.check_bool("time_resolved", time_resolved)
    images, target, network, epsilon = _validate(apply_fn, params, images, target, network, epsilon)
    if mesh is None:
        return _map_core(
            apply_fn,
            params,
            images,
            target,
            network=network,
            epsilon=epsilon,
            time_resolved=time_resolved,
        )
    from svebi_jax import batching
    from svebi_jax import sharding as S

    fn = batching.cached_builder(
        _sharded, apply_fn, network, epsilon, time_resolved, S.check_mesh(mesh)
    )
    return fn(params, images, target)


def make_attr_fn(
    apply_fn, *, network=None, epsilon: float = 1e-6, time_resolved: bool = False, mesh=None
):
    """Spike LRP-ε as an ``attr_fn(params, images, target)`` (:func:`lrp_maps`'s options).

    Exposed as :func:`svebi_jax.attribution.lrp`. Returns ``[B, H, W]`` signed relevance
    (``[T, B, H, W]`` with ``time_resolved=True``).
    """
    if not callable(apply_fn):
        raise TypeError(f"apply_fn must be callable, got {type(apply_fn).__name__}")
    network = TR.check_network(network)
    V.check_number("epsilon", epsilon, low=0.0)
    V.check_bool("time_resolved", time_resolved)

    def attr_fn(params, images, target=None):
        return lrp_maps(
            apply_fn,
            params,
            images,
            target,
            network=network,
            epsilon=epsilon,
            time_resolved=time_resolved,
            mesh=mesh,
        )

    return attr_fn
