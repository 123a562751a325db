"""Bad input never yields a plausible-looking wrong answer (the README's reliability table).

Each case of the project's list of bad inputs is reproduced here: it gets a clear error naming
the argument (or file and field), or a correct result; under the caller's ``jit``, where a
value check cannot raise, the result is flagged (NaN rows, ``converged=False``). A tiny
network (8×8 inputs, T = 3) keeps every case cheap.
"""

from __future__ import annotations

import gzip
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import svebi_jax as sv
from svebi_jax import attribution, checkpoint, cli, data, train
from svebi_jax import layers as L
from svebi_jax.lasso import mu_lasso
from svebi_jax.metrics import insdel

LAYERS = (L.Conv("c1", 4, 3), L.LIF(), L.MaxPool(2), L.Flatten(), L.Dense("out", 3))
SNN = L.SNNConfig(num_steps=3)


@pytest.fixture(scope="module")
def net():
    model = sv.SpikingNetwork(LAYERS, input_shape=(8, 8, 1), config=SNN, rngs=nnx.Rngs(0))
    apply_fn, params = sv.functional(model)
    images = np.random.default_rng(0).random((4, 8, 8, 1)).astype(np.float32) * 3
    masks = {"c1": np.eye(3, 4, dtype=np.float32)}
    return model, apply_fn, params, images, masks


# ----------------------------------------------------------------------------- images


@pytest.mark.parametrize(
    "call",
    [
        lambda a, p, x, m: attribution.svebi(a, m)(p, x, None),
        lambda a, p, x, m: sv.compute_responses(a, p, x),
        lambda a, p, x, m: attribution.grad2d(a)(p, x, None),
        lambda a, p, x, m: attribution.sam(a, layer="c1")(p, x, None),
        lambda a, p, x, m: a(p, x),
        lambda a, p, x, m: insdel.insertion_deletion(
            attribution.input_intensity(), a, p, x, pixels_per_step=8
        ),
    ],
    ids=["svebi", "compute_responses", "grad2d", "sam", "apply_fn", "insertion_deletion"],
)
def test_uint8_images_are_refused_not_cast(net, call):
    _, apply_fn, params, images, masks = net
    pixels = (images / 3 * 255).astype(np.uint8)
    with pytest.raises(ValueError, match=r"images must be a float array.*/ 255"):
        call(apply_fn, params, pixels, masks)


def test_non_finite_pixels_raise_eagerly_and_are_flagged_under_jit(net):
    _, apply_fn, params, images, masks = net
    bad = images.copy()
    bad[1, 3, 4, 0] = np.nan
    bad[2, 0, 0, 0] = np.inf
    attr = attribution.svebi(apply_fn, masks, layer="c1")
    with pytest.raises(ValueError, match="images must be finite: 2 image"):
        attr(params, bad, None)
    with pytest.raises(ValueError, match="images must be finite"):
        sv.compute_responses(apply_fn, params, bad)
    # Under the caller's jit the values are unknown: the bad images' outputs are NaN, the
    # others are exactly the eager results.
    eager = np.asarray(attr(params, images, None))
    hm = np.asarray(jax.jit(lambda x: attr(params, x, None))(bad))
    assert np.all(np.isnan(hm[1])) and np.all(np.isnan(hm[2]))
    np.testing.assert_array_equal(hm[[0, 3]], eager[[0, 3]])
    logits = np.asarray(jax.jit(lambda x: apply_fn(params, x).logits)(bad))
    assert np.isnan(logits[1]).all() and np.isnan(logits[2]).all() and np.isfinite(logits[0]).all()
    grads = np.asarray(jax.jit(lambda x: attribution.grad2d(apply_fn)(params, x, None))(bad))
    assert np.isnan(grads[1]).all() and np.isfinite(grads[0]).all()


@pytest.mark.parametrize(
    ("images", "match"),
    [
        (np.zeros((2, 9, 8, 1), np.float32), r"\(H, W, C\) = \(8, 8, 1\)"),
        (np.zeros((8, 8, 1), np.float32), r"images must be \[B, H, W, C\]"),
        (np.zeros((0, 8, 8, 1), np.float32), "non-empty"),
        (np.zeros((2, 8, 8, 1), bool), "float array"),
    ],
)
def test_image_shapes_and_dtypes(net, images, match):
    _, apply_fn, params, _, masks = net
    with pytest.raises(ValueError, match=match):
        attribution.svebi(apply_fn, masks)(params, images, None)


# ----------------------------------------------------------------------------- labels


def test_evaluate_refuses_labels_outside_the_models_classes(net):
    _, apply_fn, params, images, _ = net
    ds = data.Dataset(images / 3, np.array([0, 1, 2, 3]), 4, "four-classes")  # model has K = 3
    with pytest.raises(ValueError, match=r"dataset labels must lie in \[0, 3\).*\[3\]"):
        train.evaluate(apply_fn, params, ds)


def _write_idx(directory, images_u8, labels_u8, split="t10k"):
    n, h, w = images_u8.shape
    (directory / f"{split}-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(np.array([0x0803, n, h, w], ">i4").tobytes() + images_u8.tobytes())
    )
    (directory / f"{split}-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(np.array([0x0801, n], ">i4").tobytes() + labels_u8.tobytes())
    )


