"""Section: svebi_jax's networks against their PyTorch peers (issue 10, network rows).

Full run (``python benchmarks/run.py --only peers_network``): the four rows of
:mod:`bench_network_peers` — shallow SNN training epoch and inference against snnTorch,
SVGG19 spike-map collection at 64² (batch 4) and 224² (batch 2), T = 25, against the
per-timestep PyTorch loop — each side in its own subprocess (its own peak memory), the sides
alternated, warm-up excluded, medians and spreads, achieved GFLOP/s against the machine's
measured matmul peak, peak RSS above each worker's idle baseline.

Quick run (``--quick``): agreement only, in this process, on small deterministic inputs
(seconds, not a timing): the same weights on both sides must give

- shallow SNN inference (32 real digits, T = 10) vs snnTorch: equal predictions, logits to
  1e-4, equal spike counts of both conv layers;
- one training step's loss and gradients vs snnTorch (``detach_reset=True``, snnTorch's
  reset gradient; 2×2 average pooling, since the frameworks route max pooling's gradient
  differently on tied spikes) to 1e-4 relative;
- SVGG19 (32², reduced widths, T = 4, batch 2) time-mean spike maps vs the PyTorch loop:
  equal spike counts.

A disagreement raises ``AssertionError`` (so ``run.py --quick`` fails). Without torch/snntorch
(the ``bench`` extra) the section returns no rows and says so.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from harness import Context, Row, log, row

#: Quick SVGG19 check: image size, batch, T, block widths, hidden width.
QUICK_VGG = dict(size=32, batch=2, num_steps=4, widths=(8, 8, 16, 16, 16), hidden=32)
#: Threads per worker in the full run: each side pinned to one core. On a shared machine a
#: pinned single thread is robust to other load, while two OpenMP threads on two busy cores
#: spin-wait (torch slowed ~20x here at a load average of 9). ``bench_network_peers.py
#: --threads 2`` measures both cores on an idle machine.
PEER_THREADS = 1
#: Tolerances of the quick agreement checks.
LOGIT_ATOL = 1e-4
GRAD_RTOL = 1e-4


def _have_peers() -> bool:
    try:
        import snntorch  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


# ----------------------------------------------------------------------------- quick


def _shallow_models(detach_reset: bool, pool: str = "max"):
    import jax
    import jax.numpy as jnp
    import peers_torch as P
    from flax import nnx

    import svebi_jax as sv

    model = sv.ShallowSNN(
        rngs=nnx.Rngs(0),
        config=sv.SNNConfig(num_steps=10, detach_reset=detach_reset),
        pool=pool,
    )
    apply_fn, params = sv.functional(model)
    weights = jax.tree.map(np.asarray, model.weights())
    net = P.shallow_from_params(weights, pool=pool)
    return apply_fn, jax.tree.map(jnp.asarray, params), net


def quick_shallow(images: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Inference and one training step of the shallow SNN, svebi_jax vs snnTorch."""
    import jax
    import optax
    import torch
    import torch.nn.functional as F

    x = images.astype(np.float32)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    out: dict[str, Any] = {"images": int(x.shape[0])}

    # Inference: logits and spike counts.
    apply_fn, params, net = _shallow_models(detach_reset=False)
    t0 = time.perf_counter()
    res = jax.jit(lambda p, x: apply_fn(p, x, record="mean"))(params, x)
    logits = np.asarray(res.logits)
    out["svebi_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch.no_grad():
        peer_logits, rec = net(xt, record=True)
    out["peer_s"] = time.perf_counter() - t0
    peer_logits = peer_logits.numpy()
    counts_equal = []
    for name, trains in rec.items():
        peer_counts = trains.sum(0).permute(0, 2, 3, 1).numpy()
        ours = np.round(np.asarray(res.spikes[name]) * 10)
        counts_equal.append(float(np.mean(ours == peer_counts)))
    out["inference"] = {
        "equal_predictions": float(np.mean(logits.argmax(-1) == peer_logits.argmax(-1))),
        "max_abs_logit_diff": float(np.max(np.abs(logits - peer_logits))),
        "equal_spike_count_fraction_min": min(counts_equal),
        "spike_rate": float(np.mean([np.mean(v) for v in res.spikes.values()])),
    }

    # One training step: loss and gradients (snnTorch detaches the reset's gradient). Average
    # pooling: max pooling's gradient on tied spikes follows each framework's own rule.
    apply_fn, params, net = _shallow_models(detach_reset=True, pool="avg")

    def loss_fn(p):
        z = apply_fn(p, x).logits
        return optax.softmax_cross_entropy_with_integer_labels(z, labels).mean()

    loss, grads = jax.jit(jax.value_and_grad(loss_fn))(params)
    peer_loss = F.cross_entropy(net(xt), torch.from_numpy(labels.astype(np.int64)))
    peer_loss.backward()
    peer_loss = peer_loss.detach()
    pairs = {
        "conv1": (grads["conv1"]["kernel"], net.conv1.weight.grad.numpy().transpose(2, 3, 1, 0)),
        "conv2": (grads["conv2"]["kernel"], net.conv2.weight.grad.numpy().transpose(2, 3, 1, 0)),
        "fc2": (grads["fc2"]["kernel"], net.fc2.weight.grad.numpy().T),
    }
    rel = {
        k: float(np.max(np.abs(np.asarray(a) - b)) / max(np.max(np.abs(b)), 1e-12))
        for k, (a, b) in pairs.items()
    }
    out["train_step"] = {
        "loss_diff": float(abs(float(loss) - float(peer_loss))),
        "max_rel_grad_diff": rel,
    }
    return out


def quick_vgg() -> dict[str, Any]:
    """Time-mean spike maps of a reduced SVGG19, svebi_jax vs the per-timestep torch loop."""
    import jax
    import peers_torch as P
    from bench_network_peers import _vgg_images
    from flax import nnx

    import svebi_jax as sv
    from svebi_jax.models import vgg

    q = QUICK_VGG
    size, n, t = q["size"], q["batch"], q["num_steps"]
    net = P.init_vgg_for_spiking(
        P.SVGG19Loop(
            widths=q["widths"],
            hidden=q["hidden"],
            final_map=(size // 32, size // 32),
            num_steps=t,
        ),
        seed=0,
    )
    model = vgg.SVGG19(
        input_shape=(size, size, 3),
        num_classes=50,
        widths=q["widths"],
        hidden=q["hidden"],
        config=sv.SNNConfig(num_steps=t, beta=0.95, reset="subtract_then_leak"),
        rngs=nnx.Rngs(0),
    )
    vgg.load_torchvision_vgg19(model, P.vgg_state_dict(net), skip=())
    apply_fn, params = sv.functional(model)
    images = _vgg_images(size, n)
    t0 = time.perf_counter()
    res = jax.jit(lambda p, x: apply_fn(p, x, record="mean"))(params, images)
    jax.block_until_ready(res)
    svebi_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    peer_logits, peer_maps = P.collect_vgg_maps(net, images)
    peer_s = time.perf_counter() - t0
    equal = [
        float(np.mean(np.round(np.asarray(res.spikes[name]) * t) == np.round(m * t)))
        for name, m in zip(model.conv_layer_names, peer_maps, strict=True)
    ]
    return {
        "image_size": size,
        "batch": n,
        "num_steps": t,
        "widths": list(q["widths"]),
        "equal_spike_count_fraction_min": min(equal),
        "max_abs_logit_diff": float(np.max(np.abs(np.asarray(res.logits) - peer_logits))),
        "spike_rate": float(np.mean([np.mean(np.asarray(v)) for v in res.spikes.values()])),
        "svebi_s": svebi_s,
        "peer_s": peer_s,
    }


def check_quick(details: dict[str, Any]) -> None:
    """Raises ``AssertionError`` unless both sides computed the same thing."""
    inf = details["shallow"]["inference"]
    step = details["shallow"]["train_step"]
    vg = details["svgg19"]
    problems = []
    if inf["equal_predictions"] < 1.0 or inf["max_abs_logit_diff"] > LOGIT_ATOL:
        problems.append(f"shallow inference logits differ: {inf}")
    if inf["equal_spike_count_fraction_min"] < 1.0:
        problems.append(f"shallow spike counts differ: {inf}")
    if step["loss_diff"] > LOGIT_ATOL or max(step["max_rel_grad_diff"].values()) > GRAD_RTOL:
        problems.append(f"shallow training step differs: {step}")
    if vg["equal_spike_count_fraction_min"] < 1.0:
        problems.append(f"SVGG19 spike maps differ: {vg}")
    if not (0.0 < inf["spike_rate"] < 1.0 and 0.0 < vg["spike_rate"] < 1.0):
        problems.append("a network is silent or saturated: the check would be vacuous")
    assert not problems, "peers_network: " + "; ".join(problems)


def quick_rows(details: dict[str, Any]) -> list[Row]:
    inf, step, vg = (
        details["shallow"]["inference"],
        details["shallow"]["train_step"],
        details["svgg19"],
    )
    note = "quick: agreement check only, one untimed-quality call (compile included)"
    return [
        row(
            f"P. Shallow SNN inference vs snnTorch ({details['shallow']['images']} digits, T=10)",
            details["shallow"]["svebi_s"],
            details["shallow"]["peer_s"],
            agreement=f"equal predictions {inf['equal_predictions']:.0%}, max |Δ logit| "
            f"{inf['max_abs_logit_diff']:.1e}, equal spike counts "
            f"{inf['equal_spike_count_fraction_min']:.2%}; train step: |Δ loss| "
            f"{step['loss_diff']:.1e}, max rel |Δ grad| "
            f"{max(step['max_rel_grad_diff'].values()):.1e}",
            notes=note,
        ),
        row(
            f"P. SVGG19 spike maps vs PyTorch loop ({vg['image_size']}², B={vg['batch']}, "
            f"T={vg['num_steps']}, reduced widths)",
            vg["svebi_s"],
            vg["peer_s"],
            agreement=f"equal spike counts {vg['equal_spike_count_fraction_min']:.2%}, "
            f"max |Δ logit| {vg['max_abs_logit_diff']:.1e}",
            notes=note,
        ),
    ]


# ----------------------------------------------------------------------------- full


def full_rows(results: list[dict[str, Any]], peak: dict[str, float]) -> list[Row]:
    """Harness rows from :func:`bench_network_peers.summarize` results."""
    titles = {
        "shallow_train_epoch": "P. Shallow SNN training epoch vs snnTorch (5k MNIST, T=10, B=100)",
        "shallow_inference": "P. Shallow SNN inference vs snnTorch (1,000 digits, T=10)",
        "svgg19_maps_64": "P. SVGG19 spike maps vs PyTorch loop (64², B=4, T=25)",
        "svgg19_maps_224": "P. SVGG19 spike maps vs PyTorch loop (224², B=2, T=25)",
    }
    rows = []
    for r in results:
        mem = {s: max(m["above_base_run_MB"] for m in ms) for s, ms in r["memory"].items()}
        ag = r["agreement"]
        if r["name"] == "shallow_train_epoch":
            agreement = (
                f"test accuracy {ag['test_accuracy_svebi']} / {ag['test_accuracy_peer']} "
                "after the timed epochs"
            )
        else:
            agreement = (
                f"equal predictions {ag['equal_predictions']:.0%}, max |Δ logit| "
                f"{ag['max_abs_logit_diff']:.1e}, equal spike counts "
                f"{ag['equal_spike_count_fraction_min']:.2%} (worst layer)"
            )
            per_layer = ag.get("equal_spike_count_fraction_per_layer")
            if per_layer and len(per_layer) > 2:
                agreement += (
                    f", first layer {per_layer[0]:.2%}, spike rates within "
                    f"{ag['spike_rate_abs_diff_max']:.1e}"
                )
        gf, fr = r["gflops_per_s"], r["fraction_of_peak"]
        sp = r["spread_s"]
        rows.append(
            row(
                titles.get(r["name"], r["name"]),
                r["svebi_s"],
                r["peer_s"],
                agreement=agreement,
                # the worker's roofline (one pinned core): GFLOP/s × time = its FLOP model
                flops=gf["svebi"] * r["svebi_s"] * 1e9,
                peak_gflops=max(peak.values()),
                notes=(
                    f"spread {sp['svebi'][0]}–{sp['svebi'][1]} / {sp['peer'][0]}–{sp['peer'][1]} s"
                    f"; GFLOP/s {gf['svebi']} ({fr['svebi']:.0%} of peak) / {gf['peer']} "
                    f"({fr['peer']:.0%}); peak RSS above baseline {mem['svebi']} / "
                    f"{mem['peer']} MB; warm-up extra {r['compile_or_warmup_extra_s']['svebi']} /"
                    f" {r['compile_or_warmup_extra_s']['peer']} s; load {r['loadavg_start']}; "
                    f"matmul peak {max(peak.values())} GFLOP/s"
                ),
            )
        )
    return rows


def run(ctx: Context) -> tuple[dict[str, Any], list[Row]]:
    if not _have_peers():
        log("  peers_network: torch/snntorch not installed (the 'bench' extra): skipped")
        return {"skipped": "torch/snntorch not installed"}, []
    if ctx.cfg["quick"]:
        n = 32
        details = {
            "shallow": quick_shallow(ctx.images[:n], ctx.labels[:n]),
            "svgg19": quick_vgg(),
        }
        check_quick(details)
        return details, quick_rows(details)
    import bench_network_peers as B

    out = B.run_rows(quick=False, threads=PEER_THREADS)
    rows = full_rows(out["rows"], out["machine_peak"])
    out["responses_memory_224"] = responses_memory()
    return out, rows


def responses_memory(batches=(1, 2, 4)) -> list[dict[str, Any]]:
    """``compute_responses`` at 224², T = 25 per batch size (``svgg19_memory.py --mode
    responses``): peak RSS above the worker's baseline and img/s, one subprocess each."""
    import svgg19_memory

    out = []
    for b in batches:
        r = svgg19_memory._responses_subprocess(b, 224, 25)
        log(f"  responses 224², T=25, batch {b}: {r}")
        out.append(r)
    return out
