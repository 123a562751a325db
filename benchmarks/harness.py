"""The benchmark harness: timing, machine description, and the row every benchmark returns.

A **row** is the unit of the results table: a small dict

    {"name": str, "svebi_s": float, "peer_s": float | None, "ratio": float | None,
     "agreement": str, "notes": str}

built with :func:`row` (``ratio = peer_s / svebi_s``: above 1 means svebi_jax is faster).
A benchmark section is a function ``run(ctx) -> (details, rows)``: ``details`` is the full
JSON record of what it measured (every timing, every check), ``rows`` its lines of the table.
A peer comparison (e.g. snnTorch, spams, a PyTorch loop) is one more such function.

Every timing warms up first (compilation excluded and reported separately: ahead-of-time
``lower().compile()`` for the functions jitted by the script, "first call" minus median for
library functions that jit internally), then reports the median of several repeats, each
ended by ``jax.block_until_ready``.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

import jax
import numpy as np

import svebi_jax as sv

HERE = Path(__file__).resolve().parent

# Input gain for the randomly initialised network: MNIST intensities in [0, 1] times 3 make
# every layer of the untrained shallow SNN spike (used in all sections, for comparability).
GAIN = 3.0


class Row(TypedDict):
    """One line of the results table (see the module docstring).

    ``gflops``: the FLOP model of the row's work divided by ``svebi_s``, in GFLOP/s (``None``
    for rows without a model); ``peak_frac``: that against the machine's measured peak
    (:func:`matmul_peak`); ``ceiling``: ``ratio / peak_frac``, the speed-up svebi_jax would
    have if it ran the FLOP model at that peak (dense arithmetic's limit for the row: above
    it only doing less work helps, e.g. skipping silent spikes).
    """

    name: str
    svebi_s: float
    peer_s: float | None
    ratio: float | None
    agreement: str
    notes: str
    gflops: float | None
    peak_frac: float | None
    ceiling: float | None


def row(
    name: str,
    svebi_s: float,
    peer_s: float | None = None,
    *,
    agreement: str = "",
    notes: str = "",
    flops: float | None = None,
    peak_gflops: float | None = None,
) -> Row:
    """A table row; ``ratio = peer_s / svebi_s`` (``None`` without a peer).

    With ``flops`` (a FLOP model of the work of one svebi_jax call) the row gets its roofline
    figures: ``gflops = flops / svebi_s / 1e9`` and, with ``peak_gflops``, ``peak_frac =
    gflops / peak_gflops``.
    """
    ratio = None if peer_s is None else peer_s / svebi_s
    gflops = None if flops is None else flops / svebi_s / 1e9
    frac, ceiling = _roof(gflops, peak_gflops, ratio)
    return Row(
        name=name,
        svebi_s=float(svebi_s),
        peer_s=None if peer_s is None else float(peer_s),
        ratio=ratio,
        agreement=agreement,
        notes=notes,
        gflops=gflops,
        peak_frac=frac,
        ceiling=ceiling,
    )


def _roof(gflops: float | None, peak_gflops: float | None, ratio: float | None):
    """``(peak_frac, ceiling)`` of a row (see :class:`Row`), ``None`` where undefined."""
    frac = gflops / peak_gflops if gflops is not None and peak_gflops else None
    return frac, (ratio / frac if ratio is not None and frac else None)


@dataclasses.dataclass
class Context:
    """What every section gets: sizes, the shared model and data."""

    cfg: dict[str, Any]
    apply_fn: Callable
    params: Any
    images: np.ndarray  # [N, 28, 28, 1] mnist-5k digits, shuffled with seed 0
    labels: np.ndarray  # [N]
    model: Any = None  # the SpikingNetwork behind apply_fn (layers, config, weights())
    peak: dict[str, Any] | None = None  # matmul_peak(): the roofline's roof, measured once


def settings(quick: bool) -> dict[str, Any]:
    """Sizes and repeat counts of the full and the ``--quick`` run."""
    if quick:
        return {
            "quick": True,
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
            # Peer sections (side_by_side: alternating rounds).
            "peer_repeats": 1,
            "peer_min_repeats": 1,
            "peer_max_time_s": 0.0,
            "insdel_peer_images": 4,
            "insdel_peer_step": 112,  # 8 curve points: the agreement check, cheaply
            "insdel_peer_batches": [4],
            "insdel_peer_threads": [1],  # 2 OpenMP threads can be ~50x slower under load
            "insdel_peer_tol": {"substrate": 1e-5, "auc": 1e-3, "mean_auc": 1e-4},
            "lasso_peer_rows": ["small"],  # path and big: the full run, bench_lasso_peers --check
            "matmul_n": 1024,
        }
    return {
        "quick": False,
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
        "peer_repeats": 7,
        "peer_min_repeats": 3,
        "peer_max_time_s": 60.0,
        "insdel_peer_images": 200,
        "insdel_peer_step": 28,  # RISE's MNIST protocol: 29 curve points on 28x28
        "insdel_peer_batches": [100],
        "insdel_peer_threads": [None, 1],
        "insdel_peer_tol": {"substrate": 1e-5, "auc": 1e-3, "mean_auc": 1e-4},
        "lasso_peer_rows": ["small", "path", "big"],
        "matmul_n": 4096,
    }


# --------------------------------------------------------------------------------- timing


def block(x):
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
        block(fn())
        if i == 0:
            first = time.perf_counter() - t0
    times: list[float] = []
    while len(times) < max(repeats, 1):
        if len(times) >= min_repeats and sum(times) > max_time_s:
            break
        t0 = time.perf_counter()
        block(fn())
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


def _quartiles(times: list[float]) -> tuple[float, float]:
    if len(times) < 2:
        return times[0], times[0]
    q = statistics.quantiles(times, n=4, method="inclusive")
    return q[0], q[2]


def _summary(wall: list[float], cpu: list[float]) -> dict[str, Any]:
    q1, q3 = _quartiles(wall)
    return {
        "median_s": statistics.median(wall),
        "min_s": min(wall),
        "max_s": max(wall),
        "q1_s": q1,
        "q3_s": q3,
        "cpu_median_s": statistics.median(cpu),
        "repeats": len(wall),
    }


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """``(fn(), wall seconds, process CPU seconds)``, blocked until ready."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = block(fn())
    return out, time.perf_counter() - t0, time.process_time() - c0