def test_idx_with_a_corrupt_label_byte_is_refused(tmp_path):
    labels = np.arange(40, dtype=np.uint8) % 10
    labels[7] = 200  # one corrupt byte would make a 201-class dataset
    _write_idx(tmp_path, np.zeros((40, 4, 4), np.uint8), labels)
    with pytest.raises(ValueError, match=r"t10k-labels.*skip class.*\[10, 11"):
        data.load_idx_dir(tmp_path, "test")
    assert data.load_idx_dir(tmp_path, "test", num_classes=201).num_classes == 201


def test_cli_evaluate_on_labels_beyond_the_model_exits_2(tmp_path, capsys):
    from svebi_jax.models import ShallowSNN

    model = ShallowSNN(rngs=nnx.Rngs(0), channels=(2, 2), hidden=4, num_classes=10)
    checkpoint.save_checkpoint(tmp_path / "ckpt", model, config=checkpoint.model_config(model))
    (tmp_path / "idx").mkdir()
    _write_idx(tmp_path / "idx", np.zeros((11, 28, 28), np.uint8), np.arange(11, dtype=np.uint8))
    code = cli.main(["evaluate", "--checkpoint", str(tmp_path / "ckpt"), "--data",
                     f"idx:{tmp_path / 'idx'}"])  # fmt: skip
    assert code == 2
    assert "labels must lie in [0, 10)" in capsys.readouterr().err


# ----------------------------------------------------------------------------- lasso


@pytest.fixture(scope="module")
def lasso_problem():
    rng = np.random.default_rng(0)
    X = rng.random((60, 5)).astype(np.float32)
    L_ = np.eye(3, dtype=np.float32)[np.arange(60) % 3]
    return X, L_


def test_lasso_overflowing_x_is_refused_and_flagged_under_jit(lasso_problem):
    X, L_ = lasso_problem
    with pytest.raises(ValueError, match="X is too large for float32"):
        mu_lasso(X * 1e20, L_, 2.0)
    res = jax.jit(lambda x: mu_lasso(x, L_, 2.0))(X * 1e20)
    assert np.isnan(np.asarray(res.W)).all() and not np.asarray(res.converged).any()


def test_lasso_invalid_values_under_jit_are_flagged(lasso_problem):
    X, L_ = lasso_problem
    res = jax.jit(lambda mu: mu_lasso(jnp.asarray(X), L_, mu))(-1.0)
    assert np.isnan(np.asarray(res.W)).all() and not np.asarray(res.converged).any()
    bad = X.copy()
    bad[4, 1] = np.nan
    res = jax.jit(lambda x: mu_lasso(x, L_, 2.0))(bad)
    assert np.isnan(np.asarray(res.W)).all() and not np.asarray(res.converged).any()
    path = jax.jit(lambda mu: mu_lasso(X, L_, mu))(jnp.array([1.0, -1.0, 2.0]))
    np.testing.assert_array_equal(np.asarray(path.converged).all(axis=1), [True, False, True])


def test_lasso_composes_with_jit_over_mu_with_x_captured(lasso_problem):
    X, L_ = lasso_problem  # a plain array the jitted function closes over
    got = jax.jit(lambda mu: mu_lasso(X, L_, mu).W)(2.0)
    np.testing.assert_allclose(got, mu_lasso(X, L_, 2.0).W, atol=1e-6)
    with pytest.raises(ValueError, match="X must be finite"):  # constants are still checked
        jax.jit(lambda mu: mu_lasso(np.full_like(X, np.nan), L_, mu).W)(2.0)


# ----------------------------------------------------------------------------- LIF


def test_lif_scan_accepts_a_traced_threshold():
    cur = jnp.linspace(0.0, 1.5, 12).reshape(4, 3)
    f = jax.jit(lambda th: sv.lif_scan(cur, beta=0.9, threshold=th))
    for th in (0.7, 1.0):
        for a, b in zip(f(th), sv.lif_scan(cur, beta=0.9, threshold=th), strict=True):
            np.testing.assert_array_equal(a, b)
    g = jax.grad(lambda c, th: sv.lif_scan(c, beta=0.9, threshold=th)[1].sum())
    np.testing.assert_allclose(jax.jit(g)(cur, 0.7), g(cur, 0.7), rtol=1e-6)
    assert np.isnan(np.asarray(f(-1.0)[0])).all()  # invalid traced threshold: flagged


# ----------------------------------------------------------------------------- command line


def test_cli_train_refuses_bad_out_before_training(tmp_path, monkeypatch, capsys):
    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(train, "fit", no_training)
    existing = tmp_path / "file.txt"
    existing.write_text("x")
    assert cli.main(["train", "--out", str(existing)]) == 2
    assert "existing file" in capsys.readouterr().err
    assert cli.main(["train", "--out", ""]) == 2
    assert "--out must be a directory path" in capsys.readouterr().err
    assert cli.main(["train", "--out", str(tmp_path / "o"), "--epochs", "0"]) == 2
    assert "epochs" in capsys.readouterr().err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.md").write_text("mine")
    assert cli.main(["train", "--out", str(tmp_path / "busy")]) == 2
    assert "not part of a checkpoint" in capsys.readouterr().err


