"""Memory of the SVGG19 training step at 224², T = 25, per batch size and rematerialization.

Compile-only: the jitted Adam training step (:func:`svebi_jax.train.make_train_step`) of the
full-width SVGG19 is lowered with abstract arguments and compiled, and XLA's buffer
assignment (``compiled.memory_analysis()``) gives its memory: arguments (parameters, Adam
state, images) + outputs + temporaries − donated (aliased) buffers. Nothing is executed, so
this runs on a CPU in a few minutes and tells a user which batch size fits an accelerator
before renting one. The runner is set as on an accelerator (``time_chunk = T`` without
rematerialization, ``round(√T) = 5`` with ``remat="chunk"``, the whole batch at once). XLA:GPU
assigns buffers differently (other fusions), so treat the numbers as estimates within tens of
percent; ``benchmarks/accelerator_svgg19.py`` measures the device's real peak.

    python benchmarks/svgg19_train_memory.py --out benchmarks/results_train_memory.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

if __name__ == "__main__":
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks.accelerator_svgg19 import _model  # noqa: E402
from svebi_jax import layers as L  # noqa: E402
from svebi_jax import train  # noqa: E402
from svebi_jax.models import vgg  # noqa: E402

RUNNER = {
    "none": {"time_chunk": 25},
    "chunk": {"time_chunk": 5, "remat": "chunk"},
}


def step_memory(model, runner: dict, batch: int, image_size: int) -> dict:
    """GB of one compiled training step (see the module docstring)."""
    cfg = dataclasses.replace(model.config, batch_chunk=batch, **runner)
    layers = model.layers

    def apply_fn(params, images, record=None):
        return L.run_time_batched(layers, params, vgg.imagenet_normalize(images), config=cfg)

    params = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype),
        nnx.to_pure_dict(nnx.state(model, nnx.Param)),
    )
    optimizer = optax.adam(3e-3)
    opt_state = jax.eval_shape(optimizer.init, params)
    step = train.make_train_step(apply_fn, optimizer)
    images = jax.ShapeDtypeStruct((batch, image_size, image_size, 3), jnp.float32)
    labels = jax.ShapeDtypeStruct((batch,), jnp.int32)
    t0 = time.perf_counter()
    m = step.lower(params, opt_state, images, labels).compile().memory_analysis()
    alias = getattr(m, "alias_size_in_bytes", 0)
    return {
        "total_GB": round(
            (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - alias)
            / 1e9,
            2,
        ),
        "temp_GB": round(m.temp_size_in_bytes / 1e9, 2),
        "arguments_GB": round(m.argument_size_in_bytes / 1e9, 2),
        "compile_s": round(time.perf_counter() - t0, 1),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="benchmarks/results_train_memory.json")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 12, 16])
    p.add_argument("--image-size", type=int, default=224)
    a = p.parse_args(argv)
    model = _model({"image_size": a.image_size, "num_steps": 25, "width_scale": 1.0}, 50)
    rows = []
    for remat, runner in RUNNER.items():
        for b in a.batch_sizes:
            row = {"remat": remat, "batch": b, **step_memory(model, runner, b, a.image_size)}
            print(row, flush=True)
            rows.append(row)
    out = {"image_size": a.image_size, "num_steps": 25, "backend": jax.default_backend(),
           "rows": rows}  # fmt: skip
    pathlib.Path(a.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
