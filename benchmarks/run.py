"""Benchmarks of svebi_jax against the straightforward alternatives.

Usage::

    python benchmarks/run.py [--quick] [--out benchmarks/results.json] [--only SECTION ...]
        [--markdown FILE] [--check]

Prints one Markdown table (a row per measurement, see ``harness.Row``) and writes a JSON file
with the raw numbers of every section, the rows, and the machine's description (JAX version,
backend, device kind, CPU count, load average).

Sections (``sections/<name>.py``, each ``run(ctx) -> (details, rows)``):

1. ``network``: shallow SNN forward and train step (B = 100, T = 10), time-batched vs stepwise.
2. ``lif``: LIF layer ``[T=10, B=100, 24, 24, 12]``, ``lif_scan`` under jit vs a Python loop of
   jitted single steps.
3. ``lasso``: ``mu_lasso`` on real responses (N = 5000, m = 76, C = 10), scalar μ and the μ path
   1..50, vs SciPy SLSQP per class.
4. ``insdel``: insertion/deletion for 200 images, step 28, vectorised vs a RISE-style loop.
5. ``baselines``: Grad2D and IG (50 path points), images/s.
6. ``peers_network``: shallow SNN training epoch and inference vs snnTorch, SVGG19 spike-map
   collection (64², 224², T = 25) vs a per-timestep PyTorch loop, peak memory and GFLOP/s
   against the measured matmul peak (``bench`` extra; ``--quick``: agreement checks only).

Against the tools users would pick instead (each skipped, with a note, when its peer is not
installed: ``pip install -e ".[bench]"``):

- ``lasso_peers``: ``mu_lasso`` vs SPAMS (``spams-bin``, the authors' solver), the rows of
  ``bench_lasso_peers.py``.
- ``insdel_peers``: insertion + deletion vs RISE's batched ``CausalMetric`` in PyTorch on a
  torch copy of the shallow SNN (``peers_torch_rise.py``).
- ``peers_network``: snnTorch training/inference, the PyTorch SVGG19 loop (section 6).

Every row carries a roofline figure where its work has a FLOP model: achieved GFLOP/s against
the machine's peak, the best float32 matmul of JAX and torch (``harness.matmul_peak``),
measured once at the start of the run. ``--markdown FILE`` writes the table with its header
(date, machine, load average, peak, the command) ready to paste into the README; ``--check``
exits with status 1 when a section's ``ok`` agreement check failed.

A new comparison (another peer library) is one more module with the same ``run``, listed in
:data:`SECTIONS`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # harness, peers, sections

import jax  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402
from harness import (  # noqa: E402
    HERE,
    Context,
    loadavg,
    log,
    machine_info,
    markdown_table,
    matmul_peak,
    settings,
)
from sections import (  # noqa: E402
    baselines,
    insdel,
    insdel_peers,
    lasso,
    lasso_peers,
    lif,
    network,
    peers_network,
)

import svebi_jax as sv  # noqa: E402
from svebi_jax import data  # noqa: E402

#: Section name -> ``run(ctx) -> (details, rows)``, in table order.
SECTIONS = {
    "network": network.run,
    "peers_network": peers_network.run,
    "lif": lif.run,
    "lasso": lasso.run,
    "lasso_peers": lasso_peers.run,
    "insdel": insdel.run,
    "insdel_peers": insdel_peers.run,
    "baselines": baselines.run,
}


def make_model(num_steps: int):
    """``(model, apply_fn, params)``: the untrained shallow SNN every section shares."""
    model = sv.ShallowSNN(rngs=nnx.Rngs(0), config=sv.SNNConfig(num_steps=num_steps))
    return (model, *sv.functional(model))


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
        choices=tuple(SECTIONS),
        default=list(SECTIONS),
        help="run only these sections",
    )
    parser.add_argument(
        "--markdown",
        type=Path,
        default=None,
        help="also write the Markdown table (with date, machine, load, command) to this file",
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if a section's agreement check failed"
    )
    args = parser.parse_args(argv)
    command = " ".join(["python benchmarks/run.py", *(sys.argv[1:] if argv is None else argv)])
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
    perm = np.random.default_rng(0).permutation(len(ds.labels))
    model, apply_fn, params = make_model(cfg["num_steps"])
    peak = matmul_peak(cfg["matmul_n"])
    info["peak"] = peak
    log(f"peak (best f32 matmul, n={peak['n']}): {peak['gflops']:.1f} GFLOP/s")
    ctx = Context(cfg, apply_fn, params, ds.images[perm], ds.labels[perm], model, peak)

    results: dict[str, Any] = {}
    rows = []
    sections_load = {}
    for name, run in SECTIONS.items():
        if name not in args.only:
            continue
        sections_load[name] = loadavg()
        log(f"[{name}] load average {sections_load[name]}")
        t0 = time.perf_counter()
        details, section_rows = run(ctx)
        results[name] = details
        results[name]["section_wall_s"] = time.perf_counter() - t0
        rows += section_rows

    info["loadavg_end"] = loadavg()
    info["loadavg_per_section_start"] = sections_load
    report = {
        "machine": info,
        "config": {**cfg, "quick": args.quick, "sections": list(args.only)},
        "results": results,
        "rows": rows,
        "total_wall_s": time.perf_counter() - t_start,
    }
    table = markdown_table(rows, info, quick=args.quick, command=command)
    report["table_markdown"] = table
    report["command"] = command
    failed = [n for n, d in results.items() if d.get("ok") is False]
    report["failed_checks"] = failed
    print(table)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table)
        log(f"wrote {args.markdown}")
    log(f"total {report['total_wall_s']:.0f} s")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {out_path}")
    if failed:
        log(f"AGREEMENT CHECK FAILED in {failed}")
    return report


if __name__ == "__main__":
    _report = main()
    sys.exit(1 if "--check" in sys.argv[1:] and _report["failed_checks"] else 0)
