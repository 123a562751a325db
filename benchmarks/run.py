"""Benchmarks of svebi_jax against the straightforward alternatives.

Usage::

    python benchmarks/run.py [--quick] [--out benchmarks/results.json] [--only SECTION ...]

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
from harness import HERE, Context, loadavg, log, machine_info, markdown_table, settings  # noqa: E402
from sections import baselines, insdel, lasso, lif, network, peers_network  # noqa: E402

import svebi_jax as sv  # noqa: E402
from svebi_jax import data  # noqa: E402

#: Section name -> ``run(ctx) -> (details, rows)``, in table order.
SECTIONS = {
    "network": network.run,
    "lif": lif.run,
    "lasso": lasso.run,
    "insdel": insdel.run,
    "baselines": baselines.run,
    "peers_network": peers_network.run,
}


def make_model(num_steps: int):
    model = sv.ShallowSNN(rngs=nnx.Rngs(0), config=sv.SNNConfig(num_steps=num_steps))
    return sv.functional(model)


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
    perm = np.random.default_rng(0).permutation(len(ds.labels))
    apply_fn, params = make_model(cfg["num_steps"])
    ctx = Context(cfg, apply_fn, params, ds.images[perm], ds.labels[perm])

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
    table = markdown_table(rows, info, quick=args.quick)
    report["table_markdown"] = table
    print(table)
    log(f"total {report['total_wall_s']:.0f} s")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {out_path}")
    return report


if __name__ == "__main__":
    main()
