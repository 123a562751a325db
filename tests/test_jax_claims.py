"""The JAX claims of the README, tested: no recompilation, vmap over parameter sets.

"Composes with jit/vmap" and "compiled once" are checked on a tiny network (8×8 inputs,
T = 3): new parameters or new images of the same shape must reuse the compiled functions
(counted with ``jax.monitoring``), and ``vmap`` over a stack of parameter sets must equal a
Python loop over them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import count_compiles
from flax import nnx

import svebi_jax as sv
from svebi_jax import attribution
from svebi_jax import layers as L
from svebi_jax.metrics import insdel

LAYERS = (L.Conv("c1", 4, 3), L.LIF(), L.MaxPool(2), L.Flatten(), L.Dense("out", 3))


@pytest.fixture(scope="module")
def net():
    model = sv.SpikingNetwork(
        LAYERS, input_shape=(8, 8, 1), config=L.SNNConfig(num_steps=3), rngs=nnx.Rngs(0)
    )
    apply_fn, params = sv.functional(model)
    rng = np.random.default_rng(0)
    images = [rng.random((5, 8, 8, 1)).astype(np.float32) * 3 for _ in range(2)]
    other = jax.tree.map(lambda v: v * 1.1, params)
    masks = {"c1": np.eye(3, 4, dtype=np.float32)}
    return apply_fn, (params, other), images, masks


def _no_recompile(fn, net):
    """``fn(params, images)`` twice warm, then with other params and images: 0 compiles."""
    _, (params, other), (x1, x2), _ = net
    jax.block_until_ready(fn(params, x1))
    with count_compiles() as compiles:
        jax.block_until_ready(fn(other, x2))
        jax.block_until_ready(fn(params, x2))
    assert compiles == [], f"{len(compiles)} recompilation(s)"


def test_svebi_attribution_does_not_recompile(net):
    apply_fn, _, _, masks = net
    attr = attribution.svebi(apply_fn, masks)
    _no_recompile(lambda p, x: attr(p, x, None), net)


def test_compute_responses_does_not_recompile(net):
    apply_fn = net[0]
    _no_recompile(lambda p, x: sv.compute_responses(apply_fn, p, x, batch_size=4).X, net)


def test_insertion_deletion_does_not_recompile(net):
    apply_fn = net[0]
    attr = attribution.input_intensity()
    _no_recompile(
        lambda p, x: (
            insdel.insertion_deletion(attr, apply_fn, p, x, pixels_per_step=8).deletion.auc
        ),
        net,
    )


def test_grad2d_does_not_recompile(net):
    apply_fn = net[0]
    _no_recompile(lambda p, x: sv.methods.grad2d_maps(apply_fn, p, x), net)
    attr = attribution.grad2d(apply_fn)
    _no_recompile(lambda p, x: attr(p, x, None), net)


def test_svebi_attribution_vmaps_over_parameter_sets(net):
    apply_fn, (params, other), (x, _), masks = net
    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), params, other)
    attr = attribution.svebi(apply_fn, masks, layer="c1")
    got = jax.vmap(lambda p: attr(p, x, None))(stacked)
    for i, p in enumerate((params, other)):
        want = attr(p, x, None)
        np.testing.assert_allclose(got[i], want, atol=1e-6)
    assert not np.allclose(got[0], got[1])  # the two models explain differently


def test_mu_lasso_vmaps_over_response_sets():
    rng = np.random.default_rng(1)
    Xs = rng.random((2, 24, 6)).astype(np.float32)
    L_ = np.eye(4, dtype=np.float32)[np.arange(24) % 4]
    got = jax.vmap(lambda X: sv.mu_lasso(X, L_, 1.5))(jnp.asarray(Xs))
    for i, X in enumerate(Xs):
        want = sv.mu_lasso(X, L_, 1.5)
        np.testing.assert_allclose(got.W[i], want.W, atol=1e-6)
        np.testing.assert_array_equal(got.converged[i], want.converged)
    # and the masks follow, batched, straight from the stacked weights
    index = sv.FilterIndex(("a", "b"), (2, 4))
    masks = jax.vmap(lambda w: sv.masks_from_weights(w, index))(got.W)
    want = (np.asarray(got.W[1])[index.columns("b")].T > 0).astype(np.float32)  # [K, 4]
    np.testing.assert_array_equal(masks["b"][1], want)
