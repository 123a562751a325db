"""Filter ablation (SVEBI paper §5.2, Fig. 3a): relevant vs. random filters.

Ablating a filter zeroes its output spikes through the forward pass's channel ``masks`` (no
model surgery). For every μ of a lasso path and every class ``j``, the class's relevant filters
are ablated on the images *of* class ``j`` and the accuracy on that class is measured; the same
is done with the same number of randomly drawn filters **per layer** (so the random control keeps
the layer distribution of the relevant set). Accuracies are averaged over classes (every class
weighs the same), beside the full model's class-averaged accuracy.

All mask sets (every μ, the relevant set and ``n_random`` random draws) are stacked and
evaluated inside one compiled function per image batch (``lax.map`` over mask sets); identical
mask sets along the μ path are evaluated once.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from svebi_jax import _validation as V
from svebi_jax import batching
from svebi_jax.protocols import ApplyFn

Array = jax.Array


class AblationResult(NamedTuple):
    """Class-averaged accuracies along a μ path.

    Attributes:
      mu: ``[P]`` the μ values.
      full: scalar, class-averaged accuracy of the intact model.
      relevant: ``[P]`` class-averaged accuracy with each class's relevant filters ablated.
      random: ``[P]`` the same with as many random filters per layer, mean over draws.
      random_std: ``[P]`` standard deviation of ``random`` over the draws.
      num_ablated: ``[P]`` mean number of filters ablated per class.
    """

    mu: np.ndarray
    full: float
    relevant: np.ndarray
    random: np.ndarray
    random_std: np.ndarray
    num_ablated: np.ndarray


def random_like_masks(
    key: Array, class_masks: Mapping[str, np.ndarray], n_draws: int
) -> dict[str, np.ndarray]:
    """Draws random filter sets with the same per-layer counts as ``class_masks``.

    Args:
      key: PRNG key.
      class_masks: ``{layer: [..., K, C_l]}`` 0/1 masks of the filters to ablate.
      n_draws: number of random draws ``R``.

    Returns:
      ``{layer: [R, ..., K, C_l]}`` 0/1 masks; each row has as many ones as the matching row
      of ``class_masks``, at uniformly random channels.
    """
    out = {}
    for i, (name, m) in enumerate(sorted(class_masks.items())):
        m = np.asarray(m)
        counts = m.sum(-1)  # [..., K]
        k = jax.random.fold_in(key, i)
        scores = jax.random.uniform(k, (n_draws,) + m.shape)
        ranks = jnp.argsort(jnp.argsort(scores, axis=-1), axis=-1)
        out[name] = np.asarray(ranks < counts[None, ..., None], dtype=np.float32)
    return out


def _correct_per_class(
    apply_fn: ApplyFn, params, images, labels, valid, mask_sets, num_classes: int
) -> Array:
    """``[S, K]`` correct counts of a batch under each of the ``S`` stacked mask sets."""

    def one(masks_k):  # {layer: [K, C]}
        keep = {name: 1.0 - m[labels] for name, m in masks_k.items()}  # [B, C]
        pred = jnp.argmax(apply_fn(params, images, masks=keep).logits, axis=-1)
        hit = ((pred == labels) & valid).astype(jnp.float32)
        return jax.ops.segment_sum(hit, labels, num_segments=num_classes)

    return jax.lax.map(one, mask_sets)


@functools.lru_cache(maxsize=16)
def _ablation_step(apply_fn: ApplyFn, num_classes: int):
    """The compiled step, built once per model (not per call of :func:`ablation_curve`)."""

    def step(params, images, labels, valid, mask_sets):
        return _correct_per_class(apply_fn, params, images, labels, valid, mask_sets, num_classes)

    return jax.jit(step)


@functools.lru_cache(maxsize=16)
def _sharded_ablation_step(apply_fn: ApplyFn, num_classes: int, mesh):
    """:func:`_ablation_step` with the batch split over ``mesh``: ``[D, S, K]`` counts."""
    from svebi_jax import sharding as S

    def step(params, images, labels, valid, mask_sets):
        return _correct_per_class(apply_fn, params, images, labels, valid, mask_sets, num_classes)

    return S.data_parallel(step, mesh, in_axes=(None, 0, 0, 0, None), out_axes=None)


def _check_model_classes(apply_fn, params, one_image, num_classes: int) -> None:
    abstract = jax.ShapeDtypeStruct(one_image.shape, one_image.dtype)
    out = jax.eval_shape(lambda p, x: apply_fn(p, x), params, abstract)
    if out.logits.shape[-1] != num_classes:
        raise ValueError(
            f"class_masks have K = {num_classes} classes but the model has {out.logits.shape[-1]}"
        )


def ablation_curve(
    apply_fn: ApplyFn,
    params,
    images,
    labels: np.ndarray | None,
    class_masks: Mapping[str, np.ndarray],
    *,
    mu: np.ndarray,
    key: Array,
    n_random: int = 3,
    batch_size: int = 250,
    mesh=None,
) -> AblationResult:
    """Relevant-vs-random filter ablation along a μ path.

    Args:
      apply_fn: ``apply_fn(params, images, *, masks) -> SNNOutput`` (``masks`` maps a spiking
        layer name to a ``[B, C]`` multiplier of its spikes).
      params: model parameters.
      images: ``[N, H, W, C]`` evaluation images, or any data the batching interface takes
        (a :class:`~svebi_jax.data.Dataset`, an iterable of ``(images, labels)`` batches;
        :mod:`svebi_jax.batching`) with ``labels=None``.
      labels: ``[N]`` int true labels in ``[0, K)`` for an image array, else ``None``.
      class_masks: ``{layer: [P, K, C_l]}`` 0/1 relevant-filter masks, one ``[K, C_l]`` per μ.
      mu: ``[P]`` the μ values (for the record).
      key: PRNG key for the random draws.
      n_random: number of random draws ``R`` per μ.
      batch_size: images per compiled batch (the last batch is padded); with a ``mesh``
        rounded up to a multiple of its devices.
      mesh: optional :class:`jax.sharding.Mesh` (:func:`svebi_jax.sharding.make_mesh`): each
        device counts the correct answers of its share of every batch, the counts are summed
        (exact integers, so the curve is identical to one device's). ``None``: one device.

    Returns:
      :class:`AblationResult`. Relevant filters matter when ``relevant`` lies below
      ``random`` (their ablation costs more accuracy than ablating as many random ones).

    Raises:
      ValueError: bad images, labels outside ``[0, K)``, masks that are not 0/1
        ``[P, K, C]`` or do not match ``mu`` and the model's classes, or non-positive
        ``n_random``/``batch_size``.

    The compiled step is cached per ``apply_fn``: repeated calls (e.g. other masks, another
    seed's parameters) compile again only when the number of distinct mask sets changes.
    """
    in_memory = isinstance(images, np.ndarray | jax.Array)
    if in_memory:
        images = V.check_images(np.asarray(images))
        if labels is None:
            raise ValueError("labels are required with an image array: [N] ints")
        labels = V.check_labels(np.asarray(labels), n=images.shape[0])
    elif labels is not None:
        raise ValueError("labels must be None when images is a Dataset or a stream of batches")
    n_random = V.check_positive_int("n_random", n_random)
    batch_size = V.check_positive_int("batch_size", batch_size)
    mu = np.asarray(mu)
    if mu.ndim != 1 or mu.shape[0] < 1:
        raise ValueError(f"mu must be a non-empty [P] array of the path's values, got {mu.shape}")
    if not isinstance(class_masks, Mapping) or not class_masks:
        raise ValueError("class_masks must be a non-empty {layer: [P, K, C]} mapping")
    names = sorted(class_masks)
    first = np.asarray(class_masks[names[0]])
    if first.ndim != 3 or first.shape[0] != mu.shape[0]:
        raise ValueError(
            f"class_masks must be {{layer: [P, K, C]}} with P = len(mu) = {mu.shape[0]}, "
            f"got {first.shape} for {names[0]!r}"
        )
    num_mu, num_classes = first.shape[:2]
    for n in names:
        m = np.asarray(class_masks[n])
        if m.ndim != 3 or m.shape[:2] != (num_mu, num_classes) or not np.all((m == 0) | (m == 1)):
            raise ValueError(
                f"class_masks[{n!r}] must be 0/1 [P, K, C] = [{num_mu}, {num_classes}, C], "
                f"got shape {m.shape}"
            )
    if in_memory:
        _check_model_classes(apply_fn, params, images[:1], num_classes)
        V.check_labels(labels, num_classes=num_classes)
    rand = random_like_masks(key, {n: np.asarray(class_masks[n]) for n in names}, n_random)
    # Stack: set 0 = intact model, 1..P = relevant, then R*P random sets.
    stacked = {}
    for n in names:
        rel = np.asarray(class_masks[n], np.float32)
        zeros = np.zeros((1,) + rel.shape[1:], np.float32)
        stacked[n] = np.concatenate([zeros, rel, rand[n].reshape((-1,) + rel.shape[1:])])
    flat = np.concatenate([stacked[n].reshape(stacked[n].shape[0], -1) for n in names], axis=1)
    uniq, first_of, inverse = np.unique(flat, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    unique_sets = {n: jnp.asarray(stacked[n][first_of]) for n in names}

    if mesh is None:
        step = batching.cached_builder(_ablation_step, apply_fn, int(num_classes))
    else:
        from svebi_jax import sharding as S

        batch_size = S.padded_size(batch_size, S.check_mesh(mesh))
        sharded = batching.cached_builder(_sharded_ablation_step, apply_fn, int(num_classes), mesh)

        def step(*args):
            return np.asarray(sharded(*args)).sum(axis=0)

    correct = np.zeros((uniq.shape[0], num_classes))
    counts = np.zeros(num_classes)
    checked = in_memory
    for batch in batching.iter_batches(images, batch_size, labels=labels):
        if batch.labels is None:
            raise ValueError("images: the ablation needs labels; the batches carry none")
        if not checked:
            _check_model_classes(apply_fn, params, batch.images[:1], num_classes)
            checked = True
        y = V.check_labels(batch.labels[: batch.count], num_classes=num_classes)
        valid = np.arange(batch_size) < batch.count
        correct += np.asarray(step(params, batch.images, batch.labels, valid, unique_sets))
        counts += np.bincount(y, minlength=num_classes)
    present = counts > 0
    acc = correct[inverse][:, present] / counts[present]  # [1 + P + R*P, K']
    class_mean = acc.mean(axis=1)
    full = float(class_mean[0])
    relevant = class_mean[1 : 1 + num_mu]
    random = class_mean[1 + num_mu :].reshape(n_random, num_mu)
    num_ablated = np.mean(sum(np.asarray(class_masks[n]).sum(-1) for n in names), axis=-1)
    return AblationResult(
        mu=mu,
        full=full,
        relevant=relevant,
        random=random.mean(0),
        random_std=random.std(0),
        num_ablated=num_ablated,
    )