#: A call this fast (warm-up, seconds) is timed in runs of ``CHEAP_RUN`` after ``CHEAP_WARM``
#: untimed calls, and also after pauses (``PAUSE_S``, ``PAUSE_TRIALS`` times; see side_by_side).
CHEAP_CALL_S = 0.05
CHEAP_RUN = 5
CHEAP_WARM = 3
PAUSE_S = 0.2
PAUSE_TRIALS = 15


def after_pause(
    fns: dict[str, Callable[[], Any]], *, pause_s: float = PAUSE_S, trials: int = PAUSE_TRIALS
) -> dict[str, dict[str, Any]]:
    """Wall seconds of single calls, each after ``pause_s`` of idle time (a script that calls
    it once between other work), the functions ``fns`` taking turns: per name
    ``{"median_s", "min_s", "max_s", "trials", "pause_s"}``."""
    walls: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(trials):
        for name, fn in fns.items():
            time.sleep(pause_s)
            walls[name].append(timed(fn)[1])
    return {
        name: {
            "median_s": statistics.median(w),
            "min_s": min(w),
            "max_s": max(w),
            "trials": trials,
            "pause_s": pause_s,
        }
        for name, w in walls.items()
    }


def side_by_side(
    ours: Callable[[], Any],
    peer_variants: dict[str, Callable[[], Any]],
    *,
    repeats: int,
    min_repeats: int,
    max_time_s: float,
    pause_trials: int = PAUSE_TRIALS,
) -> dict[str, Any]:
    """svebi_jax against a peer, timed in alternating rounds of one run.

    Warm-up first: ``ours`` is called twice untimed (the first call, compilation included, is
    reported as ``first_call_s``; ``compile_s_approx = first call - median``); each peer
    variant (e.g. thread counts, batch sizes: the peer's best settings) is called once (then,
    for a call under ``CHEAP_CALL_S``, the median of a run of ``CHEAP_RUN`` calls, as it will
    be timed; under a second, the best of three calls) and the fastest variant is kept. Then
    rounds, each timing both sides back to back with the order alternating between rounds
    (wall clock, and process CPU time as a load-robust second opinion), until each side has
    ``repeats`` timed calls, stopping early after ``max_time_s`` once ``min_repeats`` are done.

    Cheap calls (warm-up under ``CHEAP_CALL_S``) are timed in runs of ``CHEAP_RUN`` per side
    and round, after ``CHEAP_WARM`` untimed calls: on a small machine both libraries need a
    few calls after a switch to reach their steady speed (the other side's worker threads
    spin for a while after it returns, OpenMP's spin-wait in SPAMS, XLA's thread pool; this
    side's are asleep). Measured on 2 cores, per position after five SPAMS calls, svebi_jax's
    default ``mu_lasso`` at N = 5000 took 2.1, 1.6, 1.4, 1.4, 1.2, 1.1 ms; SPAMS after five
    svebi_jax calls 1.5, 1.2, 1.2, 1.2 ms. Each side is thus timed in its steady state, as a
    user's loop of calls runs it; the alternation of the rounds still spreads load changes
    over both sides. What a single call costs after idle time is measured separately, for
    both sides (``after_pause``: ``pause_trials`` calls, each after ``PAUSE_S`` seconds; 0:
    not measured).

    Returns:
      ``{"svebi": stats, "peer": stats, "out_svebi": ..., "out_peer": ...}``; stats hold the
      median, min, max, quartiles, the CPU-time median and the number of timed calls (for
      cheap calls also ``after_pause``); the peer's also its chosen ``variant`` and every
      variant's warm-up time.
    """
    out_ours, first_s, _ = timed(ours)
    _, warm_s, _ = timed(ours)
    warm_peer = {}
    out_peer = None
    for name, fn in peer_variants.items():
        out, t, _ = timed(fn)
        if t < CHEAP_CALL_S:  # as it will be timed: the median of a run after that call
            t = statistics.median(timed(fn)[1] for _ in range(CHEAP_RUN))
        elif t < 1.0:  # the best of three calls, so that one slow call does not decide
            t = min(t, *(timed(fn)[1] for _ in range(2)))
        warm_peer[name] = t
        if out_peer is None:
            out_peer = out
    best = min(warm_peer, key=warm_peer.get)
    peer = peer_variants[best]
    walls: dict[str, list[float]] = {"svebi": [], "peer": []}
    cpus: dict[str, list[float]] = {"svebi": [], "peer": []}
    cheap = max(warm_s, warm_peer[best]) < CHEAP_CALL_S
    run = CHEAP_RUN if cheap else 1
    t_start = time.perf_counter()
    r = 0
    while len(walls["svebi"]) < repeats:
        done = len(walls["svebi"])
        if done >= min_repeats and time.perf_counter() - t_start > max_time_s:
            break
        order = (
            (("svebi", ours), ("peer", peer)) if r % 2 == 0 else (("peer", peer), ("svebi", ours))
        )
        for side, fn in order:
            if cheap:  # untimed: the other side's threads settle, this side's wake up
                for _ in range(CHEAP_WARM):
                    block(fn())
            for _ in range(min(run, repeats - done)):
                out, w, c = timed(fn)
                walls[side].append(w)
                cpus[side].append(c)
            if side == "svebi":
                out_ours = out
            else:
                out_peer = out
        r += 1
    svebi = _summary(walls["svebi"], cpus["svebi"])
    svebi["first_call_s"] = first_s
    svebi["second_call_s"] = warm_s
    svebi["compile_s_approx"] = max(first_s - svebi["median_s"], 0.0)
    peer_stats = _summary(walls["peer"], cpus["peer"])
    if cheap and pause_trials:  # single calls after idle time, the sides taking turns
        paused = after_pause({"svebi": ours, "peer": peer}, trials=pause_trials)
        svebi["after_pause"], peer_stats["after_pause"] = paused["svebi"], paused["peer"]
    peer_stats["variant"] = best
    peer_stats["warmup_s_per_variant"] = warm_peer
    return {"svebi": svebi, "peer": peer_stats, "out_svebi": out_ours, "out_peer": out_peer}


