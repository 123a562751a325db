"""Insertion + deletion: svebi_jax against RISE's batched ``CausalMetric`` in PyTorch.

Both sides score the same images with the same saliency maps on the same network (the shallow
SNN, its weights copied into :class:`peers_torch_rise.TorchSNN`), under RISE's protocol:
insertion from the 11x11, sigma = 5 blurred image, deletion to zeros, ``step = 28`` pixels per
step (29 curve points on 28x28 digits; ``--quick``: 112, 8 points), the probability of the
class predicted on the unperturbed image, RISE's trapezoid AUC.

- svebi_jax: :func:`svebi_jax.metrics.insertion_deletion` for both games with the
  library's defaults (one compiled call per game; every perturbed image of a chunk built with
  a rank mask and scored by one batched forward pass).
- Peer: ``CausalMetric(model, mode, step, substrate_fn).evaluate(images, maps, batch_size)``
  for ``"ins"`` and ``"del"`` (:mod:`peers_torch_rise`): the model called per curve point on
  each batch, pixels copied with NumPy fancy indexing, as RISE's ``evaluate`` does. Its batch
  size and torch thread count are the fastest of the variants ``cfg["insdel_peer_batches"]`` x
  ``cfg["insdel_peer_threads"]`` in the warm-up (on a loaded machine one thread can beat two).

Maps: the image intensity plus a uniform jitter of ``1e-3`` (bright strokes first, no ties, so
both sides rank the pixels identically). Agreement: max |ΔAUC|, |Δ mean AUC| and max |Δcurve|
over both games and all images, and the two blurred substrates; ``ok`` when the substrates, the
AUCs and the mean AUCs stay within ``cfg["insdel_peer_tol"]`` (single curve points may differ
where a rounding-level difference flips a spike at the threshold).
"""

from __future__ import annotations

import functools
import statistics
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from harness import (
    GAIN,
    Context,
    Row,
    block,
    loadavg,
    log,
    row,
    side_by_side,
    snn_forward_flops,
    timed,
)

import svebi_jax.metrics as metrics


def available() -> bool:
    """Whether the peer's packages (torch, and scipy for RISE's ``gkern``) import."""
    try:
        import scipy.ndimage  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def saliency_maps(images: np.ndarray, seed: int = 1) -> np.ndarray:
    """``[B, H, W]`` float32: intensity (channel mean) plus ``1e-3`` uniform jitter (no ties)."""
    rng = np.random.default_rng(seed)
    base = images.mean(axis=-1)
    return (base + 1e-3 * rng.random(base.shape)).astype(np.float32)


def svebi_games(predict_fn, x, sal, step: int) -> dict[str, metrics.CausalMetricResult]:
    """Both games with svebi_jax (the library's defaults, RISE's substrates)."""
    res = metrics.insertion_deletion(
        sal,
        _as_apply_fn(predict_fn),
        None,
        x,
        pixels_per_step=step,
        substrate={"insertion": "blur", "deletion": "zeros"},
    )
    return {"insertion": res.insertion, "deletion": res.deletion}


@functools.cache
def _as_apply_fn(predict_fn):
    """``predict_fn(images) -> logits`` as ``apply_fn(params, images)``, one object per
    ``predict_fn`` (the compiled games are cached by it)."""
    return lambda params, images: predict_fn(images)


def peer_games(
    torch_model, xt, sal_np, step: int, batch_size: int, threads: int | None = None
) -> dict[str, np.ndarray]:
    """Both games with RISE's ``CausalMetric.evaluate``: ``{mode: scores [n + 1, B]}``.

    ``threads``: torch's intra-op threads for the call (``None``: torch's default, one per
    core); restored afterwards.
    """
    import peers_torch_rise as rise
    import torch

    ins = rise.CausalMetric(torch_model, "ins", step, rise.blur)
    dele = rise.CausalMetric(torch_model, "del", step, torch.zeros_like)
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        return {
            "insertion": ins.evaluate(xt, sal_np, batch_size),
            "deletion": dele.evaluate(xt, sal_np, batch_size),
        }
    finally:
        torch.set_num_threads(before)


