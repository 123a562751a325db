"""Tests for svebi_jax.responses: filter responses, FilterIndex, compute_responses."""

import functools

import jax
import numpy as np
import pytest
from flax import nnx

from svebi_jax.data import Dataset
from svebi_jax.models import ShallowSNN, functional
from svebi_jax.responses import FilterIndex, compute_responses, filter_responses


@pytest.fixture(scope="module")
def net():
    model = ShallowSNN(rngs=nnx.Rngs(0), channels=(4, 6), hidden=16)
    apply_fn, params = functional(model)
    return model, apply_fn, params


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((10, 28, 28, 1)).astype(np.float32) * 3


def _hand_maps():
    a = np.zeros((2, 3, 3, 2), np.float32)
    a[0, 0, 0, 0] = 0.5
    a[0, 1, 1, 0] = 0.5  # ||S0||^2 = 0.5
    a[0, 2, 2, 1] = 1.0  # ||S1||^2 = 1.0
    a[1, :, :, 1] = 0.2  # image 1: only filter 1 fires
    b = np.zeros((2, 2, 2, 3), np.float32)  # silent layer
    b[1, 0, 1, 2] = 0.4
    return {"a": a, "b": b}


def test_energy_normalization_exact_fractions():
    x = np.asarray(filter_responses(_hand_maps(), layers=("a", "b")))
    np.testing.assert_allclose(x[0], [1 / 3, 2 / 3, 0, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(x[1], [0, 1, 0, 0, 1], rtol=1e-6)
    assert not np.any(np.isnan(x))


def test_mean_and_max_normalization():
    maps = _hand_maps()
    mean = np.asarray(filter_responses(maps, layers=("a",), normalization="mean"))
    mx = np.asarray(filter_responses(maps, layers=("b", "a"), normalization="max"))
    np.testing.assert_allclose(mean, [[1 / 9, 1 / 9], [0, 0.2]], rtol=1e-6)
    np.testing.assert_allclose(mx, [[0, 0, 0, 0.5, 1.0], [0, 0, 0.4, 0, 0.2]], rtol=1e-6)


def test_filter_responses_jit_matches_eager():
    maps = _hand_maps()
    fn = jax.jit(functools.partial(filter_responses, layers=("a", "b"), normalization="energy"))
    np.testing.assert_allclose(fn(maps), filter_responses(maps, layers=("a", "b")), rtol=1e-6)


def test_filter_responses_errors():
    maps = _hand_maps()
    with pytest.raises(ValueError, match="normalization"):
        filter_responses(maps, layers=("a",), normalization="l2")
    with pytest.raises(ValueError, match="'c'"):
        filter_responses(maps, layers=("a", "c"))
    with pytest.raises(ValueError, match="layers"):
        filter_responses(maps, layers=())


def test_filter_index_round_trip():
    idx = FilterIndex(("conv1", "conv2"), (3, 5))
    assert idx.offsets == (0, 3)
    assert idx.num_filters == len(idx) == 8
    assert idx.column("conv2", 0) == 3
    for col in range(8):
        layer, ch = idx.lookup(col)
        assert idx.column(layer, ch) == col
    np.testing.assert_array_equal(idx.columns("conv2"), [3, 4, 5, 6, 7])
    assert idx.lookup(2) == ("conv1", 2)
    with pytest.raises(ValueError, match="unknown layer 'fc1'"):
        idx.column("fc1", 0)
    with pytest.raises(ValueError, match=r"channel must be in \[0, 3\)"):
        idx.column("conv1", 3)
    with pytest.raises(ValueError, match="col"):
        idx.lookup(8)
    with pytest.raises(ValueError, match="unique"):
        FilterIndex(("a", "a"), (1, 1))


def _reference_energy(apply_fn, params, images):
    out = jax.jit(lambda p, x: apply_fn(p, x, record="mean"))(params, images)
    cols = []
    for name in ("conv1", "conv2"):
        s = np.asarray(out.spikes[name], np.float64)
        e = (s**2).sum(axis=(1, 2))
        tot = e.sum(axis=1, keepdims=True)
        cols.append(np.divide(e, tot, out=np.zeros_like(e), where=tot > 0))
    return np.concatenate(cols, axis=1), np.asarray(out.logits).argmax(-1)


def test_compute_responses_batched_matches_single_and_reference(net, images):
    _, apply_fn, params = net
    batched = compute_responses(apply_fn, params, images, batch_size=4)  # 4 + 4 + 2 (padded)
    single = compute_responses(apply_fn, params, images, batch_size=1)
    ref_x, ref_pred = _reference_energy(apply_fn, params, images)
    assert batched.X.shape == (10, 10) and batched.X.dtype == np.float32
    assert batched.index.layers == ("conv1", "conv2") and batched.index.channels == (4, 6)
    np.testing.assert_allclose(batched.X, single.X, atol=1e-6)
    np.testing.assert_allclose(batched.X, ref_x, atol=1e-5)
    np.testing.assert_array_equal(batched.predictions, ref_pred)
    np.testing.assert_array_equal(batched.predictions, single.predictions)
    assert batched.L.shape == (10, 10)
    np.testing.assert_array_equal(batched.L.argmax(1), batched.predictions)
    np.testing.assert_array_equal(batched.L.sum(1), np.ones(10))
    # each spiking layer's energy shares sum to one
    assert batched.X[:, :4].sum(1) == pytest.approx(np.ones(10), abs=1e-5)
    assert batched.labels is None


def test_compute_responses_dataset_and_layer_subset(net, images):
    _, apply_fn, params = net
    imgs = images / 3
    labels = np.arange(10, dtype=np.int32) % 10
    ds = Dataset(imgs, labels, 10, "toy")
    r = compute_responses(apply_fn, params, ds, batch_size=4)
    r_arr = compute_responses(apply_fn, params, imgs, batch_size=4)
    np.testing.assert_allclose(r.X, r_arr.X, atol=1e-6)
    np.testing.assert_array_equal(r.labels, labels)
    kw = dict(normalization="mean", batch_size=4)
    sub = compute_responses(apply_fn, params, imgs, layers=["conv2"], **kw)
    full = compute_responses(apply_fn, params, imgs, **kw)
    assert sub.index.layers == ("conv2",)
    np.testing.assert_allclose(sub.X, full.X[:, full.index.columns("conv2")], atol=1e-6)


def test_compute_responses_errors(net, images):
    _, apply_fn, params = net
    with pytest.raises(ValueError, match="unknown layer 'conv3'"):
        compute_responses(apply_fn, params, images, layers=["conv3"])
    with pytest.raises(ValueError, match="batch_size"):
        compute_responses(apply_fn, params, images, batch_size=0)
    with pytest.raises(ValueError, match="images"):
        compute_responses(apply_fn, params, images[0])
    with pytest.raises(ValueError, match="labels"):
        compute_responses(apply_fn, params, images, labels=np.zeros(3, np.int32))


def test_compute_responses_micro_batches_match_one_pass(net, images, monkeypatch):
    """A batch whose maps exceed MAP_BYTES_PER_PASS runs as micro-batches: same X."""
    from svebi_jax import responses as R

    _, apply_fn, params = net
    one_pass = compute_responses(apply_fn, params, images, batch_size=10)
    # conv1 4x24x24 + conv2 6x8x8 float32 maps: 9,984 bytes per image -> 2 images per pass.
    monkeypatch.setattr(R, "MAP_BYTES_PER_PASS", 2 * 9984 + 100)
    assert R._micro_batch(10, 9984) == 2
    assert R._micro_batch(7, 9984) == 1  # largest divisor of 7 that fits
    micro = compute_responses(apply_fn, params, images, batch_size=10)
    np.testing.assert_allclose(micro.X, one_pass.X, atol=1e-6)
    np.testing.assert_array_equal(micro.predictions, one_pass.predictions)
    ref_x, ref_pred = _reference_energy(apply_fn, params, images)
    np.testing.assert_allclose(micro.X, ref_x, atol=1e-5)
    np.testing.assert_array_equal(micro.predictions, ref_pred)
