"""The Quantus metrics of svebi_jax.metrics against Quantus itself (same network, same maps).

Both implementations call the same JAX model: Quantus through a ``torch.nn.Module`` that hands
its NCHW batch to the jitted JAX function through NumPy (and an ``explain_func`` that calls the
same JAX ``attr_fn``). Deterministic metrics must agree to float32 tolerance. Where Quantus
samples, the test feeds it *our* draws: its ``np.random.choice`` / ``uniform`` /
``permutation`` / ``randint`` are replaced (pytest's ``monkeypatch``) by a queue that returns,
call after call, the draws our implementation made with its ``key`` (exposed as
:func:`faithfulness_subsets`, :func:`monotonicity_uniform`, :func:`max_sensitivity_noise`,
:func:`random_off_classes`), and the queue must be used up exactly; then the scores must agree
to float tolerance too.
"""

from __future__ import annotations

import functools
import importlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

quantus = pytest.importorskip("quantus")
torch = pytest.importorskip("torch")

from svebi_jax.metrics import faithfulness as F  # noqa: E402
from svebi_jax.metrics import randomisation as RL  # noqa: E402
from svebi_jax.metrics import robustness as R  # noqa: E402
from svebi_jax.protocols import logits_of  # noqa: E402

# the module (svebi_jax.metrics.complexity, the attribute, is its function `complexity`)
CXM = importlib.import_module("svebi_jax.metrics.complexity")

_CACHE: dict = {}  # id(fn) -> (fn, its wrapper); fn kept alive so ids stay unique
TOL = 2e-6  # float32 scores of the same model evaluated in different batch compositions


# ----------------------------------------------------------------------------- the shared model


@functools.cache
def tiny_model(h=8, w=8, c=1, k=4, hidden=16, seed=0):
    """A smooth tiny network (dense-tanh-dense) as ``apply_fn`` + grad×input ``attr_fn``.

    Cached: the same functions for every test, so that compilations are shared.
    """
    rng = np.random.default_rng(seed)
    params = {
        "w1": jnp.asarray(rng.normal(size=(h * w * c, hidden)) * 3 / np.sqrt(h * w * c)),
        "w2": jnp.asarray(rng.normal(size=(hidden, k))),
    }
    params = jax.tree.map(lambda a: a.astype(jnp.float32), params)

    def apply_fn(params, images, **kwargs):
        return (jnp.tanh(images.reshape(images.shape[0], -1) @ params["w1"]) @ params["w2"],)

    def attr_fn(params, images, target=None):
        if target is None:
            target = jnp.argmax(apply_fn(params, images)[0], -1)

        def score(x):
            return jnp.take_along_axis(apply_fn(params, x)[0], target[:, None], -1).sum()

        return (jax.grad(score)(images) * images).sum(-1)

    return apply_fn, params, attr_fn


class JaxModule(torch.nn.Module):
    """A JAX ``apply_fn`` seen by Quantus as a torch model (NCHW in, logits out)."""

    def __init__(self, apply_fn, params):
        super().__init__()
        self._fn = jax.jit(lambda x: logits_of(apply_fn(params, x)))

    def forward(self, x):
        nhwc = np.transpose(x.detach().cpu().numpy(), (0, 2, 3, 1)).astype(np.float32)
        return torch.from_numpy(np.asarray(self._fn(nhwc)))


def explain_func(attr_fn, params):
    """Quantus's ``explain_func(model, inputs, targets)`` calling our ``attr_fn`` (one per
    ``attr_fn``: its compilation is reused)."""
    if id(attr_fn) in _CACHE:
        return _CACHE[id(attr_fn)][1]
    fn = jax.jit(lambda x, t: attr_fn(params, x, t))

    def explain(model, inputs, targets, **kwargs):
        x = np.transpose(np.asarray(inputs, np.float32), (0, 2, 3, 1))
        return np.asarray(fn(x, jnp.asarray(targets, jnp.int32)))[:, None]

    _CACHE[id(attr_fn)] = (attr_fn, explain)
    return explain


class Draws:
    """Stands in for a NumPy sampler: returns the given draws in order, one per call."""

    def __init__(self, draws):
        self.draws = list(draws)
        self.calls = 0

    def __call__(self, *args, **kwargs):
        out = self.draws[self.calls]
        self.calls += 1
        return out

    def used_up(self):
        return self.calls == len(self.draws)


