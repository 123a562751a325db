"""Tests for svebi_jax.metrics.sanity (Adebayo et al.'s model-randomization check)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import stats

from svebi_jax.layers import SNNConfig, SNNOutput
from svebi_jax.methods.grad import grad2d_maps
from svebi_jax.methods.trivial import input_intensity_maps
from svebi_jax.metrics.sanity import (
    model_randomization_check,
    randomize_params,
    rankdata,
    spearman_rank_correlation,
)
from svebi_jax.models import ShallowSNN, functional


def test_spearman_matches_scipy_tie_free():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 7, 6))
    b = 0.5 * a + rng.normal(size=(4, 7, 6))
    got = np.asarray(spearman_rank_correlation(jnp.asarray(a), jnp.asarray(b)))
    ref = [stats.spearmanr(a[i].ravel(), b[i].ravel()).statistic for i in range(4)]
    np.testing.assert_allclose(got, ref, atol=1e-6)
    assert np.all(np.abs(got) < 1) and np.all(got > 0.1)
    got = spearman_rank_correlation(jnp.asarray(a), jnp.asarray(b), ties="ordinal")
    np.testing.assert_allclose(np.asarray(got), ref, atol=1e-6)  # identical without ties
    # exact +1 / -1 for monotone transforms
    np.testing.assert_allclose(
        np.asarray(spearman_rank_correlation(jnp.asarray(a), jnp.asarray(np.exp(a)))), 1.0, 1e-6
    )
    np.testing.assert_allclose(
        np.asarray(spearman_rank_correlation(jnp.asarray(a), jnp.asarray(-(a**3)))), -1.0, 1e-6
    )


def test_spearman_average_ties_match_scipy():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 4, size=(3, 5, 5)).astype(np.float32)
    b = rng.integers(0, 3, size=(3, 5, 5)).astype(np.float32)
    got = np.asarray(spearman_rank_correlation(jnp.asarray(a), jnp.asarray(b)))
    ref = [stats.spearmanr(a[i].ravel(), b[i].ravel()).statistic for i in range(3)]
    np.testing.assert_allclose(got, ref, atol=1e-6)


def test_rankdata_matches_scipy():
    x = np.array([[3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0]])
    np.testing.assert_allclose(np.asarray(rankdata(jnp.asarray(x))), stats.rankdata(x, axis=-1))
    np.testing.assert_allclose(
        np.asarray(rankdata(jnp.asarray(x), ties="ordinal")),
        stats.rankdata(x, method="ordinal", axis=-1),
    )


def test_spearman_constant_map_is_nan_and_bad_inputs():
    a = jnp.ones((2, 3, 3))
    b = jnp.arange(18.0).reshape(2, 3, 3)
    assert np.all(np.isnan(np.asarray(spearman_rank_correlation(a, b))))
    with pytest.raises(ValueError, match="same shape"):
        spearman_rank_correlation(a, b[:1])
    with pytest.raises(ValueError, match="ties"):
        spearman_rank_correlation(b, b, ties="dense")
    with pytest.raises(ValueError, match="must not contain NaN"):
        spearman_rank_correlation(b.at[0, 0, 0].set(jnp.nan), b)


@pytest.fixture(scope="module")
def snn():
    @nnx.jit
    def build(key):
        return ShallowSNN(
            rngs=nnx.Rngs(key), channels=(4, 8), hidden=16, config=SNNConfig(num_steps=4)
        )

    apply_fn, params = functional(build(jax.random.key(0)))
    return apply_fn, params, build


def test_randomize_params_changes_every_leaf(snn):
    _, params, _ = snn
    key = jax.random.key(5)
    new = randomize_params(params, key)
    old_leaves = [np.asarray(v) for v in jax.tree_util.tree_leaves(params)]
    new_leaves = [np.asarray(v) for v in jax.tree_util.tree_leaves(new)]
    assert jax.tree_util.tree_structure(new) == jax.tree_util.tree_structure(params)
    assert len(old_leaves) == 8  # 4 kernels + 4 (zero-initialized) biases
    for o, n in zip(old_leaves, new_leaves, strict=True):
        assert n.shape == o.shape and n.dtype == o.dtype
        assert not np.any(n == o)  # every entry changed
        if o.std() > 0:  # same scale: std within 25 % for the larger leaves
            if o.size >= 100:
                assert n.std() == pytest.approx(o.std(), rel=0.25)
        else:  # zero biases: scale falls back to 0.01
            assert 0.0 < n.std() < 0.05
    # deterministic
    again = randomize_params(params, key)
    for a, b in zip(jax.tree_util.tree_leaves(again), new_leaves, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_randomize_params_permute_layers_and_init_fn(snn):
    _, params, build = snn
    key = jax.random.key(2)
    perm = randomize_params(params, key, init="permute")
    k_old = np.asarray(params["conv1"]["kernel"][...])
    k_new = np.asarray(perm["conv1"]["kernel"][...])
    np.testing.assert_array_equal(np.sort(k_old.ravel()), np.sort(k_new.ravel()))
    assert not np.array_equal(k_old, k_new)
    # Cascading randomization: only the readout.
    top = randomize_params(params, key, layers=["fc2"])
    for name in ("conv1", "conv2", "fc1"):
        np.testing.assert_array_equal(
            np.asarray(top[name]["kernel"][...]), np.asarray(params[name]["kernel"][...])
        )
    assert not np.array_equal(
        np.asarray(top["fc2"]["kernel"][...]), np.asarray(params["fc2"]["kernel"][...])
    )
    with pytest.raises(ValueError, match="layers"):
        randomize_params(params, key, layers=["fc9"])
    with pytest.raises(ValueError, match="init"):
        randomize_params(params, key, init="xavier")

    # init_fn: the model's own initializer with another seed.
    def init_fn(k):
        return functional(build(k))[1]

    fresh = randomize_params(params, key, init_fn=init_fn)
    ref = init_fn(key)
    for a, b in zip(jax.tree_util.tree_leaves(fresh), jax.tree_util.tree_leaves(ref), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="init_fn"):
        randomize_params(params, key, init_fn=lambda k: {"w": jnp.zeros(3)})


def _linear_apply(params, images, *, record=None, masks=None):
    x = images.mean(axis=0) if images.ndim == 5 else images
    return SNNOutput(x.reshape(x.shape[0], -1) @ params["w"], {})


def test_model_randomization_check():
    rng = np.random.default_rng(4)
    images = jnp.asarray(rng.uniform(size=(3, 4, 4, 1)), jnp.float32)
    params = {"w": jnp.asarray(rng.normal(size=(16, 5)), jnp.float32)}
    random_params = randomize_params(params, jax.random.key(0))
    saliency_fn = functools.partial(
        grad2d_maps, target=0, num_steps=2, absolute=False, channel_reduction="sum"
    )

    def grad_map(p, x, target=None):  # an attr_fn (svebi_jax.attribution's shape)
        return saliency_fn(_linear_apply, p, x)

    res = model_randomization_check(grad_map, params, random_params, images)
    assert res.higher_is_better is False
    # The gradient of a linear model's class-0 logit is w[:, 0] for every image.
    w0 = np.asarray(params["w"][:, 0]).reshape(4, 4)
    w0r = np.asarray(random_params["w"][:, 0]).reshape(4, 4)
    ref = stats.spearmanr(w0.ravel(), w0r.ravel()).statistic
    np.testing.assert_allclose(np.asarray(res["per_image"]), [ref] * 3, atol=1e-6)
    assert float(res["mean"]) == pytest.approx(ref, abs=1e-6)
    assert int(res["num_undefined"]) == 0
    np.testing.assert_allclose(np.asarray(res["original"][1]), w0, atol=1e-6)
    res_abs = model_randomization_check(grad_map, params, random_params, images, absolute=True)
    ref_abs = stats.spearmanr(np.abs(w0).ravel(), np.abs(w0r).ravel()).statistic
    np.testing.assert_allclose(np.asarray(res_abs["per_image"]), [ref_abs] * 3, atol=1e-6)
    # Same parameters: perfect correlation. A model-independent map "fails" the check: rho = 1.
    same = model_randomization_check(grad_map, params, params, images)
    np.testing.assert_allclose(np.asarray(same["per_image"]), 1.0, atol=1e-6)
    trivial = model_randomization_check(
        lambda p, x, t: input_intensity_maps(x), params, random_params, images
    )
    np.testing.assert_allclose(np.asarray(trivial["per_image"]), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="attr_fn must return"):
        model_randomization_check(lambda p, x, t: x, params, random_params, images)
