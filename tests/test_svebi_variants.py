"""SVEBI's variants (svebi_jax.attribution.SVEBIOptions) against hand-computed small cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from svebi_jax import attribution, heatmaps, relevance
from svebi_jax.attribution import SVEBIOptions
from svebi_jax.heatmaps import (
    combine,
    filter_weights,
    interpolation_matrix,
    svebi_heatmaps,
    temporal_reduce,
)
from svebi_jax.layers import Geometry
from svebi_jax.models import ShallowSNN, functional

# identity placement: 2x2 cells centred on the 2x2 pixels
GEO = {"a": Geometry(height=2, width=2, channels=2, rf=1, jump=1, start=0.0)}


def _two_filters():
    s = np.zeros((1, 2, 2, 2), np.float32)
    s[0, 0, 0, 0] = 1.0  # filter 0: one spike cell, energy 1
    s[0, 0, 1, 1] = 1.0  # filter 1: two cells, energy 2
    s[0, 1, 1, 1] = 1.0
    return {"a": s}


def test_filter_weights_by_hand():
    s = np.zeros((2, 1, 3), np.float32)
    s[0, 0] = [1, 0, 2]
    s[1, 0] = [1, 0, 0]  # energies 2, 0, 4; total 6
    row = np.array([0.5, 0.0, 0.25], np.float32)
    np.testing.assert_allclose(filter_weights(s, row, "binary"), [1, 0, 1])
    np.testing.assert_allclose(filter_weights(s, row, "lasso"), [0.5, 0, 0.25])
    np.testing.assert_allclose(filter_weights(s, row, "response"), [2 / 6, 0, 4 / 6], rtol=1e-6)
    np.testing.assert_allclose(filter_weights(0 * s, row, "response"), [0, 0, 0])  # silent layer
    nan_row = np.array([np.nan, 0, 1], np.float32)
    assert np.isnan(np.asarray(filter_weights(s, nan_row, "binary"))[0])


@pytest.mark.parametrize(
    "weighting, expected",
    [
        ("binary", [[1, 1], [0, 1]]),  # agg [[1, 1], [0, 1]]
        ("lasso", [[1, 1 / 3], [0, 1 / 3]]),  # agg [[3, 1], [0, 1]]
        ("response", [[0.5, 1], [0, 1]]),  # agg [[1/3, 2/3], [0, 2/3]]
    ],
)
def test_heatmap_filter_weighting_by_hand(weighting, expected):
    masks = {"a": np.array([[3.0, 1.0]], np.float32)}
    out = svebi_heatmaps(
        _two_filters(),
        jnp.zeros(1, jnp.int32),
        masks,
        geometry=GEO,
        image_shape=(2, 2),
        filter_weighting=weighting,
    )
    np.testing.assert_allclose(out["a"][0], expected, rtol=1e-6, atol=1e-7)


def test_temporal_reduce_by_hand():
    spikes = np.array([1.0, 0.0, 1.0], np.float32)[:, None]  # [T=3, 1]
    np.testing.assert_allclose(temporal_reduce(spikes, 0.5), [(1 + 0.25) / 1.75], rtol=1e-6)
    np.testing.assert_allclose(temporal_reduce(spikes, 1.0), [2 / 3], rtol=1e-6)  # the mean
    with pytest.raises(ValueError, match="decay"):
        temporal_reduce(spikes, 0.0)


def test_combine_fusions_by_hand():
    a = np.array([[[1.0, 0.5], [0.0, 0.2]]], np.float32)
    b = np.array([[[0.5, 1.0], [1.0, 0.0]]], np.float32)
    np.testing.assert_allclose(
        combine({"a": a, "b": b}, fusion="product")[0], [[1, 1], [0, 0]], atol=1e-6
    )
    np.testing.assert_allclose(
        combine({"a": a, "b": b}, fusion="mean")[0], [[1, 1], [0.4 / 0.65, 0]], rtol=1e-5
    )
    with pytest.raises(ValueError, match="fusion must be one of"):
        combine({"a": a}, fusion="max")


def test_interpolation_matrix_taper_by_hand():
    # centres at 2, 3; receptive field 4 -> the edge cells fade to 0 two pixels out
    got = interpolation_matrix(6, 2, start=2.0, jump=1, border="taper", rf=4)
    np.testing.assert_allclose(got, [[0, 0], [0.5, 0], [1, 0], [0, 1], [0, 0.5], [0, 0]])
    clamp = interpolation_matrix(6, 2, start=2.0, jump=1)
    np.testing.assert_allclose(clamp, [[1, 0]] * 3 + [[0, 1]] * 3)
    with pytest.raises(ValueError, match="rf must be"):
        interpolation_matrix(6, 2, start=2.0, jump=1, border="taper")
    # inside the covered region the two borders agree (conv2 of the shallow net)
    g = Geometry(8, 8, 64, rf=14, jump=2, start=6.5)
    m = np.random.default_rng(0).random((8, 8)).astype(np.float32)
    t = np.asarray(heatmaps.upsample_aligned(m, g, (28, 28), border="taper"))
    c = np.asarray(heatmaps.upsample_aligned(m, g, (28, 28), border="clamp"))
    np.testing.assert_array_equal(np.asarray(heatmaps.upsample_aligned(m, g, (28, 28))), t)
    np.testing.assert_allclose(t[7:21, 7:21], c[7:21, 7:21])
    assert t[0, 0] == pytest.approx(c[0, 0] * (1 - 6.5 / 7) ** 2, rel=1e-5)


def test_fill_empty_from_path_by_hand():
    masks = {"a": np.array([[1, 0], [0, 0], [0, 0]], np.float32)}
    path = np.zeros((3, 3, 2), np.float32)
    path[:, 0] = [1, 0]
    path[1, 1] = [0, 0.7]  # class 1: first relevant filter at the second mu
    path[2, 1] = [0.2, 0.9]
    got = relevance.fill_empty_from_path(masks, {"a": path})
    np.testing.assert_allclose(got["a"], [[1, 0], [0, 0.7], [0, 0]])
    with pytest.raises(ValueError, match="must be"):
        relevance.fill_empty_from_path(masks, {"a": path[:, :2]})


def test_masks_keep_weights():
    from svebi_jax.responses import FilterIndex

    index = FilterIndex(("a",), (2,))
    W = np.array([[0.3, 0.0], [0.0, 1.5]], np.float32)
    np.testing.assert_allclose(relevance.masks_from_weights(W, index)["a"], [[1, 0], [0, 1]])
    np.testing.assert_allclose(
        relevance.masks_from_weights(W, index, keep_weights=True)["a"], [[0.3, 0], [0, 1.5]]
    )


def test_options_validate():
    with pytest.raises(ValueError, match="filter_weighting"):
        SVEBIOptions(filter_weighting="softmax")
    with pytest.raises(ValueError, match="temporal_decay"):
        SVEBIOptions(temporal_decay=1.5)
    with pytest.raises(ValueError, match="empty_class"):
        SVEBIOptions(empty_class="nearest")
    with pytest.raises(ValueError, match="border"):
        SVEBIOptions(border="wrap")


@pytest.fixture(scope="module")
def net():
    model = ShallowSNN(rngs=nnx.Rngs(3), channels=(4, 6), hidden=16)
    apply_fn, params = functional(model)
    images = np.random.default_rng(3).random((3, 28, 28, 1)).astype(np.float32) * 3
    masks = {
        "conv1": np.array([[0.5, 0, 1.0, 0]] * 5 + [[0, 0, 0, 0]] * 5, np.float32),
        "conv2": np.array([[0, 2.0, 0, 0, 0, 1.0]] * 10, np.float32),
    }
    return model, apply_fn, params, images, masks


def test_attribution_options_match_pieces(net):
    model, apply_fn, params, images, masks = net
    target = np.array([0, 3, 1], np.int32)
    out = apply_fn(params, images, record="spikes")
    default = attribution.svebi(apply_fn, masks, layer="conv1")(params, images, target)
    ref = heatmaps.svebi_heatmaps(
        apply_fn(params, images, record="mean").spikes,
        jnp.asarray(target),
        masks,
        geometry=model.geometry,
        image_shape=(28, 28),
    )["conv1"]
    np.testing.assert_allclose(default, ref, atol=1e-6)  # the paper's maps stay the default
    # earlier spikes weigh more: the reduction of the recorded trains, then the usual map
    opts = SVEBIOptions(temporal_decay=0.7, filter_weighting="lasso", border="taper")
    got = attribution.svebi(apply_fn, masks, layer="conv2", options=opts)(params, images, target)
    reduced = {k: temporal_reduce(v, 0.7) for k, v in out.spikes.items()}
    s = np.asarray(reduced["conv2"])
    agg = np.einsum("bhwc,bc->bhw", s, masks["conv2"][target])
    a_h = interpolation_matrix(28, 8, start=6.5, jump=2, border="taper", rf=14)
    want = heatmaps.minmax_normalize(np.einsum("Yh,bhw,Xw->bYX", a_h, agg, a_h))
    np.testing.assert_allclose(got, want, atol=1e-5)
    # product fusion of the per-layer maps
    prod = attribution.svebi(apply_fn, masks, options=SVEBIOptions(fusion="product"))
    per = attribution.svebi_variants(apply_fn, masks)(params, images, target)
    want = heatmaps.minmax_normalize(per[("conv1", "aligned")] * per[("conv2", "aligned")])
    np.testing.assert_allclose(prod(params, images, target), want, atol=1e-6)


def test_attribution_empty_class_rule(net):
    model, apply_fn, params, images, masks = net
    target = np.array([7, 7, 2], np.int32)  # class 7 has no conv1 filter at this mu
    path = {
        "conv1": np.stack([masks["conv1"], np.tile([[0, 1.0, 0, 0]], (10, 1))]),
        "conv2": np.stack([masks["conv2"]] * 2),
    }
    zeros = attribution.svebi(apply_fn, masks, layer="conv1")(params, images, target)
    np.testing.assert_array_equal(zeros[0], np.zeros((28, 28)))
    opts = SVEBIOptions(empty_class="smallest_mu")
    filled = attribution.svebi(apply_fn, masks, layer="conv1", options=opts, mask_path=path)
    got = np.asarray(filled(params, images, target))
    one_filter = {"conv1": np.tile([[0, 1.0, 0, 0]], (10, 1)).astype(np.float32)}
    want = attribution.svebi(apply_fn, one_filter, layer="conv1")(params, images, target)
    np.testing.assert_allclose(got[:2], np.asarray(want)[:2], atol=1e-6)
    np.testing.assert_allclose(got[2], np.asarray(zeros)[2], atol=1e-6)  # had filters: kept
    with pytest.raises(ValueError, match="mask_path"):
        attribution.svebi(apply_fn, masks, layer="conv1", options=opts)
    assert jax.jit(lambda p, x: filled(p, x, None)) is not None