def compare(ours: dict, theirs: dict) -> dict[str, Any]:
    """Per-game max |ΔAUC|, max |Δcurve| (svebi_jax's curves ``[B, n+1]`` vs RISE's
    ``[n+1, B]``), the number of curve points that differ by more than ``1e-5``, and the
    mean AUCs of both sides."""
    import peers_torch_rise as rise

    out = {}
    for mode in ("insertion", "deletion"):
        res, scores = ours[mode], theirs[mode]
        auc_peer = rise.auc(scores)
        dcurve = np.abs(np.asarray(res.curves, np.float64) - scores.T)
        out[mode] = {
            "max_abs_auc_diff": float(np.max(np.abs(np.asarray(res.auc, np.float64) - auc_peer))),
            "max_abs_curve_diff": float(np.max(dcurve)),
            "curve_points_differing": int(np.sum(dcurve > 1e-5)),
            "curve_points": int(dcurve.size),
            "mean_auc": float(res.mean_auc),
            "mean_auc_peer": float(np.mean(auc_peer)),
        }
    return out


def substrate_diff(images: np.ndarray) -> float:
    """Max |Δ| between svebi_jax's and RISE's blurred images (the insertion substrate)."""
    import peers_torch_rise as rise
    import torch

    ours = np.asarray(metrics.gaussian_blur(jnp.asarray(images)))
    with torch.inference_mode():
        theirs = rise.blur(rise.to_nchw(images)).numpy().transpose(0, 2, 3, 1)
    return float(np.max(np.abs(ours - theirs)))


def forward_share(logits_fn, torch_model, images, passes: dict, chunk: int, batch: int, repeats):
    """Seconds each side's forward passes alone would take: ``passes["svebi"]`` images in
    batches of ``chunk`` (svebi_jax's default ``chunk_size``, jitted) and ``passes["peer"]`` in
    batches of ``batch`` (the peer's, torch), each the median of ``repeats`` timed calls scaled
    by the number of calls."""
    import peers_torch_rise as rise
    import torch

    reps = np.resize(images, (max(chunk, batch),) + images.shape[1:])
    fwd = jax.jit(logits_fn)
    xj = jnp.asarray(reps[:chunk])
    block(fwd(xj))
    t_j = statistics.median(timed(lambda: fwd(xj))[1] for _ in range(repeats))
    xt = rise.to_nchw(reps[:batch])
    with torch.inference_mode():
        torch_model(xt)
        t_t = statistics.median(timed(lambda: torch_model(xt))[1] for _ in range(repeats))
    return {
        "svebi_forward_s": t_j * passes["svebi"] / chunk,
        "peer_forward_s": t_t * passes["peer"] / batch,
        "chunk": chunk,
        "batch": batch,
    }


