"""The Quantus metrics of svebi_jax.metrics on cases computed by hand (no Quantus needed)."""

from __future__ import annotations

import importlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from svebi_jax import metrics
from svebi_jax.metrics import faithfulness as F
from svebi_jax.metrics import randomisation as RL
from svebi_jax.metrics import robustness as R

# the module (svebi_jax.metrics.complexity, the attribute, is its function `complexity`)
CXM = importlib.import_module("svebi_jax.metrics.complexity")


def linear_apply(params, images, **kwargs):
    """Two classes: logit_0 = <w, x> over the pixels (C = 1), logit_1 = 0; ``params = w``."""
    z = (images[..., 0] * params).reshape(images.shape[0], -1).sum(-1)
    return (jnp.stack([z, jnp.zeros_like(z)], axis=-1),)


def linear_model(w):
    """``(apply_fn, params)``: one ``apply_fn`` for all tests, so compilations are shared."""
    return linear_apply, jnp.asarray(w, jnp.float32)


def img(rows):
    return np.asarray(rows, np.float32)[None, :, :, None]


ZERO = np.zeros(1, np.int32)


# ----------------------------------------------------------------------------- complexity


def test_package_exports():
    assert metrics.complexity is CXM.complexity and metrics.sparseness is CXM.sparseness
    assert metrics.pixel_flipping is F.pixel_flipping and metrics.random_logit is RL.random_logit
    assert metrics.max_sensitivity is R.max_sensitivity


def test_gini_index_by_hand():
    # sum((2i - n - 1) v_(i)) / (n sum v): (-3*1 - 1*2 + 1*3 + 3*4) / (4 * 10) = 0.25
    np.testing.assert_allclose(CXM.gini_index(jnp.array([[4.0, 2.0, 1.0, 3.0]])), [0.25])
    np.testing.assert_allclose(CXM.gini_index(jnp.array([[0.0, 0.0, 5.0, 0.0]])), [0.75])
    np.testing.assert_allclose(CXM.gini_index(jnp.ones((1, 9))), [0.0], atol=1e-7)


def test_sparseness_and_complexity_by_hand():
    x = np.zeros((2, 2, 2, 1), np.float32)
    maps = np.array([[[0.0, 0.0], [0.0, -3.0]], [[1.0, 1.0], [2.0, 0.0]]], np.float32)
    sp = CXM.sparseness(maps, None, None, x)
    # one non-zero pixel: 1 - 1/4 (the 1e-7 Quantus adds moves it by < 1e-6)
    assert sp.scores[0] == pytest.approx(0.75, abs=1e-6)
    # |a| / max = [.5, .5, 1, 0] -> sorted [0, .5, .5, 1]: (-3*0 - .5 + .5 + 3) / (4 * 2)
    assert sp.scores[1] == pytest.approx(3 / 8, abs=1e-6)
    assert sp.higher_is_better is True and sp.target is None
    cx = CXM.complexity(maps, None, None, x)
    assert cx.scores[0] == pytest.approx(0.0, abs=1e-6)
    # q = [.25, .25, .5, 0]: -(2 * .25 log .25 + .5 log .5) = 1.5 log 2
    assert cx.scores[1] == pytest.approx(1.5 * math.log(2), abs=1e-6)
    assert cx.higher_is_better is False
    uniform = CXM.complexity(np.full((1, 4, 4), 0.3, np.float32), None, None, np.ones((1, 4, 4, 1)))
    assert uniform.scores[0] == pytest.approx(math.log(16), abs=1e-5)
    np.testing.assert_allclose(cx.mean, np.mean(cx.scores))


# ----------------------------------------------------------------------------- faithfulness


