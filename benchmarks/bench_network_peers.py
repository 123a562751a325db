"""svebi_jax's networks against the PyTorch tools users would pick, side by side in one run.

Rows (``--rows``; all by default):

- ``shallow_train_epoch``: one training epoch of the shallow SNN on the 5,000 ``mnist-5k``
  digits (T = 10, batch 100, Adam 4e-3 with half-epoch warm-up and cosine decay, ±1 px
  shifts: ``svebi_jax.train.TrainConfig``'s defaults) against snnTorch (``Leaky``, subtract
  reset, the same architecture, conv1 recomputed per step as in its tutorials, the same
  optimizer, schedule, data order and batch). Both start from the same weights; agreement is
  the test accuracy of each after its epochs (real MNIST test set when available).
- ``shallow_inference``: logits of 1,000 digits (T = 10, batch 1,000), the same weights on
  both sides; agreement: equal predictions, max |Δ logit| and equal conv spikes.
- ``svgg19_maps_64`` / ``svgg19_maps_224``: the time-mean spike maps of all 16 conv layers of
  SVGG19 (T = 25, β = 0.95, the authors' subtract-then-leak reset) for batch 4 at 64² and
  batch 2 at 224², against a per-timestep PyTorch loop with the authors' semantics
  (``peers_torch.SVGG19Loop``); shared He-normal weights; agreement: equal map entries.

Method: every measurement runs in a fresh subprocess per side (so each side's memory is its
own, and neither framework's thread pool or allocator disturbs the other), and the two sides
alternate (svebi, peer, svebi, peer, ...) for ``--rounds`` rounds. Inside a subprocess the
first call is a warm-up (it includes JAX's compilation, reported as ``compile_s`` = first −
median) and the timed calls follow. Reported: medians over all timed calls of all rounds,
the spread (min–max), the ratio ``peer / svebi`` (> 1: svebi_jax is faster), achieved GFLOP/s
from a FLOP count of the work each side executes, against the machine's measured peak (the
best of a 2048² float32 matmul in JAX and in torch), and memory: the process's RSS with
weights and inputs loaded (the idle baseline), its peak over the run (``VmHWM``) and the
peak above the baseline, during the warm-up (compilation included) and during the timed
calls. The load average is recorded at the start of every row and at the end.

Usage::

    python benchmarks/bench_network_peers.py                 # everything (~25 min, 2 cores)
    python benchmarks/bench_network_peers.py --quick         # smaller, < 5 min
    python benchmarks/bench_network_peers.py --rows shallow_inference --threads 1

Prints one JSON row per line (``{name, svebi_s, peer_s, ratio, agreement, notes, ...}``)
and a Markdown table; ``--out`` writes all of it to a JSON file. Needs the ``bench`` extra
(torch, snntorch).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
ROWS = ("shallow_train_epoch", "shallow_inference", "svgg19_maps_64", "svgg19_maps_224")
MNIST_TEST = ROOT.parent / "shared" / "data" / "mnist"


# ----------------------------------------------------------------------------- settings


def settings(quick: bool) -> dict:
    if quick:
        return {
            "rounds": 2,
            "train_epochs": 1,
            "infer_repeats": 3,
            "vgg": {"svgg19_maps_64": (32, 2, 25, 1), "svgg19_maps_224": (64, 1, 25, 1)},
            "rows": ("shallow_train_epoch", "shallow_inference", "svgg19_maps_64"),
        }
    return {
        "rounds": 2,
        "train_epochs": 1,
        "infer_repeats": 5,
        # row: (image size, batch, T, timed calls per subprocess)
        "vgg": {"svgg19_maps_64": (64, 4, 25, 2), "svgg19_maps_224": (224, 2, 25, 1)},
        # cheapest first, so that an interrupted run still has the main rows
        "rows": ("shallow_inference", "shallow_train_epoch", "svgg19_maps_224", "svgg19_maps_64"),
    }


# ----------------------------------------------------------------------------- FLOP counts


def shallow_flops(num_steps: int, *, conv1_per_step: bool) -> dict:
    """FLOPs per image of the shallow SNN: forward and a training step (forward + backward).

    Multiply-adds count 2. Backward of a layer = its input gradient + its weight gradient (2×
    forward), except conv1, whose input (the image) needs no gradient (1× forward).
    """
    conv1 = 2 * 24 * 24 * 12 * 25
    rest = 2 * (8 * 8 * 64 * 300 + 1024 * 128 + 128 * 10)
    c1_fwd = conv1 * (num_steps if conv1_per_step else 1)
    fwd = c1_fwd + num_steps * rest
    return {"forward": fwd, "train": fwd + c1_fwd + 2 * num_steps * rest}


def vgg_flops(size: int, num_steps: int, *, conv1_once: bool) -> int:
    """Forward FLOPs per image of SVGG19 (16 convs + 3 fc layers) over ``T`` steps."""
    widths, blocks = (64, 128, 256, 512, 512), (2, 2, 4, 4, 4)
    total, c_in, hw = 0, 3, size
    first = None
    for n, w in zip(blocks, widths, strict=True):
        for _ in range(n):
            f = 2 * hw * hw * c_in * w * 9
            first = f if first is None else first
            total += f
            c_in = w
        hw //= 2
    flat = c_in * hw * hw
    fc = 2 * (flat * 4096 + 4096 * 4096 + 4096 * 50)
    per_step = total + fc
    return num_steps * per_step - ((num_steps - 1) * first if conv1_once else 0)


# ----------------------------------------------------------------------------- memory


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> None:
    """Resets VmHWM to the current RSS (Linux ``clear_refs`` 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


class Memory:
    """RSS bookkeeping of a worker: idle baseline, warm-up peak, timed peak (bytes)."""

    def __init__(self):
        self.base = self.warm = self.run = 0

    def baseline(self):
        import ctypes
        import gc

        gc.collect()
        try:  # hand freed heap pages (model construction, weight conversion) back to the OS
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:  # pragma: no cover - not glibc
            pass
        self.base = _status("VmRSS")
        _reset_peak()

    def after_warmup(self):
        self.warm = _status("VmHWM")
        _reset_peak()

    def after_run(self):
        self.run = _status("VmHWM")

    def as_dict(self) -> dict:
        mb = 2**20
        return {
            "rss_base_MB": round(self.base / mb),
            "peak_MB": round(max(self.warm, self.run) / mb),
            "above_base_warmup_MB": round((self.warm - self.base) / mb),
            "above_base_run_MB": round((self.run - self.base) / mb),
        }


def _timed(fn, repeats: int, mem: Memory) -> tuple[float, list[float]]:
    """Warm-up call (returned), then ``repeats`` timed calls."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    mem.after_warmup()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    mem.after_run()
    return first, times


# ----------------------------------------------------------------------------- workers


def _set_threads(threads: int) -> None:
    if threads == 1:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def _mnist():
    from svebi_jax import data

    train = data.load("mnist-5k")
    test = None
    if (MNIST_TEST / "t10k-images-idx3-ubyte.gz").exists():
        test = data.load_idx_dir(MNIST_TEST, "test")
    return train, test


def worker_shallow(row: str, side: str, tmp: pathlib.Path, cfg: dict, threads: int) -> dict:
    """Training epochs or inference of the shallow SNN on one side."""
    init = dict(np.load(tmp / "shallow_init.npz"))
    params = {k.split("/")[0]: {} for k in init}
    for k, v in init.items():
        layer, leaf = k.split("/")
        params[layer][leaf] = v
    train_ds, test_ds = _mnist()
    mem = Memory()
    out = {}
    if side == "svebi":
        import jax
        import jax.numpy as jnp
        from flax import nnx

        import svebi_jax as sv
        from svebi_jax import data, train

        model = sv.ShallowSNN(rngs=nnx.Rngs(0))
        state = nnx.state(model, nnx.Param)
        nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, params))
        nnx.update(model, state)
        apply_fn, p = sv.functional(model)
        if row == "shallow_inference":
            x = jnp.asarray(train_ds.images[:1000])
            fwd = jax.jit(lambda p, x: apply_fn(p, x).logits)
            mem.baseline()
            first, times = _timed(
                lambda: jax.block_until_ready(fwd(p, x)), cfg["infer_repeats"], mem
            )
            logits = np.asarray(fwd(p, x))
            spikes = apply_fn(p, x[:100], record="mean").spikes
            np.savez(
                tmp / f"{row}_{side}.npz",
                logits=logits,
                **{k: np.asarray(v) for k, v in spikes.items()},
            )
        else:
            tc = train.TrainConfig()
            steps = len(train_ds.labels) // tc.batch_size
            optimizer = train.make_optimizer(tc, steps)
            step_fn = train.make_train_step(apply_fn, optimizer)
            p = jax.tree.map(jnp.array, p)
            state = {"p": p, "opt": optimizer.init(p), "k": 0, "epoch": 0}
            aug = jax.random.fold_in(jax.random.key(tc.seed), 0x5EB1)

            def epoch():
                for images, labels in data.batches(
                    train_ds, tc.batch_size, seed=tc.seed + state["epoch"], drop_remainder=True
                ):
                    images = train.random_shift(jax.random.fold_in(aug, state["k"]), images, 1)
                    state["p"], state["opt"], loss, _ = step_fn(
                        state["p"], state["opt"], images, labels
                    )
                    state["k"] += 1
                jax.block_until_ready(loss)
                state["epoch"] += 1

            mem.baseline()
            first, times = _timed(epoch, cfg["train_epochs"], mem)
            if test_ds is not None:
                out["test_accuracy"], _ = train.evaluate(apply_fn, state["p"], test_ds, 500)
    else:
        import peers_torch as P
        import torch

        torch.set_num_threads(threads)
        net = P.shallow_from_params(params)
        if row == "shallow_inference":
            x = torch.from_numpy(np.ascontiguousarray(train_ds.images[:1000].transpose(0, 3, 1, 2)))

            def fwd():
                with torch.no_grad():
                    return net(x)

            mem.baseline()
            first, times = _timed(fwd, cfg["infer_repeats"], mem)
            with torch.no_grad():
                logits = fwd().numpy()
                _, rec = net(x[:100], record=True)
            maps = {k: v.mean(0).permute(0, 2, 3, 1).numpy() for k, v in rec.items()}
            np.savez(tmp / f"{row}_{side}.npz", logits=logits, **maps)
        else:
            steps = len(train_ds.labels) // 100
            opt = torch.optim.Adam(net.parameters(), lr=4e-3)
            total = 10 * steps

            def schedule(k):
                return P.warmup_cosine(k, peak=4e-3, warmup=steps // 2, total=total)

            state = {"k": 0, "epoch": 0}

            def epoch():
                _, state["k"] = P.train_epoch(
                    net,
                    opt,
                    train_ds.images,
                    train_ds.labels,
                    batch_size=100,
                    seed=state["epoch"],
                    step0=state["k"],
                    schedule=schedule,
                )
                state["epoch"] += 1

            mem.baseline()
            first, times = _timed(epoch, cfg["train_epochs"], mem)
            if test_ds is not None:
                with torch.no_grad():
                    xt = torch.from_numpy(
                        np.ascontiguousarray(test_ds.images.transpose(0, 3, 1, 2))
                    )
                    preds = torch.cat(
                        [net(xt[i : i + 500]).argmax(1) for i in range(0, len(xt), 500)]
                    )
                out["test_accuracy"] = float((preds.numpy() == test_ds.labels).mean())
    out.update(first_s=first, times=times, memory=mem.as_dict())
    return out


def _vgg_images(size: int, batch: int) -> np.ndarray:
    """Real photographs (scikit-image) resized to ``size``, ImageNet-normalized, NHWC."""
    from svebi_jax.models.vgg import IMAGENET_MEAN, IMAGENET_STD

    try:
        import skimage.data
        from skimage.transform import resize

        names = ("astronaut", "coffee", "chelsea", "rocket", "cat")
        pics = [resize(getattr(skimage.data, n)(), (size, size), anti_aliasing=True) for n in names]
        imgs = np.stack([pics[i % len(pics)] for i in range(batch)]).astype(np.float32)
    except ImportError:  # pragma: no cover
        imgs = np.random.default_rng(0).uniform(0, 1, (batch, size, size, 3)).astype(np.float32)
    return ((imgs - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)).astype(np.float32)


def worker_vgg(row: str, side: str, tmp: pathlib.Path, cfg: dict, threads: int) -> dict:
    """SVGG19 time-mean spike maps on one side."""
    size, batch, num_steps, repeats = cfg["vgg"][row]
    images = _vgg_images(size, batch)
    state_dict = dict(np.load(tmp / f"{row}_weights.npz"))
    mem = Memory()
    if side == "svebi":
        import jax
        import jax.numpy as jnp
        from flax import nnx

        import svebi_jax as sv
        from svebi_jax.models import vgg

        snn = sv.SNNConfig(num_steps=num_steps, beta=0.95, reset="subtract_then_leak")
        model = vgg.SVGG19(
            input_shape=(size, size, 3), num_classes=50, config=snn, rngs=nnx.Rngs(0)
        )
        vgg.load_torchvision_vgg19(model, state_dict, skip=())
        del state_dict
        apply_fn, params = sv.functional(model)
        fn = jax.jit(lambda p, x: apply_fn(p, x, record="mean"))
        x = jnp.asarray(images)
        result = {}

        def run():
            result["out"] = jax.block_until_ready(fn(params, x))

        mem.baseline()
        first, times = _timed(run, repeats, mem)
        o = result.pop("out")
        logits = np.asarray(o.logits)
        maps = [np.asarray(o.spikes[n]) for n in model.conv_layer_names]
    else:
        import peers_torch as P
        import torch

        torch.set_num_threads(threads)
        net = P.SVGG19Loop(final_map=(size // 32, size // 32), num_steps=num_steps)
        net.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()})
        del state_dict
        result = {}

        def run():
            result["out"] = P.collect_vgg_maps(net, images)

        mem.baseline()
        first, times = _timed(run, repeats, mem)
        logits, maps = result.pop("out")
    np.savez(tmp / f"{row}_{side}.npz", logits=logits, **{f"m{i}": m for i, m in enumerate(maps)})
    return {"first_s": first, "times": times, "memory": mem.as_dict()}


def worker(row: str, side: str, tmp: str, quick: bool, threads: int) -> None:
    sys.path.insert(0, str(HERE))
    _set_threads(threads)
    if row == "matmul_peak":
        import torch

        torch.set_num_threads(threads)
        print("RESULT " + json.dumps(matmul_peak()), flush=True)
        return
    cfg = settings(quick)
    fn = worker_vgg if row.startswith("svgg19") else worker_shallow
    out = fn(row, side, pathlib.Path(tmp), cfg, threads)
    print("RESULT " + json.dumps(out), flush=True)


# ----------------------------------------------------------------------------- parent


def _loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def matmul_peak() -> dict:
    """Best GFLOP/s of a 2048² float32 matmul in JAX and in torch (the machine's roofline,
    measured in a worker with the rows' thread setting)."""
    import jax
    import jax.numpy as jnp
    import torch

    n = 2048
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    jax.block_until_ready(f(a))
    best_j = min(_clock(lambda: jax.block_until_ready(f(a))) for _ in range(10))
    t = torch.ones(n, n)
    torch.mm(t, t)
    best_t = min(_clock(lambda: torch.mm(t, t)) for _ in range(10))
    flops = 2 * n**3
    return {
        "jax_gflops": round(flops / best_j / 1e9, 1),
        "torch_gflops": round(flops / best_t / 1e9, 1),
    }


def _clock(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def prepare(row: str, tmp: pathlib.Path, cfg: dict) -> None:
    """Writes the shared weights a row's workers load."""
    sys.path.insert(0, str(HERE))
    if row.startswith("shallow"):
        if (tmp / "shallow_init.npz").exists():
            return
        import jax
        from flax import nnx

        import svebi_jax as sv

        w = sv.ShallowSNN(rngs=nnx.Rngs(0)).weights()
        flat = {f"{k}/{leaf}": np.asarray(v) for k, d in w.items() for leaf, v in d.items()}
        np.savez(tmp / "shallow_init.npz", **flat)
        del jax
    else:
        import peers_torch as P

        size = cfg["vgg"][row][0]
        net = P.init_vgg_for_spiking(P.SVGG19Loop(final_map=(size // 32, size // 32)), seed=0)
        np.savez(tmp / f"{row}_weights.npz", **P.vgg_state_dict(net))


def run_side(row: str, side: str, tmp: pathlib.Path, quick: bool, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", row, side, str(tmp), "--threads", str(threads)]
    if quick:
        cmd.append("--quick")
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE), os.environ.get("PYTHONPATH", "")]),
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(
            f"{row}/{side} worker failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        )
    return json.loads(lines[-1][len("RESULT ") :])


def agreement(row: str, tmp: pathlib.Path, sides: dict, cfg: dict) -> dict:
    a = np.load(tmp / f"{row}_svebi.npz") if (tmp / f"{row}_svebi.npz").exists() else None
    b = np.load(tmp / f"{row}_peer.npz") if (tmp / f"{row}_peer.npz").exists() else None
    if row == "shallow_train_epoch":
        return {
            "test_accuracy_svebi": sides["svebi"][-1].get("test_accuracy"),
            "test_accuracy_peer": sides["peer"][-1].get("test_accuracy"),
        }
    out = {
        "equal_predictions": float(np.mean(a["logits"].argmax(-1) == b["logits"].argmax(-1))),
        "max_abs_logit_diff": float(np.abs(a["logits"] - b["logits"]).max()),
    }
    keys = [k for k in a.files if k != "logits"]
    # Time-mean maps are counts / T: compare the counts (the two sides divide differently).
    t = cfg["vgg"][row][2] if row.startswith("svgg19") else 10
    equal = [float(np.mean(np.round(a[k] * t) == np.round(b[k] * t))) for k in keys]
    out["equal_spike_count_fraction_min"] = min(equal)
    # Per layer, input to output: float rounding (XLA vs oneDNN summation order) flips a few
    # threshold crossings, and the flips cascade through deep networks over T steps; the
    # first layers are exact and the spike rates stay equal.
    out["equal_spike_count_fraction_per_layer"] = [round(v, 4) for v in equal]
    out["spike_rate_abs_diff_max"] = float(max(abs(a[k].mean() - b[k].mean()) for k in keys))
    out["max_abs_map_diff"] = float(max(np.abs(a[k] - b[k]).max() for k in keys))
    out["spike_rate_svebi"] = float(np.mean([a[k].mean() for k in keys]))
    return out


def summarize(row: str, sides: dict, cfg: dict, peak: dict, agree: dict, load: list) -> dict:
    med, spread, first = {}, {}, {}
    for side, runs in sides.items():
        times = [t for r in runs for t in r["times"]]
        med[side] = statistics.median(times)
        spread[side] = [round(min(times), 3), round(max(times), 3)]
        first[side] = statistics.median(r["first_s"] for r in runs) - med[side]
    if row == "shallow_train_epoch":
        n = 5000 // 100 * 100
        fl = {s: n * shallow_flops(10, conv1_per_step=(s == "peer"))["train"] for s in med}
        unit = "epoch"
    elif row == "shallow_inference":
        fl = {s: 1000 * shallow_flops(10, conv1_per_step=(s == "peer"))["forward"] for s in med}
        unit = "1,000 images"
    else:
        size, batch, num_steps, _ = cfg["vgg"][row]
        fl = {s: batch * vgg_flops(size, num_steps, conv1_once=(s == "svebi")) for s in med}
        unit = f"batch of {batch} at {size}², T = {num_steps}"
    roof = max(peak.values())
    return {
        "name": row,
        "svebi_s": round(med["svebi"], 3),
        "peer_s": round(med["peer"], 3),
        "ratio": round(med["peer"] / med["svebi"], 2),
        "agreement": agree,
        "notes": f"median seconds per {unit}; warm-up excluded",
        "spread_s": spread,
        "compile_or_warmup_extra_s": {s: round(v, 2) for s, v in first.items()},
        "gflops_per_s": {s: round(fl[s] / med[s] / 1e9, 1) for s in med},
        "fraction_of_peak": {s: round(fl[s] / med[s] / 1e9 / roof, 2) for s in med},
        "memory": {s: [r["memory"] for r in runs] for s, runs in sides.items()},
        "timed_calls": {s: sum(len(r["times"]) for r in runs) for s, runs in sides.items()},
        "loadavg_start": load,
    }


def markdown(rows: list[dict], peak: dict) -> str:
    lines = [
        "| row | svebi_jax (s) | peer (s) | ratio peer/svebi | svebi GFLOP/s (of peak) "
        "| peer GFLOP/s | peak RSS above baseline, svebi / peer (MB) | agreement |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mem = {s: max(m["above_base_run_MB"] for m in ms) for s, ms in r["memory"].items()}
        lo = {s: v[0] for s, v in r["spread_s"].items()}
        hi = {s: v[1] for s, v in r["spread_s"].items()}
        lines.append(
            f"| {r['name']} | {r['svebi_s']} ({lo['svebi']}–{hi['svebi']}) "
            f"| {r['peer_s']} ({lo['peer']}–{hi['peer']}) | {r['ratio']}× "
            f"| {r['gflops_per_s']['svebi']} ({r['fraction_of_peak']['svebi']:.0%}) "
            f"| {r['gflops_per_s']['peer']} | {mem['svebi']} / {mem['peer']} "
            f"| {json.dumps(r['agreement'])} |"
        )
    lines.append(
        f"\nMachine peak measured in this run (2048² float32 matmul): JAX {peak['jax_gflops']}, "
        f"torch {peak['torch_gflops']} GFLOP/s."
    )
    return "\n".join(lines)


def run_rows(
    *,
    quick: bool,
    rows=None,
    rounds: int | None = None,
    threads: int = 2,
    echo: bool = False,
) -> dict:
    """Measures ``rows`` (default: the settings' rows), the sides alternated per round.

    Returns:
      ``{"machine_peak", "threads", "rows": [summarize(...) per row]}``.
    """
    cfg = settings(quick)
    rows = rows or cfg["rows"]
    rounds = rounds or cfg["rounds"]
    # The roofline under the workers' own thread setting (a pinned subprocess).
    peak = run_side("matmul_peak", "both", pathlib.Path(tempfile.gettempdir()), quick, threads)
    head = {"machine_peak": peak, "loadavg": _loadavg(), "threads": threads}
    if echo:
        print(json.dumps(head), flush=True)
    results = []
    with tempfile.TemporaryDirectory() as d:
        tmp = pathlib.Path(d)
        for row in rows:
            load = _loadavg()
            prepare(row, tmp, cfg)
            sides = {"svebi": [], "peer": []}
            for _ in range(rounds):
                for side in ("svebi", "peer"):
                    sides[side].append(run_side(row, side, tmp, quick, threads))
            result = summarize(row, sides, cfg, peak, agreement(row, tmp, sides, cfg), load)
            results.append(result)
            if echo:
                print(json.dumps(result), flush=True)
            else:
                print(
                    f"  {row}: svebi {result['svebi_s']} s, peer {result['peer_s']} s, "
                    f"ratio {result['ratio']}, load {load}\nROW {json.dumps(result)}",
                    file=sys.stderr,
                    flush=True,
                )
    return {**head, "rows": results, "loadavg_end": _loadavg()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rows", nargs="*", choices=ROWS)
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--threads", type=int, default=2, help="1: pin each worker to one core")
    ap.add_argument("--out", type=pathlib.Path)
    ap.add_argument("--worker", nargs=3, metavar=("ROW", "SIDE", "TMP"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(*args.worker, quick=args.quick, threads=args.threads)
        return 0
    out = run_rows(
        quick=args.quick, rows=args.rows, rounds=args.rounds, threads=args.threads, echo=True
    )
    results, peak = out["rows"], out["machine_peak"]
    table = markdown(results, peak)
    print(table)
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "machine_peak": peak,
                    "threads": args.threads,
                    "loadavg_end": _loadavg(),
                    "rows": results,
                    "table": table,
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