def test_cli_tfds_without_tensorflow_datasets_exits_2(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # not installed
    assert cli.main(["train", "--data", "tfds:mnist", "--out", str(tmp_path / "o")]) == 2
    assert "tensorflow-datasets" in capsys.readouterr().err


# ----------------------------------------------------------------------------- checkpoints


def test_checkpoint_is_written_as_one_unit(tmp_path, net, monkeypatch):
    model = net[0]
    path = tmp_path / "ckpt"
    checkpoint.save_checkpoint(path, model, config={"v": 1}, metrics={"m": 1})
    before = {p.name: p.read_bytes() for p in path.iterdir()}

    real_fsync = checkpoint.os.fsync
    calls = []

    def failing_fsync(fd):  # the disk fills up while the config is written
        calls.append(fd)
        if len(calls) == 2:
            raise OSError("No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(checkpoint.os, "fsync", failing_fsync)
    nnx.update(model, jax.tree.map(lambda v: v + 1, nnx.state(model, nnx.Param)))
    with pytest.raises(OSError, match="No space"):
        checkpoint.save_checkpoint(path, model, config={"v": 2}, metrics={"m": 2})
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before  # old unit intact
    assert not [p for p in tmp_path.iterdir() if p.name != "ckpt"]  # no temporary left
    assert checkpoint.load_config(path) == {"v": 1}


def test_checkpoint_files_that_do_not_belong_together_are_refused(tmp_path, net):
    model, apply_fn, params, *_ = net
    checkpoint.save_checkpoint(tmp_path / "a", model, config=checkpoint.model_config(model))
    other = sv.SpikingNetwork(LAYERS, input_shape=(8, 8, 1), config=SNN, rngs=nnx.Rngs(1))
    checkpoint.save_checkpoint(tmp_path / "b", other, config=checkpoint.model_config(other))
    shutil.copy(tmp_path / "b" / "params.msgpack", tmp_path / "a" / "params.msgpack")
    with pytest.raises(ValueError, match=r"params.msgpack.*does not match its manifest"):
        checkpoint.restore_model(tmp_path / "a")
    cfg = tmp_path / "b" / "config.json"
    cfg.write_text(cfg.read_text()[:20])  # truncated
    with pytest.raises(ValueError, match=r"config.json.*does not match"):
        checkpoint.load_config(tmp_path / "b")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"model": "shallow", "input_', r"config.json.*not valid JSON"),
        ("[1, 2]", r"config.json.*must hold a JSON object"),
        ('{"model": "shallow"}', r"config.json.*lacks the field 'input_shape'"),
        ('{"model": "shallow", "input_shape": [28, 28]}', r"field 'input_shape' is invalid"),
        (
            '{"model": "shallow", "input_shape": [8, 8, 1], "num_classes": 3, "snn": {"T": 3}}',
            r"field 'snn' is invalid",
        ),  # fmt: skip
        ('{"model": "vgg", "input_shape": [8, 8, 1]}', r"field 'model' must be"),
    ],
)
def test_malformed_config_names_file_and_field(tmp_path, net, text, match):
    checkpoint.save_checkpoint(tmp_path, net[0], config={})
    (tmp_path / "manifest.json").unlink()  # a legacy checkpoint edited by hand
    (tmp_path / "config.json").write_text(text)
    with pytest.warns(UserWarning, match="manifest"), pytest.raises(ValueError, match=match):
        checkpoint.restore_model(tmp_path)


# ----------------------------------------------------------------------------- API misuse


def test_svebi_takes_masks_not_relevant_dicts(net):
    _, apply_fn, params, images, _ = net
    with pytest.raises(ValueError, match=r"masks must be a non-empty \{layer: \[K, c\]\}"):
        attribution.svebi(apply_fn, {0: {"c1": [1]}})


def test_nan_weights_under_jit_give_nan_maps_not_empty_ones(net):
    model, apply_fn, params, images, _ = net
    index = sv.FilterIndex(("c1",), (4,))
    W = np.zeros((4, 3), np.float32)
    W[1, 0] = 0.5
    with pytest.raises(ValueError, match="W contains NaN"):
        sv.masks_from_weights(np.full_like(W, np.nan), index)

    def maps(w):
        return attribution.svebi(apply_fn, sv.masks_from_weights(w, index), layer="c1")(
            params, images, None
        )

    assert np.isnan(np.asarray(jax.jit(maps)(np.full_like(W, np.nan)))).all()
    np.testing.assert_array_equal(jax.jit(maps)(W), maps(W))


def test_metric_refuses_maps_of_the_wrong_shape(net):
    _, apply_fn, params, images, _ = net
    with pytest.raises(ValueError, match=r"attr_fn must return \[B, H, W\]"):
        insdel.insertion_deletion(lambda p, x, t: x, apply_fn, params, images, pixels_per_step=8)
    with pytest.raises(ValueError, match="channel_reduction"):
        attribution.grad2d(apply_fn, channel_reduction="none")