# ------------------------------------------------------------------------------- roofline


def matmul_peak(n: int = 4096, repeats: int = 5) -> dict[str, Any]:
    """This machine's roof: the best GFLOP/s of an ``n x n`` float32 matmul, JAX and torch.

    Each side runs ``repeats`` timed products after a warm-up (``jax.jit(a @ a)``; and
    ``torch.mm`` under ``inference_mode`` when torch is installed); each side's figure is
    ``2 n^3 / median``, and the peak is the better of the two (both call an optimized GEMM, so
    this is as close to the machine's limit as a user's code gets).

    Returns:
      ``{"n", "gflops", "jax_gflops", "torch_gflops" (or None), "loadavg"}``.
    """
    a = jax.random.normal(jax.random.key(0), (n, n), jax.numpy.float32)
    f = jax.jit(lambda a: a @ a)
    block(f(a))
    jax_s = statistics.median(timed(lambda: f(a))[1] for _ in range(repeats))
    torch_gflops = None
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        at = torch.from_numpy(np.array(a))
        with torch.inference_mode():
            torch.mm(at, at)
            torch_s = statistics.median(timed(lambda: torch.mm(at, at))[1] for _ in range(repeats))
        torch_gflops = 2 * n**3 / torch_s / 1e9
    jax_gflops = 2 * n**3 / jax_s / 1e9
    return {
        "n": n,
        "gflops": max(jax_gflops, torch_gflops or 0.0),
        "jax_gflops": jax_gflops,
        "torch_gflops": torch_gflops,
        "loadavg": loadavg(),
    }