def test_pixel_flipping_by_hand():
    apply_fn, w = linear_model([[1.0, -1.0], [2.0, 0.5]])
    x = img([[2.0, 3.0], [4.0, 1.0]])  # logit_0 = 7.5; black = min = 1
    maps = np.array([[[0.1, 0.4], [0.3, 0.2]]], np.float32)  # order: (0,1) (1,0) (1,1) (0,0)
    r = F.pixel_flipping(maps, apply_fn, w, x, target=ZERO, apply_softmax=False)
    # 3 -> 1 at w=-1: +2 -> 9.5; 4 -> 1 at w=2: -6 -> 3.5; 1 -> 1: 3.5; 2 -> 1 at w=1: 2.5
    np.testing.assert_allclose(r.curves, [[9.5, 3.5, 3.5, 2.5]], rtol=1e-6)
    assert r.auc[0] == pytest.approx(9.5 / 2 + 3.5 + 3.5 + 2.5 / 2)
    probs = F.pixel_flipping(maps, apply_fn, w, x, target=ZERO)  # softmax: sigmoid(logit_0)
    np.testing.assert_allclose(probs.curves, jax.nn.sigmoid(r.curves), rtol=1e-6)
    two = F.pixel_flipping(
        maps, apply_fn, w, x, target=ZERO, apply_softmax=False, features_in_step=2
    )
    np.testing.assert_allclose(two.curves, [[3.5, 2.5]], rtol=1e-6)
    white = F.pixel_flipping(
        maps, apply_fn, w, x, target=ZERO, apply_softmax=False, perturb_baseline="white"
    )  # max = 4: +(-1) -> 6.5, 0 -> 6.5, ...
    np.testing.assert_allclose(white.curves, [[6.5, 6.5, 8.0, 10.0]], rtol=1e-6)
    # an apply_fn may return the logits array itself (as the insertion/deletion metrics allow)
    bare = F.pixel_flipping(
        maps, lambda p, im: linear_apply(p, im)[0], w, x, target=ZERO, apply_softmax=False
    )
    np.testing.assert_allclose(bare.curves, r.curves, rtol=1e-6)


def test_region_patches_follow_quantus_padding():
    ids, n = F.region_patches((12, 12), 8)  # padded by 2 on each side to 16 x 16
    assert n == 4
    assert ids[0, 0] == ids[5, 5] == 0 and ids[0, 6] == 1 and ids[6, 0] == 2 and ids[11, 11] == 3
    ids, n = F.region_patches((5, 5), 2)  # floor 0 before, ceil 1 after: 6 x 6, 3 x 3 patches
    assert n == 9
    np.testing.assert_array_equal(ids[:, 0], [0, 0, 3, 3, 6])
    np.testing.assert_array_equal(ids[4], [6, 6, 7, 7, 8])


def test_region_perturbation_by_hand():
    apply_fn, w = linear_model(np.ones((4, 4)))
    x = np.zeros((1, 4, 4, 1), np.float32)  # patches: TL = 1, TR = 2, BL = 3, BR = 0
    x[0, :2, :2] = 1
    x[0, :2, 2:] = 2
    x[0, 2:, :2] = 3
    maps = np.zeros((1, 4, 4), np.float32)
    maps[0, :2, 2:] = 3  # TR most relevant, then BL, TL, BR
    maps[0, 2:, :2] = 2
    maps[0, :2, :2] = 1
    kw = dict(target=ZERO, patch_size=2, apply_softmax=False)
    morf = F.region_perturbation(maps, apply_fn, w, x, **kw)  # logit 24; black = 0
    np.testing.assert_allclose(morf.curves, [[8.0, 20.0, 24.0, 24.0]], rtol=1e-6)
    lerf = F.region_perturbation(maps, apply_fn, w, x, order="lerf", **kw)
    np.testing.assert_allclose(lerf.curves, [[0.0, 4.0, 16.0, 24.0]], rtol=1e-6)
    short = F.region_perturbation(maps, apply_fn, w, x, regions_evaluation=2, **kw)
    np.testing.assert_allclose(short.curves, [[8.0, 20.0]], rtol=1e-6)
    assert morf.higher_is_better is True and lerf.higher_is_better is False


def test_faithfulness_correlation_of_exact_contributions():
    # linear logit, black baseline 0: the drop of a subset is exactly its sum of w * x
    rng = np.random.default_rng(0)
    w = rng.normal(size=(6, 6))
    apply_fn, wj = linear_model(w)
    x = rng.random((2, 6, 6, 1)).astype(np.float32)
    x[:, 0, 0] = 0.0
    maps = (w * x[..., 0]).astype(np.float32)
    kw = dict(target=np.zeros(2, np.int32), nr_runs=20, subset_size=9)
    r = F.faithfulness_correlation(maps, apply_fn, wj, x, **kw)
    np.testing.assert_allclose(r.scores, [1.0, 1.0], atol=1e-5)
    np.testing.assert_allclose(
        F.faithfulness_correlation(-maps, apply_fn, wj, x, **kw).scores, [-1.0, -1.0], atol=1e-5
    )
    # same key, same draws; another key, other subsets
    noisy = maps + rng.normal(size=maps.shape).astype(np.float32)
    a = F.faithfulness_correlation(noisy, apply_fn, wj, x, key=jax.random.key(1), **kw).scores
    b = F.faithfulness_correlation(noisy, apply_fn, wj, x, key=jax.random.key(1), **kw).scores
    c = F.faithfulness_correlation(noisy, apply_fn, wj, x, key=jax.random.key(2), **kw).scores
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    sub = np.asarray(F.faithfulness_subsets(jax.random.key(1), jnp.arange(40), 36, 9))
    assert sub.shape == (40, 9) and all(len(set(s)) == 9 for s in sub) and sub.max() < 36


