"""ROAD (svebi_jax.metrics.road) against hand-computed imputations and a NumPy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from svebi_jax import train
from svebi_jax.metrics import remove_and_debias as R


def _dense_reference(img: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """The imputation's linear system built pixel by pixel and solved densely (float64)."""
    h, w = img.shape
    idx = {p: i for i, p in enumerate(zip(*np.nonzero(removed), strict=True))}
    a = np.zeros((len(idx), len(idx)))
    b = np.zeros(len(idx))
    for (y, x), i in idx.items():
        for (dy, dx), wt in R.NEIGHBOUR_WEIGHTS.items():
            yy, xx = y + dy, x + dx
            if 0 <= yy < h and 0 <= xx < w:
                a[i, i] += wt
                if (yy, xx) in idx:
                    a[i, idx[(yy, xx)]] -= wt
                else:
                    b[i] += wt * img[yy, xx]
    out = img.astype(np.float64).copy()
    for (y, x), i in idx.items():
        out[y, x] = np.linalg.solve(a, b)[i]
    return out


def test_imputation_by_hand():
    img = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1)
    # centre removed: weighted mean of its 8 neighbours (direct 1/6, diagonal 1/12)
    centre = np.zeros((1, 3, 3), bool)
    centre[0, 1, 1] = True
    got = np.asarray(R.noisy_linear_impute(img, centre, noise=0.0))
    want = (1 + 3 + 5 + 7) / 6 + (0 + 2 + 6 + 8) / 12  # = 4
    assert got[0, 1, 1, 0] == pytest.approx(want, abs=1e-5)
    np.testing.assert_array_equal(np.delete(got.ravel(), 4), np.delete(img.ravel(), 4))
    # a corner: three in-image neighbours, weights renormalized
    img2 = np.array([[0, 3], [6, 12]], np.float32).reshape(1, 2, 2, 1)
    corner = np.array([[[True, False], [False, False]]])
    got2 = np.asarray(R.noisy_linear_impute(img2, corner, noise=0.0))
    assert got2[0, 0, 0, 0] == pytest.approx((3 / 6 + 6 / 6 + 12 / 12) / (5 / 12), rel=1e-5)
    # two coupled unknowns on a 1x3 strip [a, ?, ?]: x1 = (a + x2)/2, x2 = x1 -> x1 = x2 = a
    strip = np.array([5.0, 0, 0], np.float32).reshape(1, 1, 3, 1)
    rem = np.array([[[False, True, True]]])
    got3 = np.asarray(R.noisy_linear_impute(strip, rem, noise=0.0))
    np.testing.assert_allclose(got3.ravel(), [5, 5, 5], rtol=1e-5)


def test_imputation_matches_dense_solve():
    rng = np.random.default_rng(0)
    img = rng.random((3, 6, 5, 2)).astype(np.float32)
    removed = rng.random((3, 6, 5)) < 0.6
    got = np.asarray(R.noisy_linear_impute(img, removed, noise=0.0))
    for b in range(3):
        for c in range(2):
            want = _dense_reference(img[b, :, :, c], removed[b])
            np.testing.assert_allclose(got[b, :, :, c], want, atol=2e-5)
    # noise only on the removed pixels, same key -> same images
    key = jax.random.key(1)
    n1 = np.asarray(R.noisy_linear_impute(img, removed, key=key, noise=0.5))
    n2 = np.asarray(R.noisy_linear_impute(img, removed, key=key, noise=0.5))
    np.testing.assert_array_equal(n1, n2)
    np.testing.assert_array_equal(n1[~removed], img[~removed])
    assert (n1[removed] - got[removed]).std() == pytest.approx(0.5, rel=0.3)
    with pytest.raises(ValueError, match="key is required"):
        R.noisy_linear_impute(img, removed, noise=0.1)
    with pytest.raises(ValueError, match=r"removed must be \[B, H, W\]"):
        R.noisy_linear_impute(img, removed[:, :3])


def _linear_model(weights):
    """Two-class model: logit_0 = <w, x>, logit_1 = 0."""

    def predict(params, x):
        z = jnp.einsum("bhwc,hw->b", x, params)
        return jnp.stack([z, jnp.zeros_like(z)], -1)

    return predict, jnp.asarray(weights)


