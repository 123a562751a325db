"""SVGG19 at the paper's scale on an accelerator: training step and response extraction.

One prepared script, sized to finish in under 8 minutes on one GPU/TPU::

    python benchmarks/accelerator_svgg19.py --out benchmarks/results_accelerator.json
    python benchmarks/accelerator_svgg19.py --smoke --out /tmp/smoke.json   # CPU, seconds

It measures, at 224 x 224, T = 25, full VGG19 widths and batch 8 (``--smoke``: 32 x 32,
T = 2, 1/16 widths, batch 2):

* **training step**: one jitted, donating Adam step of :func:`svebi_jax.train.make_train_step`
  (forward through all T steps, surrogate-gradient backward, update);
* **response extraction**: the jitted function of :func:`svebi_jax.responses.compute_responses`
  on ``--extract-images`` images (host → device transfer, forward with time-mean spike
  capture, per-filter responses, device → host), the path the AwA2 experiment runs;

each in **f32** and **bf16** (bf16: ``SNNConfig(compute_dtype="bfloat16")``, the runner's
bfloat16 products with float32 accumulation; membranes, weights, gradients and Adam stay
float32), reporting img/s, the
achieved TFLOP/s from the FLOP count derived below, the compiled executable's memory
(``compiled.memory_analysis()``: arguments + outputs + temporaries) and the device's running
peak (``device.memory_stats()["peak_bytes_in_use"]``, where the backend reports it; a
process-wide high-water mark, so rows are run from the smallest expected footprint up). With
several devices it repeats both in f32 with the batch sharded over all of them (one
``Mesh``, batch axis split, parameters replicated) at ``batch x devices`` images per step.

**FLOP count** (multiply-adds count 2; LIF, pooling and the loss are elementwise and left
out). Per image and timestep a 3x3 conv layer with an ``H x W x C_out`` output map and
``C_in`` inputs does :math:`2 \\cdot 9 \\cdot H W C_{in} C_{out}` FLOPs and a dense layer
:math:`2 \\cdot n_{in} n_{out}`. The image is fed directly, so ``conv1_1``'s input is the same
at every step and the time-batched runner computes it **once**; every later layer runs T
times::

    F_fwd = F(conv1_1) + T * (sum of the other conv layers + fc1 + fc2 + fc3)

At 224², T = 25, 1000 classes that is 0.173 + 25 * 39.1 ≈ 978 GFLOP per image. A training
step costs :math:`3 F_{fwd}` per image (forward, and a backward pass of twice the forward's
FLOPs for the input and weight gradients); extraction costs :math:`F_{fwd}`. XLA's own count
(``compiled.cost_analysis()["flops"]``) is recorded beside it where the backend gives one.

No accelerator was lent to the session that wrote this script; it was run only with
``--smoke`` on CPU (see README, "SVGG19 on AwA2").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import resource
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from svebi_jax import layers as L
from svebi_jax import responses, train
from svebi_jax.models import functional, vgg

FULL = {"image_size": 224, "num_steps": 25, "width_scale": 1.0, "batch_size": 8}
SMOKE = {"image_size": 32, "num_steps": 2, "width_scale": 1 / 16, "batch_size": 2}


# ----------------------------------------------------------------------------- FLOPs


def forward_flops(layers, input_shape, num_steps: int) -> int:
    """FLOPs of one image's forward pass (see the module docstring).

    Args:
      layers: layer specs (e.g. :func:`svebi_jax.models.vgg.svgg19_layers`).
      input_shape: ``(H, W, C)``.
      num_steps: ``T``.

    Returns:
      :math:`F(\\text{first conv}) + T \\sum_{\\text{other synaptic layers}} F(\\ell)`.
    """
    geo = L.layer_geometry(layers, input_shape)
    fan_in = L.input_features(layers, input_shape)
    total, first = 0, True
    for spec in layers:
        if isinstance(spec, L.Conv):
            g = geo[spec.name]
            k = spec.kernel_size
            f = 2 * k * k * g.height * g.width * fan_in[spec.name] * spec.features
        elif isinstance(spec, L.Dense):
            f = 2 * fan_in[spec.name] * spec.features
        else:
            continue
        total += f if first else num_steps * f
        first = False  # only the first synaptic layer sees the static image
    return int(total)


# ----------------------------------------------------------------------------- helpers


def _model(size: dict, num_classes: int):
    widths = tuple(max(1, round(w * size["width_scale"])) for w in vgg.VGG19_WIDTHS)
    hidden = max(1, round(4096 * size["width_scale"]))
    shape = (size["image_size"], size["image_size"], 3)
    model = nnx.eval_shape(
        lambda: vgg.SVGG19(
            input_shape=shape,
            num_classes=num_classes,
            config=L.SNNConfig(num_steps=size["num_steps"], beta=0.95),
            widths=widths,
            hidden=hidden,
            rngs=nnx.Rngs(0),
        )
    )
    rng = np.random.default_rng(0)
    state = nnx.state(model, nnx.Param)
    pure = nnx.to_pure_dict(state)
    for leaves in pure.values():  # He-normal: a full-width VGG keeps spiking at random init
        k = leaves["kernel"]
        fan = int(np.prod(k.shape[:-1]))
        leaves["kernel"] = jnp.asarray(rng.standard_normal(k.shape, np.float32) * np.sqrt(2 / fan))
        leaves["bias"] = jnp.zeros(leaves["bias"].shape, jnp.float32)
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(model, state)
    return model


class _LowPrecision:
    """The SVGG19 forward pass with ``SNNConfig(compute_dtype="bfloat16")``.

    Convolution and matmul products in bfloat16 with float32 accumulation (spikes are exact
    in bfloat16); membrane potentials, parameters, gradients and Adam stay float32. The
    images are normalized as the model's own forward pass does; logits and spike maps are
    float32.
    """

    def __init__(self, model, dtype):
        if jnp.dtype(dtype) != jnp.bfloat16:
            raise ValueError(f"dtype must be bfloat16, got {dtype!r}")
        self.layers = model.layers
        self.config = dataclasses.replace(model.config, compute_dtype="bfloat16")
        self.info = functional(model)[0].info

    def __call__(self, params, images, **kwargs):
        weights = nnx.to_pure_dict(params)
        x = vgg.imagenet_normalize(jnp.asarray(images, jnp.float32))
        return L.run_time_batched(self.layers, weights, x, config=self.config, **kwargs)


def _memory(compiled) -> dict:
    out = {}
    try:
        m = compiled.memory_analysis()
        out["executable_bytes"] = int(
            m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
        )
        out["temp_bytes"] = int(m.temp_size_in_bytes)
    except Exception as err:  # not every backend implements it
        out["executable_bytes_error"] = repr(err)[:200]
    try:
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list | tuple) else cost
        if cost and "flops" in cost:
            out["xla_flops_per_call"] = float(cost["flops"])
    except Exception as err:
        out["xla_flops_error"] = repr(err)[:200]
    return out


def _device_peak() -> dict:
    stats = jax.devices()[0].memory_stats()
    out = {"host_max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    if stats and "peak_bytes_in_use" in stats:
        out["device_peak_bytes_in_use"] = int(stats["peak_bytes_in_use"])
    return out


def _mesh_shardings(n: int):
    """(batch sharding, replicated sharding) over the first ``n`` devices, or ``None``s."""
    if n == 1:
        return None, None
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.asarray(jax.devices()[:n]), ("data",))
    return NamedSharding(mesh, PartitionSpec("data")), NamedSharding(mesh, PartitionSpec())


# ----------------------------------------------------------------------------- measurements


def measure_train(apply_fn, params, size, *, batch: int, repeats: int, devices: int) -> dict:
    """img/s and memory of the jitted training step at ``batch`` images per step."""
    optimizer = optax.adam(3e-3)
    shape = (batch, size["image_size"], size["image_size"], 3)
    rng = np.random.default_rng(1)
    images = jnp.asarray(rng.uniform(0, 1, shape).astype(np.float32))
    labels = jnp.asarray(rng.integers(0, 50, batch).astype(np.int32))
    params = jax.tree.map(jnp.array, params)
    batch_sh, repl = _mesh_shardings(devices)
    if batch_sh is not None:
        images, labels = jax.device_put(images, batch_sh), jax.device_put(labels, batch_sh)
        params = jax.device_put(params, repl)
    opt_state = optimizer.init(params)
    step = train.make_train_step(apply_fn, optimizer)
    t0 = time.perf_counter()
    compiled = step.lower(params, opt_state, images, labels).compile()
    compile_s = time.perf_counter() - t0
    params, opt_state, loss, _ = compiled(params, opt_state, images, labels)
    jax.block_until_ready(loss)
    t0 = time.perf_counter()
    for _ in range(repeats):
        params, opt_state, loss, _ = compiled(params, opt_state, images, labels)
    jax.block_until_ready(loss)
    seconds = (time.perf_counter() - t0) / repeats
    return {
        "compile_s": round(compile_s, 2),
        "step_s": seconds,
        "img_per_s": batch / seconds,
        "loss_finite": bool(np.isfinite(float(loss))),
        **_memory(compiled),
    }


def measure_extract(apply_fn, params, size, *, batch: int, images: int, devices: int) -> dict:
    """img/s of response extraction over ``images`` host images, ``batch`` per call.

    The jitted function is :func:`svebi_jax.responses.compute_responses`' (forward with
    time-mean capture, :func:`~svebi_jax.responses.filter_responses`, predictions); each
    batch is put on the device(s) (sharded over the batch axis with several) and its
    responses brought back to the host, as the experiment does.
    """
    rng = np.random.default_rng(2)
    shape = (images, size["image_size"], size["image_size"], 3)
    data = rng.uniform(0, 1, shape).astype(np.float32)
    layers = tuple(apply_fn.info.conv_layers)

    def fn(p, x):
        out = apply_fn(p, x, record="mean")
        return responses.filter_responses(out.spikes, layers=layers), jnp.argmax(out.logits, -1)

    batch_sh, repl = _mesh_shardings(devices)
    if repl is not None:
        params = jax.device_put(params, repl)
    first = jax.device_put(data[:batch], batch_sh) if batch_sh else jnp.asarray(data[:batch])
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(params, first).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(params, first))
    t0 = time.perf_counter()
    xs = []
    for a in range(0, images - batch + 1, batch):
        x = data[a : a + batch]
        x = jax.device_put(x, batch_sh) if batch_sh else jnp.asarray(x)
        xs.append(np.asarray(compiled(params, x)[0]))
    seconds = time.perf_counter() - t0
    n = sum(len(x) for x in xs)
    return {
        "compile_s": round(compile_s, 2),
        "seconds": seconds,
        "img_per_s": n / seconds,
        "responses_shape": [n, int(xs[0].shape[1])],
        **_memory(compiled),
    }


def run(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes, for CPU and tests")
    p.add_argument("--out", default="benchmarks/results_accelerator.json")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--repeats", type=int, default=3, help="timed training steps per row")
    p.add_argument("--extract-images", type=int, default=None, help="default 4 batches")
    p.add_argument("--dtypes", default="f32,bf16")
    p.add_argument("--num-classes", type=int, default=50)
    args = p.parse_args(argv)
    size = dict(SMOKE if args.smoke else FULL)
    if args.batch_size is not None:
        size["batch_size"] = args.batch_size
    for flag, v in (("--batch-size", size["batch_size"]), ("--repeats", args.repeats)):
        if v < 1:
            p.error(f"{flag} must be >= 1, got {v}")
    dtypes = args.dtypes.split(",")
    if not set(dtypes) <= {"f32", "bf16"} or not dtypes:
        p.error(f"--dtypes must be a comma list of f32, bf16; got {args.dtypes!r}")
    batch = size["batch_size"]
    n_extract = args.extract_images or 4 * batch
    model = _model(size, args.num_classes)
    raw_fn, params = functional(model)
    base_fn = vgg.ImagenetInput(raw_fn)
    shape = (size["image_size"], size["image_size"], 3)
    fwd = forward_flops(model.layers, shape, size["num_steps"])
    result = {
        "config": {**size, "num_classes": args.num_classes, "smoke": args.smoke},
        "device": str(jax.devices()[0].device_kind),
        "platform": jax.default_backend(),
        "device_count": jax.device_count(),
        "jax": jax.__version__,
        "python": platform.python_version(),
        "loadavg": os.getloadavg(),
        "forward_gflop_per_image": fwd / 1e9,
        "train_gflop_per_image": 3 * fwd / 1e9,
        "rows": [],
    }
    t_start = time.perf_counter()

    def row(kind, dtype, devices, fn):
        name = f"{kind} {dtype} x{devices}"
        print(f"[{name}] ...", flush=True)
        try:
            r = fn()
        except Exception as err:  # an OOM on one row must not lose the others
            r = {"error": f"{type(err).__name__}: {str(err)[:300]}"}
        flop = (3 if kind == "train" else 1) * fwd
        if "img_per_s" in r:
            r["achieved_tflop_per_s"] = r["img_per_s"] * flop / 1e12
        r.update(kind=kind, dtype=dtype, devices=devices, **_device_peak())
        result["rows"].append(r)
        print(f"[{name}] {json.dumps(r)}", flush=True)

    fns = {"f32": base_fn, "bf16": _LowPrecision(model, jnp.bfloat16)}
    for dtype in sorted(dtypes, key=lambda d: d != "bf16"):  # smaller footprint first
        row("extract", dtype, 1, lambda d=dtype: measure_extract(
            fns[d], params, size, batch=batch, images=n_extract, devices=1))  # fmt: skip
    for dtype in sorted(dtypes, key=lambda d: d != "bf16"):
        row("train", dtype, 1, lambda d=dtype: measure_train(
            fns[d], params, size, batch=batch, repeats=args.repeats, devices=1))  # fmt: skip
    n = jax.device_count()
    if n > 1:
        row("extract", "f32", n, lambda: measure_extract(
            base_fn, params, size, batch=batch * n, images=n_extract * n, devices=n))  # fmt: skip
        row("train", "f32", n, lambda: measure_train(
            base_fn, params, size, batch=batch * n, repeats=args.repeats, devices=n))  # fmt: skip
        one = {r["kind"]: r for r in result["rows"] if r["devices"] == 1 and r["dtype"] == "f32"}
        result["scaling"] = {
            r["kind"]: r["img_per_s"] / one[r["kind"]]["img_per_s"]
            for r in result["rows"]
            if r["devices"] == n and "img_per_s" in r and "img_per_s" in one.get(r["kind"], {})
        }
    result["total_s"] = round(time.perf_counter() - t_start, 1)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out} ({result['total_s']} s)")
    return result


if __name__ == "__main__":
    run(sys.argv[1:])
