"""Two processes x 2 CPU devices equal one process x 4 devices, through the public API.

The processes are real: ``tests/multidevice/multihost_cases.py`` is started as subprocesses
joined by ``jax.distributed.initialize("127.0.0.1:PORT", ...)`` on a free port (JAX's CPU
client uses gloo collectives between them), next to one process with 4 devices. Every round
is bounded in time and its processes are killed if it runs over or a test fails. Rounds:

1. ``stages`` as 2 x 2 and 1 x 4 at once: training (in memory and streamed, with orbax
   checkpoints), responses, ``W``, Grad2D/IG2D maps, insertion/deletion, ablation, the
   stream's rows per host, and the compiled per-image stages' shardings and collectives.
2. ``kill`` as 2 x 2: process 1 dies abruptly after a checkpoint; process 0 must stop with
   JAX's error (heartbeat timeout) within a bounded time.
3. ``resume`` as 2 x 2: the killed run resumed from its checkpoint, and the 1 x 4 run's
   checkpoint restored onto the 2 x 2 mesh; this test process (1 process, 1 device) restores
   the 2 x 2 run's checkpoint.

Tolerances: trained parameters and losses ``rtol = 1e-5, atol = 1e-6`` (the gradient's
all-reduce sums in another order across processes; measured max difference 3e-8);
Grad2D/IG2D maps ``rtol = 1e-5, atol = 1e-6`` (measured 2e-10); insertion/deletion curves
and AUCs ``atol = 1e-6`` (measured 0). ``X``, ``L``, predictions, ``W``, ablation curves,
the resumed parameters and restored checkpoints: identical.
"""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "multidevice" / "multihost_cases.py"
sys.path.insert(0, str(SCRIPT.parent))
import multihost_cases as cases  # noqa: E402

#: Wall-clock bound of one round (a loaded 2-core machine; a round takes ~20-60 s).
ROUND_TIMEOUT_S = 420
#: After one process dies, the other must have stopped within this many seconds.
STOP_BOUND_S = cases.HEARTBEAT_S + 60

PARAMS_TOL = dict(rtol=1e-5, atol=1e-6)
MAPS_TOL = dict(rtol=1e-5, atol=1e-6)
GAMES_TOL = dict(rtol=0, atol=1e-6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict:
    env = dict(os.environ)
    # A loaded 2-core machine can keep a device thread from XLA's in-process rendezvous for
    # longer than its default (40 s); allow 10 minutes (the round's own bound is shorter).
    flags = (
        "--xla_cpu_collective_timeout_seconds=600 "
        "--xla_cpu_collective_call_terminate_timeout_seconds=600"
    )
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + flags).strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("JAX_NUM_CPU_DEVICES", None)
    return env


class _Round:
    """Processes started together; killed (whole process groups) unless they all finish."""

    def __init__(self, work: pathlib.Path, phase: str, runs, other: str | None = None):
        self.procs = []
        self.logs = []
        for processes, devices in runs:
            port = _free_port() if processes > 1 else 0
            for i in range(processes):
                log = work / f"{phase}-{processes}x{devices}-{i}.log"
                cmd = [
                    sys.executable, str(SCRIPT), phase, "--work", str(work),
                    "--processes", str(processes), "--process-id", str(i),
                    "--devices", str(devices), "--port", str(port),
                ]  # fmt: skip
                if other:
                    cmd += ["--other", other]
                with open(log, "w") as f:
                    self.procs.append(
                        subprocess.Popen(
                            cmd,
                            cwd=ROOT,
                            env=_env(),
                            stdout=f,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )  # fmt: skip
                    )
                self.logs.append(log)
        self.exited_at = [None] * len(self.procs)

    def wait(self, timeout: float = ROUND_TIMEOUT_S) -> list[int]:
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                for k, p in enumerate(self.procs):
                    if self.exited_at[k] is None and p.poll() is not None:
                        self.exited_at[k] = time.monotonic()
                if all(t is not None for t in self.exited_at):
                    return [p.returncode for p in self.procs]
                time.sleep(0.2)
            raise AssertionError(f"a round ran over {timeout} s (hang?):\n{self.tail()}")
        finally:
            self.kill()

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()

    def tail(self, n: int = 4000) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-n:]}" for log in self.logs)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Runs the three rounds; ``{name: npz dict}`` plus the kill round's facts."""
    work = tmp_path_factory.mktemp("multihost")
    out: dict = {"work": work}

    r = _Round(work, "stages", [(2, 2), (1, 4)])
    rcs = r.wait()
    assert rcs == [0, 0, 0], f"stages failed (return codes {rcs}):\n{r.tail()}"
    for name in ("2x2/stages-0", "2x2/stages-1", "1x4/stages-0"):
        out[name] = dict(np.load(work / f"{name}.npz"))

    r = _Round(work, "kill", [(2, 2)])
    rcs = r.wait()
    out["kill_rcs"] = rcs
    out["kill_logs"] = [log.read_text() for log in r.logs]
    out["kill_stop_s"] = r.exited_at[0] - r.exited_at[1]
    out["after_kill"] = _newest_checkpoint(work / "killed" / "ckpt")

    r = _Round(work, "resume", [(2, 2)], other="1x4")
    rcs = r.wait()
    assert rcs == [0, 0], f"resume failed (return codes {rcs}):\n{r.tail()}"
    for name in ("2x2/resume-0", "2x2/resume-1"):
        out[name] = dict(np.load(work / f"{name}.npz"))
    return out


