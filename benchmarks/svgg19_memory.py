"""Memory of SVGG19 at 224², T = 25, per batch size: training step and response extraction.

``--mode train`` (default): the training step, per batch size, remat policy and dtype.

Compiles (never runs) one Adam training step of the 224² SVGG19 (50 classes) with the
execution plan an accelerator gets (no CPU chunking of convolutions; ``time_chunk`` and
``batch_chunk`` as given) and reads XLA's buffer assignment: the peak of the step is
``arguments + outputs − donated (aliased) + temporaries``. XLA:CPU's buffer assignment
stands in for a GPU's here (it fuses differently, so treat the numbers as estimates within
a few tens of percent); on a machine with an accelerator, run with ``--backend gpu`` to
compile for it instead.

``--mode responses``: :func:`svebi_jax.responses.compute_responses` (the forward pass with
``record="mean"`` reduced to per-filter energies) run for real on this machine's backend,
one fresh subprocess per batch size: peak RSS (``VmHWM``) above the process's idle baseline
(weights and images loaded) during the warm-up call (compilation included) and during the
timed call, and images per second. This is the memory issue 9 bounds (at most the per-step
PyTorch loop's, see ``bench_network_peers.py --rows svgg19_maps_224``).

Usage::

    python benchmarks/svgg19_memory.py                    # B = 1, 2, 4, 8; remat none/chunk
    python benchmarks/svgg19_memory.py --batch 8 --remat chunk --time-chunk 5 --dtype bfloat16
    python benchmarks/svgg19_memory.py --mode responses --batch 1 2 4

Prints one JSON row per configuration.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pathlib
import subprocess
import sys
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


def responses_memory(batch: int, *, size: int, num_steps: int) -> dict:
    """Runs ``compute_responses`` on ``batch`` real photographs in this process (a worker)."""
    import numpy as np
    from bench_network_peers import Memory, _vgg_images

    from svebi_jax import responses

    cfg = sv.SNNConfig(num_steps=num_steps, beta=0.95, reset="subtract_then_leak")
    model = vgg.SVGG19(input_shape=(size, size, 3), num_classes=50, config=cfg, rngs=nnx.Rngs(0))
    apply_fn, params = sv.functional(model)
    params = jax.block_until_ready(jax.tree.map(jnp.array, params))
    del model
    images = _vgg_images(size, batch)
    mem = Memory()
    mem.baseline()
    t0 = time.perf_counter()
    responses.compute_responses(apply_fn, params, images, batch_size=batch)
    first = time.perf_counter() - t0
    mem.after_warmup()
    t0 = time.perf_counter()
    r = responses.compute_responses(apply_fn, params, images, batch_size=batch)
    seconds = time.perf_counter() - t0
    mem.after_run()
    return {
        "mode": "responses",
        "batch": batch,
        "image_size": size,
        "num_steps": num_steps,
        "backend": jax.default_backend(),
        "seconds": round(seconds, 2),
        "images_per_s": round(batch / seconds, 3),
        "first_call_s": round(first, 1),
        "filters": int(r.X.shape[1]),
        "finite": bool(np.isfinite(r.X).all()),
        **mem.as_dict(),
        "loadavg": [round(v, 2) for v in os.getloadavg()],
    }


def _responses_subprocess(batch: int, size: int, num_steps: int) -> dict:
    here = pathlib.Path(__file__).resolve().parent
    cmd = [sys.executable, __file__, "--worker", str(batch), str(size), str(num_steps)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(here.parent), str(here), env.get("PYTHONPATH", "")])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        raise RuntimeError(f"responses worker (batch {batch}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, nargs="*", default=[1, 2, 4, 8])
    ap.add_argument("--remat", nargs="*", default=["none", "chunk"], choices=L.REMAT_POLICIES)
    ap.add_argument("--time-chunk", type=int, default=None)
    ap.add_argument("--dtype", nargs="*", default=["float32"], choices=L.COMPUTE_DTYPES)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--num-steps", type=int, default=25)
    ap.add_argument("--backend", default="gpu", help="whose execution plan to compile")
    ap.add_argument("--mode", choices=("train", "responses"), default="train")
    ap.add_argument("--worker", nargs=3, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        b, size, t = args.worker
        print(json.dumps(responses_memory(b, size=size, num_steps=t)), flush=True)
        return
    if args.mode == "responses":
        for b in args.batch:
            print(json.dumps(_responses_subprocess(b, args.image_size, args.num_steps)), flush=True)
        return
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
