"""The main command end to end on a tiny configuration (checks results.json, report, figures)."""

import json
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "experiments"))

import mnist_shallow  # noqa: E402


def test_main_command_tiny(tmp_path):
    out = tmp_path / "run"
    mnist_shallow.main(
        [
            "--train-limit", "600", "--epochs", "1", "--eval-samples", "8",
            "--ablation-samples", "60", "--mu-path-max", "3", "--top-k", "5",
            "--ig-steps", "2", "--out", str(out), "--no-progress",
        ]
    )  # fmt: skip
    r = json.loads((out / "results.json").read_text())
    for key in ("dataset", "n_train", "n_test", "test_accuracy", "mu", "relevant_filters",
                "lasso", "timings_s", "insertion_deletion", "ablation", "sanity"):  # fmt: skip
        assert key in r, key
    assert r["dataset"] == "mnist-5k" and r["n_train"] == 600 and r["n_test"] == 500
    assert 0.1 < r["test_accuracy"] <= 1.0
    assert r["mu"] == 2.0 and r["lasso"]["converged"]
    assert set(r["relevant_filters"]) == {str(c) for c in range(10)}
    assert all(set(v) == {"conv1", "conv2"} for v in r["relevant_filters"].values())
    assert [a["mu"] for a in r["ablation"]] == [1.0, 2.0, 3.0]
    for row in r["insertion_deletion"].values():
        assert 0.0 <= row["insertion"] <= 1.0 and 0.0 <= row["deletion"] <= 1.0
        # AUC is linear in the curve: mean of AUCs == AUC of the mean curve
        np.testing.assert_allclose(row["insertion"], row["insertion_auc_of_mean_curve"], atol=1e-5)
    assert "SVEBI[conv1,aligned]" in r["insertion_deletion"]
    assert "trivial: input intensity" in r["insertion_deletion"]
    for name, row in r["insertion_deletion"].items():
        assert ("coverage" in row) == name.startswith("SVEBI[")
        if name.startswith("SVEBI["):
            assert 0.0 <= row["coverage"] <= 1.0
    assert set(r["per_class_insertion"]) == set(r["insertion_deletion"])
    per_image = np.load(out / "per_image_auc.npz")
    assert per_image["insertion"].shape == (len(r["insertion_deletion"]), 8)
    # the per-image AUCs average to the table's numbers
    for i, name in enumerate(per_image["methods"]):
        np.testing.assert_allclose(
            per_image["insertion"][i].mean(),
            r["insertion_deletion"][str(name)]["insertion"],
            atol=1e-6,
        )
    report = (out / "report.md").read_text()
    assert "Insertion / deletion" in report and "0.8459" in report
    for fig in (
        "fig4_heatmaps.png",
        "fig5_methods.png",
        "fig3a_ablation.png",
        "fig6_insertion.png",
    ):
        assert (out / fig).stat().st_size > 1000


def test_ablation_study_from_the_main_commands_checkpoint(tmp_path, shared_mnist_dir):
    import ablation_study

    from svebi_jax import checkpoint, data
    from svebi_jax.models import functional

    run = tmp_path / "run"
    mnist_shallow.main(
        [
            "--train-limit", "300", "--epochs", "1", "--eval-samples", "4",
            "--ablation-samples", "20", "--mu-path-max", "2", "--top-k", "3",
            "--ig-steps", "2", "--out", str(run), "--no-progress",
        ]
    )  # fmt: skip
    r = ablation_study.main(
        [
            "--checkpoint", str(run / "checkpoint"), "--test-data", f"idx:{shared_mnist_dir}",
            "--samples", "60", "--draws", "2", "--mu-max", "2", "--out", str(tmp_path / "abl"),
        ]
    )  # fmt: skip
    assert r["n_images"] == 60 and r["draws"] == 2 and [x["mu"] for x in r["rows"]] == [1.0, 2.0]
    # the full model's class-averaged accuracy, computed independently
    model = checkpoint.restore_model(run / "checkpoint")
    apply_fn, params = functional(model)
    test = data.subset(data.load(f"idx:{shared_mnist_dir}", split="test"), 60)
    pred = np.asarray(apply_fn(params, test.images).logits).argmax(-1)
    per_class = [np.mean(pred[test.labels == c] == c) for c in np.unique(test.labels)]
    np.testing.assert_allclose(r["full"], np.mean(per_class), atol=1e-6)
    saved = json.loads((tmp_path / "abl" / "ablation_study.json").read_text())
    assert saved["relevant_below_random"] == r["relevant_below_random"]
