"""Section 2: ``lif_scan`` under jit vs a Python loop of jitted single steps."""

from __future__ import annotations

import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import peers
from harness import Context, Row, aot_compile, block, log, row, timer

import svebi_jax as sv


def _bench_lif_shape(shape: tuple[int, ...], cfg) -> dict[str, Any]:
    currents = 0.3 + 0.5 * jax.random.normal(jax.random.key(0), shape, jnp.float32)
    currents = block(currents)
    beta = 0.95
    scan, scan_compile = aot_compile(jax.jit(functools.partial(sv.lif_scan, beta=beta)), currents)
    t_scan = timer(cfg)(lambda: scan(currents), cfg["repeats"])
    step_fn = peers.make_lif_step(beta=beta)
    t0 = time.perf_counter()
    block(peers.naive_lif_loop(step_fn, currents[:1]))
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


def rows(lif: dict[str, Any]) -> list[Row]:
    out = []
    for res in (lif, lif["small"]):
        out.append(
            row(
                f"2. LIF layer {res['shape']}",
                res["lif_scan_jit"]["median_s"],
                res["python_loop_jit_step"]["median_s"],
                agreement=f"{res['spike_mismatches']} spike mismatches, "
                f"max abs ΔU {res['max_abs_membrane_diff']:.1e}",
                notes="peer: Python loop of jitted `lif_step`; compile "
                f"{res['lif_scan_jit']['compile_s']:.2f} / "
                f"{res['python_loop_jit_step']['compile_s']:.2f} s",
            )
        )
    return out


def run(ctx: Context) -> tuple[dict[str, Any], list[Row]]:
    details = bench_lif(ctx.cfg)
    return details, rows(details)