def torch_model(apply_fn, params):
    """The torch view of ``apply_fn`` (one per ``apply_fn``: its compilation is reused)."""
    if id(apply_fn) not in _CACHE:
        _CACHE[id(apply_fn)] = (apply_fn, JaxModule(apply_fn, params).eval())
    return _CACHE[id(apply_fn)][1]


def run_quantus(metric, apply_fn, params, x, target, **kwargs):
    model = torch_model(apply_fn, params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = metric(
            model, np.transpose(x, (0, 3, 1, 2)), np.asarray(target), device="cpu", **kwargs
        )
    return np.asarray(out, np.float64)


def setup(h=8, w=8, c=1, b=3, seed=1):
    apply_fn, params, attr_fn = tiny_model(h, w, c)
    rng = np.random.default_rng(seed)
    x = rng.random((b, h, w, c)).astype(np.float32)
    maps = rng.normal(size=(b, h, w)).astype(np.float32)  # no ties
    target = np.asarray(jnp.argmax(logits_of(apply_fn(params, x)), -1))
    return apply_fn, params, attr_fn, x, maps, target


# ----------------------------------------------------------------------------- faithfulness


def test_pixel_flipping_matches_quantus():
    apply_fn, params, _, x, maps, t = setup()
    ours = F.pixel_flipping(maps, apply_fn, params, x, target=t)  # Quantus's defaults
    theirs = run_quantus(
        quantus.PixelFlipping(disable_warnings=True), apply_fn, params, x, t, a_batch=maps[:, None]
    )
    assert ours.curves.shape == theirs.shape == (3, 64)
    np.testing.assert_allclose(ours.curves, theirs, atol=TOL, rtol=0)
    np.testing.assert_allclose(ours.auc, np.trapezoid(theirs, axis=1), atol=1e-5, rtol=0)
    assert ours.higher_is_better is False


def test_pixel_flipping_channels_match_quantus():
    # C = 3: Quantus flips the 3 channel values of a pixel one by one, in an order NumPy's
    # argsort leaves open (tied attributions): whole-pixel steps match exactly, and so do the
    # points of the one-value steps where a pixel is complete.
    apply_fn, params, _, x, maps, t = setup(6, 6, 3, b=2)
    whole = F.pixel_flipping(maps, apply_fn, params, x, target=t, features_in_step=3)
    theirs = run_quantus(
        quantus.PixelFlipping(features_in_step=3, disable_warnings=True),
        apply_fn,
        params,
        x,
        t,
        a_batch=maps[:, None],
    )
    np.testing.assert_allclose(whole.curves, theirs, atol=TOL, rtol=0)
    single = F.pixel_flipping(maps, apply_fn, params, x, target=t)
    assert single.curves.shape == (2, 108)
    np.testing.assert_allclose(single.curves[:, 2::3], theirs, atol=TOL, rtol=0)


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_region_perturbation_matches_quantus(order):
    # 12x12 images with Quantus's default patch_size=8: padded to 16x16 (2 rows/cols each
    # side), 4 patches; and patch_size=5: padded to 15x15, 9 patches.
    apply_fn, params, _, x, maps, t = setup(12, 12, 1)
    for patch_size in (8, 5):
        ours = F.region_perturbation(
            maps, apply_fn, params, x, target=t, order=order, patch_size=patch_size
        )
        metric = quantus.RegionPerturbation(
            order=order, patch_size=patch_size, disable_warnings=True
        )
        theirs = run_quantus(metric, apply_fn, params, x, t, a_batch=maps[:, None])
        assert ours.curves.shape == theirs.shape == (3, {8: 4, 5: 9}[patch_size])
        np.testing.assert_allclose(ours.curves, theirs, atol=TOL, rtol=0)
        assert ours.higher_is_better is (order == "morf")


def test_region_perturbation_random_order_same_draws(monkeypatch):
    apply_fn, params, _, x, maps, t = setup(12, 12, 1)
    key = jax.random.key(5)
    ours = F.region_perturbation(
        maps, apply_fn, params, x, target=t, order="random", patch_size=4, key=key
    )
    # our orders: jax.random.permutation with the per-image keys of the order half of `key`
    k_order = jax.random.split(key)[0]
    perms = [np.asarray(jax.random.permutation(k, 9)) for k in jax.random.split(k_order, 3)]
    draws = Draws(perms)
    monkeypatch.setattr(np.random, "permutation", draws)
    metric = quantus.RegionPerturbation(order="random", patch_size=4, disable_warnings=True)
    theirs = run_quantus(metric, apply_fn, params, x, t, a_batch=maps[:, None])
    assert draws.used_up()
    np.testing.assert_allclose(ours.curves, theirs, atol=TOL, rtol=0)
    assert ours.higher_is_better is None


def test_faithfulness_correlation_defaults_same_draws(monkeypatch):
    # Quantus's defaults (nr_runs=100, subset_size=224) need H * W > 224: 16x16 images.
    apply_fn, params, _, x, maps, t = setup(16, 16, 1, b=2)
    key = jax.random.key(3)
    ours = F.faithfulness_correlation(maps, apply_fn, params, x, target=t, key=key)
    subsets = np.asarray(F.faithfulness_subsets(key, jnp.arange(2 * 100), 256, 224))
    subsets = subsets.reshape(2, 100, 224)
    # Quantus: for each run, for each image, np.random.choice(F, S, replace=False)
    draws = Draws(subsets[b, r] for r in range(100) for b in range(2))
    monkeypatch.setattr(np.random, "choice", draws)
    metric = quantus.FaithfulnessCorrelation(return_aggregate=False, disable_warnings=True)
    theirs = run_quantus(metric, apply_fn, params, x, t, a_batch=maps[:, None])
    assert draws.used_up()
    np.testing.assert_allclose(ours.scores, theirs, atol=1e-5, rtol=0)
    assert np.isfinite(theirs).all() and ours.higher_is_better is True
    # Quantus's default return_aggregate=True gives the mean
    monkeypatch.setattr(
        np.random, "choice", Draws(subsets[b, r] for r in range(100) for b in range(2))
    )
    agg = run_quantus(
        quantus.FaithfulnessCorrelation(disable_warnings=True),
        apply_fn,
        params,
        x,
        t,
        a_batch=maps[:, None],
    )
    np.testing.assert_allclose(ours.mean, agg[0], atol=1e-5, rtol=0)


def test_monotonicity_correlation_same_draws(monkeypatch):
    # Quantus's defaults but nr_samples=3 (the default 100 is the slow test below).
    apply_fn, params, _, x, maps, t = setup()
    key = jax.random.key(4)
    ours = F.monotonicity_correlation(maps, apply_fn, params, x, target=t, nr_samples=3, key=key)
    u = np.asarray(F.monotonicity_uniform(key, jnp.arange(3 * 64 * 3))).reshape(3, 64, 3)
    # Quantus: for each step, for each sample, one uniform value per image
    draws = Draws(u[:, j, k] for j in range(64) for k in range(3))
    monkeypatch.setattr(np.random, "uniform", draws)
    metric = quantus.MonotonicityCorrelation(nr_samples=3, disable_warnings=True)
    theirs = run_quantus(metric, apply_fn, params, x, t, a_batch=maps[:, None])
    assert draws.used_up()
    np.testing.assert_allclose(ours.scores, theirs, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- robustness


def test_max_sensitivity_same_draws(monkeypatch):
    # Quantus's defaults but nr_samples=6 (200 in the slow test below).
    apply_fn, params, attr_fn, x, _, t = setup()
    key = jax.random.key(6)
    ours = R.max_sensitivity(attr_fn, apply_fn, params, x, target=t, nr_samples=6, key=key)
    noise = np.asarray(R.max_sensitivity_noise(key, jnp.arange(3 * 6), 64)).reshape(3, 6, 64)
    draws = Draws(noise[:, k] for k in range(6))  # one [B, C*H*W] draw per sample
    monkeypatch.setattr(np.random, "uniform", draws)
    metric = quantus.MaxSensitivity(nr_samples=6, disable_warnings=True)
    theirs = run_quantus(metric, apply_fn, params, x, t, explain_func=explain_func(attr_fn, params))
    assert draws.used_up()
    np.testing.assert_allclose(ours.scores, theirs, atol=1e-5, rtol=1e-5)
    assert ours.higher_is_better is False


# ----------------------------------------------------------------------------- complexity


@pytest.mark.parametrize(
    ("ours_fn", "theirs_cls"), [(CXM.sparseness, "Sparseness"), (CXM.complexity, "Complexity")]
)
def test_complexity_metrics_match_quantus(ours_fn, theirs_cls):
    apply_fn, params, attr_fn, x, maps, t = setup()
    metric = getattr(quantus, theirs_cls)(disable_warnings=True)
    for given in (maps, np.abs(maps) * (np.abs(maps) > 1)):  # signed, and sparse with zeros
        ours = ours_fn(given, None, None, x)
        theirs = run_quantus(metric, apply_fn, params, x, t, a_batch=given[:, None].copy())
        np.testing.assert_allclose(ours.scores, theirs, atol=1e-6, rtol=1e-6)
    # with an attr_fn: Quantus's explain_func path
    ours = ours_fn(attr_fn, apply_fn, params, x, target=t)
    theirs = run_quantus(metric, apply_fn, params, x, t, explain_func=explain_func(attr_fn, params))
    np.testing.assert_allclose(ours.scores, theirs, atol=1e-6, rtol=1e-6)


# ----------------------------------------------------------------------------- randomisation


def test_random_logit_same_draws(monkeypatch):
    # Quantus normalises each explained batch by one maximum; ours each map by its own, i.e.
    # Quantus called one image at a time, with our random class fed to its randint.
    apply_fn, params, attr_fn, x, _, t = setup()
    ours = RL.random_logit(attr_fn, apply_fn, params, x, target=t, key=jax.random.key(7))
    off = np.asarray(ours.random_target)
    assert (off != t).all() and ((off >= 0) & (off < 4)).all()
    j = off - (off > t)  # Quantus's index among the other classes
    for b in range(3):
        draws = Draws([j[b : b + 1]])
        monkeypatch.setattr(np.random, "randint", draws)
        metric = quantus.RandomLogit(num_classes=4, disable_warnings=True)
        theirs = run_quantus(
            metric,
            apply_fn,
            params,
            x[b : b + 1],
            t[b : b + 1],
            explain_func=explain_func(attr_fn, params),
        )
        assert draws.used_up()
        np.testing.assert_allclose(ours.scores[b], theirs[0], atol=1e-5, rtol=0)
    assert ours.higher_is_better is False


# ----------------------------------------------------------------------------- the SNN


@functools.cache
def tiny_snn():
    """A tiny ShallowSNN (16x16 input, T = 3) with images that make it spike."""
    from flax import nnx

    from svebi_jax import layers as L
    from svebi_jax.models import ShallowSNN, functional

    model = ShallowSNN(
        input_shape=(16, 16, 1),
        rngs=nnx.Rngs(0),
        channels=(2, 4),
        hidden=8,
        config=L.SNNConfig(num_steps=3),
    )
    apply_fn, params = functional(model)
    rng = np.random.default_rng(2)
    x = (rng.random((2, 16, 16, 1)) * 4).astype(np.float32)
    maps = rng.normal(size=(2, 16, 16)).astype(np.float32)
    t = np.asarray(jnp.argmax(logits_of(apply_fn(params, x)), -1))
    return apply_fn, params, x, maps, t


def test_snn_pixel_flipping_matches_quantus():
    """Our spiking network scored by both (Quantus through torch)."""
    apply_fn, params, x, maps, t = tiny_snn()
    ours = F.pixel_flipping(maps, apply_fn, params, x, target=t, features_in_step=8)
    theirs = run_quantus(
        quantus.PixelFlipping(features_in_step=8, disable_warnings=True),
        apply_fn,
        params,
        x,
        t,
        a_batch=maps[:, None],
    )
    np.testing.assert_allclose(ours.curves, theirs, atol=TOL, rtol=0)
    assert np.unique(theirs).size > 2  # the spikes do change along the curve


@pytest.mark.slow
def test_snn_region_perturbation_and_faithfulness_correlation_match_quantus(monkeypatch):
    apply_fn, params, x, maps, t = tiny_snn()
    ours = F.region_perturbation(maps, apply_fn, params, x, target=t, patch_size=4)
    theirs = run_quantus(
        quantus.RegionPerturbation(patch_size=4, disable_warnings=True),
        apply_fn,
        params,
        x,
        t,
        a_batch=maps[:, None],
    )
    np.testing.assert_allclose(ours.curves, theirs, atol=TOL, rtol=0)
    key = jax.random.key(9)
    ours = F.faithfulness_correlation(maps, apply_fn, params, x, target=t, key=key)
    subsets = np.asarray(F.faithfulness_subsets(key, jnp.arange(200), 256, 224))
    subsets = subsets.reshape(2, 100, 224)
    draws = Draws(subsets[b, r] for r in range(100) for b in range(2))
    monkeypatch.setattr(np.random, "choice", draws)
    metric = quantus.FaithfulnessCorrelation(return_aggregate=False, disable_warnings=True)
    theirs = run_quantus(metric, apply_fn, params, x, t, a_batch=maps[:, None])
    assert draws.used_up()
    np.testing.assert_allclose(ours.scores, theirs, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- defaults, slow


@pytest.mark.slow
def test_monotonicity_and_max_sensitivity_defaults_same_draws(monkeypatch):
    """Quantus's full defaults: 100 samples per step (6,400 passes per 8x8 image), 200 noises."""
    apply_fn, params, attr_fn, x, maps, t = setup(b=2)
    key = jax.random.key(8)
    ours = F.monotonicity_correlation(maps, apply_fn, params, x, target=t, key=key)
    u = np.asarray(F.monotonicity_uniform(key, jnp.arange(2 * 64 * 100))).reshape(2, 64, 100)
    draws = Draws(u[:, j, k] for j in range(64) for k in range(100))
    monkeypatch.setattr(np.random, "uniform", draws)
    theirs = run_quantus(
        quantus.MonotonicityCorrelation(disable_warnings=True),
        apply_fn,
        params,
        x,
        t,
        a_batch=maps[:, None],
    )
    assert draws.used_up()
    np.testing.assert_allclose(ours.scores, theirs, atol=1e-5, rtol=0)

    ours = R.max_sensitivity(attr_fn, apply_fn, params, x, target=t, key=key)
    noise = np.asarray(R.max_sensitivity_noise(key, jnp.arange(2 * 200), 64)).reshape(2, 200, 64)
    draws = Draws(noise[:, k] for k in range(200))
    monkeypatch.setattr(np.random, "uniform", draws)
    theirs = run_quantus(
        quantus.MaxSensitivity(disable_warnings=True),
        apply_fn,
        params,
        x,
        t,
        explain_func=explain_func(attr_fn, params),
    )
    assert draws.used_up()
    np.testing.assert_allclose(ours.scores, theirs, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_sampling_metrics_match_quantus_in_distribution():
    """Independent draws on both sides (Quantus's own NumPy sampling): the per-image means
    over repeats agree within their sampling error."""
    apply_fn, params, _, x, maps, t = setup(16, 16, 1, b=2)
    ours = np.stack(
        [
            F.faithfulness_correlation(
                maps, apply_fn, params, x, target=t, key=jax.random.key(s)
            ).scores
            for s in range(10)
        ]
    )
    np.random.seed(0)  # noqa: NPY002 (Quantus samples from NumPy's global state)
    theirs = np.stack(
        [
            run_quantus(
                quantus.FaithfulnessCorrelation(return_aggregate=False, disable_warnings=True),
                apply_fn,
                params,
                x,
                t,
                a_batch=maps[:, None],
            )
            for _ in range(10)
        ]
    )
    se = np.sqrt(ours.var(0) / 10 + theirs.var(0) / 10)
    assert (np.abs(ours.mean(0) - theirs.mean(0)) < 4 * se + 1e-3).all()


@pytest.mark.slow
def test_uniform_baselines_same_draws(monkeypatch):
    """perturb_baseline="uniform": one U(0, 1) value per image and step, fed to Quantus."""
    apply_fn, params, _, x, maps, t = setup()
    key = jax.random.key(11)
    ours = F.pixel_flipping(
        maps, apply_fn, params, x, target=t, perturb_baseline="uniform", key=key
    )
    u = np.asarray(jax.random.uniform(key, (3, 64)))  # our draws: [B, steps] from `key`
    draws = Draws(u[:, j] for j in range(64))
    monkeypatch.setattr(np.random, "uniform", draws)
    metric = quantus.PixelFlipping(perturb_baseline="uniform", disable_warnings=True)
    theirs = run_quantus(metric, apply_fn, params, x, t, a_batch=maps[:, None])
    assert draws.used_up()
    np.testing.assert_allclose(ours.curves, theirs, atol=TOL, rtol=0)

    apply_fn, params, _, x, maps, t = setup(12, 12, 1)
    ours = F.region_perturbation(
        maps, apply_fn, params, x, target=t, patch_size=4, perturb_baseline="uniform", key=key
    )
    u = np.asarray(jax.random.uniform(jax.random.split(key)[1], (3, 9)))  # the fill half
    draws = Draws(u[:, j] for j in range(9))
    monkeypatch.setattr(np.random, "uniform", draws)
    metric = quantus.RegionPerturbation(
        perturb_baseline="uniform", patch_size=4, disable_warnings=True
    )
    theirs = run_quantus(metric, apply_fn, params, x, t, a_batch=maps[:, None])
    assert draws.used_up()
    np.testing.assert_allclose(ours.curves, theirs, atol=TOL, rtol=0)
