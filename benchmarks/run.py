"""Benchmarks of svebi_jax against the straightforward alternatives.

Usage::

    python benchmarks/run.py [--quick] [--out benchmarks/results.json]

Every timing warms up first (compilation excluded and reported separately: ahead-of-time
``lower().compile()`` for the functions jitted here, "first call" minus median for library
functions that jit internally), then reports the median of several repeats, each ended by
``jax.block_until_ready``. Prints a Markdown table and writes a JSON file with the raw numbers
and the machine's description (JAX version, backend, device kind, CPU count, load average).

Sections:

1. Shallow SNN forward and train step (B = 100, T = 10): time-batched vs stepwise runner.
2. LIF layer ``[T=10, B=100, 24, 24, 12]``: ``lif_scan`` under jit vs a Python loop of jitted
   single steps.
3. ``mu_lasso`` on real responses (N = 5000, m = 76, C = 10), scalar μ and the μ path 1..50,
   vs SciPy SLSQP per class.
4. Insertion/deletion for 200 images, step 28: vectorised vs a RISE-style loop.
5. Gradient baselines (Grad2D, IG with 50 steps): images/s.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import svebi_jax as sv
import svebi_jax.baselines as baselines
import svebi_jax.metrics as metrics
from svebi_jax import data

try:  # run as a script: benchmarks/ is on sys.path
    import peers
except ImportError:  # pragma: no cover - imported as benchmarks.run
    from benchmarks import peers

HERE = Path(__file__).resolve().parent

# Input gain for the randomly initialised network: MNIST intensities in [0, 1] times 3 make
# every layer of the untrained shallow SNN spike (used in all sections, for comparability).
GAIN = 3.0


# ------------------------------------------------------------------------------- settings


def settings(quick: bool) -> dict[str, Any]:
    """Sizes and repeat counts of the full and the ``--quick`` run."""
    if quick:
        return {
            "repeats": 5,  # at most; fewer (>= min_repeats) once max_time_s is spent
            "min_repeats": 2,
            "max_time_s": 1.5,
            "batch": 100,
            "num_steps": 10,
            "lasso_n": 1000,
            "mu_path": list(range(1, 6)),
            "insdel_images": 20,
            "insdel_small_chunk": 32,
            "grad_images": 20,
            "ig_images": 2,
            "ig_steps": 50,
        }
    return {
        "repeats": 20,
        "min_repeats": 3,
        "max_time_s": 15.0,
        "batch": 100,
        "num_steps": 10,
        "lasso_n": 5000,
        "mu_path": list(range(1, 51)),
        "insdel_images": 200,
        "insdel_small_chunk": 32,
        "grad_images": 100,
        "ig_images": 20,
        "ig_steps": 50,
    }


# --------------------------------------------------------------------------------- timing


def _block(x):
    return jax.block_until_ready(x)


def time_calls(
    fn: Callable[[], Any],
    repeats: int,
    *,
    warmup: int = 1,
    min_repeats: int = 3,
    max_time_s: float = float("inf"),
) -> dict[str, Any]:
    """Median wall time of ``fn()`` (blocked until ready) after ``warmup`` untimed calls.

    Runs ``repeats`` timed calls, but stops early once ``min_repeats`` calls are done and the
    timed calls have taken more than ``max_time_s`` together (for slow workloads).

    Returns:
      dict with ``first_call_s`` (the first warm-up call, which includes any compilation;
      ``None`` without warm-up), ``median_s``, ``min_s``, ``max_s``, ``repeats`` (done).
    """
    first = None
    for i in range(warmup):
        t0 = time.perf_counter()
        _block(fn())
        if i == 0:
            first = time.perf_counter() - t0
    times: list[float] = []
    while len(times) < max(repeats, 1):
        if len(times) >= min_repeats and sum(times) > max_time_s:
            break
        t0 = time.perf_counter()
        _block(fn())
        times.append(time.perf_counter() - t0)
    return {
        "first_call_s": first,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "repeats": len(times),
    }


def timer(cfg: dict[str, Any]) -> Callable[..., dict[str, Any]]:
    """:func:`time_calls` with the run's ``min_repeats`` and ``max_time_s``."""
    return functools.partial(
        time_calls, min_repeats=cfg["min_repeats"], max_time_s=cfg["max_time_s"]
    )


