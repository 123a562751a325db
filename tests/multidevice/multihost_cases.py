"""One process of the multi-host comparison run by ``tests/test_multihost.py``.

Not a test module (pytest does not collect it): ``tests/test_multihost.py`` starts it as
``P`` processes with ``D`` CPU devices each, joined by ``jax.distributed.initialize`` on the
loopback address, and compares what they write. Usage::

    python tests/multidevice/multihost_cases.py PHASE --work DIR --processes P \\
        --process-id I --devices D [--port PORT]

Phases (every process writes ``DIR/<P>x<D>/<phase>-<I>.npz``):

* ``stages``: every mesh-aware stage through the public API on a tiny network (training on
  an in-memory set and on a stream with orbax checkpoints, responses ``X``/``L``, the
  μ-lasso ``W``, ``fit_relevance``, Grad2D/IG2D maps, insertion/deletion, ablation), the
  rows one epoch of the stream gives this host, and, for every compiled per-image stage
  (:func:`svebi_jax.sharding.data_parallel`), whether its output is batch-sharded with each
  device holding its own rows and whether its program holds an all-gather.
* ``kill``: the stream training again into a fresh checkpoint directory; process 1 exits
  abruptly after the checkpoint of step :data:`KILL_AT` (the other one must then stop with
  an error, not hang).
* ``resume``: the same training resumed from that directory, plus restoring the
  checkpoints another process count wrote (``--other``) into this one's mesh.
"""

from __future__ import annotations

import argparse
import inspect
import os
import pathlib
import sys
import time

T0 = time.perf_counter()
ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

#: The step after whose checkpoint process 1 of the ``kill`` phase dies (of 6).
KILL_AT = 4
#: Seconds without a heartbeat after which the survivors are stopped by JAX.
HEARTBEAT_S = 10


