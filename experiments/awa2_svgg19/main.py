"""Reproduces the SVEBI paper's AwA2 results with the spiking VGG19 (SVGG19), streamed.

::

    python experiments/awa2_svgg19.py --data folder:AwA2/JPEGImages --weights vgg19.npz
    python -m experiments.awa2_svgg19 --data folder:PHOTOS --image-size 32 --num-steps 4 \\
        --width-scale 0.0625 --epochs 3          # the small CPU run (README)

Stages (each timed in ``results.json["timings_s"]``): open and check everything (folder,
weights, checkpoint) → fine-tune SVGG19 on the seeded 80 % (or reuse ``--checkpoint``) →
test accuracy on the other 20 % → responses X, L on the training split → μ-lasso (μ = 20) →
relevant filters and their distribution over the 16 conv layers (Fig. 3c) → interpretation
grid (Fig. 4: top-k receptive-field crops per relevant filter) → SVEBI heatmaps (Fig. 5) →
insertion (from an 11x11, σ = 5 blurred copy) and deletion (to black) for SVEBI, SNN-Grad2D,
SNN-IG2D, SAM and trivial maps (Table 1's AwA2 columns). Outputs: ``report.md``,
``results.json``, figures and the checkpoint, in a run directory that replaces ``--out`` only
when the run is complete.

``--data-parallel`` runs training, response extraction, the gradient baselines and the games
on one :class:`jax.sharding.Mesh` over all devices: batches sharded, parameters replicated.
Several processes (hosts) run the same command with ``--coordinator-address HOST:PORT
--num-processes N --process-id I`` (or ``--distributed``: JAX detects SLURM, Cloud TPU or
its ``JAX_*`` variables), which implies ``--data-parallel`` over every process's devices;
process 0 writes ``--out`` (see the guide "Running on many hosts"). The run works in
``.OUT.partial`` beside ``--out``; training saves orbax checkpoints every
``--checkpoint-every`` steps and the responses are written in shards, so an interrupted run
continues with ``--resume`` (same flags) where it stopped, with the same X bit for bit.

Images are never held in memory as a split: every stage reads the folder through
:mod:`svebi_jax.data.stream` a few batches at a time (``--num-workers`` decoding processes),
and only the few images a figure shows are read again. The network sees torchvision's
ImageNet normalization (:class:`svebi_jax.models.vgg.ImagenetInput`); every map, crop and
perturbation lives in ``[0, 1]`` pixel space.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import shutil
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments.awa2_svgg19.calibration import calibrate_firing
from experiments.awa2_svgg19.config import ExperimentConfig, Prepared, parse_args, prepare
from experiments.awa2_svgg19.report import report
from experiments.common import stages
from experiments.common.methods import table_methods
from experiments.common.rundir import RunDirectory, write_text
from experiments.common.timing import StageTimer
from svebi_jax import checkpoint, sharding, train, viz
from svebi_jax.models import functional, vgg

#: RISE on photographs: insertion starts from a blurred copy, deletion ends in black.
SUBSTRATES = {"insertion": "blur", "deletion": "zeros"}
#: Resumable state inside the run's work directory (deleted when the run is complete).
TRAIN_STATE, RESPONSE_SHARDS = "train_state", "response_shards"


def run(cfg: ExperimentConfig) -> dict:
    """Runs every stage; returns ``results.json``'s content.

    With several processes (``--coordinator-address``/``--num-processes``/``--process-id``
    or ``--distributed``) every process runs every stage on one mesh over all devices;
    training reads each process's rows of every batch, the per-image stages read the whole
    batch and gather their rows to every process, and only process 0 writes ``--out``
    (:func:`_directories`).
    """
    cfg = cfg.validate()
    cfg.start_processes()
    cfg.check_devices()
    timer = StageTimer()
    with timer("data"):
        prep = prepare(cfg)
    results = _initial_results(cfg, prep)
    multi = jax.process_count() > 1
    mesh = sharding.make_mesh() if cfg.data_parallel or multi else None
    results["devices"] = sharding.num_shards(mesh) if mesh is not None else 1
    results["processes"] = jax.process_count()
    with _directories(cfg) as (out, state):
        _pipeline(cfg, prep, out, state, timer, results, mesh)
    if jax.process_index() == 0:
        print(f"wrote {pathlib.Path(cfg.out) / 'report.md'} and results.json")
    return results


def _initial_results(cfg: ExperimentConfig, prep: Prepared) -> dict:
    """What ``results.json`` says about the run before any stage."""
    return {
        "config": dataclasses.asdict(cfg),
        "dataset": cfg.data,
        "classes": list(prep.source.class_names),
        "n_train": len(prep.train),
        "n_test": len(prep.test),
        "initialization": (
            f"torchvision VGG19 weights from {cfg.weights} (fc3 new)"
            if cfg.weights
            else f"checkpoint {cfg.checkpoint}"
            if cfg.checkpoint
            else "random (no --weights): seeded LeCun-normal, each layer rescaled on "
            f"{CALIBRATION_IMAGES} training images to fire; not the paper's ImageNet weights"
        ),
        "widths": list(cfg.widths),
        "hidden": cfg.hidden,
        "pixels_per_step": cfg.step,
    }


@contextlib.contextmanager
def _directories(cfg: ExperimentConfig):
    """``(out, state)``: where this process writes its outputs and where the resumable state
    (orbax training checkpoints, response shards) lives.

    One process: both are the run's work directory (:class:`RunDirectory`, renamed to
    ``--out`` when the run is complete). Several processes: process 0 owns that directory
    (every process must see it: a shared file system); the others use it for the state only
    (orbax writes from every process; the response shards are written by process 0) and
    write their copies of the figures to a private temporary directory, deleted at the end.
    Every process waits for the others before process 0 renames the directory.
    """
    run_dir = RunDirectory(
        cfg.out, resume=cfg.resume, identity=cfg.identity(), scratch=(TRAIN_STATE, RESPONSE_SHARDS)
    )
    if jax.process_count() == 1:
        with run_dir as work:
            yield work, work
        return
    from jax.experimental import multihost_utils

    if jax.process_index() == 0:
        with run_dir as work:
            multihost_utils.sync_global_devices("awa2:work directory ready")
            yield work, work
            multihost_utils.sync_global_devices("awa2:all processes done")
        return
    multihost_utils.sync_global_devices("awa2:work directory ready")
    work = run_dir.work_dir
    with tempfile.TemporaryDirectory(prefix=f".awa2-process{jax.process_index()}-") as tmp:
        out = pathlib.Path(tmp)
        trained = work / "checkpoint"
        if (trained / checkpoint.MANIFEST_FILE).is_file():  # a resumed run past training
            shutil.copytree(trained, out / "checkpoint")
        yield out, work
        multihost_utils.sync_global_devices("awa2:all processes done")


#: Training images the random initialization is calibrated on (see :mod:`.calibration`).
CALIBRATION_IMAGES = 16


def _set_params(model, values) -> None:
    """Writes ``{layer: {"kernel", "bias"}}`` arrays into ``model`` (in place)."""
    state = nnx.state(model, nnx.Param)
    pure = nnx.to_pure_dict(state)
    for name, leaves in values.items():
        for leaf, value in leaves.items():
            pure[name][leaf] = jnp.asarray(value, pure[name][leaf].dtype)
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(model, state)


def _build(cfg: ExperimentConfig, prep: Prepared, results: dict):
    """``build_model`` for :func:`stages.train_or_restore`: SVGG19 with ImageNet weights, or
    a seeded LeCun-normal initialization calibrated to fire (:mod:`.calibration`).

    The module is built abstractly (``nnx.eval_shape``) and filled from NumPy: flax's eager
    initializers compile once per parameter shape, about a minute for SVGG19 on 2 cores.
    """

    def build(train_config, train_data):
        model = nnx.eval_shape(
            lambda: vgg.SVGG19(
                input_shape=(cfg.image_size, cfg.image_size, 3),
                num_classes=prep.source.num_classes,
                config=train_config.snn,
                widths=cfg.widths,
                hidden=cfg.hidden,
                rngs=nnx.Rngs(cfg.seed),
            )
        )
        rng = np.random.default_rng([cfg.seed, 0x5661])
        init = {}
        for name, leaves in nnx.to_pure_dict(nnx.state(model, nnx.Param)).items():
            shape = leaves["kernel"].shape
            fan_in = int(np.prod(shape[:-1]))
            init[name] = {
                "kernel": rng.standard_normal(shape, np.float32) / np.float32(np.sqrt(fan_in)),
                "bias": np.zeros(leaves["bias"].shape, np.float32),
            }
        _set_params(model, init)
        if prep.state_dict is not None:
            vgg.load_torchvision_vgg19(model, prep.state_dict, skip=prep.skip)
            return model
        n = min(CALIBRATION_IMAGES, len(prep.train))
        images = vgg.imagenet_normalize(prep.train.gather(np.arange(n)).images)
        weights, rates = calibrate_firing(
            model.layers, model.weights(), images, config=train_config.snn
        )
        results["calibration_rates"] = rates
        _set_params(model, weights)
        return model

    return build


def _fit(cfg: ExperimentConfig, state: pathlib.Path, mesh):
    """``fit`` for :func:`stages.train_or_restore`: :func:`svebi_jax.train.fit` on the
    stream (each process reads its rows of every batch), on normalized input,
    data-parallel over ``mesh`` and resumable from ``state/train_state``."""

    def fit(model, train_data, *, config, progress):
        apply_fn, params = functional(model)
        return train.fit(
            (vgg.ImagenetInput(apply_fn), params),
            train_data,
            config=config,
            progress=progress,
            mesh=mesh,
            checkpoint_dir=str(state / TRAIN_STATE),
            checkpoint_every=cfg.checkpoint_every,
            num_workers=cfg.num_workers,
        )

    return fit


def _pipeline(cfg, prep: Prepared, out, state, timer, results: dict, mesh) -> None:
    """The stages in order; ``out`` gets the outputs, ``state`` the resumable state."""
    model = _train_stage(cfg, prep, out, state, timer, results, mesh)
    raw_fn, params = functional(model)
    apply_fn = vgg.ImagenetInput(raw_fn)
    conv_layers = model.conv_layer_names
    test_stream = _accuracy_stage(cfg, prep, apply_fn, params, timer, results)
    rel, train_stream = _relevance_stage(cfg, prep, apply_fn, params, state, timer, mesh)
    _relevance_results(cfg, rel, out, results, (test_stream, train_stream))
    _interpretation_stage(cfg, apply_fn, params, rel, conv_layers, train_stream, out, timer)
    results["interpret_layer"] = _interpret_layer(cfg, rel, conv_layers)
    results["interpretation_figure"] = (out / "fig4_interpretation.png").is_file()
    svebi_layers = _svebi_layers(cfg.svebi_layers, conv_layers)
    n_fig = min(cfg.num_figure_images, len(prep.test))
    figure_images = prep.test.gather(np.arange(n_fig)).images
    with timer("heatmaps"):
        shown = {k: rel.masks[k] for k in (svebi_layers or conv_layers[-1:])}
        stages.explanation_figure(apply_fn, params, figure_images, shown, out / "fig5_heatmaps.png")
    methods = table_methods(
        apply_fn,
        rel.masks,
        conv_layers=svebi_layers or conv_layers[-1:],
        seed=cfg.seed,
        path_steps=cfg.path_steps,
        svebi_layers=svebi_layers,
        mesh=mesh,
    )
    _score_stage(cfg, prep, apply_fn, params, rel, methods, n_fig, out, timer, results, mesh)
    results["timings_s"] = timer.seconds
    write_text(out / "results.json", json.dumps(results, indent=2, default=float))
    write_text(out / "report.md", report(results, list(methods)))


def _stream(cfg, source, name: str):
    """A pass over ``source`` for a per-image stage: the whole source on every process
    (the stages split each batch over the mesh and gather the rows back)."""
    if jax.process_count() > 1:
        source = _WholeSource(source)
    return stages.Streamed(
        source, cfg.batch_size, num_workers=cfg.num_workers, progress=name if cfg.progress else None
    )


class _WholeSource:
    """``source`` with ``batches(...)`` defaulting to every row on this process
    (``shard=(0, 1)``), for the per-image stages of a multi-process run."""

    def __init__(self, source):
        self._source = source

    def batches(self, *args, **kwargs):
        kwargs.setdefault("shard", (0, 1))
        return self._source.batches(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._source, name)

    def __len__(self) -> int:
        return len(self._source)


def _train_stage(cfg, prep: Prepared, out, state, timer, results: dict, mesh):
    """The fine-tuned (or restored) SVGG19; its history into ``results``."""
    with timer("train"):
        model, history = stages.train_or_restore(
            prep.train,
            out=out,
            checkpoint_dir=cfg.checkpoint,
            train_config=cfg.train_config(),
            progress=cfg.progress,
            build_model=_build(cfg, prep, results),
            fit=_fit(cfg, state, mesh),
        )
    results["train_history"] = history
    return model


def _accuracy_stage(cfg, prep: Prepared, apply_fn, params, timer, results: dict):
    """Test accuracy on the held-out split; returns its stream (for its skipped files)."""
    with timer("test_accuracy"):
        test_stream = _stream(cfg, prep.test, "test accuracy")
        results["test_accuracy"] = stages.accuracy(
            apply_fn, params, test_stream, batch_size=cfg.batch_size
        )
    if jax.process_index() == 0:
        n = len(test_stream.indices)
        print(f"test accuracy {results['test_accuracy']:.4f} on {n} images")
    return test_stream


def _relevance_stage(cfg, prep: Prepared, apply_fn, params, state, timer, mesh):
    """Responses on the training split (resumable shards in ``state``), μ-lasso, filters."""
    train_stream = _stream(cfg, prep.train, "responses")
    rel = stages.relevance_stage(
        apply_fn, params, train_stream, mu=cfg.mu, mu_path_max=0, batch_size=cfg.batch_size,
        timer=timer, mesh=mesh, checkpoint_dir=str(state / RESPONSE_SHARDS),
    )  # fmt: skip
    return rel, train_stream


def _relevance_results(cfg, rel, out, results: dict, streams) -> None:
    """Fig. 3c and the relevance numbers of ``results.json``."""
    resp = rel.responses
    results["train_accuracy"] = float(np.mean(resp.predictions == resp.labels))
    results["n_responses"] = int(resp.X.shape[0])
    results["unreadable"] = {s.path: s.reason for st in streams for s in st.skipped}
    results.update(rel.summary)
    viz.layer_distribution_plot(
        rel.summary["layer_distribution"],
        title=f"Relevant filters per layer (μ={cfg.mu:g})",
        path=out / "fig3c_layer_distribution.png",
    )


def _interpret_layer(cfg, rel, conv_layers) -> str:
    """``--interpret-layer``, or the deepest layer with relevant filters."""
    dist = rel.summary["layer_distribution"]
    deepest = [k for k in conv_layers if dist.get(k, 0) > 0][-1:] or list(conv_layers[-1:])
    return cfg.interpret_layer or deepest[0]


def _interpretation_stage(cfg, apply_fn, params, rel, conv_layers, train_stream, out, timer):
    """Fig. 4: top-k receptive-field crops of the relevant filters of one layer."""
    with timer("interpretation"):
        stages.interpretation_figure(
            apply_fn, params, None, rel, layer=_interpret_layer(cfg, rel, conv_layers),
            top_k=cfg.top_k, path=out / "fig4_interpretation.png",
            images_of=train_stream.images_of, batch_size=cfg.batch_size,
        )  # fmt: skip


def _score_stage(cfg, prep, apply_fn, params, rel, methods, n_fig, out, timer, results, mesh):
    """Table 1: insertion/deletion of every method on the first ``--eval-samples`` test
    images, written with the per-image scores and the figure images."""
    n_eval = len(prep.test) if cfg.eval_samples == 0 else min(cfg.eval_samples, len(prep.test))
    eval_src = prep.test.take(np.arange(n_eval), name=f"{prep.test.name}[:{n_eval}]")
    with timer("insertion_deletion"):
        eval_stream = _stream(cfg, eval_src, "insertion/deletion")
        scored = stages.scores(
            apply_fn,
            params,
            eval_stream,
            methods,
            rel.masks,
            pixels_per_step=cfg.step,
            map_batch=cfg.batch_size,
            eval_batch=cfg.batch_size,
            substrate=SUBSTRATES,
            chunk_size=cfg.insdel_chunk,
            keep_maps=n_fig,
            mesh=mesh,
        )
    results["n_eval"] = int(len(scored["predicted"]))
    stages.write_scores(out, scored, results, eval_stream.images_of(np.arange(n_fig)))


def _svebi_layers(choice: str, conv_layers) -> tuple[str, ...]:
    """``--svebi-layers``: the conv layers that get their own SVEBI (and SAM) rows."""
    if choice == "all":
        return tuple(conv_layers)
    if choice == "none":
        return ()
    if choice == "blocks":  # the last conv layer of each block: conv1_2, conv2_2, conv3_4, ...
        return tuple(
            name
            for i, name in enumerate(conv_layers)
            if i + 1 == len(conv_layers) or conv_layers[i + 1].split("_")[0] != name.split("_")[0]
        )
    return tuple(choice.split(","))


def main(argv=None) -> int:
    """``python experiments/awa2_svgg19.py [ARGS]`` (or ``python -m experiments.awa2_svgg19``)."""
    run(parse_args(argv, description=__doc__))
    return 0