def _newest_checkpoint(directory):
    """``(step, restored params)`` of the newest checkpoint in ``directory`` (1 device)."""
    from svebi_jax import train
    from svebi_jax.resume import TrainCheckpoints

    _, params, _, _ = cases.model_and_data()
    opt = train.make_optimizer(cases.stream_config(), 3)
    ckpt = TrainCheckpoints(directory, every=2)
    try:
        step, p, _, meta = ckpt.restore(params, opt.init(params))
    finally:
        ckpt.close()
    return step, [np.asarray(x) for x in jax.tree.leaves(p)], meta


def _pairs(a: dict, b: dict, prefix: str):
    keys = sorted(k for k in a if k.startswith(prefix + "/"))
    assert keys and keys == sorted(k for k in b if k.startswith(prefix + "/"))
    return [(k, a[k], b[k]) for k in keys]


def test_every_host_gets_the_same_results(runs):
    a, b = runs["2x2/stages-0"], runs["2x2/stages-1"]
    for k in a:
        if k != "stream_rows":
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_trained_parameters_equal_one_process(runs):
    two, one = runs["2x2/stages-0"], runs["1x4/stages-0"]
    for prefix in ("fit_memory", "fit_stream"):  # augmented, 3 and 6 steps of 8 images
        for k, x, y in _pairs(two, one, prefix):
            assert np.abs(y).max() > 0
            np.testing.assert_allclose(x, y, **PARAMS_TOL, err_msg=k)
        np.testing.assert_allclose(two[prefix + "_loss"], one[prefix + "_loss"], **PARAMS_TOL)
    # training moved the parameters (the comparison is not of two copies of the start)
    p0 = jax.tree.leaves(cases.model_and_data()[1])
    moved = [not np.allclose(np.asarray(p), two[f"fit_stream/{i:03d}"]) for i, p in enumerate(p0)]
    assert sum(moved) >= 4


def test_responses_and_lasso_identical(runs):
    two, one = runs["2x2/stages-0"], runs["1x4/stages-0"]
    assert two["X"].shape == (24, 10) and two["X"].sum() > 0
    assert len(set(one["predictions"].tolist())) >= 2
    for k in ("X", "L", "predictions", "W"):
        np.testing.assert_array_equal(two[k], one[k], err_msg=k)
    assert np.abs(one["W"]).sum() > 0
    # resumable extraction: process 0 wrote the shards, both processes read them back
    np.testing.assert_array_equal(two["X_from_shards"], two["X"])
    files = ["meta.json", "shard-00000.npz", "shard-00001.npz"]
    assert two["shard_files"].tolist() == files
    if "W_fit_relevance" in one:
        np.testing.assert_array_equal(two["W_fit_relevance"], one["W_fit_relevance"])
        np.testing.assert_array_equal(one["W_fit_relevance"], one["W"])


def test_maps_and_games_equal_one_process(runs):
    two, one = runs["2x2/stages-0"], runs["1x4/stages-0"]
    for k in ("grad2d", "ig2d"):
        assert two[k].shape == (10, 16, 16) and np.abs(one[k]).max() > 0
        np.testing.assert_allclose(two[k], one[k], **MAPS_TOL, err_msg=k)
    for k in ("insertion_curves", "insertion_auc", "deletion_curves", "deletion_auc"):
        np.testing.assert_allclose(two[k], one[k], **GAMES_TOL, err_msg=k)
    assert two["insertion_curves"].shape == (10, 9)


def test_ablation_curves_identical(runs):
    two, one = runs["2x2/stages-0"], runs["1x4/stages-0"]
    for f in ("relevant", "random", "random_std", "num_ablated"):
        np.testing.assert_array_equal(two[f"ablation_{f}"], one[f"ablation_{f}"])


