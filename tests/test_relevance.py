"""Tests for svebi_jax.relevance."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from svebi_jax.relevance import (
    has_relevant_filters,
    layer_distribution,
    relevance_masks,
    relevance_masks_path,
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


def test_relevance_masks_exact():
    masks = relevance_masks(relevant_filters(W, INDEX), INDEX, 4)
    np.testing.assert_array_equal(masks["conv1"], [[1, 1], [0, 0], [0, 1], [0, 0]])
    np.testing.assert_array_equal(masks["conv2"], [[0, 1, 1], [1, 0, 1], [0, 0, 0], [0, 0, 0]])
    assert masks["conv1"].dtype == np.float32
    # missing classes and layers are allowed
    m = relevance_masks({2: {"conv2": [2]}}, INDEX, 3)
    np.testing.assert_array_equal(m["conv1"], np.zeros((3, 2)))
    np.testing.assert_array_equal(m["conv2"], [[0, 0, 0], [0, 0, 0], [0, 0, 1]])


def test_has_relevant_filters_per_image():
    masks = relevance_masks(relevant_filters(W, INDEX), INDEX, 4)
    classes = np.array([0, 1, 2, 3, 1, 0])
    got = has_relevant_filters(masks, classes)
    # conv1: classes 0, 2 have filters; conv2: classes 0, 1
    np.testing.assert_array_equal(got["conv1"], [True, False, True, False, False, True])
    np.testing.assert_array_equal(got["conv2"], [True, True, False, False, True, True])
    jitted = jax.jit(has_relevant_filters)(masks, jnp.asarray(classes))
    np.testing.assert_array_equal(jitted["conv1"], got["conv1"])
    with pytest.raises(ValueError, match="classes"):
        has_relevant_filters(masks, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"relevance_masks\['conv1'\]"):
        has_relevant_filters({"conv1": np.zeros(3)}, classes)


def test_relevance_masks_path_stacks_per_mu_masks():
    W2 = np.where(W > 0.25, W, 0.0)  # a sparser second "μ"
    got = relevance_masks_path(np.stack([W, W2]), INDEX, 4)
    for p, w in enumerate((W, W2)):
        ref = relevance_masks(relevant_filters(w, INDEX), INDEX, 4)
        for name in ("conv1", "conv2"):
            np.testing.assert_array_equal(got[name][p], ref[name])
    np.testing.assert_array_equal(got["conv1"][1], [[0, 1], [0, 0], [0, 0], [0, 0]])
    with pytest.raises(ValueError, match="W_path"):
        relevance_masks_path(W, INDEX, 4)


def test_errors():
    with pytest.raises(ValueError, match="m = 5 rows"):
        relevant_filters(W[:4], INDEX)
    with pytest.raises(ValueError, match="select one mu"):
        relevant_filters(W[None], INDEX)
    with pytest.raises(ValueError, match="NaN"):
        relevant_filters(np.where(W > 0.6, np.nan, W), INDEX)
    with pytest.raises(ValueError, match="threshold"):
        relevant_filters(W, INDEX, threshold=-1.0)
    with pytest.raises(ValueError, match=r"class must be an int in \[0, 3\)"):
        relevance_masks({3: {"conv1": [0]}}, INDEX, 3)
    with pytest.raises(ValueError, match="unknown layer 'fc'"):
        relevance_masks({0: {"fc": [0]}}, INDEX, 3)
    with pytest.raises(ValueError, match="channel"):
        relevance_masks({0: {"conv1": [2]}}, INDEX, 3)
    with pytest.raises(ValueError, match="num_classes"):
        relevance_masks({}, INDEX, 0)
