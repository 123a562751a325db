"""Section 4: vectorised insertion/deletion vs a RISE-style loop."""

from __future__ import annotations

import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import peers
from harness import (
    GAIN,
    Context,
    Row,
    block,
    capture,
    forward_flops,
    log,
    row,
    timer,
    with_roofline,
)

import svebi_jax.metrics as metrics


@functools.cache
def _as_apply_fn(predict_fn):
    """``predict_fn(images) -> logits`` as ``apply_fn(params, images)``, one object per
    ``predict_fn`` (the compiled games are cached by it)."""
    return lambda params, images: predict_fn(images)


def bench_insdel(apply_fn, params, images, cfg) -> dict[str, Any]:
    """Section 4: vectorised insertion/deletion vs a RISE-style loop."""
    x = jnp.asarray(images) * GAIN
    b, h, w, _ = x.shape
    step = 28
    saliency = jax.random.uniform(jax.random.key(1), (b, h, w))  # no ties

    def logits_fn(imgs):
        return apply_fn(params, imgs).logits

    prob_fn = jax.jit(lambda imgs: jax.nn.softmax(apply_fn(params, imgs).logits, axis=-1))
    xn, sn = np.asarray(x), np.asarray(saliency)
    zeros = np.zeros_like(xn)
    t0 = time.perf_counter()
    block(prob_fn(xn[:1]))
    peer_compile = time.perf_counter() - t0
    out: dict[str, Any] = {
        "images": int(b),
        "step": step,
        "points_per_curve": (h * w + step - 1) // step + 1,
        "substrate": "zeros",
        "saliency": "uniform random",
        "chunk_size": 256,
        "small_chunk_size": cfg["insdel_small_chunk"],
        "peer_compile_s": peer_compile,
    }
    for mode in ("insertion", "deletion"):

        def vec(mode=mode, chunk_size=256):
            return getattr(
                metrics.insertion_deletion(
                    saliency,
                    _as_apply_fn(logits_fn),
                    None,
                    x,
                    pixels_per_step=step,
                    substrate="zeros",
                    games=(mode,),
                    chunk_size=chunk_size,
                ),
                mode,
            )

        run_vec, vbox = capture(vec)
        t_vec = timer(cfg)(run_vec, cfg["repeats"])
        res = vbox["out"]
        # A smaller chunk keeps the activations in cache on CPU (informative second timing).
        small = cfg["insdel_small_chunk"]
        t_small = timer(cfg)(functools.partial(vec, chunk_size=small), cfg["repeats"])

        def loop(mode=mode):
            return peers.rise_insdel_loop(prob_fn, xn, sn, mode=mode, step=step, substrate=zeros)

        run_loop, lbox = capture(loop)
        t_loop = timer(cfg)(run_loop, cfg["repeats"], warmup=0)
        curves, aucs = lbox["out"]
        out[mode] = {
            "vectorized": {
                **t_vec,
                "compile_s_approx": t_vec["first_call_s"] - t_vec["median_s"],
                "images_per_s": b / t_vec["median_s"],
            },
            f"vectorized_chunk{small}": {
                **t_small,
                "images_per_s": b / t_small["median_s"],
            },
            "rise_loop": {**t_loop, "images_per_s": b / t_loop["median_s"]},
            "speedup": t_loop["median_s"] / t_vec["median_s"],
            "mean_auc": float(res.mean_auc),
            "mean_auc_loop": float(np.mean(aucs)),
            "max_abs_auc_diff": float(np.max(np.abs(np.asarray(res.auc) - aucs))),
            "max_abs_curve_diff": float(np.max(np.abs(np.asarray(res.curves) - curves))),
        }
        log(
            f"  {mode}: vectorised {t_vec['median_s']:.2f} s, loop {t_loop['median_s']:.2f} s, "
            f"max |dAUC| {out[mode]['max_abs_auc_diff']:.1e}"
        )
    return out


def rows(ins: dict[str, Any]) -> list[Row]:
    out = []
    for mode in ("insertion", "deletion"):
        res = ins[mode]
        small = res[f"vectorized_chunk{ins['small_chunk_size']}"]
        out.append(
            row(
                f"4. {mode}, {ins['images']} images, step {ins['step']} "
                f"({ins['points_per_curve']} points)",
                res["vectorized"]["median_s"],
                res["rise_loop"]["median_s"],
                agreement=f"max abs ΔAUC {res['max_abs_auc_diff']:.1e}",
                notes=f"peer: RISE-style loop; chunk_size={ins['small_chunk_size']}: "
                f"{small['median_s'] * 1e3:.1f} ms; compile "
                f"~{res['vectorized']['compile_s_approx']:.2f} / {ins['peer_compile_s']:.2f} s",
            )
        )
    return out


def run(ctx: Context) -> tuple[dict[str, Any], list[Row]]:
    n = ctx.cfg["insdel_images"]
    details = bench_insdel(ctx.apply_fn, ctx.params, ctx.images[:n], ctx.cfg)
    f = forward_flops(ctx)
    passes = details["images"] * details["points_per_curve"]  # one per curve point and image
    return details, [
        with_roofline(r, f and passes * f, ctx, f"{passes} forward passes") for r in rows(details)
    ]