def parse(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("phase", choices=("stages", "kill", "resume"))
    p.add_argument("--work", required=True)
    p.add_argument("--processes", type=int, required=True)
    p.add_argument("--process-id", type=int, required=True)
    p.add_argument("--devices", type=int, required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--other", default=None, help="tag (PxD) of the run whose checkpoints to load")
    return p.parse_args(argv)


def start(args):
    import jax

    jax.config.update("jax_num_cpu_devices", args.devices)
    # The rounds compile the same programs again: share them through JAX's persistent cache.
    jax.config.update("jax_compilation_cache_dir", str(pathlib.Path(args.work) / "jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    if args.processes > 1:
        jax.distributed.initialize(
            f"127.0.0.1:{args.port}",
            num_processes=args.processes,
            process_id=args.process_id,
            initialization_timeout=120,
            heartbeat_timeout_seconds=HEARTBEAT_S,
            shutdown_timeout_seconds=30,
        )
    assert jax.device_count() == args.processes * args.devices, jax.devices()
    return jax


def model_and_data():
    """A shallow SNN (T = 4, 16x16, 3 classes) and 24 varied images with labels."""
    import numpy as np
    from flax import nnx

    from svebi_jax import layers as L
    from svebi_jax.models import ShallowSNN, functional

    net = ShallowSNN(
        input_shape=(16, 16, 1),
        num_classes=3,
        channels=(4, 6),
        hidden=16,
        config=L.SNNConfig(num_steps=4),
        rngs=nnx.Rngs(2),
    )
    apply_fn, params = functional(net)
    rng = np.random.default_rng(0)
    gamma = rng.uniform(0.3, 4.0, (24, 1, 1, 1)).astype(np.float32)
    images = rng.random((24, 16, 16, 1), dtype=np.float32) ** gamma
    labels = rng.integers(0, 3, 24).astype(np.int32)
    return apply_fn, params, images, labels


def stream_config():
    from svebi_jax import layers as L
    from svebi_jax import train

    return train.TrainConfig(
        epochs=2, batch_size=8, snn=L.SNNConfig(num_steps=4), augment_shift=1, seed=5
    )


def mark(what):
    """Prints the seconds since the process started (to find slow stages in the logs)."""
    import time

    print(f"[{time.perf_counter() - T0:6.1f} s] {what}", file=sys.stderr, flush=True)


def leaves(prefix, tree, out):
    import jax
    import numpy as np

    for i, leaf in enumerate(jax.tree.leaves(tree)):
        out[f"{prefix}/{i:03d}"] = np.asarray(leaf)


def record_stages(S):
    """Wraps ``S.data_parallel`` so every stage built from it remembers its first call."""
    built = []
    original = S.data_parallel

    def data_parallel(fn, mesh, **kw):
        wrapped = original(fn, mesh, **kw)

        def call(*args):
            if not any(w is call for w, _ in built):
                built.append((call, args))
            return wrapped(*args)

        call.lower, call.sharded = wrapped.lower, wrapped.sharded
        call.name = getattr(fn, "__qualname__", repr(fn))
        return call

    S.data_parallel = data_parallel
    return built


def inspect_stage(S, mesh, wrapped, args):
    """``(name, no_all_gather, rows_ok)`` of one compiled per-image stage."""
    import jax

    compiled = wrapped.lower(*args).compile()
    text = compiled.as_text()
    no_gather = "all-gather" not in text
    order = {dev: k for k, dev in enumerate(mesh.devices.flat)}
    d = S.num_shards(mesh)
    outs = wrapped.sharded(*args)
    rows_ok = True
    for x in jax.tree.leaves(outs):
        spec = x.sharding.spec if hasattr(x.sharding, "spec") else None
        if spec is None or S.DATA_AXIS not in tuple(spec):
            rows_ok = False
            continue
        axis = tuple(spec).index(S.DATA_AXIS)
        per = x.shape[axis] // d
        for shard in x.addressable_shards:
            k = order[shard.device]
            idx = shard.index[axis]
            rows_ok &= (idx.start or 0) == k * per and (idx.stop or x.shape[axis]) == (k + 1) * per
            rows_ok &= shard.data.shape[axis] == per
    return str(wrapped.name), bool(no_gather), bool(rows_ok)


def phase_stages(args, out):
    import jax
    import jax.numpy as jnp
    import numpy as np

    import svebi_jax
    from svebi_jax import attribution, data, train
    from svebi_jax import layers as L
    from svebi_jax import sharding as S
    from svebi_jax.lasso import mu_lasso
    from svebi_jax.metrics.ablation import ablation_curve
    from svebi_jax.metrics.insdel import insertion_deletion
    from svebi_jax.responses import compute_responses

    built = record_stages(S)
    apply_fn, params, images, labels = model_and_data()
    mesh = S.make_mesh()
    ds = data.Dataset(images, labels, 3, "toy")

    mark("start")
    # Training on the in-memory set (every host holds it) and on a stream (host-local rows).
    cfg = train.TrainConfig(epochs=1, batch_size=8, snn=L.SNNConfig(num_steps=4))
    p_mem, h_mem = train.fit((apply_fn, params), ds, config=cfg, progress=False, mesh=mesh)
    leaves("fit_memory", p_mem, out)
    out["fit_memory_loss"] = np.asarray(h_mem["train_loss"])
    tag = f"{args.processes}x{args.devices}"
    p_str, h_str = train.fit(
        (apply_fn, params),
        data.ArraySource(ds),
        config=stream_config(),
        progress=False,
        mesh=mesh,
        checkpoint_dir=str(pathlib.Path(args.work) / tag / "ckpt"),
        checkpoint_every=2,
    )
    mark("fit")
    leaves("fit_stream", p_str, out)
    out["fit_stream_loss"] = np.asarray(h_str["train_loss"])

    # The rows one epoch of the stream gives this host (global batch 8 = P x per-host batch).
    src = data.ArraySource(ds)
    with src.batches(8 // args.processes, seed=3, epoch=1) as it:
        rows = [np.asarray(b.index)[np.asarray(b.mask)] for b in it]
    out["stream_rows"] = np.concatenate(rows)
    # ... and the same epoch put on the mesh: global batches of every host's rows
    with src.batches(8 // args.processes, seed=3, epoch=1) as it:
        glob = list(data.stream.prefetch_to_device(it, sharding=S.batch_sharding(mesh)))
    out["prefetched_rows"] = np.concatenate([S.to_host(b.index) for b in glob])

    # Per-image stages: every host passes the whole batch, every host gets every row back.
    params_t = p_mem
    r = compute_responses(apply_fn, params_t, images, batch_size=12, mesh=mesh)
    out["X"], out["L"], out["predictions"] = r.X, r.L, r.predictions
    shards = pathlib.Path(args.work) / tag / "response_shards"
    r = compute_responses(
        apply_fn, params_t, images, batch_size=12, mesh=mesh, checkpoint_dir=str(shards),
        shard_batches=1,
    )  # fmt: skip
    out["X_from_shards"] = r.X
    out["shard_files"] = np.asarray(sorted(p.name for p in shards.iterdir()))
    mark("responses")
    out["W"] = np.asarray(mu_lasso(r.X, r.L, 2.0).W)
    if hasattr(svebi_jax, "fit_relevance"):
        rel = svebi_jax.fit_relevance(apply_fn, params_t, images, 2.0, batch_size=12, mesh=mesh)
        out["W_fit_relevance"] = np.asarray(rel.W)
    mark("W")
    x = images[:10]  # 10 rows: padded to 12 over 4 devices
    out["grad2d"] = np.asarray(attribution.grad2d(apply_fn, mesh=mesh)(params_t, x))
    ig = attribution.integrated_gradients(apply_fn, path_steps=2, chunk_size=2, mesh=mesh)
    out["ig2d"] = np.asarray(ig(params_t, x))

    mark("maps")

    def attr_fn(p, imgs, target=None):  # a fixed, tie-free map: the games alone are compared
        return jnp.asarray(imgs[..., 0]) + jnp.linspace(0, 1e-3, 256).reshape(16, 16)

    kw = dict(substrate="zeros", chunk_size=16)
    per_step = (
        "pixels_per_step"
        if "pixels_per_step" in inspect.signature(insertion_deletion).parameters
        else "step"
    )
    kw[per_step] = 32
    res = insertion_deletion(attr_fn, apply_fn, params_t, x, mesh=mesh, **kw)
    for name, game in (("insertion", res.insertion), ("deletion", res.deletion)):
        out[f"{name}_curves"] = np.asarray(game.curves)
        out[f"{name}_auc"] = np.asarray(game.auc)
    mark("insdel")
    rng = np.random.default_rng(1)
    masks = {
        "conv1": (rng.random((2, 3, 4)) < 0.5).astype(np.float32),
        "conv2": (rng.random((2, 3, 6)) < 0.5).astype(np.float32),
    }
    abl = ablation_curve(
        apply_fn, params_t, images, labels, masks, mu=np.array([1.0, 2.0]),
        key=jax.random.key(0), n_random=2, batch_size=12, mesh=mesh,
    )  # fmt: skip
    for f in ("relevant", "random", "random_std", "num_ablated"):
        out[f"ablation_{f}"] = np.asarray(getattr(abl, f))

    mark("ablation")
    # Work is split: each compiled per-image stage keeps its rows where they are.
    names, gathers, rows = [], [], []
    for wrapped, call_args in built:
        name, no_gather, rows_ok = inspect_stage(S, mesh, wrapped, call_args)
        names.append(name)
        gathers.append(not no_gather)
        rows.append(rows_ok)
    mark("inspect")
    out["stage_names"] = np.asarray(names)
    out["stage_all_gather"] = np.asarray(gathers)
    out["stage_rows_ok"] = np.asarray(rows)


def phase_kill(args, out):
    import numpy as np

    from svebi_jax import data, train
    from svebi_jax import sharding as S

    apply_fn, params, images, labels = model_and_data()
    ds = data.Dataset(images, labels, 3, "toy")

    def die(step):
        print(f"process {args.process_id}: checkpoint {step} saved", flush=True)
        if args.process_id == 1 and step == KILL_AT:
            os._exit(9)  # abrupt: no shutdown, no barrier

    train.fit(
        (apply_fn, params),
        data.ArraySource(ds),
        config=stream_config(),
        progress=False,
        mesh=S.make_mesh(),
        checkpoint_dir=str(pathlib.Path(args.work) / "killed" / "ckpt"),
        checkpoint_every=2,
        on_checkpoint=die,
    )
    out["finished"] = np.asarray(True)  # reached only if nobody died


def phase_resume(args, out):
    import jax

    from svebi_jax import data, train
    from svebi_jax import sharding as S
    from svebi_jax.resume import TrainCheckpoints

    apply_fn, params, images, labels = model_and_data()
    ds = data.Dataset(images, labels, 3, "toy")
    mesh = S.make_mesh()
    work = pathlib.Path(args.work)
    if args.processes > 1:  # resume the killed run
        p, h = train.fit(
            (apply_fn, params),
            data.ArraySource(ds),
            config=stream_config(),
            progress=False,
            mesh=mesh,
            checkpoint_dir=str(work / "killed" / "ckpt"),
            checkpoint_every=2,
        )
        leaves("resumed", p, out)
        out["resumed_loss"] = jax.numpy.asarray(h["train_loss"])
    # The final checkpoint another process count wrote, restored onto this mesh.
    cfg = stream_config()
    opt = train.make_optimizer(cfg, 3)
    template = S.replicate(mesh, (params, opt.init(params)))
    ckpt = TrainCheckpoints(work / args.other / "ckpt", every=2)
    try:
        step, p_other, opt_other, _ = ckpt.restore(*template)
    finally:
        ckpt.close()
    out["other_step"] = jax.numpy.asarray(step)
    leaves("other_params", S.to_host(p_other), out)
    leaves("other_opt", S.to_host(opt_other), out)


def main(argv=None):
    args = parse(argv)
    jax = start(args)
    import numpy as np

    out: dict = {}
    {"stages": phase_stages, "kill": phase_kill, "resume": phase_resume}[args.phase](args, out)
    tag = f"{args.processes}x{args.devices}"
    path = pathlib.Path(args.work) / tag / f"{args.phase}-{args.process_id}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    print(f"process {jax.process_index()}: wrote {path}", flush=True)


if __name__ == "__main__":
    main()
