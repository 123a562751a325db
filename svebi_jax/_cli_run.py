"""The sub-commands of ``svebi`` (:mod:`svebi_jax.cli` parses, these run).

Each ``cmd_*`` first checks every flag and proves ``--out`` writable, then works; it returns
the exit status (0) or raises ``ValueError`` (bad input, exit 2) or
:class:`svebi_jax._cli_util.SaveFailed` (the final save failed, exit 1).
"""

from __future__ import annotations

import json
import pathlib
import re
import sys
import time
import warnings

import numpy as np

from svebi_jax import _cli_methods as M
from svebi_jax import _cli_util as U
from svebi_jax import _validation as V

# ----------------------------------------------------------------------------- train


def _train_configs(args):
    """``(SNNConfig, TrainConfig)`` from the arguments; every value checked, nothing run."""
    from svebi_jax import checkpoint, data, train
    from svebi_jax import layers as L

    checkpoint.check_checkpoint_dir(args.out, name="--out")
    U.probe_writable("--out", args.out)
    data.check_spec(args.data, name="--data")
    if args.test_data is not None:
        data.check_spec(args.test_data, name="--test-data")
    for flag, value in {
        "--eval-every": args.eval_every,
        "--num-steps": args.num_steps,
        "--epochs": args.epochs,
        "--hidden": args.hidden,
    }.items():
        V.check_positive_int(flag, value)
    for c in args.channels:
        V.check_positive_int("--channels", c)
    if args.limit is not None:
        V.check_positive_int("--limit", args.limit)
    if args.test_data is None:
        V.check_number(
            "--test-fraction", args.test_fraction, low=0.0, high=1.0, low_open=True, high_open=True
        )
    try:
        snn = L.SNNConfig(
            num_steps=args.num_steps,
            beta=args.beta,
            threshold=args.threshold,
            reset=args.reset,
            surrogate=args.surrogate,
        )
        fields = (
            "seed epochs batch_size optimizer learning_rate schedule warmup_epochs weight_decay "
            "momentum grad_clip augment_shift eval_batch_size"
        ).split()
        cfg = train.TrainConfig(snn=snn, **{f: getattr(args, f) for f in fields})
    except (ValueError, TypeError) as err:  # name the flag: field names map to --flags
        raise ValueError(f"invalid argument: {err} (see svebi train --help)") from err
    return snn, cfg


def _train_data(args, cfg):
    """``(train_ds, test_ds, train_name, test_name)`` as the flags ask."""
    from svebi_jax import data

    full = data.load(args.data, split=args.split)
    if args.limit is not None:
        full = data.subset(full, args.limit, seed=args.seed)
    train_name = args.data if args.limit is None else f"{args.data}[{args.limit}@{args.seed}]"
    if args.test_data is None:
        train_ds, test_ds = data.split(full, args.test_fraction, seed=args.seed)
        test_name = f"{args.data} held-out {args.test_fraction:g} (seed {args.seed})"
    else:
        train_ds = full
        test_ds = data.load(args.test_data, split=args.test_split)
        test_name = f"{args.test_data} ({args.test_split})"
    if test_ds.image_shape != train_ds.image_shape:
        raise ValueError(
            f"--test-data images must have shape {train_ds.image_shape} like --data, "
            f"got {test_ds.image_shape}"
        )
    if test_ds.num_classes > train_ds.num_classes:
        raise ValueError(
            f"--test-data has {test_ds.num_classes} classes but --data only "
            f"{train_ds.num_classes}: the model cannot predict the others"
        )
    if len(train_ds) < cfg.batch_size:
        raise ValueError(
            f"--batch-size {cfg.batch_size} exceeds the {len(train_ds)} training examples"
        )
    return train_ds, test_ds, train_name, test_name


