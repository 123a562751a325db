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

from collections.abc import Callable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

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
    apply_fn: Callable, params, images, labels, valid, mask_sets, num_classes: int
) -> Array:
    """``[S, K]`` correct counts of a batch under each of the ``S`` stacked mask sets."""

    def one(masks_k):  # {layer: [K, C]}
        keep = {name: 1.0 - m[labels] for name, m in masks_k.items()}  # [B, C]
        pred = jnp.argmax(apply_fn(params, images, masks=keep).logits, axis=-1)
        hit = ((pred == labels) & valid).astype(jnp.float32)
        return jax.ops.segment_sum(hit, labels, num_segments=num_classes)

    return jax.lax.map(one, mask_sets)


def ablation_curve(
    apply_fn: Callable,
    params,
    images: np.ndarray,
    labels: np.ndarray,
    class_masks: Mapping[str, np.ndarray],
    *,
    mu: np.ndarray,
    key: Array,
    n_random: int = 3,
    batch_size: int = 250,
) -> AblationResult:
    """Relevant-vs-random filter ablation along a μ path.

    Args:
      apply_fn: ``apply_fn(params, images, *, masks) -> SNNOutput`` (``masks`` maps a spiking
        layer name to a ``[B, C]`` multiplier of its spikes).
      params: model parameters.
      images: ``[N, H, W, C]`` evaluation images.
      labels: ``[N]`` int true labels in ``[0, K)``.
      class_masks: ``{layer: [P, K, C_l]}`` 0/1 relevant-filter masks, one ``[K, C_l]`` per μ.
      mu: ``[P]`` the μ values (for the record).
      key: PRNG key for the random draws.
      n_random: number of random draws ``R`` per μ.
      batch_size: images per compiled batch (the last batch is padded).

    Returns:
      :class:`AblationResult`.
    """
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels, np.int32)
    mu = np.asarray(mu)
    if images.ndim != 4 or labels.shape != (images.shape[0],):
        raise ValueError(
            f"images must be [N, H, W, C] and labels [N], got {images.shape} and {labels.shape}"
        )
    if n_random < 1:
        raise ValueError(f"n_random must be >= 1, got {n_random}")
    names = sorted(class_masks)
    first = np.asarray(class_masks[names[0]])
    if first.ndim != 3 or first.shape[0] != mu.shape[0]:
        raise ValueError(
            f"class_masks must be {{layer: [P, K, C]}} with P = len(mu) = {mu.shape[0]}, "
            f"got {first.shape} for {names[0]!r}"
        )
    num_mu, num_classes = first.shape[:2]
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]"
        )
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

    step = jax.jit(lambda p, x, y, v, m: _correct_per_class(apply_fn, p, x, y, v, m, num_classes))
    n = images.shape[0]
    correct = np.zeros((uniq.shape[0], num_classes))
    for start in range(0, n, batch_size):
        x = images[start : start + batch_size]
        y = labels[start : start + batch_size]
        pad = batch_size - x.shape[0]
        valid = np.arange(batch_size) < x.shape[0]
        if pad:
            x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
            y = np.concatenate([y, np.zeros(pad, y.dtype)])
        correct += np.asarray(step(params, x, y, valid, unique_sets))
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
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