def bench(ctx: Context) -> dict[str, Any]:
    import peers_torch_rise as rise

    cfg = ctx.cfg
    n = cfg["insdel_peer_images"]
    images = np.asarray(ctx.images[:n], np.float32) * GAIN
    sal = saliency_maps(images)
    model = ctx.model
    b, h, w, _ = images.shape
    step = cfg["insdel_peer_step"]
    n_points = (h * w + step - 1) // step + 1

    apply_fn, params = ctx.apply_fn, ctx.params

    def logits_fn(imgs):
        return apply_fn(params, imgs).logits

    x, salj = jnp.asarray(images), jnp.asarray(sal)
    torch_model = rise.TorchSNN(model.layers, model.weights(), model.config, model.input_shape)
    xt = rise.to_nchw(images)
    batches = [bs for bs in cfg["insdel_peer_batches"] if n % bs == 0] or [n]
    variants = {
        f"batch_size={bs}, threads={th or 'default'}": functools.partial(
            peer_games, torch_model, xt, sal, step, bs, th
        )
        for bs in batches
        for th in cfg["insdel_peer_threads"]
    }
    log(f"  {n} images, {n_points} points per curve; load {loadavg()}")
    t = side_by_side(
        lambda: svebi_games(logits_fn, x, salj, step),
        variants,
        repeats=cfg["peer_repeats"],
        min_repeats=cfg["peer_min_repeats"],
        max_time_s=cfg["peer_max_time_s"],
    )
    agree = compare(t.pop("out_svebi"), t.pop("out_peer"))
    tol = cfg["insdel_peer_tol"]
    max_auc = max(a["max_abs_auc_diff"] for a in agree.values())
    max_curve = max(a["max_abs_curve_diff"] for a in agree.values())
    max_mean = max(abs(a["mean_auc"] - a["mean_auc_peer"]) for a in agree.values())
    max_sub = substrate_diff(images)
    # Forward passes of both games: svebi_jax one per curve point and image (the unperturbed
    # point also gives the class); RISE's evaluate() predicts the originals once more.
    forwards = {"svebi": 2 * b * n_points, "peer": 2 * b * (n_points + 1)}
    peer_batch = int(t["peer"]["variant"].split(",")[0].split("=")[1])
    share = forward_share(
        logits_fn, torch_model, images, forwards, min(256, forwards["svebi"]), peer_batch, 3
    )
    per_pass = snn_forward_flops(model.layers, model.input_shape, model.config.num_steps)
    flops = forwards["svebi"] * per_pass
    out = {
        **t,
        "images": int(b),
        "step": step,
        "points_per_curve": n_points,
        "substrates": {"insertion": "blur (11x11, sigma 5)", "deletion": "zeros"},
        "saliency": "intensity + 1e-3 uniform jitter",
        "forward_passes": forwards,
        "forward_only": share,
        "flop_model": flops,
        "agreement": agree,
        "max_abs_auc_diff": max_auc,
        "max_abs_curve_diff": max_curve,
        "max_abs_mean_auc_diff": max_mean,
        "max_abs_blur_substrate_diff": max_sub,
        "tolerance": tol,
        # Same thing computed: the substrates agree to float32 rounding, every AUC within
        # tol["auc"] and the mean AUCs within tol["mean_auc"]. Single curve points may differ
        # more: a rounding-level difference of an input (the two blurs' kernels and
        # convolutions) or of a current (XLA vs oneDNN convolutions) flips a spike when a
        # membrane sits within ~1e-7 of the threshold, which moves that point's probability.
        "ok": bool(
            max_sub <= tol["substrate"] and max_auc <= tol["auc"] and max_mean <= tol["mean_auc"]
        ),
        "loadavg_end": loadavg(),
    }
    log(
        f"  svebi {t['svebi']['median_s']:.2f} s, peer ({t['peer']['variant']}) "
        f"{t['peer']['median_s']:.2f} s, max |dAUC| {max_auc:.1e}"
    )
    return out


def rows(d: dict[str, Any], peak_gflops: float | None) -> list[Row]:
    s, p = d["svebi"], d["peer"]
    fo = d["forward_only"]
    differing = " + ".join(
        f"{a['curve_points_differing']}/{a['curve_points']}" for a in d["agreement"].values()
    )
    return [
        row(
            f"insertion + deletion, {d['images']} MNIST digits, step {d['step']} "
            f"({d['points_per_curve']} points; blur / zeros)",
            s["median_s"],
            p["median_s"],
            agreement=f"max abs ΔAUC {d['max_abs_auc_diff']:.1e} (mean AUC "
            f"{d['max_abs_mean_auc_diff']:.1e}); curve points differing > 1e-5: {differing}, "
            f"max {d['max_abs_curve_diff']:.1e}; blur substrates "
            f"{d['max_abs_blur_substrate_diff']:.0e}",
            notes=f"peer: RISE `CausalMetric.evaluate` ({p['variant']}) on a torch copy of the "
            f"shallow SNN; {s['repeats']} alternating rounds, svebi {s['min_s']:.3g}-"
            f"{s['max_s']:.3g} s, peer {p['min_s']:.3g}-{p['max_s']:.3g} s; compile "
            f"~{s['compile_s_approx']:.1f} s; CPU-time ratio "
            f"{p['cpu_median_s'] / s['cpu_median_s']:.2f}; FLOP model "
            f"{d['flop_model'] / 1e9:.0f} GFLOP (forward passes: svebi "
            f"{d['forward_passes']['svebi']}, peer {d['forward_passes']['peer']}); "
            f"the forward passes alone: svebi {fo['svebi_forward_s']:.3g} s (batch "
            f"{fo['chunk']}), peer {fo['peer_forward_s']:.3g} s (batch {fo['batch']})",
            flops=d["flop_model"],
            peak_gflops=peak_gflops,
        )
    ]


def run(ctx: Context) -> tuple[dict[str, Any], list[Row]]:
    if not available():
        log("  torch/scipy not installed: insdel_peers skipped (pip install -e '.[bench]')")
        return {"skipped": "torch or scipy not installed"}, []
    details = bench(ctx)
    peak = (ctx.peak or {}).get("gflops")
    return details, rows(details, peak)
