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


def _part(seeds, protocol_seeds, acc, ins):
    """A run's JSON, reduced to what --merge reads: one recipe, the given seeds."""
    return {
        "protocol": {"seeds": protocol_seeds, "recipes": {"paper": {"epochs": 5}}},
        "validation": {"paper": {f"seed{s}": {"choice": {}} for s in seeds}},
        "test_per_seed": {
            "paper": {
                f"seed{s}": {"accuracy": a, "rows": {"SVEBI": {"insertion": i}}}
                for s, a, i in zip(seeds, acc, ins, strict=True)
            }
        },
        "models": {f"paper/seed{s}": {} for s in seeds},
        "seconds": {"total": 1.0},
        "complete": True,
    }


def test_merge_joins_seeds_and_aggregates_again(tmp_path, monkeypatch):
    got = {}
    monkeypatch.setattr(svebi_study, "_dump", lambda out, result: got.update(result))
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_part([0], [0, 1, 2], [0.90], [0.7])))
    b.write_text(json.dumps(_part([1, 2], [1, 2], [0.92, 0.94], [0.8, 0.9])))
    assert svebi_study.main(["--merge", str(a), str(b), "--out", str(tmp_path / "m")]) == 0
    test = got["test"]["paper"]
    assert test["seeds_done"] == ["seed0", "seed1", "seed2"]
    # mean and sample sd (ddof = 1) over the three seeds, computed by hand
    assert test["accuracy"]["mean"] == pytest.approx(0.92)
    assert test["accuracy"]["sd"] == pytest.approx(0.02)
    assert test["table"]["SVEBI"]["insertion"]["mean"] == pytest.approx(0.8)
    assert test["table"]["SVEBI"]["insertion"]["sd"] == pytest.approx(0.1)
    assert list(got["validation"]["paper"]) == ["seed0", "seed1", "seed2"]
    assert got["complete"] and got["protocol"]["seeds"] == [0, 1, 2]
    # the order of the files does not matter for completeness
    assert svebi_study.main(["--merge", str(b), str(a), "--out", str(tmp_path / "m")]) == 0
    assert got["complete"]
    c = tmp_path / "c.json"
    c.write_text(json.dumps(_part([1], [0, 1, 2], [0.5], [0.5])))
    assert svebi_study.main(["--merge", str(a), str(c), "--out", str(tmp_path / "m")]) == 0
    assert not got["complete"]  # seed 2 is missing
    with pytest.raises(ValueError, match=r"repeats paper \['seed1'\]"):
        svebi_study.main(["--merge", str(b), str(c), "--out", str(tmp_path / "m")])
