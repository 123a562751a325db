"""The main command end to end on a tiny configuration, checked against independent numbers.

One run (module fixture) is shared by every test: its numbers are recomputed here from the
checkpoint it wrote, with plain NumPy/JAX code that does not go through the pipeline's stages.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from experiments import mnist_shallow
from experiments.common import stages
from svebi_jax import checkpoint, data
from svebi_jax import layers as L
from svebi_jax.models import ShallowSNN, functional

TINY = [
    "--train-limit", "600", "--epochs", "1", "--eval-samples", "8", "--ablation-samples", "60",
    "--mu-path-max", "3", "--top-k", "5", "--path-steps", "2", "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("main") / "run"
    mnist_shallow.main([*TINY, "--out", str(out)])
    results = json.loads((out / "results.json").read_text())
    model = checkpoint.restore_model(out / "checkpoint")
    apply_fn, params = functional(model)
    train, test = data.split(data.load("mnist-5k"), 0.1, seed=0)
    return out, results, apply_fn, params, data.subset(train, 600), test


def _rise_auc(apply_fn, params, images, maps, *, mode: str, step: int = 28) -> np.ndarray:
    """RISE's CausalMetric written as a loop over images and curve points (NumPy order); the
    model scores the points of one image in one jitted call."""
    probs = jax.jit(lambda v: jax.nn.softmax(apply_fn(params, v).logits, axis=-1))
    aucs = []
    for x, s in zip(images, maps, strict=True):
        c = int(np.argmax(probs(x[None])[0]))
        order = np.argsort(s.reshape(-1), kind="stable")[::-1]  # RISE's flip(argsort(s))
        n = -(-x.size // step)
        start = x.copy() if mode == "deletion" else np.zeros_like(x)
        finish = np.zeros_like(x) if mode == "deletion" else x
        points = []
        for i in range(n + 1):
            cur = start.reshape(-1).copy()
            cur[order[: i * step]] = finish.reshape(-1)[order[: i * step]]
            points.append(cur.reshape(x.shape))
        curve = np.asarray(probs(np.stack(points)))[:, c]
        aucs.append((curve.sum() - curve[0] / 2 - curve[-1] / 2) / n)
    return np.asarray(aucs)


@pytest.mark.slow  # the main command at TINY size: ~2.5 min
def test_results_match_independent_numbers(run):
    out, r, apply_fn, params, train, test = run
    assert r["dataset"] == "mnist-5k" and r["n_train"] == 600 and r["n_test"] == 500
    # accuracy: the saved model on the held-out split, argmax by hand
    pred = np.asarray(jax.jit(apply_fn)(params, test.images).logits).argmax(-1)
    assert r["test_accuracy"] == pytest.approx(np.mean(pred == test.labels), abs=1e-9)
    assert r["test_accuracy"] > 0.5  # one epoch on 600 digits learns (chance is 0.1)
    # lasso: w = 0 is feasible, so each class's objective is at most ||L_j||^2, the number of
    # training images predicted as j; and the reported total is the sum over classes
    train_pred = np.asarray(jax.jit(apply_fn)(params, train.images).logits).argmax(-1)
    counts = np.bincount(train_pred, minlength=10)
    obj = np.asarray(r["lasso"]["objective_per_class"])
    assert np.all(obj <= counts + 1e-4) and np.all(obj >= 0)
    assert np.all(obj[counts > 0] < counts[counts > 0])  # the lasso found something
    assert r["lasso"]["objective"] == pytest.approx(obj.sum(), rel=1e-6)
    assert r["mu"] == 2.0 and r["lasso"]["converged"]
    assert set(r["relevant_filters"]) == {str(c) for c in range(10)}
    assert all(set(v) == {"conv1", "conv2"} for v in r["relevant_filters"].values())
    dist = {k: sum(len(v[k]) for v in r["relevant_filters"].values()) for k in ("conv1", "conv2")}
    assert r["layer_distribution"] == dist
    # insertion/deletion of the input-intensity map and SAM-free rows, by a RISE loop
    ev = test.images[:8]
    table = r["insertion_deletion"]
    for mode in ("insertion", "deletion"):
        want = _rise_auc(apply_fn, params, ev, ev.mean(-1), mode=mode)
        got = table["trivial: input intensity"][mode]
        np.testing.assert_allclose(got, want.mean(), atol=2e-6)
    for row in table.values():
        assert 0.0 <= row["insertion"] <= 1.0 and 0.0 <= row["deletion"] <= 1.0
        # AUC is linear in the curve: mean of AUCs == AUC of the mean curve
        np.testing.assert_allclose(row["insertion"], row["insertion_auc_of_mean_curve"], atol=1e-5)
    # the rows of earlier reports, in their order
    assert list(table)[:3] == [
        "SVEBI[combined,aligned]",
        "SVEBI[combined,stretch]",
        "SVEBI[conv1,aligned]",
    ]
    # coverage: share of images whose predicted class has a relevant filter in the layer
    pred8 = np.asarray(apply_fn(params, ev).logits).argmax(-1)
    for layer in ("conv1", "conv2"):
        has = [bool(r["relevant_filters"][str(c)][layer]) for c in pred8]
        assert table[f"SVEBI[{layer},aligned]"]["coverage"] == pytest.approx(np.mean(has))
    for name, row in table.items():
        assert ("coverage" in row) == name.startswith("SVEBI[")
    assert set(r["per_class_insertion"]) == set(table)
    per_image = np.load(out / "per_image_auc.npz")
    assert per_image["insertion"].shape == (len(table), 8)
    for i, name in enumerate(per_image["methods"]):
        np.testing.assert_allclose(per_image["insertion"][i].mean(), table[str(name)]["insertion"],
                                   atol=1e-6)  # fmt: skip
    # ablation: the intact model's class-averaged accuracy on the first 60 test digits
    abl = test.images[:60], test.labels[:60]
    p60 = np.asarray(apply_fn(params, abl[0]).logits).argmax(-1)
    full = np.mean([np.mean(p60[abl[1] == c] == c) for c in np.unique(abl[1])])
    assert [a["mu"] for a in r["ablation"]] == [1.0, 2.0, 3.0]
    assert all(a["full"] == pytest.approx(full, abs=1e-9) for a in r["ablation"])
    # sanity: every non-trivial, non-stretched method, as a Spearman correlation
    assert set(r["sanity"]) == {n for n in table if "trivial" not in n and "stretch" not in n}
    assert all(-1.0 <= v <= 1.0 for v in r["sanity"].values())
    report = (out / "report.md").read_text()
    assert "Insertion / deletion" in report and "0.8459" in report
    for fig in (
        "fig4_heatmaps.png",
        "fig5_methods.png",
        "fig3a_ablation.png",
        "fig6_insertion.png",
    ):
        assert (out / fig).stat().st_size > 1000
    assert not list(out.parent.glob(".run.partial-*"))  # the temporary run dir was moved


@pytest.mark.slow  # shares the main run; RunDirectory itself: tests/test_rundir.py
def test_interrupted_rerun_leaves_the_previous_run_intact(run, monkeypatch, capsys):
    out, r, *_ = run
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(stages, "relevance_stage", interrupted)
    with pytest.raises(KeyboardInterrupt):
        mnist_shallow.main([*TINY, "--out", str(out), "--checkpoint", str(out / "checkpoint")])
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before  # no new figures beside old results, nothing half written
    partial = list(out.parent.glob(".run.partial-*"))
    assert len(partial) == 1 and (partial[0] / "checkpoint" / "manifest.json").is_file()
    assert str(partial[0]) in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--checkpoint", "/no/such/checkpoint"], "--checkpoint"),
        (["--eval-samples", "-5"], "--eval-samples"),
        (["--mu", "0"], "--mu"),
        (["--mu", "nan"], "--mu"),
        (["--epochs", "0"], "--epochs"),
        (["--out", ""], "--out"),
        (["--data", "tfds:mnist"], "tensorflow-datasets"),
        (["--test-data", "idx:/no/such/dir"], "--test-data"),
        (["--test-fraction", "1.5"], "--test-fraction"),
    ],
)
def test_bad_arguments_are_refused_before_any_work(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        mnist_shallow.main(["--out", str(tmp_path / "x"), *args])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_out_must_be_a_run_directory_or_new(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(SystemExit):
        mnist_shallow.main(["--out", str(tmp_path)])
    assert "not an earlier run" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        mnist_shallow.main(["--out", str(tmp_path / "notes.txt")])
    assert "existing file" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "keep me"


@pytest.mark.slow  # shares the main run
def test_ablation_study_from_the_main_commands_checkpoint(run, tmp_path, shared_mnist_dir):
    from experiments import ablation_study

    out, _, apply_fn, params, _, _ = run
    r = ablation_study.main(
        [
            "--checkpoint", str(out / "checkpoint"), "--test-data", f"idx:{shared_mnist_dir}",
            "--samples", "60", "--draws", "2", "--mu-max", "2", "--out", str(tmp_path / "abl"),
        ]
    )  # fmt: skip
    assert r["n_images"] == 60 and r["draws"] == 2 and [x["mu"] for x in r["rows"]] == [1.0, 2.0]
    # the full model's class-averaged accuracy, computed independently
    test = data.subset(data.load(f"idx:{shared_mnist_dir}", split="test"), 60)
    pred = np.asarray(apply_fn(params, jnp.asarray(test.images)).logits).argmax(-1)
    per_class = [np.mean(pred[test.labels == c] == c) for c in np.unique(test.labels)]
    np.testing.assert_allclose(r["full"], np.mean(per_class), atol=1e-6)
    saved = json.loads((tmp_path / "abl" / "ablation_study.json").read_text())
    assert saved["relevant_below_random"] == r["relevant_below_random"]


def test_stages_take_a_stream_of_batches():
    """The pipeline's stages accept an iterable of (images, labels) batches like a Dataset."""
    apply_fn, params = functional(ShallowSNN(config=L.SNNConfig(num_steps=2), rngs=nnx.Rngs(0)))
    small = data.subset(data.load("mnist-5k"), 40, seed=None)
    stream = [(small.images[i : i + 16], small.labels[i : i + 16]) for i in range(0, 40, 16)]
    want = stages.accuracy(apply_fn, params, small)
    assert stages.accuracy(apply_fn, params, stream) == want
    # a streaming source (its padded last batch is masked out)
    source = data.stream.as_source(small)
    assert stages.accuracy(apply_fn, params, source) == want
