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
    """One line of the results table (see the module docstring)."""

    name: str
    svebi_s: float
    peer_s: float | None
    ratio: float | None
    agreement: str
    notes: str


def row(
    name: str, svebi_s: float, peer_s: float | None = None, *, agreement: str = "", notes: str = ""
) -> Row:
    """A table row; ``ratio = peer_s / svebi_s`` (``None`` without a peer)."""
    ratio = None if peer_s is None else peer_s / svebi_s
    return Row(
        name=name,
        svebi_s=float(svebi_s),
        peer_s=None if peer_s is None else float(peer_s),
        ratio=ratio,
        agreement=agreement,
        notes=notes,
    )


@dataclasses.dataclass
class Context:
    """What every section gets: sizes, the shared model and data."""

    cfg: dict[str, Any]
    apply_fn: Callable
    params: Any
    images: np.ndarray  # [N, 28, 28, 1] mnist-5k digits, shuffled with seed 0
    labels: np.ndarray  # [N]


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


def markdown_table(rows: list[Row], machine: dict[str, Any], *, quick: bool) -> str:
    """The rows as one Markdown table, with a header line on the machine."""
    head = (
        "| benchmark | svebi_jax (median) | alternative (median) | speed-up | agreement | notes |"
        "\n|---|---|---|---|---|---|"
    )
    body = "\n".join(
        "| "
        + " | ".join(
            (
                r["name"],
                _ms(r["svebi_s"]),
                "—" if r["peer_s"] is None else _ms(r["peer_s"]),
                "—" if r["ratio"] is None else f"{r['ratio']:.2f}×",
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
    return f"{info}\n\n{head}\n{body}\n"