def aot_compile(jitted, *args) -> tuple[Any, float]:
    """Compiles ``jitted`` for ``args`` ahead of time; returns ``(compiled, seconds)``."""
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - t0


def loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):  # pragma: no cover - not on Linux/macOS
        return None


def machine_info() -> dict[str, Any]:
    dev = jax.devices()[0]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=HERE,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    cpu_model = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "jax": jax.__version__,
        "jaxlib": getattr(jax.lib, "__version__", None) or _version("jaxlib"),
        "flax": _version("flax"),
        "svebi_jax": sv.__version__,
        "git_commit": commit,
        "backend": jax.default_backend(),
        "device_kind": dev.device_kind,
        "device_count": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_start": loadavg(),
    }


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ workloads


def make_model(num_steps: int):
    model = sv.ShallowSNN(rngs=nnx.Rngs(0), config=sv.SNNConfig(num_steps=num_steps))
    return sv.functional(model)


def bench_network(apply_fn, params, images, labels, cfg) -> dict[str, Any]:
    """Section 1: forward and train step, time-batched vs stepwise."""
    x, y = jnp.asarray(images), jnp.asarray(labels)
    optimizer = optax.adam(1e-3)
    out: dict[str, Any] = {"batch": int(x.shape[0]), "num_steps": cfg["num_steps"]}
    logits = {}
    for mode in ("time_batched", "stepwise"):

        def forward(p, x, mode=mode):
            return apply_fn(p, x, mode=mode).logits

        def loss_fn(p, x, y, mode=mode):
            z = apply_fn(p, x, mode=mode).logits
            return optax.softmax_cross_entropy_with_integer_labels(z, y).mean()

        def train_step(p, s, x, y, loss_fn=loss_fn):
            loss, g = jax.value_and_grad(loss_fn)(p, x, y)
            updates, s = optimizer.update(g, s, p)
            return optax.apply_updates(p, updates), s, loss

        fwd, fwd_compile = aot_compile(jax.jit(forward), params, x)
        t_fwd = timer(cfg)(lambda fwd=fwd: fwd(params, x), cfg["repeats"])
        logits[mode] = np.asarray(fwd(params, x))

        opt_state = optimizer.init(params)
        step, step_compile = aot_compile(jax.jit(train_step), params, opt_state, x, y)
        state = [params, opt_state]

        def run_step(step=step, state=state):
            state[0], state[1], loss = step(state[0], state[1], x, y)
            return loss

        t_step = timer(cfg)(run_step, cfg["repeats"])
        out[mode] = {
            "forward": {
                **t_fwd,
                "compile_s": fwd_compile,
                "images_per_s": x.shape[0] / t_fwd["median_s"],
            },
            "train_step": {
                **t_step,
                "compile_s": step_compile,
                "images_per_s": x.shape[0] / t_step["median_s"],
            },
        }
        log(
            f"  {mode}: forward {t_fwd['median_s'] * 1e3:.1f} ms, "
            f"train step {t_step['median_s'] * 1e3:.1f} ms"
        )
    tb, sw = out["time_batched"], out["stepwise"]
    out["speedup_forward"] = sw["forward"]["median_s"] / tb["forward"]["median_s"]
    out["speedup_train_step"] = sw["train_step"]["median_s"] / tb["train_step"]["median_s"]
    out["max_abs_logit_diff"] = float(np.max(np.abs(logits["time_batched"] - logits["stepwise"])))
    return out