def test_stream_gives_every_row_to_one_host_once(runs):
    h0, h1 = runs["2x2/stages-0"]["stream_rows"], runs["2x2/stages-1"]["stream_rows"]
    one = runs["1x4/stages-0"]["stream_rows"]
    assert len(h0) == len(h1) == 12 and not set(h0) & set(h1)
    assert sorted(np.concatenate([h0, h1]).tolist()) == list(range(24))
    # step s of host h holds rows [8 s + 4 h, 8 s + 4 h + 4) of the one-process epoch order
    merged = np.stack([h0.reshape(3, 4), h1.reshape(3, 4)], axis=1).reshape(-1)
    np.testing.assert_array_equal(merged, one)
    # prefetch_to_device assembles the hosts' rows into the global batches
    for name in ("2x2/stages-0", "2x2/stages-1", "1x4/stages-0"):
        np.testing.assert_array_equal(runs[name]["prefetched_rows"], one)


def test_per_image_stages_keep_rows_on_their_devices(runs):
    for name in ("2x2/stages-0", "1x4/stages-0"):
        r = runs[name]
        stages = r["stage_names"].tolist()
        assert len(stages) >= 5, stages  # responses, grad, IG, two games, ablation
        gathers = dict(zip(stages, r["stage_all_gather"], strict=True))
        assert not r["stage_all_gather"].any(), gathers
        assert r["stage_rows_ok"].all(), dict(zip(stages, r["stage_rows_ok"], strict=True))


def test_killed_process_stops_the_other_with_an_error(runs):
    rc0, rc1 = runs["kill_rcs"]
    log0 = runs["kill_logs"][0]
    assert rc1 == 9, runs["kill_logs"][1][-3000:]
    assert rc0 != 0, log0[-3000:]
    assert "stopped sending heartbeats" in log0 or "distributed service detected" in log0, log0
    assert 0 <= runs["kill_stop_s"] < STOP_BOUND_S
    assert not (runs["work"] / "2x2" / "kill-0.npz").exists()


def test_killed_run_leaves_only_whole_checkpoints_and_resumes_exactly(runs):
    step, params, meta = runs["after_kill"]
    assert step == cases.KILL_AT and len(meta["history"]["train_loss"]) == 1  # epoch 1 of 2
    assert all(np.isfinite(p).all() for p in params)
    kill_log = runs["kill_logs"][0]
    assert f"checkpoint {cases.KILL_AT} saved" in kill_log
    assert f"checkpoint {cases.KILL_AT + 2} saved" not in kill_log
    resumed, whole = runs["2x2/resume-0"], runs["2x2/stages-0"]
    for k, x, y in _pairs(
        {k.replace("resumed/", "fit_stream/"): v for k, v in resumed.items()}, whole, "fit_stream"
    ):
        np.testing.assert_array_equal(x, y, err_msg=k)
    np.testing.assert_array_equal(resumed["resumed_loss"], whole["fit_stream_loss"])


def test_checkpoints_restore_across_process_counts(runs):
    from svebi_jax import sharding as S
    from svebi_jax import train
    from svebi_jax.resume import TrainCheckpoints

    # written by 1 process x 4 devices, restored by 2 processes x 2 devices
    two = runs["2x2/resume-0"]
    assert int(two["other_step"]) == 6
    for k, x, y in _pairs(
        {k.replace("other_params/", "fit_stream/"): v for k, v in two.items()},
        runs["1x4/stages-0"],
        "fit_stream",
    ):
        np.testing.assert_array_equal(x, y, err_msg=k)
    # written by 2 processes x 2 devices, restored here (1 process, 1 device)
    apply_fn, params, _, _ = cases.model_and_data()
    opt = train.make_optimizer(cases.stream_config(), 3)
    mesh = S.make_mesh()
    ckpt = TrainCheckpoints(runs["work"] / "2x2" / "ckpt", every=2)
    try:
        step, p, o, meta = ckpt.restore(*S.replicate(mesh, (params, opt.init(params))))
    finally:
        ckpt.close()
    assert step == 6 and meta["num_classes"] == 3
    for i, leaf in enumerate(jax.tree.leaves(p)):
        np.testing.assert_array_equal(np.asarray(leaf), runs["2x2/stages-0"][f"fit_stream/{i:03d}"])
    for i, leaf in enumerate(jax.tree.leaves(o)):  # Adam's moments: 2 x 2's vs 1 x 4's
        np.testing.assert_allclose(np.asarray(leaf), two[f"other_opt/{i:03d}"], **PARAMS_TOL)
