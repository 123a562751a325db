"""Section 5: Grad2D and integrated-gradients throughput (no peer)."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from harness import GAIN, Context, Row, forward_flops, log, row, timer, with_roofline

import svebi_jax.methods as baselines


def bench_baselines(apply_fn, params, images, cfg) -> dict[str, Any]:
    """Section 5: Grad2D and integrated gradients throughput."""
    T = cfg["num_steps"]
    xg = jnp.asarray(images[: cfg["grad_images"]]) * GAIN
    xi = jnp.asarray(images[: cfg["ig_images"]]) * GAIN
    t_g = timer(cfg)(
        lambda: baselines.grad2d_maps(apply_fn, params, xg, num_steps=T), cfg["repeats"]
    )
    t_i = timer(cfg)(
        lambda: baselines.integrated_gradients_result(
            apply_fn, params, xi, num_steps=T, path_steps=cfg["ig_steps"]
        ),
        cfg["repeats"],
    )
    out = {
        "grad2d": {
            **t_g,
            "images": int(xg.shape[0]),
            "compile_s_approx": t_g["first_call_s"] - t_g["median_s"],
            "images_per_s": xg.shape[0] / t_g["median_s"],
        },
        "integrated_gradients": {
            **t_i,
            "images": int(xi.shape[0]),
            "path_steps": cfg["ig_steps"],
            "compile_s_approx": t_i["first_call_s"] - t_i["median_s"],
            "images_per_s": xi.shape[0] / t_i["median_s"],
        },
    }
    log(
        f"  grad2d {out['grad2d']['images_per_s']:.1f} img/s, "
        f"IG {out['integrated_gradients']['images_per_s']:.2f} img/s"
    )
    return out


def rows(bl: dict[str, Any]) -> list[Row]:
    g, i = bl["grad2d"], bl["integrated_gradients"]
    return [
        row(
            f"5. `grad2d` ({g['images']} images)",
            g["median_s"],
            notes=f"{g['images_per_s']:.1f} img/s; compile ~{g['compile_s_approx']:.2f} s",
        ),
        row(
            f"5. `integrated_gradients`, path_steps={i['path_steps']} ({i['images']} images)",
            i["median_s"],
            notes=f"{i['images_per_s']:.2f} img/s; compile ~{i['compile_s_approx']:.2f} s",
        ),
    ]


def run(ctx: Context) -> tuple[dict[str, Any], list[Row]]:
    details = bench_baselines(ctx.apply_fn, ctx.params, ctx.images, ctx.cfg)
    f = forward_flops(ctx)
    g, i = details["grad2d"], details["integrated_gradients"]
    grads_ig = i["images"] * i["path_steps"]
    grad, ig = rows(details)
    return details, [
        with_roofline(grad, f and 3 * g["images"] * f, ctx, f"3 x {g['images']} forward passes"),
        with_roofline(ig, f and 3 * grads_ig * f, ctx, f"3 x {grads_ig} forward passes"),
    ]
