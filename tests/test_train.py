"""Tests of svebi_jax.train and the command line (svebi_jax.cli)."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from svebi_jax import data, train
from svebi_jax import layers as L
from svebi_jax.models import ShallowSNN, functional

SMALL_SNN = L.SNNConfig(num_steps=3)


@pytest.fixture(scope="module")
def mnist5k():
    return data.load("mnist-5k")


@pytest.fixture(scope="module")
def small_ds(mnist5k):
    return data.subset(mnist5k, 200, seed=0)


def _model(seed=0, snn=SMALL_SNN):
    """A narrow shallow SNN (fast to compile and run); the full width is used by the slow test."""
    return ShallowSNN(rngs=nnx.Rngs(seed), config=snn, channels=(4, 8), hidden=16)


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _copy(tree):
    return jax.tree.map(jnp.array, tree)


# ----------------------------------------------------------------------------- config


def test_config_json_round_trip():
    cfg = train.TrainConfig(
        seed=3, epochs=2, learning_rate=0.01, snn=L.SNNConfig(num_steps=4, beta=0.8)
    )
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["snn"]["num_steps"] == 4
    back = train.TrainConfig.from_dict(d)
    assert back == cfg
    assert isinstance(back.snn, L.SNNConfig)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": -1}, "batch_size"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"momentum": 1.0}, "momentum"),
        ({"augment_shift": -2}, "augment_shift"),
        ({"schedule": "step"}, "schedule"),
    ],
)
def test_config_rejects_bad_values(kwargs, word):
    with pytest.raises(ValueError, match=word):
        train.TrainConfig(**kwargs)


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown keys"):
        train.TrainConfig.from_dict({"epochs": 1, "lr": 0.1})


# ----------------------------------------------------------------------------- loss / optimizer


def test_loss_fn_matches_manual_cross_entropy(small_ds):
    from scipy.special import logsumexp

    apply_fn, params = functional(_model())
    x, y = small_ds.images[:8], small_ds.labels[:8]
    loss, logits = jax.jit(train.loss_fn, static_argnums=1)(params, apply_fn, x, y)
    z = np.asarray(logits, np.float64)
    want = np.mean(logsumexp(z, axis=1) - z[np.arange(8), y])
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    assert logits.shape == (8, 10)


def test_sgd_momentum_matches_hand_computation():
    # Loss 0.5 * w^2 -> grad w. Heavy-ball: v1 = g1, v2 = g2 + 0.9 v1; w <- w - lr v.
    cfg = train.TrainConfig(optimizer="sgd", learning_rate=0.1, schedule="constant", epochs=1)
    opt = train.make_optimizer(cfg, steps_per_epoch=2)
    w = {"w": jnp.array(2.0)}
    state = opt.init(w)
    g1 = 2.0
    u, state = opt.update({"w": jnp.array(g1)}, state, w)
    w1 = 2.0 - 0.1 * g1
    np.testing.assert_allclose(float(w["w"] + u["w"]), w1, rtol=1e-6)
    g2 = w1
    u, state = opt.update({"w": jnp.array(g2)}, state, {"w": jnp.array(w1)})
    np.testing.assert_allclose(float(w1 + u["w"]), w1 - 0.1 * (g2 + 0.9 * g1), rtol=1e-6)


def test_cosine_schedule_warms_up_and_decays_to_zero():
    cfg = train.TrainConfig(learning_rate=0.01, epochs=2, warmup_epochs=1.0)
    sched = train.make_schedule(cfg, steps_per_epoch=4)
    got = [float(sched(k)) for k in range(9)]
    # Linear warm-up over W = 4 steps, then cosine down to 0 at K = 8.
    want = [0.01 * k / 4 for k in range(4)] + [
        0.01 * 0.5 * (1 + np.cos(np.pi * k / 4)) for k in range(5)
    ]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)
    assert train.make_schedule(cfg.replace(schedule="constant"), 4) == 0.01


# ----------------------------------------------------------------------------- train step


def test_optax_updates_nnx_state_and_loss_decreases(small_ds):
    apply_fn, params = functional(_model())
    opt = optax.adam(1e-2)
    opt_state = opt.init(params)
    step = train.make_train_step(apply_fn, opt)
    x, y = small_ds.images[:64], small_ds.labels[:64]
    params = _copy(params)
    structure = jax.tree.structure(params)
    losses = []
    for _ in range(10):
        params, opt_state, loss, acc = step(params, opt_state, x, y)
        losses.append(float(loss))
        assert 0.0 <= float(acc) <= 1.0
    assert isinstance(params, nnx.State)
    assert jax.tree.structure(params) == structure
    assert losses[-1] < 0.8 * losses[0], losses


def test_train_step_compiles_once(small_ds):
    apply_fn, params = functional(_model())
    traces = []

    def counting_apply(p, images, **kw):
        traces.append(1)  # runs only while tracing
        return apply_fn(p, images, **kw)

    opt = optax.sgd(0.01)
    step = train.make_train_step(counting_apply, opt)
    params = _copy(params)
    opt_state = opt.init(params)
    for i in range(3):
        sl = slice(16 * i, 16 * (i + 1))
        params, opt_state, _, _ = step(params, opt_state, small_ds.images[sl], small_ds.labels[sl])
    assert len(traces) == 1
    assert step._cache_size() == 1


@pytest.mark.slow  # ~35 s eager; the forward pass: test_models.py
def test_jit_step_equals_eager_step(small_ds):
    apply_fn, params = functional(_model())
    opt = optax.adam(1e-3)
    x, y = small_ds.images[:16], small_ds.labels[:16]
    eager = train.make_train_step(apply_fn, opt, jit=False)
    jitted = train.make_train_step(apply_fn, opt)
    p_e, s_e, loss_e, acc_e = eager(params, opt.init(params), x, y)
    p_j, s_j, loss_j, acc_j = jitted(_copy(params), opt.init(_copy(params)), x, y)
    np.testing.assert_allclose(float(loss_j), float(loss_e), rtol=1e-5)
    assert float(acc_j) == float(acc_e)
    for a, b in zip(_leaves(p_j), _leaves(p_e), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_pads_last_batch_and_matches_full_batch(small_ds):
    apply_fn, params = functional(_model())
    ds = data.subset(small_ds, 70, seed=None)
    step = train.make_eval_step(apply_fn)
    acc, loss = train.evaluate(apply_fn, params, ds, batch_size=32, eval_step=step)
    assert step._cache_size() == 1  # 32, 32 and a padded 6 -> one shape
    logits = np.asarray(jax.jit(apply_fn)(params, ds.images).logits, np.float64)
    want_acc = np.mean(np.argmax(logits, 1) == ds.labels)
    z = logits - logits.max(1, keepdims=True)
    want_loss = np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(70), ds.labels])
    assert acc == pytest.approx(want_acc, abs=1e-9)
    assert loss == pytest.approx(want_loss, rel=1e-5)


# ----------------------------------------------------------------------------- augmentation


def test_random_shift_is_a_per_image_translation_with_zero_fill():
    rng = np.random.default_rng(0)
    images = rng.random((6, 9, 8, 2)).astype(np.float32)
    out = np.asarray(train.random_shift(jax.random.key(1), images, 2))
    found = []
    for b in range(6):
        matches = []
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                ref = np.zeros_like(images[b])
                src = images[b][max(0, -dy) : 9 - max(0, dy), max(0, -dx) : 8 - max(0, dx)]
                ref[
                    max(0, dy) : max(0, dy) + src.shape[0], max(0, dx) : max(0, dx) + src.shape[1]
                ] = src
                if np.array_equal(out[b], ref):
                    matches.append((dy, dx))
        assert len(matches) == 1, (b, matches)
        found.append(matches[0])
    assert len(set(found)) > 1  # images get their own offsets
    np.testing.assert_array_equal(
        np.asarray(train.random_shift(jax.random.key(1), images, 0)), images
    )
    with pytest.raises(ValueError, match="max_shift"):
        train.random_shift(jax.random.key(1), images, -1)


# ----------------------------------------------------------------------------- fit


def test_fit_same_seed_gives_identical_params(small_ds):
    cfg = train.TrainConfig(seed=5, epochs=2, batch_size=50, snn=SMALL_SNN, augment_shift=1)
    ds = data.subset(small_ds, 120, seed=None)
    p1, h1 = train.fit(_model(), ds, config=cfg, progress=False)
    p2, h2 = train.fit(_model(), ds, config=cfg, progress=False)
    for a, b in zip(_leaves(p1), _leaves(p2), strict=True):
        np.testing.assert_array_equal(a, b)
    assert h1["train_loss"] == h2["train_loss"]
    p3, _ = train.fit(_model(), ds, config=cfg.replace(seed=6), progress=False)
    assert not all(np.array_equal(a, b) for a, b in zip(_leaves(p1), _leaves(p3), strict=True))


def test_fit_history_and_model_untouched(small_ds):
    model = _model()
    before = _leaves(nnx.state(model, nnx.Param))
    cfg = train.TrainConfig(epochs=2, batch_size=50, snn=SMALL_SNN, eval_batch_size=40)
    params, hist = train.fit(
        model, small_ds, config=cfg, eval_ds=data.subset(small_ds, 90), progress=False
    )
    assert set(hist) == {"train_loss", "train_accuracy", "eval_loss", "eval_accuracy", "seconds"}
    assert all(len(v) == 2 for v in hist.values())
    assert all(0.0 <= a <= 1.0 for a in hist["eval_accuracy"])
    # The model's own arrays are neither donated nor changed.
    for a, b in zip(before, _leaves(nnx.state(model, nnx.Param)), strict=True):
        np.testing.assert_array_equal(a, b)
    # (apply_fn, params) pairs work too and give the same result.
    p2, _ = train.fit(functional(_model()), small_ds, config=cfg, progress=False)
    for a, b in zip(_leaves(params), _leaves(p2), strict=True):
        np.testing.assert_array_equal(a, b)


def test_fit_rejects_bad_arguments(small_ds):
    with pytest.raises(ValueError, match="batch_size"):
        train.fit(_model(), data.subset(small_ds, 20), config=train.TrainConfig(), progress=False)
    with pytest.raises(TypeError, match="model_or_fn"):
        train.fit("model", small_ds, progress=False)


# ----------------------------------------------------------------------------- CLI


def test_cli_help_exits_zero(capsys):
    from svebi_jax import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--help"])
    assert exc.value.code == 0
    assert "--test-data" in capsys.readouterr().out
    proc = subprocess.run(
        [sys.executable, "-m", "svebi_jax", "train", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "--epochs" in proc.stdout


def test_cli_tiny_run_writes_checkpoint_and_metrics(tmp_path):
    from svebi_jax import checkpoint, cli

    out = tmp_path / "run"
    args = ["train", "--data", "mnist-5k", "--limit", "300", "--epochs", "1", "-T", "2"]
    args += ["--out", str(out), "--no-progress", "--seed", "1"]
    assert cli.main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in (
        "test_accuracy",
        "epochs",
        "seconds_per_epoch",
        "train_data",
        "test_data",
        "config",
    ):
        assert key in metrics
    assert metrics["num_train"] == 270 and metrics["num_test"] == 30
    assert len(metrics["epochs"]) == 1
    assert set(metrics["epochs"][0]) >= {"train_loss", "train_accuracy", "eval_accuracy"}
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert metrics["config"]["snn"]["num_steps"] == 2
    model = checkpoint.restore_model(out)
    assert model.config.num_steps == 2
    # The restored model reproduces the saved test accuracy on the same held-out split.
    _, test = data.split(data.subset(data.load("mnist-5k"), 300, seed=1), 0.1, seed=1)
    apply_fn, params = functional(model)
    acc, _ = train.evaluate(apply_fn, params, test)
    assert acc == pytest.approx(metrics["test_accuracy"], abs=1e-9)


def _write_idx_test_split(directory, ds):
    """Writes ``ds`` as raw MNIST IDX test files (uint8 images, big-endian header)."""
    pixels = np.round(ds.images[..., 0] * 255).astype(np.uint8)
    n, h, w = pixels.shape
    header = np.array([0x0803, n, h, w], ">i4").tobytes()
    (directory / "t10k-images-idx3-ubyte").write_bytes(header + pixels.tobytes())
    header = np.array([0x0801, n], ">i4").tobytes()
    labels = ds.labels.astype(np.uint8).tobytes()
    (directory / "t10k-labels-idx1-ubyte").write_bytes(header + labels)


def test_cli_evaluate_prints_json(tmp_path, small_ds, capsys):
    from svebi_jax import checkpoint, cli

    idx_dir = tmp_path / "idx"
    idx_dir.mkdir()
    _write_idx_test_split(idx_dir, small_ds)
    model = _model()
    checkpoint.save_checkpoint(tmp_path / "ckpt", model, config=checkpoint.model_config(model))
    args = ["evaluate", "--checkpoint", str(tmp_path / "ckpt"), "--data", f"idx:{idx_dir}"]
    assert cli.main(args) == 0
    result = json.loads(capsys.readouterr().out)
    apply_fn, params = functional(model)
    acc, loss = train.evaluate(apply_fn, params, small_ds)
    assert result["num_examples"] == len(small_ds)
    assert result["accuracy"] == pytest.approx(acc, abs=1e-9)
    assert result["loss"] == pytest.approx(loss, rel=1e-6)
    # mnist-5k has a single split: asking for "test" is reported, not raised.
    assert cli.main(args[:3] + ["--data", "mnist-5k"]) == 2
    assert "split" in capsys.readouterr().err


def test_cli_reports_bad_data_spec(tmp_path, capsys):
    from svebi_jax import cli

    assert cli.main(["train", "--data", "nope", "--out", str(tmp_path)]) == 2
    assert "nope" in capsys.readouterr().err


# ----------------------------------------------------------------------------- slow


@pytest.mark.slow
def test_defaults_reach_975_on_real_mnist(mnist5k, shared_mnist_dir):
    cfg = train.TrainConfig()
    test = data.load(f"idx:{shared_mnist_dir}", split="test")
    model = ShallowSNN(rngs=nnx.Rngs(cfg.seed), config=cfg.snn)
    params, hist = train.fit(
        model, mnist5k, config=cfg, eval_ds=test, progress=False, eval_every=cfg.epochs
    )
    assert hist["eval_accuracy"][-1] >= 0.975, hist
