"""The MNIST experiments' relevance stage (now svebi_jax.fit_relevance) gives the results of the
three-call pipeline it replaced: the same relevant filters, masks, ablation masks and AUCs.

The "old path" is written out here as the experiments ran it before: compute_responses ->
mu_lasso at mu and on the path -> masks_from_weights / relevant_filters, and SVEBI maps from
those masks scored by insertion/deletion. A tiny untrained network keeps it fast.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import svebi_jax as sv
from experiments.common import stages
from experiments.common.methods import SVEBI, MethodKey
from experiments.common.timing import StageTimer
from svebi_jax import attribution, data
from svebi_jax.models import ShallowSNN, functional


@pytest.fixture(scope="module")
def run():
    apply_fn, params = functional(ShallowSNN(rngs=nnx.Rngs(0), channels=(4, 6), hidden=16))
    train = data.subset(data.load("mnist-5k"), 48)
    timer = StageTimer(verbose=False)
    rel = stages.relevance_stage(
        apply_fn, params, train, mu=2.0, mu_path_max=2, batch_size=16, timer=timer
    )
    # the old path, call by call
    resp = sv.compute_responses(apply_fn, params, train, batch_size=16)
    sol = sv.mu_lasso(resp.X, resp.L, 2.0)
    W_path = np.asarray(sv.mu_lasso(resp.X, resp.L, np.arange(1, 3, dtype=np.float32)).W)
    return apply_fn, params, rel, resp, sol, W_path


def test_same_relevant_filters_masks_and_ablation_masks(run):
    _, _, rel, resp, sol, W_path = run
    np.testing.assert_array_equal(rel.relevance.W, np.asarray(sol.W))
    np.testing.assert_array_equal(rel.path.W, W_path)
    np.testing.assert_array_equal(rel.responses.X, resp.X)
    assert rel.relevant == sv.relevant_filters(sol.W, resp.index)
    assert rel.summary["layer_distribution"] == sv.layer_distribution(rel.relevant)
    assert sum(rel.summary["layer_distribution"].values()) > 0  # something to compare
    for k, m in sv.masks_from_weights(sol.W, resp.index).items():
        np.testing.assert_array_equal(rel.masks[k], np.asarray(m))
    for k, m in sv.masks_from_weights(W_path, resp.index).items():
        np.testing.assert_array_equal(rel.path.masks[k], np.asarray(m))
    np.testing.assert_array_equal(rel.mus, [1.0, 2.0])
    assert rel.summary["lasso"]["objective"] == pytest.approx(float(np.sum(sol.objective)))


def test_same_aucs(run):
    apply_fn, params, rel, resp, sol, _ = run
    images = data.load("mnist-5k").images[100:102]
    old_masks = {k: np.asarray(v) for k, v in sv.masks_from_weights(sol.W, resp.index).items()}
    key = MethodKey(SVEBI, "combined", "aligned")
    new = stages.scores(
        apply_fn,
        params,
        images,
        {key: rel.relevance.attribution()},
        rel.masks,
        pixels_per_step=392,
    )
    old_maps = attribution.svebi(apply_fn, old_masks)(params, jnp.asarray(images), None)
    for mode in ("insertion", "deletion"):
        old = getattr(
            sv.metrics.insertion_deletion(
                old_maps, apply_fn, params, images, pixels_per_step=392, substrate="zeros"
            ),
            mode,
        )
        assert new["table"][key.label][mode] == pytest.approx(float(old.mean_auc), abs=1e-6)
        np.testing.assert_allclose(new["per_image"][mode][key.label], old.auc, atol=1e-6)
    np.testing.assert_allclose(new["maps"][key], old_maps, atol=1e-6)
    assert jax.numpy.isfinite(old_maps).all()
