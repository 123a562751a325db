"""Probe: how much an event-driven convolution could save on SVGG19-like layers (this CPU).

Not part of svebi_jax (it has no native kernels). Compiles ``event_conv.c`` with the system C
compiler, and times it against XLA's dense convolution (the one svebi_jax runs) on 3x3,
stride-1, padding-1 layers of SVGG19's shapes fed binary spike maps at given firing rates,
both on one pinned core, calls alternated, the median of ``--repeats``. Checks that both give
the same currents (max |difference| relative to max |current|).

Run: ``python benchmarks/probes/event_conv.py`` (needs ``cc``; about a minute).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import pathlib
import statistics
import subprocess
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
TS = 8  # the output tile of event_conv.c

# (name, H = W, C_in, C_out): SVGG19 layers at 224² input (conv2_2, conv3_2, conv4_2, conv5_2)
LAYERS = (
    ("conv2_2", 112, 128, 128),
    ("conv3_2", 56, 256, 256),
    ("conv4_2", 28, 512, 512),
    ("conv5_2", 14, 512, 512),
)


def build(tmp: pathlib.Path) -> ctypes.CDLL:
    lib = tmp / "libevent_conv.so"
    cmd = [
        "cc",
        "-O3",
        "-march=native",
        "-shared",
        "-fPIC",
        str(HERE / "event_conv.c"),
        "-o",
        str(lib),
    ]
    subprocess.run(cmd, check=True)
    return ctypes.CDLL(str(lib))


def measure(lib, conv, x, w, repeats: int) -> dict:
    """Median seconds of XLA's dense convolution and of the event-driven kernel (alternated),
    and their largest difference relative to the largest current."""
    import jax.numpy as jnp
    import numpy as np

    batch, hw, _, c_in = x.shape
    c_out = w.shape[-1]
    y = np.empty((batch, hw, hw, c_out), np.float32)
    scratch = np.empty(c_in * (2 + (TS + 2) ** 2) + 1, np.int32)
    tile = np.empty(TS * TS * c_out, np.float32)
    f32, i32 = ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_int32)
    args = (
        x.ctypes.data_as(f32),
        w.ctypes.data_as(f32),
        y.ctypes.data_as(f32),
        scratch.ctypes.data_as(i32),
        tile.ctypes.data_as(f32),
        batch,
        hw,
        hw,
        c_in,
        c_out,
    )
    xj, wj = jnp.asarray(x), jnp.asarray(w)
    sides = {
        "dense": lambda: conv(xj, wj).block_until_ready(),
        "event": lambda: lib.event_conv3x3(*args),
    }
    sides["event"]()
    ref = np.asarray(conv(xj, wj))
    rel = float(np.abs(y - ref).max() / np.abs(ref).max())
    if not rel <= 1e-4:  # the two must compute the same currents (sums in another order)
        raise SystemExit(f"event-driven and dense convolutions disagree: {rel:.1e} relative")
    times = {k: [] for k in sides}
    for _ in range(repeats):
        for side, fn in sides.items():
            t0 = time.perf_counter()
            fn()
            times[side].append(time.perf_counter() - t0)
    return {**{f"{k}_s": statistics.median(v) for k, v in times.items()}, "max_rel_diff": rel}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", type=float, nargs="*", default=[0.05, 0.10, 0.25])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=pathlib.Path)
    args = ap.parse_args(argv)
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, before JAX

    import jax
    import numpy as np

    rows = []
    load = list(os.getloadavg())
    with tempfile.TemporaryDirectory() as d:
        lib = build(pathlib.Path(d))
        conv = jax.jit(
            lambda x, w: jax.lax.conv_general_dilated(
                x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
        )
        rng = np.random.default_rng(0)
        for name, hw, c_in, c_out in LAYERS:
            w = (rng.standard_normal((3, 3, c_in, c_out)) / np.sqrt(9 * c_in)).astype(np.float32)
            for rate in args.rates:
                x = (rng.random((args.batch, hw, hw, c_in)) < rate).astype(np.float32)
                m = measure(lib, conv, x, w, args.repeats)
                flops = 2 * args.batch * hw * hw * 9 * c_in * c_out
                row = {
                    "layer": name,
                    "hw": hw,
                    "c_in": c_in,
                    "c_out": c_out,
                    "rate": rate,
                    **m,
                    "speedup": m["dense_s"] / m["event_s"],
                    "dense_gflops": flops / m["dense_s"] / 1e9,
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    print("| layer | rate | XLA dense (ms) | event-driven (ms) | speed-up | max rel. diff |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['layer']} ({r['hw']}², {r['c_in']}→{r['c_out']}) | {r['rate']:.0%} | "
            f"{r['dense_s'] * 1e3:.1f} | {r['event_s'] * 1e3:.1f} | {r['speedup']:.1f}× | "
            f"{r['max_rel_diff']:.0e} |"
        )
    if args.out:
        out = {
            "loadavg_start": load,
            "loadavg_end": list(os.getloadavg()),
            "batch": args.batch,
            "repeats": args.repeats,
            "rows": rows,
        }
        args.out.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