def _train_metrics(history, cfg, total, names, sizes) -> dict:
    epochs = [
        {k: history[k][i] for k in ("train_loss", "train_accuracy", "eval_loss", "eval_accuracy")}
        | {"epoch": i + 1, "seconds": history["seconds"][i]}
        for i in range(cfg.epochs)
    ]
    return {
        "test_accuracy": history["eval_accuracy"][-1],
        "test_loss": history["eval_loss"][-1],
        "epochs": epochs,
        "seconds_per_epoch": sum(history["seconds"]) / cfg.epochs,
        "total_seconds": total,
        "train_data": names[0],
        "test_data": names[1],
        "num_train": sizes[0],
        "num_test": sizes[1],
        "config": cfg.to_dict(),
    }


def cmd_train(args) -> int:
    """``svebi train``: fit the shallow SNN, write a checkpoint with ``metrics.json``."""
    from flax import nnx

    from svebi_jax import checkpoint, train
    from svebi_jax.models import ShallowSNN

    snn, cfg = _train_configs(args)
    train_ds, test_ds, train_name, test_name = _train_data(args, cfg)
    model = ShallowSNN(
        input_shape=train_ds.image_shape,
        num_classes=train_ds.num_classes,
        config=snn,
        channels=tuple(args.channels),
        hidden=args.hidden,
        rngs=nnx.Rngs(cfg.seed),
    )
    t0 = time.perf_counter()
    params, history = train.fit(
        model,
        train_ds,
        config=cfg,
        eval_ds=test_ds,
        progress=not args.no_progress,
        eval_every=args.eval_every,
    )
    metrics = _train_metrics(
        history,
        cfg,
        time.perf_counter() - t0,
        (train_name, test_name),
        (len(train_ds), len(test_ds)),
    )
    config = {
        **checkpoint.model_config(model),
        "train": cfg.to_dict(),
        "data": {"train": train_name, "test": test_name},
    }
    out = U.save_checkpoint_or_rescue(args.out, params, config=config, metrics=metrics)
    print(
        f"test accuracy {metrics['test_accuracy']:.4f} ({len(test_ds)} examples), "
        f"{metrics['seconds_per_epoch']:.1f} s/epoch; checkpoint written to {out}"
    )
    return 0


# ----------------------------------------------------------------------------- evaluate


def _check_data_flags(args) -> None:
    from svebi_jax import data

    if getattr(args, "images", None):
        U.check_image_files(args.images)
    else:
        data.check_spec(args.data, name="--data")
    if getattr(args, "limit", None) is not None:
        V.check_positive_int("--limit", args.limit)
    V.check_positive_int("--batch-size", args.batch_size)
    if getattr(args, "target", None) == "label" and getattr(args, "images", None):
        raise ValueError("--target label needs --data (image files carry no label)")


def cmd_evaluate(args) -> int:
    """``svebi evaluate``: accuracy and loss of a checkpoint on ``--data``, as JSON."""
    from svebi_jax import train

    _check_data_flags(args)
    model = U.load_model(args.checkpoint)
    inputs = U.load_inputs(args, model.input_shape, model.num_classes)
    from svebi_jax.data import Dataset

    ds = Dataset(inputs.images, inputs.labels, model.num_classes, inputs.name)
    acc, loss = train.evaluate(model.apply_fn, model.params, ds, args.batch_size)
    print(json.dumps({"accuracy": acc, "loss": loss, "num_examples": len(ds), "data": args.data}))
    return 0


# ----------------------------------------------------------------------------- relevance


def _batches_with_progress(inputs, batch_size: int, progress: bool):
    """``(images, labels)`` batches of ``min(batch_size, N)`` images in order (the batches
    :func:`~svebi_jax.responses.compute_responses` makes of the arrays), under a progress bar."""
    from tqdm.auto import tqdm

    n = len(inputs.images)
    b = min(batch_size, n)
    labels = np.zeros(n, np.int32) if inputs.labels is None else inputs.labels
    for s in tqdm(range(0, n, b), desc="responses", unit="batch", disable=not progress):
        yield inputs.images[s : s + b], labels[s : s + b]


