"""Tests for svebi_jax.heatmaps (heatmaps, upsampling); svebi_jax.viz is tested in test_viz.py."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from svebi_jax import attribution
from svebi_jax.heatmaps import (
    combine,
    interpolation_matrix,
    minmax_normalize,
    svebi_heatmaps,
    upsample_aligned,
    upsample_stretch,
)
from svebi_jax.layers import Geometry
from svebi_jax.models import ShallowSNN, functional
from svebi_jax.relevance import masks_from_weights
from svebi_jax.responses import FilterIndex

GEO = {"a": Geometry(height=2, width=2, channels=2, rf=2, jump=2, start=0.5)}

# A = interpolation matrix for centres 0.5, 2.5 on 4 pixels (clamped outside)
A_HAND = np.array([[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])
# A @ [[1, 0], [0, .5]] @ A.T, worked out by hand
EXPECTED_CLASS1 = np.array(
    [
        [1.0, 0.75, 0.25, 0.0],
        [0.75, 0.59375, 0.28125, 0.125],
        [0.25, 0.28125, 0.34375, 0.375],
        [0.0, 0.125, 0.375, 0.5],
    ]
)


def _hand_case():
    s = np.zeros((3, 2, 2, 2), np.float32)
    s[:, 0, 0, 0] = 1.0
    s[:, 1, 1, 1] = 0.5
    masks = {"a": np.array([[1, 0], [1, 1], [0, 0]], np.float32)}  # class 2: nothing relevant
    return {"a": s}, masks


def test_interpolation_matrix_by_hand():
    np.testing.assert_allclose(interpolation_matrix(4, 2, start=0.5, jump=2), A_HAND)
    a = interpolation_matrix(7, 3, start=2.0, jump=1)
    np.testing.assert_allclose(a.sum(1), np.ones(7), rtol=1e-6)
    np.testing.assert_allclose(a[:3], [[1, 0, 0]] * 3)  # pixels 0..2 hold cell 0
    np.testing.assert_allclose(a[5:], [[0, 0, 1]] * 2)
    np.testing.assert_allclose(interpolation_matrix(5, 1, start=2.0, jump=1), np.ones((5, 1)))


def test_heatmaps_hand_built_both_placements():
    spikes, masks = _hand_case()
    classes = jnp.array([1, 0, 2])
    for placement in ("aligned", "stretch"):  # with clamped borders, exactly a 2x stretch
        hm = svebi_heatmaps(
            spikes, classes, masks, geometry=GEO, image_shape=(4, 4), placement=placement,
            border="clamp",
        )["a"]  # fmt: skip
        assert hm.shape == (3, 4, 4)
        np.testing.assert_allclose(hm[0], EXPECTED_CLASS1, atol=1e-6)
        # class 0: only the top-left cell; A[:, 0] outer A[:, 0]
        np.testing.assert_allclose(hm[1], np.outer(A_HAND[:, 0], A_HAND[:, 0]), atol=1e-6)
        np.testing.assert_array_equal(hm[2], np.zeros((4, 4)))  # no relevant filter -> zeros
    ref = jax.image.resize(jnp.array([[1.0, 0.0], [0.0, 0.5]]), (4, 4), "bilinear")
    np.testing.assert_allclose(EXPECTED_CLASS1, ref, atol=1e-6)


def _np_interp_2d(m, geo, hw):
    """Independent reference: separable np.interp (which clamps beyond the end points)."""
    ch = geo.start + geo.jump * np.arange(m.shape[0])
    cw = geo.start + geo.jump * np.arange(m.shape[1])
    rows = np.stack([np.interp(np.arange(hw[1]), cw, r) for r in m])  # [h, W]
    return np.stack([np.interp(np.arange(hw[0]), ch, c) for c in rows.T]).T  # [H, W]


@pytest.mark.parametrize(
    "geo",
    [
        Geometry(24, 24, 4, rf=5, jump=1, start=2.0),  # shallow conv1
        Geometry(8, 8, 6, rf=14, jump=2, start=6.5),  # shallow conv2
        Geometry(5, 4, 1, rf=3, jump=3, start=-0.5),  # centres beyond the border
    ],
)
def test_upsample_aligned_matches_np_interp(geo):
    hw = (28, 28) if geo.height > 5 else (13, 11)
    maps = np.random.default_rng(1).random((2, geo.height, geo.width)).astype(np.float32)
    up = np.asarray(upsample_aligned(maps, geo, hw, border="clamp"))  # np.interp holds the edge
    for b in range(2):
        np.testing.assert_allclose(up[b], _np_interp_2d(maps[b], geo, hw), atol=1e-5)


def test_upsample_stretch_is_resize_and_differs_from_aligned():
    geo = Geometry(24, 24, 4, rf=5, jump=1, start=2.0)
    maps = np.random.default_rng(2).random((3, 24, 24)).astype(np.float32)
    st = upsample_stretch(maps, (28, 28, 1))
    np.testing.assert_allclose(st, jax.image.resize(maps, (3, 28, 28), "bilinear"), atol=1e-6)
    al = upsample_aligned(maps, geo, (28, 28))
    np.testing.assert_allclose(al[:, 2:26, 2:26], maps, atol=1e-6)  # cells sit on pixels
    assert float(jnp.abs(al - st).max()) > 0.05


def test_minmax_and_combine():
    x = jnp.array([[[2.0, 4.0], [6.0, 10.0]], [[3.0, 3.0], [3.0, 3.0]]])
    n = minmax_normalize(x)
    np.testing.assert_allclose(n[0], [[0, 0.25], [0.5, 1]])
    np.testing.assert_array_equal(n[1], np.zeros((2, 2)))  # constant -> zeros, no NaN
    h = {"p": jnp.array([[[0.0, 1.0], [0.0, 0.0]]]), "q": jnp.array([[[0.0, 0.0], [1.0, 0.5]]])}
    np.testing.assert_allclose(combine(h)[0], [[0, 1], [1, 0.5]])
    np.testing.assert_allclose(combine(h, ["q"])[0], [[0, 0], [1, 0.5]])
    with pytest.raises(ValueError, match="unknown layer 'r'"):
        combine(h, ["r"])


def test_heatmaps_jit_and_errors():
    spikes, masks = _hand_case()
    classes = jnp.array([1, 0, 2])
    fn = jax.jit(
        functools.partial(
            svebi_heatmaps, geometry=GEO, image_shape=(4, 4), placement="aligned", border="clamp"
        )
    )
    np.testing.assert_allclose(fn(spikes, classes, masks)["a"][0], EXPECTED_CLASS1, atol=1e-6)
    kw = dict(geometry=GEO, image_shape=(4, 4))
    with pytest.raises(ValueError, match=r"target must lie in \[0, 3\)"):
        svebi_heatmaps(spikes, jnp.array([0, 3, 1]), masks, **kw)
    with pytest.raises(ValueError, match="unknown layer 'b'"):
        svebi_heatmaps(spikes, classes, masks, layers=["b"], **kw)
    with pytest.raises(ValueError, match="placement"):
        svebi_heatmaps(spikes, classes, masks, placement="nearest", **kw)
    with pytest.raises(ValueError, match="must be \\[B, 3, 3, c\\]"):
        svebi_heatmaps(
            spikes,
            classes,
            masks,
            geometry={"a": GEO["a"]._replace(height=3, width=3)},
            image_shape=(4, 4),
        )


@pytest.fixture(scope="module")
def net():
    model = ShallowSNN(rngs=nnx.Rngs(3), channels=(4, 6), hidden=16)
    apply_fn, params = functional(model)
    images = np.random.default_rng(3).random((4, 28, 28, 1)).astype(np.float32) * 3
    return model, apply_fn, params, images


RELEVANT = {0: {"conv1": [2, 0], "conv2": [5]}, 1: {"conv1": [1], "conv2": [0, 3]}}


def _hand_masks(index):
    """Masks of classes 0 (conv1 [2, 0], conv2 [5]) and 1 (conv1 [1], conv2 [0, 3]) of 10."""
    W = np.zeros((index.num_filters, 10), np.float32)
    for j, per_layer in RELEVANT.items():
        for layer, chans in per_layer.items():
            for c in chans:
                W[index.column(layer, c), j] = 0.5
    return masks_from_weights(W, index)


def test_svebi_attribution_matches_pieces(net):
    model, apply_fn, params, images = net
    out = jax.jit(lambda p, x: apply_fn(p, x, record="mean"))(params, images)
    pred = np.asarray(out.logits).argmax(-1)
    index = FilterIndex.from_geometry(model.geometry, ("conv1", "conv2"))
    masks = _hand_masks(index)
    ref = jax.jit(functools.partial(svebi_heatmaps, geometry=model.geometry, image_shape=(28, 28)))(
        out.spikes, jnp.asarray(pred), masks
    )
    for name in ("conv1", "conv2"):  # geometry from apply_fn.info, the predicted classes
        got = attribution.svebi(apply_fn, masks, layer=name)(params, images, None)
        np.testing.assert_allclose(got, ref[name], atol=1e-5)
    # given classes, stretch placement: the hand-written sum of the relevant filters' maps
    cls = np.array([1, 1, 0, 1], np.int32)
    opts = attribution.SVEBIOptions(placement="stretch")
    got = attribution.svebi(apply_fn, masks, layer="conv1", options=opts)(params, images, cls)
    s = np.asarray(out.spikes["conv1"])
    agg = np.einsum("bhwc,bc->bhw", s, np.asarray(masks["conv1"])[cls])
    ref2 = minmax_normalize(jax.image.resize(agg, (4, 28, 28), "bilinear"))
    np.testing.assert_allclose(got, ref2, atol=1e-5)
    # a class without any relevant filter gets a zero map
    got = attribution.svebi(apply_fn, masks, layer="conv1")(params, images, np.array([0, 5, 1, 5]))
    np.testing.assert_array_equal(got[1], np.zeros((28, 28)))
    with pytest.raises(ValueError, match="target"):
        attribution.svebi(apply_fn, masks)(params, images, np.array([0, 0, 0, 10]))
    with pytest.raises(ValueError, match="unknown layer 'fc9'"):
        attribution.svebi(apply_fn, {"fc9": np.zeros((10, 1))})


def test_traced_class_out_of_range_gives_nan_maps_not_another_class(net):
    """Under jit a class of 99 (10 classes) cannot raise: its maps are NaN, the others exact."""
    model, apply_fn, params, images = net
    index = FilterIndex.from_geometry(model.geometry, ("conv1", "conv2"))
    masks = _hand_masks(index)
    target = jnp.array([99, 1, -1, 0], jnp.int32)
    attr = attribution.svebi(apply_fn, masks)
    got = np.asarray(jax.jit(lambda t: attr(params, images, t))(target))
    assert np.all(np.isnan(got[0])) and np.all(np.isnan(got[2]))
    ok = np.asarray(attr(params, images, np.array([0, 1, 0, 0])))
    np.testing.assert_allclose(got[[1, 3]], ok[[1, 3]], atol=1e-6)
    # the per-layer function too
    out = apply_fn(params, images, record="mean")
    hm = jax.jit(functools.partial(svebi_heatmaps, geometry=model.geometry, image_shape=(28, 28)))(
        out.spikes, target, masks
    )
    for name in ("conv1", "conv2"):
        assert np.all(np.isnan(hm[name][0])) and not np.any(np.isnan(hm[name][1]))