def test_monotonicity_correlation_of_exact_contributions():
    # baseline 0, logits: nu_j = (w_j x_j)^2 / y^2, a monotone function of |w_j x_j|
    rng = np.random.default_rng(1)
    w = rng.normal(size=(4, 4))
    apply_fn, wj = linear_model(w)
    x = (rng.random((1, 4, 4, 1)) + 0.1).astype(np.float32)
    contrib = (w * x[..., 0]).astype(np.float32)
    kw = dict(target=ZERO, nr_samples=2, perturb_baseline=0.0, apply_softmax=False)
    r = F.monotonicity_correlation(contrib, apply_fn, wj, x, **kw)
    assert r.scores[0] == pytest.approx(1.0, abs=1e-6)
    reverse = 1.0 / (np.abs(contrib) + 1e-3)
    assert F.monotonicity_correlation(reverse, apply_fn, wj, x, **kw).scores[0] == pytest.approx(
        -1.0, abs=1e-6
    )


# ----------------------------------------------------------------------------- robustness


def test_max_sensitivity_by_hand():
    apply_fn, w = linear_model(np.ones((5, 5)))
    rng = np.random.default_rng(2)
    x = rng.random((2, 5, 5, 1)).astype(np.float32)
    key = jax.random.key(3)

    def intensity(params, images, target=None):
        return images[..., 0]

    r = R.max_sensitivity(intensity, apply_fn, w, x, nr_samples=4, key=key)
    # a(x + e) - a(x) = e: the largest ||e_k|| / ||x||
    noise = np.asarray(R.max_sensitivity_noise(key, jnp.arange(8), 25)).reshape(2, 4, 25)
    assert np.abs(noise).max() <= 0.2 and np.abs(noise).max() > 0.15
    want = np.linalg.norm(noise, axis=-1).max(-1) / np.linalg.norm(x.reshape(2, -1), axis=-1)
    np.testing.assert_allclose(r.scores, want, rtol=1e-5)
    assert r.higher_is_better is False

    def constant(params, images, target=None):
        return jnp.ones(images.shape[:3])

    np.testing.assert_allclose(
        R.max_sensitivity(constant, apply_fn, w, x, nr_samples=3).scores, [0.0, 0.0]
    )
    # precomputed maps need the attr_fn that explains the perturbed images
    with pytest.raises(ValueError, match="attr_fn"):
        R.max_sensitivity(x[..., 0], apply_fn, w, x)
    same = R.max_sensitivity(x[..., 0], apply_fn, w, x, attr_fn=intensity, nr_samples=4, key=key)
    np.testing.assert_allclose(same.scores, r.scores, rtol=1e-6)
    # return_nan_when_prediction_changes: an image on the decision boundary (logit_0 ~ 0.025
    # against noise of std ~0.6 on the sum) flips in some of 20 samples -> NaN; one far from
    # it (logit_0 = 25) never does -> the plain score
    edge = np.stack([np.full((5, 5, 1), 0.001), np.ones((5, 5, 1))]).astype(np.float32)
    kw = dict(nr_samples=20, key=key)
    flagged = R.max_sensitivity(
        intensity, apply_fn, w, edge, return_nan_when_prediction_changes=True, **kw
    )
    plain = R.max_sensitivity(intensity, apply_fn, w, edge, **kw)
    assert np.isnan(flagged.scores[0]) and np.isfinite(plain.scores[0])
    assert flagged.scores[1] == pytest.approx(float(plain.scores[1]), rel=1e-6)


# ----------------------------------------------------------------------------- randomisation


def test_ssim_1d_matches_skimage():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(3, 50)).astype(np.float32)
    b = (a + rng.normal(size=(3, 50))).astype(np.float32)
    ours = np.asarray(RL.ssim_1d(a, b))
    for i in range(3):
        rng_ = float(max(a[i].max(), b[i].max()) - min(a[i].min(), b[i].min()))
        want = structural_similarity(a[i], b[i], data_range=rng_)
        assert ours[i] == pytest.approx(want, abs=1e-5)
    np.testing.assert_allclose(RL.ssim_1d(a, a), [1.0, 1.0, 1.0], atol=1e-6)


