"""Tests for svebi_jax.relevance."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from svebi_jax.relevance import (
    has_relevant_filters,
    layer_distribution,
    masks_from_weights,
    relevant_filters,
)
from svebi_jax.responses import FilterIndex

INDEX = FilterIndex(("conv1", "conv2"), (2, 3))
# rows: conv1/0, conv1/1, conv2/0, conv2/1, conv2/2 ; columns: classes 0, 1, 2, 3
W = np.array(
    [
        [0.2, 0.0, 0.0, 0.0],
        [0.5, 0.0, 0.1, 0.0],
        [0.0, 0.3, 0.0, 0.0],
        [0.7, 0.0, 0.0, 0.0],
        [0.1, 0.3, 0.0, 0.0],
    ]
)


def test_relevant_filters_ordering_and_empty_layers():
    rel = relevant_filters(W, INDEX)
    assert rel == {
        0: {"conv1": [1, 0], "conv2": [1, 2]},
        1: {"conv1": [], "conv2": [0, 2]},  # tie 0.3/0.3 keeps channel order
        2: {"conv1": [1], "conv2": []},
        3: {"conv1": [], "conv2": []},  # never predicted -> all-zero column -> empty
    }
    assert list(rel[0]) == ["conv1", "conv2"]
    assert all(isinstance(c, int) for c in rel[0]["conv1"])


def test_relevant_filters_threshold():
    rel = relevant_filters(W, INDEX, threshold=0.15)
    assert rel[0] == {"conv1": [1, 0], "conv2": [1]}
    assert rel[2] == {"conv1": [], "conv2": []}


def test_layer_distribution_counts_over_classes():
    assert layer_distribution(relevant_filters(W, INDEX)) == {"conv1": 3, "conv2": 4}
    assert layer_distribution({}) == {}


def test_masks_exact():
    masks = masks_from_weights(W, INDEX)
    np.testing.assert_array_equal(masks["conv1"], [[1, 1], [0, 0], [0, 1], [0, 0]])
    np.testing.assert_array_equal(masks["conv2"], [[0, 1, 1], [1, 0, 1], [0, 0, 0], [0, 0, 0]])
    assert masks["conv1"].dtype == np.float32
    # the masks mark exactly the filters relevant_filters lists
    for j, per_layer in relevant_filters(W, INDEX).items():
        for layer, chans in per_layer.items():
            assert sorted(np.flatnonzero(np.asarray(masks[layer][j])).tolist()) == sorted(chans)


def test_has_relevant_filters_per_image():
    masks = masks_from_weights(W, INDEX)
    target = np.array([0, 1, 2, 3, 1, 0])
    got = has_relevant_filters(masks, target)
    # conv1: classes 0, 2 have filters; conv2: classes 0, 1
    np.testing.assert_array_equal(got["conv1"], [True, False, True, False, False, True])
    np.testing.assert_array_equal(got["conv2"], [True, True, False, False, True, True])
    jitted = jax.jit(has_relevant_filters)(masks, jnp.asarray(target))
    np.testing.assert_array_equal(jitted["conv1"], got["conv1"])
    # a traced class outside [0, K) has no filter (not the clamped class 3's or 0's)
    out = jax.jit(has_relevant_filters)(masks, jnp.array([99, -1, 0]))
    np.testing.assert_array_equal(out["conv1"], [False, False, True])
    with pytest.raises(ValueError, match="target"):
        has_relevant_filters(masks, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"masks\['conv1'\]"):
        has_relevant_filters({"conv1": np.zeros(3)}, target)


def test_masks_of_a_path_stack_per_mu_masks():
    W2 = np.where(W > 0.25, W, 0.0)  # a sparser second "μ"
    got = masks_from_weights(np.stack([W, W2]), INDEX)
    for p, w in enumerate((W, W2)):
        ref = masks_from_weights(w, INDEX)
        for name in ("conv1", "conv2"):
            np.testing.assert_array_equal(got[name][p], ref[name])
    np.testing.assert_array_equal(got["conv1"][1], [[0, 1], [0, 0], [0, 0], [0, 0]])
    with pytest.raises(ValueError, match="W must be"):
        masks_from_weights(W[:, 0], INDEX)


def test_errors():
    with pytest.raises(ValueError, match="m = 5 rows"):
        relevant_filters(W[:4], INDEX)
    with pytest.raises(ValueError, match="select one mu"):
        relevant_filters(W[None], INDEX)
    with pytest.raises(ValueError, match="NaN"):
        relevant_filters(np.where(W > 0.6, np.nan, W), INDEX)
    with pytest.raises(ValueError, match="threshold"):
        relevant_filters(W, INDEX, threshold=-1.0)
