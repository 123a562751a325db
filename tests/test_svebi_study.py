"""experiments.svebi_study: the pre-registered protocol end to end, at its smallest."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from experiments import svebi_study
from experiments.common.combination import relevant_gradcam
from experiments.common.methods import GRADCAM, LRP, TSA, MethodKey, table_methods
from svebi_jax import attribution
from svebi_jax.attribution import SVEBIOptions
from svebi_jax.methods.gradcam import gradcam_weights
from svebi_jax.models import ShallowSNN, functional


@pytest.mark.slow  # minutes (compilations); pieces: test_road.py, test_svebi_variants.py
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
    assert {"SNN-IG2D", "Grad-CAM[conv2]", "TSA-S"} <= set(table)
    # the combination: chosen on validation among its candidates, one test row per criterion
    comb = val["combination"]
    assert len(comb["candidates"]) == 4  # layers conv1, combined x 2 weightings
    for crit in ("rise", "road"):
        best = max(comb["candidates"], key=lambda k: comb["candidates"][k][crit]["mean"])
        assert comb["choice"][crit]["label"] == best
        row = table[f"SVEBI×Grad-CAM chosen on validation by {crit}"]
        assert row["variant_per_seed"] == [best]
    # the test-only metrics, in their ranges; the question's Δ against SNN-IG2D by hand
    for row in table.values():
        assert 0.0 <= row["sparseness"]["mean"] <= 1.0
        assert 0.0 <= row["complexity"]["mean"] <= np.log(28 * 28) + 1e-5
        assert -1.0 <= row["random_logit"]["mean"] <= 1.0
    raw = res["test_per_seed"]["paper"]["seed0"]["rows"]
    vs = test["versus_ig2d"]["contestants"]
    assert "SNN-Grad2D" not in vs and "trivial: input intensity" not in vs
    assert {"Grad-CAM[conv2]", "TSA-S", "SVEBI paper (combined, mu=2)"} <= set(vs)
    for name, v in vs.items():
        d_ins = raw[name]["insertion"] - raw["SNN-IG2D"]["insertion"]
        d_road = raw[name]["road_gap"] - raw["SNN-IG2D"]["road_gap"]
        assert v["delta"]["insertion"]["mean"] == pytest.approx(d_ins)
        assert v["beats"] == (d_ins > 0 and d_road > 0)
    beaters = sorted(n for n, v in vs.items() if v["beats"])
    assert res["answer"]["question"].startswith("Does any SNN-specific method")
    assert res["answer"]["verdict"] == ("yes" if beaters else "no")
    assert res["answer"]["beat_in_every_recipe"] == beaters
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


@pytest.fixture(scope="module")
def tiny_snn():
    apply_fn, params = functional(ShallowSNN(rngs=nnx.Rngs(3)))
    images = jax.random.uniform(jax.random.key(0), (2, 28, 28, 1))
    return apply_fn, params, images


def test_combination_weights_relevant_filters_by_gradcam(tiny_snn):
    """SVEBI×Grad-CAM against SVEBI itself: with one relevant filter of positive Grad-CAM
    weight the map is SVEBI's map of that filter (the weight cancels in the min-max
    normalization); a filter of negative weight adds nothing; with only such a filter the
    map is zero."""
    apply_fn, params, images = tiny_snn
    target = jnp.array([3, 3])
    alpha = np.asarray(gradcam_weights(apply_fn, params, images[:1], target[:1], layer="conv2"))
    pos, neg = int(np.argmax(alpha[0])), int(np.argmin(alpha[0]))
    assert alpha[0, pos] > 0 > alpha[0, neg]

    def masks(*channels):
        m = {"conv1": np.zeros((10, 12), np.float32), "conv2": np.zeros((10, 64), np.float32)}
        for c in channels:
            m["conv2"][3, c] = 0.5
        return m

    one = images[:1]
    want = attribution.svebi(apply_fn, masks(pos), layer="conv2", options=SVEBIOptions())(
        params, one, target[:1]
    )
    assert float(want.max()) == pytest.approx(1.0)
    fn = relevant_gradcam(apply_fn, masks(pos, neg), layer="conv2", weighting="gradient_lasso")
    np.testing.assert_allclose(fn(params, one, target[:1]), want, atol=1e-6)
    zero = relevant_gradcam(apply_fn, masks(neg), layer="conv2", weighting="gradient")(
        params, one, target[:1]
    )
    np.testing.assert_array_equal(zero, 0.0)
    with pytest.raises(ValueError, match="weighting"):
        relevant_gradcam(apply_fn, masks(pos), layer="conv2", weighting="relevance")


def test_table_methods_snn_rows():
    """The SNN-specific rows: labels, order and the factories' keys (no model run)."""
    apply_fn, _ = functional(ShallowSNN(rngs=nnx.Rngs(0)))
    masks = {"conv1": np.ones((10, 12), np.float32), "conv2": np.ones((10, 64), np.float32)}
    kw = dict(conv_layers=("conv1", "conv2"), seed=0, path_steps=2)
    base = [k.label for k in table_methods(apply_fn, masks, **kw)]
    full = [k.label for k in table_methods(apply_fn, masks, **kw, snn_methods=True)]
    new = ["Grad-CAM[conv1]", "Grad-CAM[conv2]", "LRP", "TSA-S", "TSA-NS"]
    i = base.index("SAM[conv2]") + 1
    assert full == base[:i] + new + base[i:]
    assert MethodKey(GRADCAM, "conv1").label == "Grad-CAM[conv1]"
    assert MethodKey(LRP).label == "LRP" and MethodKey(TSA, variant="NS").label == "TSA-NS"