def _bench_lif_shape(shape: tuple[int, ...], cfg) -> dict[str, Any]:
    currents = 0.3 + 0.5 * jax.random.normal(jax.random.key(0), shape, jnp.float32)
    currents = _block(currents)
    beta = 0.95
    scan, scan_compile = aot_compile(jax.jit(functools.partial(sv.lif_scan, beta=beta)), currents)
    t_scan = timer(cfg)(lambda: scan(currents), cfg["repeats"])
    step_fn = peers.make_lif_step(beta=beta)
    t0 = time.perf_counter()
    _block(peers.naive_lif_loop(step_fn, currents[:1]))
    loop_compile = time.perf_counter() - t0
    t_loop = timer(cfg)(lambda: peers.naive_lif_loop(step_fn, currents), cfg["repeats"])
    s1, u1 = scan(currents)
    s2, u2 = peers.naive_lif_loop(step_fn, currents)
    out = {
        "shape": list(shape),
        "lif_scan_jit": {**t_scan, "compile_s": scan_compile},
        "python_loop_jit_step": {**t_loop, "compile_s": loop_compile},
        "speedup": t_loop["median_s"] / t_scan["median_s"],
        "spike_mismatches": int(jnp.sum(s1 != s2)),
        "max_abs_membrane_diff": float(jnp.max(jnp.abs(u1 - u2))),
        "spike_rate": float(jnp.mean(s1)),
    }
    log(
        f"  {list(shape)}: lif_scan {t_scan['median_s'] * 1e3:.2f} ms, "
        f"loop {t_loop['median_s'] * 1e3:.2f} ms"
    )
    return out


def bench_lif(cfg) -> dict[str, Any]:
    """Section 2: lif_scan under jit vs a Python loop over a jitted single step.

    The main shape is conv1's spike map ``[T, B, 24, 24, 12]`` (memory-bound: the loop's
    per-step dispatch is small next to the data); a second, small, dispatch-bound shape
    (``fc1``'s 128 units over ``T = 100`` steps) shows where the Python loop's overhead shows.
    """
    out = _bench_lif_shape((cfg["num_steps"], cfg["batch"], 24, 24, 12), cfg)
    out["small"] = _bench_lif_shape((100, cfg["batch"], 128), cfg)
    return out


