"""Tests for svebi_jax.interpret: receptive fields and top-k average crops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from svebi_jax.interpret import (
    interpret_filters,
    receptive_field_box,
    receptive_field_boxes,
    top_k_crops,
)
from svebi_jax.layers import Geometry, SNNOutput, layer_geometry
from svebi_jax.models import ShallowSNN, functional, shallow_layers
from svebi_jax.responses import FilterIndex, compute_responses


def test_shallow_receptive_fields_by_hand():
    geo = layer_geometry(shallow_layers(), (28, 28, 1))
    assert (geo["conv1"].rf, geo["conv1"].start, geo["conv1"].jump) == (5, 2.0, 1)
    assert (geo["conv2"].rf, geo["conv2"].start, geo["conv2"].jump) == (14, 6.5, 2)
    assert receptive_field_box(geo["conv2"], 0, 0, (28, 28)) == (0, 0, 14, 14)  # pixels 0..13
    assert receptive_field_box(geo["conv2"], 7, 7, (28, 28, 1)) == (14, 14, 28, 28)
    assert receptive_field_box(geo["conv2"], 1, 3, (28, 28)) == (2, 6, 16, 20)
    assert receptive_field_box(geo["conv1"], 23, 0, (28, 28)) == (23, 0, 28, 5)
    i = np.array([0, 7, 1, 3])
    j = np.array([0, 7, 3, 5])
    boxes = receptive_field_boxes(geo["conv2"], i, j, (28, 28))
    assert boxes.shape == (4, 4)
    for row, (a, b) in zip(boxes, zip(i, j, strict=True), strict=True):
        assert tuple(row) == receptive_field_box(geo["conv2"], int(a), int(b), (28, 28))


def test_receptive_field_clipped_and_errors():
    geo = Geometry(6, 6, 1, rf=3, jump=1, start=0.0)  # 3x3 conv with padding 1
    assert receptive_field_box(geo, 0, 0, (6, 6)) == (0, 0, 2, 2)  # window -1..1 clipped
    assert receptive_field_box(geo, 5, 2, (6, 6)) == (4, 1, 6, 4)
    with pytest.raises(ValueError, match=r"i must lie in \[0, 6\)"):
        receptive_field_box(geo, 6, 0, (6, 6))
    with pytest.raises(ValueError, match="j must lie"):
        receptive_field_boxes(geo, [0, 1], [0, -1], (6, 6))


# --------------------------------------------------------------------- synthetic network

# The "network" records its input image as spike map of layer "a": with a padded 3x3 geometry
# (start 0, jump 1) cell (i, j) is centred on pixel (i, j), so the peak of channel c is the
# brightest pixel of image channel c and the crop is the 3x3 window around it.
SYN_GEO = {"a": Geometry(6, 6, 2, rf=3, jump=1, start=0.0)}
SYN_INDEX = FilterIndex(("a",), (2,))


def syn_apply(params, images, *, record=None, masks=None, mode="time_batched"):
    del params, masks, mode
    logits = jnp.zeros((images.shape[0], 2))
    return SNNOutput(logits, {"a": images} if record else {})


class _Unhashable:
    __hash__ = None

    def __call__(self, params, images, **kwargs):
        return syn_apply(params, images, **kwargs)


def _syn_data():
    rng = np.random.default_rng(0)
    images = rng.random((6, 6, 6, 2)).astype(np.float32) * 0.5
    peaks0 = [(0, 0), (3, 2), (5, 4), (2, 2), (1, 1), (4, 5)]
    peaks1 = [(5, 5), (2, 3), (0, 3), (1, 4), (3, 0), (2, 2)]
    for n in range(6):
        images[(n, *peaks0[n], 0)] = 1.0
        images[(n, *peaks1[n], 1)] = 1.0
    X = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.1, 0.9], [0.05, 0.8], [0.0, 0.0]])
    return images, X, peaks0, peaks1


def _reference_crop(images, channel_peaks, which, rf=3):
    """Loop reference: mean over the images in which each crop pixel lies inside the image."""
    h, w, c = images.shape[1:]
    total = np.zeros((rf, rf, c))
    count = np.zeros((rf, rf))
    for n in which:
        pi, pj = channel_peaks[n]
        for a in range(rf):
            for b in range(rf):
                y, x = pi - 1 + a, pj - 1 + b
                if 0 <= y < h and 0 <= x < w:
                    total[a, b] += images[n, y, x]
                    count[a, b] += 1
    return np.where(count[..., None] > 0, total / np.maximum(count, 1)[..., None], 0.0)


def test_top_k_crop_synthetic_known_answer():
    images, X, peaks0, peaks1 = _syn_data()
    crop = top_k_crops(
        syn_apply, None, images, X, SYN_INDEX, "a", 0, k=3, geometry=SYN_GEO, batch_size=2
    )
    assert crop.shape == (3, 3, 2)
    np.testing.assert_allclose(crop, _reference_crop(images, peaks0, [0, 1, 2]), atol=1e-6)
    # centre: the peak of every top image; corner (0, 0) is inside for images 1 and 2 only,
    # corner (2, 0) for image 1 only (peaks (0, 0), (3, 2), (5, 4))
    assert crop[1, 1, 0] == pytest.approx(1.0)
    np.testing.assert_allclose(crop[0, 0], (images[1, 2, 1] + images[2, 4, 3]) / 2, atol=1e-6)
    np.testing.assert_allclose(crop[2, 0], images[1, 4, 1], atol=1e-6)
    # batched over filters: channel 1's top-3 are images 3, 4, 2
    out = interpret_filters(
        syn_apply, None, images, X, SYN_INDEX, {"a": [1, 0]}, k=3, geometry=SYN_GEO
    )
    assert list(out["a"]) == [1, 0]
    unhashable = _Unhashable()  # any callable works, cached or not
    again = interpret_filters(
        unhashable, None, images, X, SYN_INDEX, {"a": [0]}, k=3, geometry=SYN_GEO
    )
    np.testing.assert_allclose(again["a"][0], crop, atol=1e-6)
    np.testing.assert_allclose(out["a"][0], crop, atol=1e-6)
    np.testing.assert_allclose(out["a"][1], _reference_crop(images, peaks1, [3, 4, 2]), atol=1e-6)


def test_top_k_errors():
    images, X, _, _ = _syn_data()
    kw = dict(geometry=SYN_GEO, k=2)
    with pytest.raises(ValueError, match="k must be <= N = 6.*k = 7"):
        top_k_crops(syn_apply, None, images, X, SYN_INDEX, "a", 0, **(kw | {"k": 7}))
    with pytest.raises(ValueError, match="k must be a positive int"):
        top_k_crops(syn_apply, None, images, X, SYN_INDEX, "a", 0, **(kw | {"k": 0}))
    with pytest.raises(ValueError, match="unknown layer 'b'"):
        top_k_crops(syn_apply, None, images, X, SYN_INDEX, "b", 0, **kw)
    with pytest.raises(ValueError, match=r"channel must be in \[0, 2\)"):
        top_k_crops(syn_apply, None, images, X, SYN_INDEX, "a", 2, **kw)
    with pytest.raises(ValueError, match="X must be"):
        top_k_crops(syn_apply, None, images, X[:, :1], SYN_INDEX, "a", 0, **kw)
    assert interpret_filters(syn_apply, None, images, X, SYN_INDEX, {"a": []}, **kw) == {"a": {}}


def test_top_k_crop_shallow_snn_matches_loop_reference():
    model = ShallowSNN(rngs=nnx.Rngs(1), channels=(4, 6), hidden=16)
    apply_fn, params = functional(model)
    images = np.random.default_rng(5).random((12, 28, 28, 1)).astype(np.float32) * 3
    r = compute_responses(apply_fn, params, images, batch_size=8)
    geo = model.geometry
    ch = int(np.argmax(r.X[:, r.index.columns("conv2")].sum(0)))  # a filter that fires
    crop = top_k_crops(apply_fn, params, images, r.X, r.index, "conv2", ch, k=4, geometry=geo)
    assert crop.shape == (14, 14, 1)
    top = np.argsort(-r.X[:, r.index.column("conv2", ch)], kind="stable")[:4]
    s = np.asarray(
        jax.jit(lambda x: apply_fn(params, x, record="mean"))(images[top]).spikes["conv2"]
    )[..., ch]
    ref = np.zeros((14, 14, 1))
    for n in range(4):
        i, j = np.unravel_index(np.argmax(s[n]), s[n].shape)
        t, l_, b, rr = receptive_field_box(geo["conv2"], int(i), int(j), (28, 28))
        assert (b - t, rr - l_) == (14, 14)  # valid convs: every window is inside
        ref += images[top[n], t:b, l_:rr] / 4
    np.testing.assert_allclose(crop, ref, atol=1e-5)
