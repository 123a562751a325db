"""experiments.svebi_study: the pre-registered protocol end to end, at its smallest."""

import json

import numpy as np
import pytest

from experiments import svebi_study


@pytest.mark.slow  # ~1.5 min; its pieces: test_road.py, test_svebi_variants.py
def test_quick_study_keeps_validation_and_test_apart(tmp_path, shared_mnist_dir):
    out = tmp_path / "study"
    argv = [
        "--quick",
        "--test-data",
        f"idx:{shared_mnist_dir}",
        "--recipes",
        "paper",
        "--layers",
        "conv1",
        "combined",
        "--mus",
        "2",
        "--mu-path-max",
        "3",
        "--stage2-max",
        "2",
        "--baselines",
        "fast",
        "--test-games",
        "8",
        "--val-games",
        "8",
        "--out",
        str(out),
    ]
    assert svebi_study.main(argv) == 0
    res = json.loads((out / "svebi_study.json").read_text())
    assert set(res) >= {"protocol", "validation", "test"}
    assert res["protocol"]["test_digits_games"] == 8 and res["protocol"]["quick"]
    val = res["validation"]["paper"]["seed0"]
    for crit in ("rise", "road"):
        choice = val["choice"][crit]
        scored = {**val["stage1"], **val["stage2"]}
        best = max(scored, key=lambda k: scored[k][crit]["mean"])
        # the choice is the best validation candidate; its recorded score says so
        assert choice["label"] == best
        assert choice["validation"] == pytest.approx(scored[best][crit]["mean"])
        # rise = insertion - deletion, per seed
        row = scored[best]
        np.testing.assert_allclose(
            row["rise"]["per_seed"],
            np.subtract(row["insertion"]["per_seed"], row["deletion"]["per_seed"]),
            rtol=1e-6,
        )
    test = res["test"]["paper"]
    assert 0.0 <= test["accuracy"]["mean"] <= 1.0
    table = test["table"]
    assert "SVEBI paper (combined, mu=2)" in table and "SNN-Grad2D" in table
    assert test["seeds_done"] == ["seed0"] and res["complete"]
    chosen = table["SVEBI chosen on validation by rise"]["variant_per_seed"]
    assert chosen == [val["choice"]["rise"]["label"]]
    for row in table.values():
        for k in ("insertion", "deletion", "road_morf", "road_lerf"):
            assert 0.0 <= row[k]["mean"] <= 1.0
        assert row["road_gap"]["mean"] == pytest.approx(
            row["road_lerf"]["mean"] - row["road_morf"]["mean"], abs=1e-6
        )
    assert "## Recipe `paper`: test" in (out / "svebi_study.md").read_text()


def test_bad_flags_exit_2(capsys):
    with pytest.raises(SystemExit) as err:
        svebi_study.main(["--recipes", "adam"])
    assert err.value.code == 2
    assert "--recipes" in capsys.readouterr().err