def cmd_relevance(args) -> int:
    """``svebi relevance``: the relevant filters of a checkpoint, written as a Relevance."""
    from svebi_jax.relevance import fit_relevance

    _check_data_flags(args)
    V.check_number("--mu", args.mu, low=0.0, low_open=True)
    out = U.probe_writable("--out", args.out, kind="file")
    model = U.load_model(args.checkpoint)
    if args.layers is not None:
        unknown = [n for n in args.layers if n not in model.conv_layers]
        if unknown:
            raise ValueError(f"--layers: unknown {unknown}; the model has {model.conv_layers}")
    inputs = U.load_inputs(args, model.input_shape, model.num_classes)
    rel = fit_relevance(
        model.apply_fn,
        model.params,
        _batches_with_progress(inputs, args.batch_size, not args.no_progress),
        mu=args.mu,
        layers=None if args.layers is None else tuple(args.layers),
        batch_size=args.batch_size,
    )
    out = U.save_file_or_rescue("--out", out, rel.save)
    counts = rel.layer_distribution()
    print(
        f"relevant filters per layer (summed over {model.num_classes} classes, mu {args.mu:g}, "
        f"{len(inputs.images)} examples of {inputs.name}): {json.dumps(U.to_builtin(counts))}; "
        f"written to {out}"
    )
    return 0


# ----------------------------------------------------------------------------- explain


def _method_setup(args, model, methods):
    """``(relevance, MethodContext)`` for ``methods``; flags checked before any work."""
    relevance = None
    if getattr(args, "relevance", None) is not None:
        relevance = M.load_relevance(args.relevance, model)
    M.check_method_flags(
        methods, layer=args.layer, relevance=relevance, conv_layers=model.conv_layers
    )
    if args.target.isdigit() and int(args.target) >= model.num_classes:
        raise ValueError(
            f"--target must be a class in [0, {model.num_classes}) for this model, "
            f"got {args.target}"
        )
    ctx = M.MethodContext(
        apply_fn=model.apply_fn,
        conv_layers=model.conv_layers,
        layer=args.layer,
        relevance=relevance,
        path_steps=args.path_steps,
        seed=args.seed,
    )
    return relevance, ctx


def _maps_in_batches(attr_fn, params, images, target, batch_size, progress: bool):
    """``[B, H, W]`` maps of ``images`` ``batch_size`` at a time, with a progress bar."""
    from tqdm.auto import tqdm

    from svebi_jax import attribution

    starts = range(0, len(images), batch_size)
    parts = []
    for s in tqdm(starts, desc="maps", unit="batch", disable=not progress, leave=False):
        t = None if target is None else target[s : s + batch_size]
        batch = images[s : s + batch_size]
        parts.append(np.asarray(attribution.attribution_maps(attr_fn, params, batch, target=t)))
    return np.concatenate(parts)


def cmd_explain(args) -> int:
    """``svebi explain``: maps of one method, overlays (PNG), maps (npz), summary (JSON)."""
    import jax.numpy as jnp

    from svebi_jax import attribution

    _check_data_flags(args)
    out = U.probe_writable("--out", args.out)
    model = U.load_model(args.checkpoint)
    relevance, ctx = _method_setup(args, model, (args.method,))
    inputs = U.load_inputs(args, model.input_shape, model.num_classes)
    target = U.parse_target(args.target, inputs, model.num_classes)
    attr_fn = M.build(args.method, ctx)
    predicted = np.asarray(
        attribution.predicted_classes(model.apply_fn, model.params, jnp.asarray(inputs.images))
    )
    explained = predicted if target is None else target
    maps = _maps_in_batches(
        attr_fn, model.params, inputs.images, target, args.batch_size, not args.no_progress
    )
    out.mkdir(parents=True, exist_ok=True)
    layer = M.layer_of(ctx, args.method)
    _write_explain(out, args, inputs, maps, predicted, explained, relevance, layer)
    print(f"{len(maps)} {args.method} maps written to {out} (maps.npz, summary.json, overlays/)")
    return 0


def _relevant_used(relevance, cls: int, layer: str | None):
    if relevance is None:
        return None
    per_layer = relevance.filters[int(cls)]
    if layer is None or layer == "combined":
        return {k: list(map(int, v)) for k, v in per_layer.items()}
    return {layer: list(map(int, per_layer[layer]))}


