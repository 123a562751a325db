"""The ``svebi`` command line end to end: train → relevance → explain → score on mnist-5k at a
tiny size, import-nir on a real snnTorch export feeding explain, and the checks every command
makes before any work (choices, ``--out`` proven writable, the rescued final save).

Every output is compared with the library called directly on the same data (the CLI must add
nothing to the numbers).
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
import shutil
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from svebi_jax import _cli_util, attribution, checkpoint, cli, data, metrics, train
from svebi_jax.models import functional
from svebi_jax.relevance import Relevance, fit_relevance

DATA = pathlib.Path(__file__).parent / "data"
TINY = ["--channels", "4", "8", "--hidden", "16", "-T", "2"]


def _run(*args) -> int:
    return cli.main([str(a) for a in args])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny trained checkpoint and its Relevance file, made with the command line."""
    root = tmp_path_factory.mktemp("cli")
    ckpt, rel = root / "ckpt", root / "rel.npz"
    assert _run("train", "--limit", 300, "--epochs", 1, *TINY, "--out", ckpt, "--no-progress") == 0
    assert _run("relevance", "--checkpoint", ckpt, "--data", "mnist-5k", "--limit", 200,
                "--out", rel) == 0  # fmt: skip
    apply_fn, params = functional(checkpoint.restore_model(ckpt))
    return {"root": root, "ckpt": ckpt, "rel": rel, "apply_fn": apply_fn, "params": params}


@pytest.fixture
def same_model(run, monkeypatch):
    """The command line restores ``run``'s checkpoint as the very ``apply_fn`` the references
    below use, so that the games compiled for one (keyed by ``apply_fn``) serve both."""
    real = _cli_util.load_model
    model = _cli_util.Model(
        run["ckpt"], checkpoint.restore_model(run["ckpt"]), run["apply_fn"], run["params"]
    )
    monkeypatch.setattr(
        _cli_util, "load_model", lambda p: model if pathlib.Path(p) == run["ckpt"] else real(p)
    )


def _digits(n: int, seed: int = 0) -> data.Dataset:
    return data.subset(data.load("mnist-5k"), n, seed=seed)


# ----------------------------------------------------------------------------- end to end


def test_relevance_file_equals_fit_relevance_on_the_same_data(run):
    saved = Relevance.load(run["rel"], apply_fn=run["apply_fn"])
    direct = fit_relevance(run["apply_fn"], run["params"], _digits(200), mu=2.0)
    assert saved.mu == 2.0 and saved.index == direct.index
    np.testing.assert_array_equal(saved.W, direct.W)
    assert saved.filters == direct.filters
    assert sum(saved.layer_distribution().values()) > 0  # a real selection, not empty