def snn_forward_flops(layers, input_shape: tuple[int, int, int], num_steps: int) -> float:
    """FLOPs of one image's forward pass through a spiking network (multiply-adds count 2).

    The synaptic layers only (the LIF updates, pooling and softmax are a few FLOPs per
    element, memory-bound, and left out): a convolution producing ``[H', W', C']`` from
    ``C_in`` channels with a ``k x k`` kernel costs :math:`2 H' W' C' k^2 C_{in}` per step, a
    dense layer :math:`2 F_{in} F_{out}`, times ``T`` steps, except the layers before the
    first LIF (their input is static: computed once, as both the time-batched runner and the
    torch peer do).
    """
    from svebi_jax import layers as L

    flops = 0.0
    steps = 1
    for spec, c_in, geo in L._walk(tuple(layers), input_shape):
        if isinstance(spec, L.LIF):
            steps = num_steps
        elif isinstance(spec, L.Conv):
            k = spec.kernel_size
            per_step = 2.0 * geo.height * geo.width * geo.channels * k * k * c_in / spec.groups
            flops += per_step * steps
        elif isinstance(spec, L.Dense):
            flops += 2.0 * c_in * spec.features * steps
    return flops


def forward_flops(ctx: Context) -> float | None:
    """FLOPs of one image's forward pass through the run's network (``None`` without it)."""
    m = ctx.model
    if m is None:
        return None
    return snn_forward_flops(m.layers, m.input_shape, m.config.num_steps)


def with_roofline(r: Row, flops: float | None, ctx: Context, model: str) -> Row:
    """``r`` with its roofline figures for a work of ``flops`` (described by ``model``)."""
    if flops is None:
        return r
    peak = (ctx.peak or {}).get("gflops")
    gflops = flops / r["svebi_s"] / 1e9
    notes = f"{r['notes']}; FLOP model: {model} = {flops / 1e9:.3g} GFLOP".lstrip("; ")
    frac, ceiling = _roof(gflops, peak, r.get("ratio"))
    return {**r, "gflops": gflops, "peak_frac": frac, "ceiling": ceiling, "notes": notes}


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


def capture(fn: Callable[[], Any]) -> tuple[Callable[[], Any], dict[str, Any]]:
    """Wraps ``fn`` so that its last output is kept in ``box["out"]``."""
    box: dict[str, Any] = {}

    def wrapped():
        box["out"] = fn()
        return box["out"]

    return wrapped, box


# --------------------------------------------------------------------------------- report


def _ms(s: float) -> str:
    if s < 0.01:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def _roofline(r: Row) -> str:
    g = r.get("gflops")
    if g is None:
        return "—"
    frac = r.get("peak_frac")
    return f"{g:.1f}" + ("" if frac is None else f" ({frac:.0%})")


def markdown_table(
    rows: list[Row], machine: dict[str, Any], *, quick: bool, command: str | None = None
) -> str:
    """The rows as one Markdown table, with a header line on the machine."""
    head = (
        "| benchmark | svebi_jax (median) | alternative (median) | speed-up | "
        "svebi_jax GFLOP/s (of peak) | speed-up at peak | agreement | notes |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    body = "\n".join(
        "| "
        + " | ".join(
            (
                r["name"],
                _ms(r["svebi_s"]),
                "—" if r["peer_s"] is None else _ms(r["peer_s"]),
                "—" if r["ratio"] is None else f"{r['ratio']:.2f}×",
                _roofline(r),
                "—" if r.get("ceiling") is None else f"{r['ceiling']:.1f}×",
                r["agreement"],
                r["notes"],
            )
        )
        + " |"
        for r in rows
    )
    mi = machine
    info = (
        f"JAX {mi['jax']}, backend `{mi['backend']}` ({mi['device_kind']}), "
        f"{mi['cpu_count']} CPUs"
        + (f" ({mi['cpu_model']})" if mi.get("cpu_model") else "")
        + f"; load average at start {mi['loadavg_start']}, at end {mi.get('loadavg_end')}"
        + ("; **quick run**" if quick else "")
        + "."
    )
    peak = mi.get("peak")
    if peak:
        tg = peak.get("torch_gflops")
        torch_part = "" if tg is None else f", torch {tg:.0f}"
        info += (
            f" Peak (best f32 {peak['n']}² matmul): {peak['gflops']:.0f} GFLOP/s "
            f"(JAX {peak['jax_gflops']:.0f}{torch_part})."
        )
    date = mi.get("date")
    if date:
        info = f"{date}: {info}"
    if command:
        info += f"\n\nCommand: `{command}`"
    return f"{info}\n\n{head}\n{body}\n"