def _write_explain(out, args, inputs, maps, predicted, explained, relevance, layer) -> None:
    from tqdm.auto import tqdm

    from svebi_jax import viz

    arrays = {"maps": maps, "images": inputs.images, "predicted": predicted, "target": explained}
    if inputs.labels is not None:
        arrays["labels"] = inputs.labels
    np.savez_compressed(out / "maps.npz", **arrays)
    (out / "overlays").mkdir(exist_ok=True)
    rows = []
    for i in tqdm(range(len(maps)), desc="overlays", disable=args.no_progress, leave=False):
        name = f"overlays/{i:04d}.png"
        title = f"{args.method}: class {explained[i]} (predicted {predicted[i]})"
        viz.overlay(
            inputs.images[i],
            maps[i],
            sign=args.sign,
            image_display=args.image_display,
            title=title,
            path=out / name,
        )
        row = {
            "index": i,
            "source": inputs.sources[i],
            "predicted": int(predicted[i]),
            "target": int(explained[i]),
            "overlay": name,
        }
        if inputs.labels is not None:
            row["label"] = int(inputs.labels[i])
        if args.method == "svebi":
            row["relevant_filters"] = _relevant_used(relevance, explained[i], layer)
        rows.append(row)
    summary = {
        "method": args.method,
        "layer": layer,
        "explains_class": args.method in M.CLASS_AWARE,
        "checkpoint": str(args.checkpoint),
        "data": inputs.name,
        "relevance": None if args.relevance is None else str(args.relevance),
        "mu": None if relevance is None else U.to_builtin(relevance.mu),
        "target": args.target,
        "num_images": len(maps),
        "images": rows,
    }
    U.write_json(out / "summary.json", summary)


# ----------------------------------------------------------------------------- score


def _check_score_flags(args, hw: int) -> None:
    """``--path-steps`` and ``--pixels-per-step`` (at most ``H * W``), before any work."""
    V.check_positive_int("--path-steps", args.path_steps)
    if args.pixels_per_step is not None:
        V.check_positive_int("--pixels-per-step", args.pixels_per_step)
        if args.pixels_per_step > hw:
            raise ValueError(
                f"--pixels-per-step must be at most H*W = {hw} for this model, "
                f"got {args.pixels_per_step}"
            )


def _score_one(name, ctx, model, images, target, args) -> dict:
    """``{"method", "insertion_auc", "deletion_auc", ...}`` of one method: its maps scored by
    :func:`svebi_jax.metrics.insertion_deletion` and :func:`svebi_jax.metrics.road`."""
    import jax

    from svebi_jax import metrics

    attr_fn = M.build(name, ctx)
    maps = _maps_in_batches(attr_fn, model.params, images, target, args.batch_size, False)
    res = metrics.insertion_deletion(
        maps,
        model.apply_fn,
        model.params,
        images,
        target=target,
        pixels_per_step=args.pixels_per_step,
        substrate=args.substrate,
    )
    row = {
        "method": name,
        "insertion_auc": float(res.insertion.mean_auc),
        "deletion_auc": float(res.deletion.mean_auc),
        "pixels_per_step": int(res.insertion.pixels_per_step),
        "substrate": {"insertion": res.insertion.substrate, "deletion": res.deletion.substrate},
        "insertion_auc_per_image": np.asarray(res.insertion.auc).tolist(),
        "deletion_auc_per_image": np.asarray(res.deletion.auc).tolist(),
    }
    if not args.no_road:
        key = jax.random.key(args.seed)
        road = metrics.road(maps, model.apply_fn, model.params, images, key=key, target=target)
        row |= {
            "road_morf": float(road.mean_morf),
            "road_lerf": float(road.mean_lerf),
            "road_gap": float(road.gap),
        }
    return row


_SCORE_COLUMNS = (
    ("method", "method"),
    ("insertion_auc", "insertion AUC ↑"),
    ("deletion_auc", "deletion AUC ↓"),
    ("road_morf", "ROAD MoRF ↓"),
    ("road_lerf", "ROAD LeRF ↑"),
    ("road_gap", "ROAD gap ↑"),
)


