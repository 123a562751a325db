"""Section 1: shallow SNN forward and train step (B = 100, T = 10), time-batched vs stepwise."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from harness import GAIN, Context, Row, aot_compile, log, row, timer


def bench_network(apply_fn, params, images, labels, cfg) -> dict[str, Any]:
    """Section 1: forward and train step, time-batched vs stepwise."""
    x, y = jnp.asarray(images), jnp.asarray(labels)
    optimizer = optax.adam(1e-3)
    out: dict[str, Any] = {"batch": int(x.shape[0]), "num_steps": cfg["num_steps"]}
    logits = {}
    for mode in ("time_batched", "stepwise"):

        def forward(p, x, mode=mode):
            return apply_fn(p, x, mode=mode).logits

        def loss_fn(p, x, y, mode=mode):
            z = apply_fn(p, x, mode=mode).logits
            return optax.softmax_cross_entropy_with_integer_labels(z, y).mean()

        def train_step(p, s, x, y, loss_fn=loss_fn):
            loss, g = jax.value_and_grad(loss_fn)(p, x, y)
            updates, s = optimizer.update(g, s, p)
            return optax.apply_updates(p, updates), s, loss

        fwd, fwd_compile = aot_compile(jax.jit(forward), params, x)
        t_fwd = timer(cfg)(lambda fwd=fwd: fwd(params, x), cfg["repeats"])
        logits[mode] = np.asarray(fwd(params, x))

        opt_state = optimizer.init(params)
        step, step_compile = aot_compile(jax.jit(train_step), params, opt_state, x, y)
        state = [params, opt_state]

        def run_step(step=step, state=state):
            state[0], state[1], loss = step(state[0], state[1], x, y)
            return loss

        t_step = timer(cfg)(run_step, cfg["repeats"])
        out[mode] = {
            "forward": {
                **t_fwd,
                "compile_s": fwd_compile,
                "images_per_s": x.shape[0] / t_fwd["median_s"],
            },
            "train_step": {
                **t_step,
                "compile_s": step_compile,
                "images_per_s": x.shape[0] / t_step["median_s"],
            },
        }
        log(
            f"  {mode}: forward {t_fwd['median_s'] * 1e3:.1f} ms, "
            f"train step {t_step['median_s'] * 1e3:.1f} ms"
        )
    tb, sw = out["time_batched"], out["stepwise"]
    out["speedup_forward"] = sw["forward"]["median_s"] / tb["forward"]["median_s"]
    out["speedup_train_step"] = sw["train_step"]["median_s"] / tb["train_step"]["median_s"]
    out["max_abs_logit_diff"] = float(np.max(np.abs(logits["time_batched"] - logits["stepwise"])))
    return out


def rows(net: dict[str, Any]) -> list[Row]:
    tb, sw = net["time_batched"], net["stepwise"]
    shape = f"B={net['batch']}, T={net['num_steps']}"
    return [
        row(
            f"1. Shallow SNN forward ({shape})",
            tb["forward"]["median_s"],
            sw["forward"]["median_s"],
            agreement=f"max abs logit diff {net['max_abs_logit_diff']:.1e}",
            notes=f"peer: stepwise runner; compile {tb['forward']['compile_s']:.2f} / "
            f"{sw['forward']['compile_s']:.2f} s",
        ),
        row(
            f"1. Shallow SNN train step, Adam ({shape})",
            tb["train_step"]["median_s"],
            sw["train_step"]["median_s"],
            notes=f"peer: stepwise runner; compile {tb['train_step']['compile_s']:.2f} / "
            f"{sw['train_step']['compile_s']:.2f} s",
        ),
    ]


def run(ctx: Context) -> tuple[dict[str, Any], list[Row]]:
    b = ctx.cfg["batch"]
    details = bench_network(
        ctx.apply_fn, ctx.params, ctx.images[:b] * GAIN, ctx.labels[:b], ctx.cfg
    )
    return details, rows(details)
