"""``python benchmarks/run.py --quick``: both sides of every peer row compute the same thing.

Speed is not tested (timings never go in tests): only the agreement checks of the peer
sections, on the reduced ``--quick`` sizes. Each section is skipped when its peer is not
installed (torch for RISE's ``CausalMetric``, ``spams-bin`` for the lasso).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def run_module():
    sys.path.insert(0, str(BENCH))
    try:
        import run

        yield run
    finally:
        sys.path.remove(str(BENCH))


def _quick(run_module, tmp_path, *sections):
    out = tmp_path / "quick.json"
    md = tmp_path / "table.md"
    report = run_module.main(
        ["--quick", "--only", *sections, "--out", str(out), "--markdown", str(md)]
    )
    assert json.loads(out.read_text())["rows"] == report["rows"]
    table = md.read_text()
    assert "load average" in table and "GFLOP/s" in table and "python benchmarks/run.py" in table
    return report


def test_quick_insdel_peers_agree(run_module, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("scipy")
    report = _quick(run_module, tmp_path, "insdel_peers")
    d = report["results"]["insdel_peers"]
    assert d["ok"], d["agreement"]
    for game in ("insertion", "deletion"):
        a = d["agreement"][game]
        assert a["max_abs_auc_diff"] <= 1e-3
        np.testing.assert_allclose(a["mean_auc"], a["mean_auc_peer"], atol=1e-4)
    assert d["max_abs_blur_substrate_diff"] <= 1e-5
    # Insertion from blur must differ from deletion to zeros: the games were really played.
    assert abs(d["agreement"]["insertion"]["mean_auc"] - d["agreement"]["deletion"]["mean_auc"]) > 0
    (r,) = report["rows"]
    assert set(r) >= {"name", "svebi_s", "peer_s", "ratio", "agreement", "notes"}
    assert r["ratio"] == pytest.approx(r["peer_s"] / r["svebi_s"])
    assert r["gflops"] > 0 and r["peak_frac"] > 0
    assert report["failed_checks"] == []


def test_quick_lasso_peers_agree(run_module, tmp_path):
    pytest.importorskip("spams")
    report = _quick(run_module, tmp_path, "lasso_peers")
    d = report["results"]["lasso_peers"]
    assert d["ok"]
    assert len(report["rows"]) == len(d["details"]) >= 2
    for det in d["details"]:
        a = det["agreement"]
        assert a["all_converged"]
        if det["row"]["name"].startswith("mu_lasso default (active_set)"):
            assert a["max_rel_objective_diff"] <= 1e-4
    assert report["failed_checks"] == []


def test_peer_sections_skip_cleanly_without_their_packages(run_module, monkeypatch):
    from sections import insdel_peers as ip
    from sections import lasso_peers as lp

    monkeypatch.setattr(ip, "available", lambda: False)
    monkeypatch.setattr(lp, "available", lambda: False)
    assert ip.run(None) == ({"skipped": "torch or scipy not installed"}, [])
    assert lp.run(None) == ({"skipped": "spams not installed"}, [])


def test_flop_model_of_the_shallow_snn_by_hand(run_module):
    import harness
    from flax import nnx

    import svebi_jax as sv

    model = sv.ShallowSNN(rngs=nnx.Rngs(0))
    # conv1 once (static input): 24*24*12 outputs x 5*5*1 taps; then per step, T = 10:
    # conv2 8*8*64 x 5*5*12, fc1 1024 x 128, fc2 128 x 10. Multiply-adds count 2.
    by_hand = 2 * (24 * 24 * 12 * 25 + 10 * (8 * 8 * 64 * 300 + 1024 * 128 + 128 * 10))
    assert harness.snn_forward_flops(model.layers, model.input_shape, 10) == by_hand


@pytest.mark.parametrize("reset", ["subtract", "subtract_then_leak"])
def test_torch_peer_network_matches_the_jax_network(run_module, reset):
    pytest.importorskip("torch")
    import peers_torch_rise as rise
    import torch
    from flax import nnx

    import svebi_jax as sv
    from svebi_jax import data

    model = sv.ShallowSNN(rngs=nnx.Rngs(1), config=sv.SNNConfig(num_steps=6, reset=reset))
    apply_fn, params = sv.functional(model)
    x = np.asarray(data.load("mnist-5k").images[:16], np.float32) * 3.0
    ref = np.asarray(apply_fn(params, x).logits)
    tm = rise.TorchSNN(model.layers, model.weights(), model.config, model.input_shape)
    with torch.inference_mode():
        got = tm.logits(rise.to_nchw(x)).numpy()
        probs = tm(rise.to_nchw(x)).numpy()
    assert np.abs(ref).max() > 0.1  # the network is not silent
    np.testing.assert_allclose(got, ref, atol=1e-5)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)
    # The authors' variant recomputes the first convolution every step: same logits.
    slow = rise.TorchSNN(
        model.layers, model.weights(), model.config, model.input_shape, hoist_static=False
    )
    with torch.inference_mode():
        np.testing.assert_allclose(slow.logits(rise.to_nchw(x)).numpy(), got, atol=1e-6)


def test_quick_network_peers_agree(run_module, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("snntorch")
    report = _quick(run_module, tmp_path, "peers_network")
    d = report["results"]["peers_network"]
    inf = d["shallow"]["inference"]
    assert inf["equal_predictions"] == 1.0 and inf["max_abs_logit_diff"] <= 1e-4
    assert inf["equal_spike_count_fraction_min"] == 1.0
    assert d["svgg19"]["equal_spike_count_fraction_min"] == 1.0
    assert 0.0 < d["svgg19"]["spike_rate"] < 1.0  # the comparison is not vacuous
    assert len(report["rows"]) == 2
    assert report["failed_checks"] == []


def test_row_roofline_and_ceiling(run_module):
    import harness

    # 100 GFLOP in 2 s = 50 GFLOP/s, half of a 100 GFLOP/s peak; the peer takes 4 s (2x), so
    # at the peak (1 s) svebi_jax would be 4x faster.
    r = harness.row("x", 2.0, 4.0, flops=100e9, peak_gflops=100.0)
    assert (r["ratio"], r["gflops"], r["peak_frac"], r["ceiling"]) == (2.0, 50.0, 0.5, 4.0)
    assert harness.row("y", 2.0, 4.0)["ceiling"] is None
    table = harness.markdown_table(
        [r],
        {"jax": "0", "backend": "cpu", "device_kind": "cpu", "cpu_count": 2, "loadavg_start": 0},
        quick=True,
    )
    assert "| 2.00× | 50.0 (50%) | 4.0× |" in table


def test_side_by_side_warms_each_side_up_and_times_single_calls_after_pauses(
    run_module, monkeypatch
):
    """Cheap calls: CHEAP_WARM untimed calls before every run of CHEAP_RUN timed ones, the
    sides alternating which goes first; then single calls after pauses, the sides taking turns
    (the pauses are recorded here, not slept)."""
    import harness

    log = []
    ours = lambda: log.append("s")  # noqa: E731
    peer = lambda: log.append("p")  # noqa: E731
    sleeps = []
    monkeypatch.setattr(harness.time, "sleep", sleeps.append)
    out = harness.side_by_side(
        ours, {"only": peer}, repeats=10, min_repeats=10, max_time_s=60.0, pause_trials=3
    )
    w, r = harness.CHEAP_WARM, harness.CHEAP_RUN
    warmup = "ss" + "p" * (1 + r)  # two calls of ours; the peer variant once, then a run
    run_s, run_p = "s" * (w + r), "p" * (w + r)
    rounds = run_s + run_p + run_p + run_s  # the order alternates between rounds
    assert "".join(log) == warmup + rounds + "sp" * 3
    assert out["svebi"]["repeats"] == out["peer"]["repeats"] == 10
    assert out["svebi"]["after_pause"]["trials"] == out["peer"]["after_pause"]["trials"] == 3
    assert sleeps == [harness.PAUSE_S] * 6