def test_random_logit_by_hand():
    apply_fn, w = linear_model(np.ones((4, 4)))
    x = np.random.default_rng(5).random((3, 4, 4, 1)).astype(np.float32)

    def same_for_all_classes(params, images, target=None):
        return images[..., 0]

    r = RL.random_logit(same_for_all_classes, apply_fn, w, x)
    np.testing.assert_allclose(r.scores, [1.0, 1.0, 1.0], atol=1e-6)
    assert (r.random_target != r.target).all() and r.higher_is_better is False

    def one_hot_class(params, images, target=None):  # the map marks the class's pixel
        return jax.nn.one_hot(target, 16).reshape(-1, 4, 4) + 0 * images[..., 0]

    r = RL.random_logit(one_hot_class, apply_fn, w, x, num_classes=5, target=np.zeros(3, int))
    # two one-hot vectors (already max-normalised): skimage's SSIM of the flat pair
    for i in range(3):
        a, b = np.eye(16)[0], np.eye(16)[int(r.random_target[i])]
        assert r.scores[i] == pytest.approx(structural_similarity(a, b, data_range=1.0), abs=1e-5)
    # the random class: uniform among the K - 1 others
    t = jnp.zeros(6000, jnp.int32) + 2
    off = np.asarray(RL.random_off_classes(jax.random.key(0), t, 5))
    counts = np.bincount(off, minlength=5)
    assert counts[2] == 0 and (np.abs(counts[[0, 1, 3, 4]] - 1500) < 150).all()


# ----------------------------------------------------------------------------- contract


def test_attr_fn_target_jit_and_nan_flags():
    rng = np.random.default_rng(6)
    w = rng.normal(size=(4, 4))
    apply_fn, wj = linear_model(w)
    x = rng.random((2, 4, 4, 1)).astype(np.float32)

    def contrib(params, images, target=None):
        return images[..., 0] * params

    r = F.pixel_flipping(contrib, apply_fn, wj, x)  # target None: the predicted classes
    z = (w * x[..., 0]).reshape(2, -1).sum(-1)
    np.testing.assert_array_equal(r.target, (z < 0).astype(int))
    np.testing.assert_allclose(r.maps, x[..., 0] * w, rtol=1e-6)
    maps = np.asarray(r.maps)
    eager = F.pixel_flipping(maps, apply_fn, wj, x, target=r.target)
    np.testing.assert_allclose(eager.curves, r.curves, rtol=1e-6)
    jitted = jax.jit(lambda m, im: F.pixel_flipping(m, apply_fn, wj, im, target=r.target).auc)
    np.testing.assert_allclose(jitted(maps, x), eager.auc, rtol=1e-6)
    # NaN in a traced map cannot raise: that image's result is NaN, the other's unchanged
    bad = maps.copy()
    bad[1, 0, 0] = np.nan
    flagged = np.asarray(jitted(bad, x))
    assert np.isnan(flagged[1]) and flagged[0] == pytest.approx(float(eager.auc[0]), rel=1e-6)
    sp = jax.jit(lambda m: CXM.sparseness(m, None, None, x).scores)(bad)
    assert np.isnan(sp[1]) and np.isfinite(sp[0])


def test_bad_arguments_are_refused():
    apply_fn, w = linear_model(np.ones((8, 8)))
    x = np.ones((2, 8, 8, 1), np.float32)
    maps = np.ones((2, 8, 8), np.float32)
    with pytest.raises(ValueError, match="features_in_step must divide"):
        F.pixel_flipping(maps, apply_fn, w, x, features_in_step=3)
    with pytest.raises(ValueError, match="subset_size must be smaller"):
        F.faithfulness_correlation(maps, apply_fn, w, x, subset_size=64)
    with pytest.raises(ValueError, match="attributions must be an attr_fn or"):
        F.region_perturbation(maps[:, :4], apply_fn, w, x)
    with pytest.raises(ValueError, match="must not contain NaN"):
        F.pixel_flipping(np.full_like(maps, np.nan), apply_fn, w, x)
    with pytest.raises(ValueError, match="perturb_baseline"):
        F.pixel_flipping(maps, apply_fn, w, x, perturb_baseline="mean")
    with pytest.raises(ValueError, match="order"):
        F.region_perturbation(maps, apply_fn, w, x, order="most")
    with pytest.raises(ValueError, match="target"):
        F.pixel_flipping(maps, apply_fn, w, x, target=np.zeros(3, np.int32))
    with pytest.raises(ValueError, match="random_logit explains"):
        RL.random_logit(maps, apply_fn, w, x)
    with pytest.raises(ValueError, match="upper_bound"):
        R.max_sensitivity(
            maps,
            apply_fn,
            w,
            x,
            attr_fn=lambda p, i, t: i[..., 0],
            lower_bound=0.2,
            upper_bound=0.1,
        )
    with pytest.raises(ValueError, match="images must be a float array"):
        CXM.complexity(maps, None, None, np.ones((2, 8, 8, 1), np.uint8))