def _objectives(X: np.ndarray, L: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``[..., C]`` float64 :math:`\\|X w_j - L_j\\|^2` for ``W`` ``[..., m, C]``."""
    R = np.einsum("nm,...mc->...nc", X, W) - L
    return np.sum(R * R, axis=-2)


def _agreement(X, L, W_jax, W_ref) -> dict[str, Any]:
    """Objective agreement over the classes that occur in ``L`` (absent ones are 0 in both)."""
    present = L.sum(axis=0) > 0
    f_jax = _objectives(X, L, np.asarray(W_jax, np.float64))[..., present]
    f_ref = _objectives(X, L, np.asarray(W_ref, np.float64))[..., present]
    rel = (f_jax - f_ref) / np.maximum(np.abs(f_ref), 1e-12)
    return {
        # > 0: svebi_jax's objective is higher (worse) than SLSQP's.
        "max_rel_objective_diff": float(np.max(rel)),
        "min_rel_objective_diff": float(np.min(rel)),
        "median_rel_objective_diff": float(np.median(rel)),
        "max_abs_objective_diff": float(np.max(np.abs(f_jax - f_ref))),
        "objective_range": [float(np.min(f_ref)), float(np.max(f_ref))],
    }


def capture(fn: Callable[[], Any]) -> tuple[Callable[[], Any], dict[str, Any]]:
    """Wraps ``fn`` so that its last output is kept in ``box["out"]``."""
    box: dict[str, Any] = {}

    def wrapped():
        box["out"] = fn()
        return box["out"]

    return wrapped, box


def bench_lasso(apply_fn, params, images, labels, cfg) -> dict[str, Any]:
    """Section 3: mu_lasso (scalar mu and the mu path) vs SLSQP per class.

    ``X`` are the real filter responses of the (untrained) shallow SNN; ``L`` is the one-hot
    of the *true* labels, which is what the predictions of a trained network nearly are (the
    untrained network predicts only a few classes, which would leave trivial problems).
    """
    t0 = time.perf_counter()
    resp = sv.compute_responses(apply_fn, params, jnp.asarray(images) * GAIN)
    _block(resp.X)
    t_resp = time.perf_counter() - t0
    X = resp.X
    c = resp.L.shape[1]
    L = jax.nn.one_hot(jnp.asarray(labels), c, dtype=X.dtype)
    Xn = np.asarray(X, np.float64)
    Ln = np.asarray(L, np.float64)
    n, m = X.shape
    mus = np.asarray(cfg["mu_path"], np.float32)
    out: dict[str, Any] = {
        "N": int(n),
        "m": int(m),
        "C": int(c),
        "L": "one-hot true labels",
        "responses_s_incl_compile": t_resp,
        "mean_response": float(jnp.mean(X)),
        "dead_filters": int(jnp.sum(jnp.all(X == 0, axis=0))),
        "mu": 2.0,
        "mu_path": [float(v) for v in mus],
    }
    log(f"  responses X {tuple(X.shape)} in {t_resp:.1f} s")
    have_scipy = True
    try:
        import scipy  # noqa: F401
    except ImportError:  # pragma: no cover
        have_scipy = False
        log("  scipy not installed: SLSQP peer skipped")

    for key, mu in (("scalar", 2.0), ("path", mus)):
        run_jax, box = capture(lambda mu=mu: sv.mu_lasso(X, L, mu))
        t = timer(cfg)(run_jax, cfg["repeats"])
        sol = box["out"]
        res: dict[str, Any] = {
            "mu_lasso": {
                **t,
                "compile_s_approx": t["first_call_s"] - t["median_s"],
                "max_iterations": int(np.max(sol.iterations)),
                "all_converged": bool(np.all(sol.converged)),
                "max_residual": float(np.max(sol.residual)),
            }
        }
        if have_scipy:
            if key == "scalar":
                peer = functools.partial(peers.slsqp_mu_lasso, Xn, Ln, 2.0)
            else:
                peer = functools.partial(peers.slsqp_mu_path, Xn, Ln, mus)
            run_peer, pbox = capture(peer)
            tp = timer(cfg)(lambda run_peer=run_peer: run_peer()["W"], cfg["repeats"], warmup=0)
            ref = pbox["out"]
            res["slsqp"] = {
                **tp,
                "all_success": bool(np.all(ref["success"])),
                "n_success": int(np.sum(ref["success"])),
                "n_solves": int(np.size(ref["success"])),
                "messages": sorted(set(np.ravel(ref["messages"]).tolist())),
                "max_iterations": int(np.max(ref["iterations"])),
                "blas_threads": 1,
            }
            res["speedup"] = tp["median_s"] / t["median_s"]
            res.update(_agreement(Xn, Ln, sol.W, ref["W"]))
            log(
                f"  {key}: mu_lasso {t['median_s']:.3f} s, SLSQP {tp['median_s']:.3f} s, "
                f"rel objective diff {res['min_rel_objective_diff']:.1e}.."
                f"{res['max_rel_objective_diff']:.1e}"
            )
        out[key] = res
    return out


def bench_insdel(apply_fn, params, images, cfg) -> dict[str, Any]:
    """Section 4: vectorised insertion/deletion vs a RISE-style loop."""
    x = jnp.asarray(images) * GAIN
    b, h, w, _ = x.shape
    step = 28
    saliency = jax.random.uniform(jax.random.key(1), (b, h, w))  # no ties

    def logits_fn(imgs):
        return apply_fn(params, imgs).logits

    prob_fn = jax.jit(lambda imgs: jax.nn.softmax(apply_fn(params, imgs).logits, axis=-1))
    xn, sn = np.asarray(x), np.asarray(saliency)
    zeros = np.zeros_like(xn)
    t0 = time.perf_counter()
    _block(prob_fn(xn[:1]))
    peer_compile = time.perf_counter() - t0
    out: dict[str, Any] = {
        "images": int(b),
        "step": step,
        "points_per_curve": (h * w + step - 1) // step + 1,
        "substrate": "zeros",
        "saliency": "uniform random",
        "chunk_size": 256,
        "small_chunk_size": cfg["insdel_small_chunk"],
        "peer_compile_s": peer_compile,
    }
    for mode in ("insertion", "deletion"):

        def vec(mode=mode, chunk_size=256):
            return metrics.insertion_deletion(
                logits_fn,
                x,
                saliency,
                mode=mode,
                step=step,
                substrate="zeros",
                chunk_size=chunk_size,
            )

        run_vec, vbox = capture(vec)
        t_vec = timer(cfg)(run_vec, cfg["repeats"])
        res = vbox["out"]
        # A smaller chunk keeps the activations in cache on CPU (informative second timing).
        small = cfg["insdel_small_chunk"]
        t_small = timer(cfg)(functools.partial(vec, chunk_size=small), cfg["repeats"])

        def loop(mode=mode):
            return peers.rise_insdel_loop(prob_fn, xn, sn, mode=mode, step=step, substrate=zeros)

        run_loop, lbox = capture(loop)
        t_loop = timer(cfg)(run_loop, cfg["repeats"], warmup=0)
        curves, aucs = lbox["out"]
        out[mode] = {
            "vectorized": {
                **t_vec,
                "compile_s_approx": t_vec["first_call_s"] - t_vec["median_s"],
                "images_per_s": b / t_vec["median_s"],
            },
            f"vectorized_chunk{small}": {
                **t_small,
                "images_per_s": b / t_small["median_s"],
            },
            "rise_loop": {**t_loop, "images_per_s": b / t_loop["median_s"]},
            "speedup": t_loop["median_s"] / t_vec["median_s"],
            "mean_auc": float(res.mean_auc),
            "mean_auc_loop": float(np.mean(aucs)),
            "max_abs_auc_diff": float(np.max(np.abs(np.asarray(res.auc) - aucs))),
            "max_abs_curve_diff": float(np.max(np.abs(np.asarray(res.curves) - curves))),
        }
        log(
            f"  {mode}: vectorised {t_vec['median_s']:.2f} s, loop {t_loop['median_s']:.2f} s, "
            f"max |dAUC| {out[mode]['max_abs_auc_diff']:.1e}"
        )
    return out


def bench_baselines(apply_fn, params, images, cfg) -> dict[str, Any]:
    """Section 5: Grad2D and integrated gradients throughput."""
    T = cfg["num_steps"]
    xg = jnp.asarray(images[: cfg["grad_images"]]) * GAIN
    xi = jnp.asarray(images[: cfg["ig_images"]]) * GAIN
    t_g = timer(cfg)(lambda: baselines.grad2d(apply_fn, params, xg, num_steps=T), cfg["repeats"])
    t_i = timer(cfg)(
        lambda: baselines.integrated_gradients(
            apply_fn, params, xi, num_steps=T, n_steps=cfg["ig_steps"]
        ),
        cfg["repeats"],
    )
    out = {
        "grad2d": {
            **t_g,
            "images": int(xg.shape[0]),
            "compile_s_approx": t_g["first_call_s"] - t_g["median_s"],
            "images_per_s": xg.shape[0] / t_g["median_s"],
        },
        "integrated_gradients": {
            **t_i,
            "images": int(xi.shape[0]),
            "n_steps": cfg["ig_steps"],
            "compile_s_approx": t_i["first_call_s"] - t_i["median_s"],
            "images_per_s": xi.shape[0] / t_i["median_s"],
        },
    }
    log(
        f"  grad2d {out['grad2d']['images_per_s']:.1f} img/s, "
        f"IG {out['integrated_gradients']['images_per_s']:.2f} img/s"
    )
    return out


# --------------------------------------------------------------------------------- report


def _ms(s: float) -> str:
    if s < 0.01:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def _x(r: float) -> str:
    return f"{r:.2f}×"


def markdown_table(r: dict[str, Any]) -> str:
    """The results as one Markdown table (plus a header line on the machine)."""
    mi = r["machine"]
    rows = []
    net = r["results"].get("network")
    if net:
        tb, sw = net["time_batched"], net["stepwise"]
        shape = f"B={net['batch']}, T={net['num_steps']}"
        rows.append(
            (
                f"1. Shallow SNN forward ({shape})",
                f"{_ms(tb['forward']['median_s'])} ({tb['forward']['images_per_s']:.0f} img/s)",
                f"stepwise: {_ms(sw['forward']['median_s'])} "
                f"({sw['forward']['images_per_s']:.0f} img/s)",
                _x(net["speedup_forward"]),
                f"{tb['forward']['compile_s']:.2f} / {sw['forward']['compile_s']:.2f}",
                f"max abs logit diff {net['max_abs_logit_diff']:.1e}",
            )
        )
        rows.append(
            (
                f"1. Shallow SNN train step, Adam ({shape})",
                f"{_ms(tb['train_step']['median_s'])} "
                f"({tb['train_step']['images_per_s']:.0f} img/s)",
                f"stepwise: {_ms(sw['train_step']['median_s'])} "
                f"({sw['train_step']['images_per_s']:.0f} img/s)",
                _x(net["speedup_train_step"]),
                f"{tb['train_step']['compile_s']:.2f} / {sw['train_step']['compile_s']:.2f}",
                "",
            )
        )
    lif = r["results"].get("lif")
    if lif:
        for res in (lif, lif["small"]):
            rows.append(
                (
                    f"2. LIF layer {res['shape']}",
                    f"`lif_scan` jit: {_ms(res['lif_scan_jit']['median_s'])}",
                    "Python loop of jitted `lif_step`: "
                    f"{_ms(res['python_loop_jit_step']['median_s'])}",
                    _x(res["speedup"]),
                    f"{res['lif_scan_jit']['compile_s']:.2f} / "
                    f"{res['python_loop_jit_step']['compile_s']:.2f}",
                    f"{res['spike_mismatches']} spike mismatches, "
                    f"max abs ΔU {res['max_abs_membrane_diff']:.1e}",
                )
            )
    la = r["results"].get("lasso")
    if la:
        dims = f"N={la['N']}, m={la['m']}, C={la['C']}"
        mp = la["mu_path"]
        for key, label in (
            ("scalar", f"μ={la['mu']:g}"),
            ("path", f"μ path {mp[0]:g}..{mp[-1]:g} ({len(mp)} values)"),
        ):
            res = la[key]
            ml = res["mu_lasso"]
            peer = res.get("slsqp")
            rows.append(
                (
                    f"3. `mu_lasso` {label}, {dims}",
                    f"{_ms(ml['median_s'])} (≤{ml['max_iterations']} it.)",
                    f"SciPy SLSQP per class: {_ms(peer['median_s'])}" if peer else "—",
                    _x(res["speedup"]) if peer else "—",
                    f"~{ml['compile_s_approx']:.2f} (first call − median)",
                    (
                        f"objective rel. diff {res['min_rel_objective_diff']:+.1e}.."
                        f"{res['max_rel_objective_diff']:+.1e}"
                    )
                    if peer
                    else "",
                )
            )
    ins = r["results"].get("insdel")
    if ins:
        for mode in ("insertion", "deletion"):
            res = ins[mode]
            small = res[f"vectorized_chunk{ins['small_chunk_size']}"]
            rows.append(
                (
                    f"4. {mode}, {ins['images']} images, step {ins['step']} "
                    f"({ins['points_per_curve']} points)",
                    f"{_ms(res['vectorized']['median_s'])} "
                    f"({res['vectorized']['images_per_s']:.1f} img/s); "
                    f"chunk_size={ins['small_chunk_size']}: {_ms(small['median_s'])}",
                    f"RISE-style loop: {_ms(res['rise_loop']['median_s'])} "
                    f"({res['rise_loop']['images_per_s']:.1f} img/s)",
                    _x(res["speedup"]),
                    f"~{res['vectorized']['compile_s_approx']:.2f} / {ins['peer_compile_s']:.2f}",
                    f"max abs ΔAUC {res['max_abs_auc_diff']:.1e}",
                )
            )
    bl = r["results"].get("baselines")
    if bl:
        g, i = bl["grad2d"], bl["integrated_gradients"]
        rows.append(
            (
                f"5. `grad2d` ({g['images']} images)",
                f"{g['images_per_s']:.1f} img/s ({_ms(g['median_s'])})",
                "—",
                "—",
                f"~{g['compile_s_approx']:.2f}",
                "",
            )
        )
        rows.append(
            (
                f"5. `integrated_gradients`, n_steps={i['n_steps']} ({i['images']} images)",
                f"{i['images_per_s']:.2f} img/s ({_ms(i['median_s'])})",
                "—",
                "—",
                f"~{i['compile_s_approx']:.2f}",
                "",
            )
        )
    head = (
        "| benchmark | svebi_jax (median) | alternative (median) | speed-up | compile (s) "
        "| agreement |\n|---|---|---|---|---|---|"
    )
    body = "\n".join("| " + " | ".join(row) + " |" for row in rows)
    info = (
        f"JAX {mi['jax']}, backend `{mi['backend']}` ({mi['device_kind']}), "
        f"{mi['cpu_count']} CPUs"
        + (f" ({mi['cpu_model']})" if mi.get("cpu_model") else "")
        + f"; load average at start {mi['loadavg_start']}, at end {mi.get('loadavg_end')}"
        + ("; **quick run**" if r["config"]["quick"] else "")
        + "."
    )
    return f"{info}\n\n{head}\n{body}\n"


# ----------------------------------------------------------------------------------- main


SECTIONS = ("network", "lif", "lasso", "insdel", "baselines")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes/repeats (< 2 min)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON output (default benchmarks/results.json, or results_quick.json with --quick)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        help="run only these sections",
    )
    args = parser.parse_args(argv)
    out_path = args.out or HERE / ("results_quick.json" if args.quick else "results.json")
    cfg = settings(args.quick)

    info = machine_info()
    load = info["loadavg_start"]
    if load and info["cpu_count"] and load[0] > 0.5 * info["cpu_count"]:
        log(
            f"WARNING: load average {load} on {info['cpu_count']} CPUs: other processes are "
            "running, timings will be slower and noisier than on an idle machine."
        )
    log(
        f"svebi_jax benchmarks ({'quick' if args.quick else 'full'}), JAX {jax.__version__}, "
        f"{jax.default_backend()}"
    )
    t_start = time.perf_counter()

    ds = data.load("mnist-5k")
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(ds.labels))
    images, labels = ds.images[perm], ds.labels[perm]
    apply_fn, params = make_model(cfg["num_steps"])

    results: dict[str, Any] = {}
    sections_load = {}
    jobs = {
        "network": lambda: bench_network(
            apply_fn, params, images[: cfg["batch"]] * GAIN, labels[: cfg["batch"]], cfg
        ),
        "lif": lambda: bench_lif(cfg),
        "lasso": lambda: bench_lasso(
            apply_fn, params, images[: cfg["lasso_n"]], labels[: cfg["lasso_n"]], cfg
        ),
        "insdel": lambda: bench_insdel(apply_fn, params, images[: cfg["insdel_images"]], cfg),
        "baselines": lambda: bench_baselines(apply_fn, params, images, cfg),
    }
    for name in SECTIONS:
        if name not in args.only:
            continue
        sections_load[name] = loadavg()
        log(f"[{name}] load average {sections_load[name]}")
        t0 = time.perf_counter()
        results[name] = jobs[name]()
        results[name]["section_wall_s"] = time.perf_counter() - t0

    info["loadavg_end"] = loadavg()
    info["loadavg_per_section_start"] = sections_load
    report = {
        "machine": info,
        "config": {**cfg, "quick": args.quick, "gain": GAIN, "sections": list(args.only)},
        "results": results,
        "total_wall_s": time.perf_counter() - t_start,
    }
    table = markdown_table(report)
    report["table_markdown"] = table
    print(table)
    log(f"total {report['total_wall_s']:.0f} s")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {out_path}")
    return report


if __name__ == "__main__":
    main()
