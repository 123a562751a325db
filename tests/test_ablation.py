"""Filter ablation on a toy model whose outcome is known by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from svebi_jax.layers import SNNOutput
from svebi_jax.metrics.ablation import ablation_curve, random_like_masks


def toy_apply(params, images, *, masks=None, record=None):
    """Layer 'a' has 4 channels; channel c carries evidence for class c (plus a margin)."""
    feats = images.mean(axis=(1, 2))  # [B, 4]
    if masks is not None and "a" in masks:
        feats = feats * masks["a"]
    return SNNOutput(feats @ params, {})


def toy_data():
    labels = np.repeat(np.arange(4), 5).astype(np.int32)
    feats = 0.1 + np.eye(4, dtype=np.float32)[labels]  # the true channel dominates
    images = np.broadcast_to(feats[:, None, None, :], (20, 2, 2, 4)).copy()
    return images, labels


def test_relevant_ablation_kills_class_and_random_matches_expectation():
    images, labels = toy_data()
    params = jnp.eye(4)
    # mu path of 2: first ablates the class's own channel, second ablates nothing.
    rel = np.stack([np.eye(4, dtype=np.float32), np.zeros((4, 4), np.float32)])
    res = ablation_curve(
        toy_apply,
        params,
        images,
        labels,
        {"a": rel},
        mu=np.array([1.0, 2.0]),
        key=jax.random.key(0),
        n_random=200,
        batch_size=7,
    )
    assert res.full == 1.0
    np.testing.assert_allclose(res.relevant, [0.0, 1.0])
    # one random channel of 4 ablated: the class survives with probability 3/4
    assert abs(res.random[0] - 0.75) < 0.05
    assert res.random[1] == 1.0 and res.random_std[1] == 0.0
    np.testing.assert_allclose(res.num_ablated, [1.0, 0.0])


def test_random_masks_keep_counts_per_layer():
    m = {"x": np.array([[[1, 1, 0, 0, 0], [0, 0, 0, 0, 1]]], np.float32)}
    r = random_like_masks(jax.random.key(1), m, 50)["x"]
    assert r.shape == (50, 1, 2, 5)
    np.testing.assert_array_equal(r.sum(-1), np.broadcast_to([[2, 1]], (50, 1, 2)))
    assert len({tuple(v) for v in r[:, 0, 0]}) > 3  # actually random


def test_same_key_same_result():
    images, labels = toy_data()
    rel = np.stack([np.eye(4, dtype=np.float32)])
    kw = dict(mu=np.array([1.0]), key=jax.random.key(3), n_random=5)
    a = ablation_curve(toy_apply, jnp.eye(4), images, labels, {"a": rel}, **kw)
    b = ablation_curve(toy_apply, jnp.eye(4), images, labels, {"a": rel}, **kw)
    np.testing.assert_array_equal(a.random, b.random)


def test_bad_inputs():
    images, labels = toy_data()
    rel = np.stack([np.eye(4, dtype=np.float32)])
    with pytest.raises(ValueError, match="class_masks"):
        ablation_curve(
            toy_apply, jnp.eye(4), images, labels, {"a": rel}, mu=np.ones(3), key=jax.random.key(0)
        )
    with pytest.raises(ValueError, match="labels"):
        ablation_curve(
            toy_apply,
            jnp.eye(4),
            images,
            labels + 4,
            {"a": rel},
            mu=np.ones(1),
            key=jax.random.key(0),
        )
    with pytest.raises(ValueError, match="n_random"):
        ablation_curve(
            toy_apply,
            jnp.eye(4),
            images,
            labels,
            {"a": rel},
            mu=np.ones(1),
            key=jax.random.key(0),
            n_random=0,
        )
