"""Memory of an SVGG19 training step at 224², T = 25, per batch size, remat policy and dtype.

Compiles (never runs) one Adam training step of the 224² SVGG19 (50 classes) with the
execution plan an accelerator gets (no CPU chunking of convolutions; ``time_chunk`` and
``batch_chunk`` as given) and reads XLA's buffer assignment: the peak of the step is
``arguments + outputs − donated (aliased) + temporaries``. XLA:CPU's buffer assignment
stands in for a GPU's here (it fuses differently, so treat the numbers as estimates within
a few tens of percent); on a machine with an accelerator, run with ``--backend gpu`` to
compile for it instead.

Usage::

    python benchmarks/svgg19_memory.py                    # B = 1, 2, 4, 8; remat none/chunk
    python benchmarks/svgg19_memory.py --batch 8 --remat chunk --time-chunk 5 --dtype bfloat16

Prints one JSON row per configuration.
"""

from __future__ import annotations

import argparse
import functools
import json
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

import svebi_jax as sv
from svebi_jax import layers as L
from svebi_jax.models import vgg


def step_memory(
    batch: int,
    *,
    remat: str,
    time_chunk: int | None,
    dtype: str,
    size: int,
    num_steps: int,
    backend: str,
) -> dict:
    cfg = sv.SNNConfig(
        num_steps=num_steps,
        beta=0.95,
        reset="subtract_then_leak",
        remat=remat,
        time_chunk=time_chunk,
        batch_chunk=batch,
        compute_dtype=dtype,
    )
    model = nnx.eval_shape(
        lambda: vgg.SVGG19(
            input_shape=(size, size, 3), num_classes=50, config=cfg, rngs=nnx.Rngs(0)
        )
    )
    apply_fn, params = sv.functional(model)
    optimizer = optax.adam(3e-3)
    opt_state = jax.eval_shape(optimizer.init, params)

    def train_step(p, s, x, y):
        def loss(p):
            z = apply_fn(p, x).logits
            return optax.softmax_cross_entropy_with_integer_labels(z, y).mean()

        value, grads = jax.value_and_grad(loss)(p)
        updates, s = optimizer.update(grads, s, p)
        return optax.apply_updates(p, updates), s, value

    x = jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32)
    y = jax.ShapeDtypeStruct((batch,), jnp.int32)
    original = L.plan_chunks
    L.plan_chunks = functools.partial(
        original, backend=backend
    )  # the accelerator's plan (CPU would also chunk convolutions)
    try:
        t0 = time.perf_counter()
        compiled = (
            jax.jit(train_step, donate_argnums=(0, 1)).lower(params, opt_state, x, y).compile()
        )
        seconds = time.perf_counter() - t0
    finally:
        L.plan_chunks = original
    m = compiled.memory_analysis()
    peak = (
        m.argument_size_in_bytes
        + m.output_size_in_bytes
        - m.alias_size_in_bytes
        + m.temp_size_in_bytes
    )
    resolved = original(model.layers, nnx.to_pure_dict(params), x.shape, cfg, backend=backend)
    return {
        "batch": batch,
        "image_size": size,
        "num_steps": num_steps,
        "remat": remat,
        "time_chunk": resolved.time_chunk,
        "compute_dtype": dtype,
        "params_GB": round(sum(a.size * 4 for a in jax.tree.leaves(params)) / 1e9, 3),
        "arguments_GB": round(m.argument_size_in_bytes / 1e9, 3),
        "temporaries_GB": round(m.temp_size_in_bytes / 1e9, 3),
        "peak_GB": round(peak / 1e9, 3),
        "compile_s": round(seconds, 1),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, nargs="*", default=[1, 2, 4, 8])
    ap.add_argument("--remat", nargs="*", default=["none", "chunk"], choices=L.REMAT_POLICIES)
    ap.add_argument("--time-chunk", type=int, default=None)
    ap.add_argument("--dtype", nargs="*", default=["float32"], choices=L.COMPUTE_DTYPES)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--num-steps", type=int, default=25)
    ap.add_argument("--backend", default="gpu", help="whose execution plan to compile")
    args = ap.parse_args(argv)
    for dtype in args.dtype:
        for remat in args.remat:
            for b in args.batch:
                row = step_memory(
                    b,
                    remat=remat,
                    time_chunk=args.time_chunk,
                    dtype=dtype,
                    size=args.image_size,
                    num_steps=args.num_steps,
                    backend=args.backend,
                )
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