def test_road_of_precomputed_maps_by_hand():
    # 1x4 image [1, 1, 1, 1]; the model counts pixels 0 and 1 only. With one pixel removed
    # (fraction 0.25) the imputed value equals its neighbours' mean = 1: nothing changes;
    # so use an image whose removed pixel imputes to something else: [4, 0, 0, 0].
    predict, w = _linear_model(np.array([[1.0, 0, 0, 0]], np.float32))
    img = np.array([4.0, 0, 0, 0], np.float32).reshape(1, 1, 4, 1)
    sal = np.array([[[3.0, 2.0, 1.0, 0.0]]], np.float32)
    res = R.road(sal, predict, w, img, key=jax.random.key(0), fractions=(0.25, 0.5), noise=0.0)
    # MoRF 0.25: pixel 0 -> neighbour pixel 1 = 0, logit 0 -> p = 0.5
    # MoRF 0.5: pixels 0, 1 -> both impute to pixel 2's 0 -> p = 0.5
    # LeRF: pixel 0 is never removed -> logit 4 -> p = sigmoid(4)
    np.testing.assert_allclose(res.morf[0], [0.5, 0.5], rtol=1e-5)
    np.testing.assert_allclose(res.lerf[0], [jax.nn.sigmoid(4.0)] * 2, rtol=1e-5)
    np.testing.assert_allclose(res.lerf_kept[0], [1, 1])
    assert float(res.gap) == pytest.approx(float(jax.nn.sigmoid(4.0)) - 0.5, rel=1e-5)
    assert res.classes.tolist() == [0]
    with pytest.raises(ValueError, match="fractions"):
        R.road(sal, predict, w, img, key=jax.random.key(0), fractions=(1.0,))
    with pytest.raises(ValueError, match="attributions must be"):
        R.road(sal[:, :, :3], predict, w, img, key=jax.random.key(0))
    # the same maps through an attr_fn give the same numbers
    again = R.road(
        lambda p, x, t: jnp.asarray(sal),
        predict,
        w,
        img,
        key=jax.random.key(0),
        fractions=(0.25, 0.5),
        noise=0.0,
    )
    np.testing.assert_array_equal(again.morf, res.morf)
    np.testing.assert_array_equal(res.maps, sal)
    assert res.higher_is_better  # the gap, LeRF - MoRF


def test_road_attr_fn_vectorised_and_deterministic():
    rng = np.random.default_rng(2)
    images = rng.random((5, 6, 6, 1)).astype(np.float32)
    wts = rng.normal(size=(6, 6)).astype(np.float32)

    def apply_fn(params, x):
        z = jnp.einsum("bhwc,hw->b", x, params)
        return (jnp.stack([z, -z], -1),)  # an apply_fn returns (logits, ...)

    def attr_fn(params, x, target=None):
        return x[..., 0] * params  # input x weight: exact for this linear model

    key = jax.random.key(0)
    kw = dict(key=key, num_iters=40)  # CG is exact within |U| <= 33 steps on 6x6 images
    res = R.road(attr_fn, apply_fn, jnp.asarray(wts), images, chunk_size=7, **kw)
    res2 = R.road(attr_fn, apply_fn, jnp.asarray(wts), images, chunk_size=64, **kw)
    np.testing.assert_allclose(res.morf, res2.morf, atol=1e-6)  # chunking does not matter
    assert res.morf.shape == (5, 9) and res.maps.shape == (5, 6, 6)
    # per-image curve from a direct, unvectorised computation of one item
    ranks = np.asarray(R._ranks(jnp.asarray(res.maps), jax.random.split(key)[0]))
    removed = (ranks[2] < round(0.3 * 36)).reshape(1, 6, 6)
    filled = np.asarray(R.noisy_linear_impute(images[2:3], removed, noise=0.0))
    z = float((filled[0, ..., 0] * wts).sum())
    cls = int(res.classes[2])
    p = float(jax.nn.softmax(jnp.array([z, -z]))[cls])
    assert float(res.morf[2, 2]) == pytest.approx(p, abs=0.02)  # up to the 0.01 noise


def test_paper_recipe_is_plain_sgd():
    cfg = train.recipe("paper", seed=3)
    assert (cfg.epochs, cfg.batch_size, cfg.learning_rate, cfg.snn.num_steps) == (5, 100, 0.3, 10)
    assert cfg.seed == 3 and train.recipe("default") == train.TrainConfig()
    opt = train.make_optimizer(cfg, steps_per_epoch=10)
    params = {"w": jnp.array([1.0, -2.0])}
    grads = {"w": jnp.array([0.5, 1.0])}
    state = opt.init(params)
    for _ in range(2):  # no momentum: every step is -0.3 * g
        updates, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(params["w"], [1.0 - 0.3, -2.0 - 0.6], rtol=1e-6)
    with pytest.raises(ValueError, match="name must be one of"):
        train.recipe("adam")