def cmd_score(args) -> int:
    """``svebi score``: insertion/deletion (and ROAD) of several methods, JSON + Markdown."""
    from tqdm.auto import tqdm

    _check_data_flags(args)
    out = U.probe_writable("--out", args.out)
    model = U.load_model(args.checkpoint)
    _check_score_flags(args, model.input_shape[0] * model.input_shape[1])
    methods = tuple(dict.fromkeys(args.methods))
    _, ctx = _method_setup(args, model, methods)
    inputs = U.load_inputs(args, model.input_shape, model.num_classes)
    target = U.parse_target(args.target, inputs, model.num_classes)
    rows = [
        _score_one(name, ctx, model, inputs.images, target, args)
        for name in tqdm(methods, desc="methods", disable=args.no_progress)
    ]
    columns = [(k, h) for k, h in _SCORE_COLUMNS if k in rows[0]]
    table = U.markdown_table([h for _, h in columns], [[r[k] for k, _ in columns] for r in rows])
    result = {
        "checkpoint": str(args.checkpoint),
        "data": inputs.name,
        "num_images": len(inputs.images),
        "target": args.target,
        "pixels_per_step": rows[0]["pixels_per_step"],
        "substrate": rows[0]["substrate"],
        "methods": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    U.write_json(out / "scores.json", result)
    (out / "scores.md").write_text(
        f"Scores of {len(inputs.images)} images of {inputs.name} ({args.checkpoint}).\n\n" + table
    )
    print(table, end="")
    return 0


# ----------------------------------------------------------------------------- import-nir


def _nir_network(net):
    """A :class:`~svebi_jax.models.SpikingNetwork` holding ``net``'s parameters, for the
    checkpoint format; refused when ``net`` has per-layer neuron parameters."""
    from flax import nnx

    from svebi_jax import layers as L
    from svebi_jax.models import SpikingNetwork

    named = [s.name for s in net.layers if isinstance(s, L.LIF) and s.name is not None]
    if named:
        raise ValueError(
            f"FILE: the graph's neurons {named} have their own per-layer parameters (not one "
            "beta/threshold for the whole network); a checkpoint holds only conv/dense weights "
            "and one SNNConfig. Use svebi_jax.from_nir in Python for this network"
        )
    model = SpikingNetwork(
        net.layers, input_shape=net.input_shape, config=net.config, rngs=nnx.Rngs(0)
    )
    state = nnx.state(model, nnx.Param)
    nnx.replace_by_pure_dict(state, net.params)
    nnx.update(model, state)
    return model


def cmd_import_nir(args) -> int:
    """``svebi import-nir``: a NIR graph (snnTorch, Norse, ...) as a checkpoint."""
    import svebi_jax
    from svebi_jax import checkpoint

    path = pathlib.Path(args.file).expanduser()
    if not path.is_file():
        raise ValueError(f"FILE {str(path)!r} is not an existing file")
    V.check_positive_int("--num-steps", args.num_steps)
    checkpoint.check_checkpoint_dir(args.out, name="--out")
    U.probe_writable("--out", args.out)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = svebi_jax.from_nir(path, num_steps=args.num_steps, reset=args.reset, dt=args.dt)
    for w in caught:  # in the command line's words: reset='subtract' -> --reset subtract
        msg = re.sub(r"\breset='(\w+)'", r"--reset \1", str(w.message))
        print(f"svebi import-nir: warning: {msg}", file=sys.stderr)
    model = _nir_network(net)
    config = {
        **checkpoint.model_config(model),
        "source": {"nir": str(path), "reset": net.config.reset, "reset_given": args.reset},
    }
    out = U.save_checkpoint_or_rescue(args.out, model, config=config)
    print(
        f"{path.name}: {len(net.conv_layer_names)} conv layers {net.conv_layer_names}, "
        f"input {net.input_shape}, T = {args.num_steps}, reset {net.config.reset!r}; "
        f"checkpoint written to {out}"
    )
    return 0