def test_explain_svebi_maps_summary_and_overlays(run):
    out = run["root"] / "explain"
    argv = ["--data", "mnist-5k", "--split", "train", "--limit", 3, "--relevance", run["rel"]]
    assert _run("explain", "--checkpoint", run["ckpt"], *argv, "--out", out, "--no-progress") == 0
    got = np.load(out / "maps.npz")
    ds = _digits(3)
    np.testing.assert_array_equal(got["images"], ds.images)
    np.testing.assert_array_equal(got["labels"], ds.labels)
    rel = Relevance.load(run["rel"], apply_fn=run["apply_fn"])
    want = rel.attribution()(run["params"], jnp.asarray(ds.images), None)
    np.testing.assert_allclose(got["maps"], want, rtol=0, atol=1e-6)
    logits = run["apply_fn"](run["params"], jnp.asarray(ds.images)).logits
    np.testing.assert_array_equal(got["predicted"], np.argmax(logits, -1))
    np.testing.assert_array_equal(got["target"], got["predicted"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "svebi" and summary["layer"] == "combined"
    assert summary["mu"] == 2.0 and summary["num_images"] == 3
    full = data.load("mnist-5k")
    for i, row in enumerate(summary["images"]):
        assert row["predicted"] == int(got["predicted"][i]) and row["label"] == int(ds.labels[i])
        k = int(row["source"].rpartition("#")[2])  # the image's index in mnist-5k
        np.testing.assert_array_equal(full.images[k], ds.images[i])
        assert row["relevant_filters"] == rel.filters[row["predicted"]]
        with Image.open(out / row["overlay"]) as im:
            assert im.format == "PNG" and min(im.size) > 100


def test_score_table_equals_the_metrics(run, same_model):
    out = run["root"] / "score"
    assert _run("score", "--checkpoint", run["ckpt"], "--data", "mnist-5k", "--split", "train",
                "--limit", 3, "--methods", "svebi", "random", "--relevance", run["rel"],
                "--pixels-per-step", 98, "--out", out, "--no-progress") == 0  # fmt: skip
    result = json.loads((out / "scores.json").read_text())
    assert [r["method"] for r in result["methods"]] == ["svebi", "random"]
    images = jnp.asarray(_digits(3).images)
    apply_fn, params = run["apply_fn"], run["params"]
    rel = Relevance.load(run["rel"], apply_fn=apply_fn)
    refs = {"svebi": rel.attribution(), "random": attribution.random_map(jax.random.key(0))}
    table = (out / "scores.md").read_text()
    for row in result["methods"]:
        attr_fn = refs[row["method"]]
        ref = metrics.insertion_deletion(attr_fn, apply_fn, params, images, pixels_per_step=98)
        assert row["insertion_auc"] == pytest.approx(float(ref.insertion.mean_auc), rel=1e-6)
        assert row["deletion_auc"] == pytest.approx(float(ref.deletion.mean_auc), rel=1e-6)
        road = metrics.road(attr_fn, apply_fn, params, images, key=jax.random.key(0))
        assert row["road_gap"] == pytest.approx(float(road.gap), rel=1e-5, abs=1e-7)
        assert row["road_morf"] == pytest.approx(float(road.mean_morf), rel=1e-6)
        line = f"| {row['method']} | {row['insertion_auc']:.4f} | {row['deletion_auc']:.4f} |"
        assert line in table


def test_import_nir_snntorch_export_feeds_explain_of_image_files(tmp_path, capsys):
    import svebi_jax as sv

    ref = np.load(DATA / "snntorch_conv.npz")
    steps = int(ref["num_steps"])
    # Without --reset the graph's (unrecorded) reset is assumed, and the user is told how to
    # state snnTorch's in this command's words.
    assert _run("import-nir", DATA / "snntorch_conv.nir", "-T", steps, "--out",
                tmp_path / "assumed") == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "svebi import-nir: warning:" in err and "pass --reset subtract" in err, err
    assert checkpoint.load_config(tmp_path / "assumed")["snn"]["reset"] == "zero"
    ckpt = tmp_path / "imported"
    assert _run("import-nir", DATA / "snntorch_conv.nir", "--num-steps", steps, "--reset",
                "subtract", "--out", ckpt) == 0  # fmt: skip
    apply_fn, params = functional(checkpoint.restore_model(ckpt))
    images = np.transpose(ref["images"], (0, 2, 3, 1)).astype(np.float32)  # NCHW -> NHWC
    # The checkpoint runs as snnTorch did: logits = the readout's mean current over T.
    logits = apply_fn(params, jnp.asarray(images)).logits
    np.testing.assert_allclose(logits, ref["outputs"].mean(0), rtol=0, atol=1e-6)
    files = []
    for i in range(2):
        files.append(tmp_path / f"x{i}.png")
        pixels = np.round(np.clip(images[i, ..., 0], 0, 1) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(files[-1])
    out = tmp_path / "explain"
    assert _run("explain", "--checkpoint", ckpt, "--images", *files, "--method", "grad2d",
                "--target", 3, "--out", out, "--no-progress") == 0  # fmt: skip
    got = np.load(out / "maps.npz")
    assert "labels" not in got.files
    pixels = np.round(np.clip(images[:2], 0, 1) * 255) / 255  # what 8-bit PNG files hold
    np.testing.assert_allclose(got["images"], pixels, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got["target"], [3, 3])
    net = sv.from_nir(DATA / "snntorch_conv.nir", num_steps=steps, reset="subtract")
    target = jnp.full((2,), 3)
    grad2d = attribution.grad2d(net.apply_fn, num_steps=steps)
    want = grad2d(net.params, jnp.asarray(got["images"]), target)
    np.testing.assert_allclose(got["maps"], want, rtol=1e-6, atol=1e-7)
    assert float(np.abs(want).max()) > 0
    summary = json.loads((out / "summary.json").read_text())
    assert [r["source"] for r in summary["images"]] == [str(f) for f in files]


# ----------------------------------------------------------------------------- help, choices


def _subparsers():
    parser = cli.build_parser()
    action = next(a for a in parser._actions if a.choices and "train" in a.choices)
    return action.choices


def test_every_command_help_shows_its_defaults(capsys):
    commands = _subparsers()
    assert set(commands) == {"train", "evaluate", "relevance", "explain", "score", "import-nir"}
    for name, sub in commands.items():
        fmt = sub._get_formatter()
        for action in sub._actions:
            has_default = action.default not in (None, False, "==SUPPRESS==")
            if action.option_strings and has_default and not action.required:
                assert "default" in fmt._get_help_string(action), (name, action.dest)
    with pytest.raises(SystemExit) as exc:
        cli.main(["score", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--path-steps N ig2d: points on the integration path (not the network's T) " \
           "(default: 50)" in text  # fmt: skip
    assert "--split NAME split of --data to load (default: test)" in text
    assert "--substrate {auto,zeros,blur}" in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["explain", "--checkpoint", "c", "--data", "mnist-5k", "--method", "nope", "--out", "o"],
         "invalid choice: 'nope'"),
        (["score", "--checkpoint", "c", "--data", "mnist-5k", "--methods", "grad2d", "x",
          "--out", "o"], "invalid choice: 'x'"),
        (["explain", "--checkpoint", "c", "--data", "mnist-5k", "--target", "-1", "--out", "o"],
         "--target"),
        (["import-nir", "f.nir", "-T", "4", "--reset", "soft", "--out", "o"], "invalid choice"),
        (["train", "--optimizer", "rmsprop", "--out", "o"], "invalid choice"),
        (["train", "--lr", "0.1", "--out", "o"], "unrecognized arguments: --lr"),
    ],
)  # fmt: skip
def test_bad_choices_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


# ----------------------------------------------------------------------------- --out


def _no_work(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("work started before --out was checked")

    monkeypatch.setattr(train, "fit", fail)
    monkeypatch.setattr(_cli_util, "load_model", fail)


def _unwritable(monkeypatch, directory: pathlib.Path):
    """``directory`` as a read-only mount looks to root: ``os.access`` says yes, and no file
    can be created in it."""
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and pathlib.Path(dir) == directory:
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(os, "access", lambda *a, **k: True)
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def test_out_where_nothing_can_be_created_is_refused_before_work(tmp_path, monkeypatch, capsys):
    _no_work(monkeypatch)
    ro = tmp_path / "ro"
    ro.mkdir()
    _unwritable(monkeypatch, ro)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    nir = str(DATA / "snntorch_conv.nir")
    for argv in (
        ["train", "--out", ro / "run"],
        ["relevance", "--checkpoint", ckpt, "--data", "mnist-5k", "--out", ro / "rel.npz"],
        ["explain", "--checkpoint", ckpt, "--data", "mnist-5k", "--out", ro / "e"],
        ["score", "--checkpoint", ckpt, "--data", "mnist-5k", "--out", ro / "s"],
        ["import-nir", nir, "-T", 4, "--out", ro / "n"],
    ):
        assert _run(*argv) == 2, argv
        err = capsys.readouterr().err
        assert "--out" in err and "Read-only file system" in err and str(ro) in err, err
    assert list(ro.iterdir()) == []  # nothing left behind


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_out_in_a_read_only_directory_is_refused(tmp_path, monkeypatch, capsys):
    _no_work(monkeypatch)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    monkeypatch.setattr(os, "access", lambda *a, **k: True)  # the OS says writable
    try:
        assert _run("train", "--out", ro / "run") == 2
    finally:
        ro.chmod(0o755)
    assert "--out" in capsys.readouterr().err


def test_out_below_a_file_is_refused(tmp_path, monkeypatch, capsys):
    _no_work(monkeypatch)
    (tmp_path / "f").write_text("x")
    assert _run("train", "--out", tmp_path / "f" / "run") == 2
    assert "--out" in capsys.readouterr().err
    assert _run("relevance", "--checkpoint", tmp_path, "--data", "mnist-5k",
                "--out", tmp_path / "f" / "rel.npz") == 2  # fmt: skip
    assert "is a file" in capsys.readouterr().err


def test_failed_final_save_keeps_the_parameters_and_names_out(tmp_path, monkeypatch, capsys):
    from flax import nnx

    from svebi_jax.models import ShallowSNN

    model = ShallowSNN(rngs=nnx.Rngs(3), channels=(2, 2), hidden=4)
    _, params = functional(model)
    history = {k: [0.5] for k in ("train_loss", "train_accuracy", "eval_loss", "eval_accuracy")}
    monkeypatch.setattr(train, "fit", lambda *a, **k: (params, history | {"seconds": [1.0]}))
    out = tmp_path / "run"
    real_save = checkpoint.save_checkpoint

    def save(path, *args, **kwargs):
        if pathlib.Path(path) == out:  # the disk fills up at the very end
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(path, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_checkpoint", save)
    argv = ["train", "--limit", 200, "--epochs", 1, "--channels", 2, 2, "--hidden", 4]
    assert _run(*argv, "--out", out, "--no-progress") == 1
    err = capsys.readouterr().err
    assert f"--out {str(out)!r}" in err and "No space left on device" in err
    rescued = [p for p in tmp_path.iterdir() if p.name.startswith("run.rescued-")]
    assert len(rescued) == 1 and str(rescued[0]) in err
    restored = nnx.to_pure_dict(nnx.state(checkpoint.restore_model(rescued[0]), nnx.Param))
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(nnx.to_pure_dict(params)),
                    strict=True):  # fmt: skip
        np.testing.assert_array_equal(a, b)


def test_failed_relevance_save_is_kept_in_the_temp_dir(run, same_model, monkeypatch, capsys):
    out = run["root"] / "full-disk" / "rel.npz"
    real_save = Relevance.save

    def save(self, path):
        if pathlib.Path(path) == out:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, path)

    monkeypatch.setattr(Relevance, "save", save)
    assert _run("relevance", "--checkpoint", run["ckpt"], "--data", "mnist-5k", "--limit", 200,
                "--out", out, "--no-progress") == 1  # fmt: skip
    err = capsys.readouterr().err
    assert f"--out {str(out)!r}" in err and "No space left on device" in err
    rescued = pathlib.Path(err.rpartition("saved to ")[2].strip().strip("'"))
    assert rescued.name == "rel.npz" and rescued.parent.name.startswith("svebi-rescued-")
    try:
        np.testing.assert_array_equal(Relevance.load(rescued).W, Relevance.load(run["rel"]).W)
    finally:
        shutil.rmtree(rescued.parent)


def test_target_beyond_the_model_is_refused_before_the_data(run, monkeypatch, capsys):
    def fail(*args, **kwargs):
        raise AssertionError("data loaded before --target was checked")

    monkeypatch.setattr(_cli_util, "load_inputs", fail)
    out = run["root"] / "never"
    assert _run("explain", "--checkpoint", run["ckpt"], "--data", "mnist-5k", "--method",
                "grad2d", "--target", 10, "--out", out) == 2  # fmt: skip
    assert "--target must be a class in [0, 10)" in capsys.readouterr().err
    assert _run("score", "--checkpoint", run["ckpt"], "--data", "mnist-5k", "--methods", "svebi",
                "--out", out) == 2  # fmt: skip
    assert "--relevance FILE is required by the method 'svebi'" in capsys.readouterr().err
    assert not out.exists()
