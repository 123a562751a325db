"""Throughput of the streaming folder source (decode + resize to 224² + scale) vs the peers.

Usage::

    python benchmarks/stream_folder.py [--images 320] [--photo-size 800] [--workers 0 2]
                                       [--repeats 3]
                                       [--out benchmarks/results_stream.json]

Writes a folder of real-photograph JPEGs (``make_photo_folder``, ``photo-size`` px square,
quality 90: about the pixel count of an AwA2 photo), then times one pass of batches of 8 at
224x224 for

* ``svebi_jax`` ``FolderSource.batches`` with each ``--workers`` count (prefetch 2, two reader
  threads per process), exact and with JPEG draft decoding;
* the serial loop that :func:`svebi_jax.data.load_image_folder` runs (no prefetch, one core);
* ``torch.utils.data.DataLoader`` with the same Pillow decode per item and the same worker
  counts (what a PyTorch user would write; skipped when torch is missing).

Start-up is reported apart from the steady-state rate: "first batch" is the time from
creating the iterator to the first batch (grain spawns its workers, which import the package;
torch forks), and img/s counts only the batches after the first ``1 + 2·workers``. CPU ms/img
(user + system time of the process and its workers, from psutil, per image) measures the cost
independently of the load: on a busy machine compare it rather than img/s. The load average
is recorded around each pass. Rows run in interleaved rounds (``--repeats``), each round
starting one row later, and the median per row is reported: on a shared machine compare rows
of one run (ratios).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

BATCH = 8
SIZE = 224


def _loadavg() -> list[float]:
    return [float(x) for x in pathlib.Path("/proc/loadavg").read_text().split()[:3]]


def _cpu_by_process() -> dict[int, float]:
    """User + system CPU seconds of this process and each live child (worker), by pid."""
    import psutil

    me = psutil.Process()
    out = {}
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
            out[proc.pid] = t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return out


def _cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    # processes alive at both moments: this one and this pass's workers (the previous pass's
    # workers may still be exiting at ``before``)
    return sum(after[pid] - before[pid] for pid in after if pid in before)


def _time_pass(make_iter, warmup: int) -> dict:
    """One pass: time to the first batch, then img/s and CPU ms/img over the batches after
    ``warmup`` (CPU of this process and its workers; independent of the machine's load)."""
    load0 = _loadavg()
    t0 = time.perf_counter()
    it = make_iter()
    first = None
    n = 0
    t1 = c1 = None
    c2: dict[int, float] = {}
    for k, batch in enumerate(it):
        if k == 0:
            first = time.perf_counter() - t0
        if k == warmup - 1:
            t1, c1 = time.perf_counter(), _cpu_by_process()
        elif k >= warmup:
            n += int(np.shape(batch[0])[0])  # every row's batch is (images [B, ...], ...)
            c2.update(_cpu_by_process())  # last reading of each process: workers may exit
            # once their share is decoded, before the main process has consumed it
    t2 = time.perf_counter()
    if hasattr(it, "close"):
        it.close()
    return {
        "img_per_s": n / (t2 - t1),
        "cpu_ms_per_img": 1000 * _cpu_delta(c1, c2) / n,
        "first_batch_s": first,
        "images_timed": n,
        "warmup_batches": warmup,
        "loadavg_before": load0,
        "loadavg_after": _loadavg(),
    }


class _TorchFolder:
    """The map-style dataset a PyTorch user writes: Pillow decode + resize per item."""

    def __init__(self, files):
        self.files = files

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        from svebi_jax.data.folder import read_image

        return read_image(self.files[i], SIZE).astype(np.float32) / np.float32(255.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=320)
    p.add_argument("--photo-size", type=int, default=800)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="benchmarks/results_stream.json")
    args = p.parse_args()

    from svebi_jax.data import FolderSource
    from svebi_jax.data.folder import read_image
    from svebi_jax.data.sample_photos import make_photo_folder

    tmp = tempfile.mkdtemp(prefix="svebi_stream_bench_")
    per_class = max(1, args.images // 4)
    root = make_photo_folder(tmp, classes=4, per_class=per_class, size=args.photo_size, seed=0)
    src = FolderSource(root, image_size=SIZE)
    mean_kb = np.mean([os.path.getsize(f) for f in src.files]) / 1024
    configs = []

    def serial():
        for s in range(0, len(src) - BATCH + 1, BATCH):
            pixels = np.stack([read_image(f, SIZE) for f in src.files[s : s + BATCH]])
            yield pixels.astype(np.float32) / np.float32(255.0), None

    configs.append(("serial loop (load_image_folder's)", serial, 1))
    for workers in args.workers:
        for draft in (False, True):
            name = f"svebi_jax FolderSource, {workers} workers" + (", draft" if draft else "")
            s = FolderSource(root, image_size=SIZE, draft=draft)
            configs.append(
                (
                    name,
                    lambda s=s, w=workers: s.batches(
                        BATCH, seed=0, num_workers=w, shard=(0, 1), drop_remainder=True
                    ),
                    1 + 2 * workers,  # every worker has started and delivered before timing
                )
            )
    try:
        import torch
        import torch.utils.data as tud

        for workers in args.workers:

            def torch_pass(w=workers):
                loader = tud.DataLoader(
                    _TorchFolder(src.files),
                    batch_size=BATCH,
                    shuffle=True,
                    num_workers=w,
                    drop_last=True,
                    generator=torch.Generator().manual_seed(0),
                )
                return ((images, None) for images in loader)

            configs.append((f"torch DataLoader, {workers} workers", torch_pass, 1 + 2 * workers))
    except ImportError:
        pass

    # Interleaved rounds (each round starts one row later), median per row: on a shared
    # machine the load drifts within minutes, so rows measured side by side compare best.
    runs: dict[str, list[dict]] = {name: [] for name, _, _ in configs}
    for r in range(args.repeats):
        for k in range(len(configs)):
            name, make_iter, warmup = configs[(k + r) % len(configs)]
            runs[name].append(_time_pass(make_iter, warmup))
            print(f"round {r}: {name}: {runs[name][-1]['img_per_s']:.1f} img/s", file=sys.stderr)
    rows = {
        name: {
            "img_per_s_median": statistics.median(x["img_per_s"] for x in rs),
            "img_per_s_all": [round(x["img_per_s"], 2) for x in rs],
            "cpu_ms_per_img_median": statistics.median(x["cpu_ms_per_img"] for x in rs),
            "first_batch_s_median": statistics.median(x["first_batch_s"] for x in rs),
            "loadavg_1min_range": [
                min(x["loadavg_before"][0] for x in rs),
                max(x["loadavg_after"][0] for x in rs),
            ],
        }
        for name, rs in runs.items()
    }

    result = {
        "setting": {
            "images": len(src),
            "photo_px": args.photo_size,
            "mean_jpeg_kb": round(mean_kb, 1),
            "out_px": SIZE,
            "batch": BATCH,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "repeats": args.repeats,
        },
        "rows": rows,
    }
    base = rows["serial loop (load_image_folder's)"]["img_per_s_median"]
    print(
        "| pipeline | img/s (median) | vs serial | CPU ms/img | first batch (s) | 1-min load avg |"
    )
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        lo, hi = r["loadavg_1min_range"]
        print(
            f"| {name} | {r['img_per_s_median']:.1f} | {r['img_per_s_median'] / base:.2f}x | "
            f"{r['cpu_ms_per_img_median']:.1f} | {r['first_batch_s_median']:.2f} | "
            f"{lo:.1f}-{hi:.1f} |"
        )
    pathlib.Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
