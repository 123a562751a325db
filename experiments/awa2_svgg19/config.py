"""Configuration of the AwA2 / SVGG19 experiment: its command line, checked before any work.

:func:`parse_args` checks every flag; :func:`prepare` then opens what the flags name (the
image folder, the weights file, a checkpoint) and checks that they fit together, all before
the first training step: a wrong weights file (key and shape named), an image size too small
for VGG19's five pools, a checkpoint trained for another class count or image size, or an
empty class folder stop the run at once with a message naming the flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
from typing import Any

import numpy as np

from experiments.common.rundir import check_out
from svebi_jax import _validation as V
from svebi_jax import data, train
from svebi_jax import layers as L
from svebi_jax.cli import HelpFormatter
from svebi_jax.data import stream
from svebi_jax.models import vgg

#: Five 2x2 max pools halve the map five times: a side below 32 px leaves no map for fc1.
MIN_IMAGE_SIZE = 2 ** len(vgg.VGG19_BLOCKS)
#: RISE on AwA2: 224 pixels per step at 224 x 224, i.e. 224 steps per game.
PAPER_INSDEL_STEPS = 224
SVEBI_LAYER_CHOICES = ("blocks", "all", "none")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """What the command line sets (see ``--help``); :meth:`validate` checks every field.

    The defaults are the paper's AwA2 setting: SVGG19 with ``T = 25``, ``β = 0.95``,
    ``θ = 1``, 224 x 224 inputs, 50 epochs of batch 8 at learning rate 0.003 (Adam,
    constant), a seeded 80/20 split and μ = 20.
    """

    data: str = ""
    weights: str | None = None
    checkpoint: str | None = None
    out: str = "runs/awa2_svgg19"
    seed: int = 0
    test_fraction: float = 0.2
    train_limit: int = 0
    epochs: int = 50
    batch_size: int = 8
    learning_rate: float = 0.003
    image_size: int = 224
    num_steps: int = 25
    beta: float = 0.95
    remat: str = "none"
    width_scale: float = 1.0
    mu: float = 20.0
    eval_samples: int = 500
    pixels_per_step: int = 0
    insdel_chunk: int = 32
    path_steps: int = 50
    top_k: int = 100
    interpret_layer: str = ""
    svebi_layers: str = "blocks"
    num_figure_images: int = 8
    num_workers: int = 4
    data_parallel: bool = False
    resume: bool = False
    checkpoint_every: int = 500
    progress: bool = True
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    distributed: bool = False

    def validate(self) -> ExperimentConfig:
        """Raises ``ValueError`` naming the flag of the first bad value; returns ``self``.

        Checks files and numbers only: the device count (``--batch-size`` against the
        mesh) is checked by :meth:`check_devices` once the processes are joined.
        """
        self._check_paths()
        self._check_numbers()
        self._check_distributed()
        self._check_sizes()
        self._check_layers()
        return self

    def _check_paths(self) -> None:
        """``--data``, ``--out``, ``--weights`` and ``--checkpoint``."""
        if not isinstance(self.data, str) or not self.data.startswith("folder:"):
            raise ValueError(
                f"--data must be folder:PATH (AwA2's JPEGImages/ with one folder per class), "
                f"got {self.data!r}"
            )
        data.check_spec(self.data, name="--data")
        check_out(self.out)
        if self.weights is not None and self.checkpoint is not None:
            raise ValueError("--weights and --checkpoint exclude each other: choose one")
        if self.weights is not None:
            path = pathlib.Path(self.weights)
            if path.suffix.lower() not in (".npz", ".safetensors"):
                raise ValueError(
                    f"--weights must be an .npz (or .safetensors) file of torchvision's VGG19 "
                    f"state_dict, got {self.weights!r} (see README: convert the .pth once)"
                )
            if not path.is_file():
                raise ValueError(f"--weights file {self.weights!r} does not exist")
        if self.checkpoint is not None:
            ckpt = pathlib.Path(self.checkpoint)
            if not (ckpt / "config.json").is_file() or not (ckpt / "params.msgpack").is_file():
                raise ValueError(
                    f"--checkpoint {self.checkpoint!r} is not a checkpoint directory (needs "
                    "config.json and params.msgpack)"
                )

    def _check_numbers(self) -> None:
        """Every numeric flag's range."""
        V.check_number(
            "--test-fraction", self.test_fraction, low=0, high=1, low_open=True, high_open=True
        )
        V.check_number("--learning-rate", self.learning_rate, low=0, low_open=True)
        V.check_number("--beta", self.beta, low=0, high=1)
        V.check_choice("--remat", self.remat, L.REMAT_POLICIES)
        V.check_number("--width-scale", self.width_scale, low=0, high=1, low_open=True)
        V.check_number("--mu", self.mu, low=0, low_open=True)
        for flag, value in (
            ("--seed", self.seed),
            ("--train-limit (0 = all)", self.train_limit),
            ("--eval-samples (0 = all)", self.eval_samples),
            ("--pixels-per-step (0 = 224 steps per game)", self.pixels_per_step),
            ("--num-workers", self.num_workers),
        ):
            V.check_nonnegative_int(flag, value)
        for flag, value in (
            ("--epochs", self.epochs),
            ("--batch-size", self.batch_size),
            ("--image-size", self.image_size),
            ("--num-steps", self.num_steps),
            ("--insdel-chunk", self.insdel_chunk),
            ("--path-steps", self.path_steps),
            ("--top-k", self.top_k),
            ("--num-figure-images", self.num_figure_images),
            ("--checkpoint-every", self.checkpoint_every),
        ):
            V.check_positive_int(flag, value)

    def _check_distributed(self) -> None:
        """``--coordinator-address``, ``--num-processes``, ``--process-id``: all or none."""
        given = [
            self.coordinator_address is not None,
            self.num_processes is not None,
            self.process_id is not None,
        ]
        if any(given) and not all(given):
            raise ValueError(
                "--coordinator-address, --num-processes and --process-id go together (or "
                "use --distributed for JAX's cluster auto-detection), got "
                f"{self.coordinator_address!r}, {self.num_processes!r}, {self.process_id!r}"
            )
        if all(given):
            V.check_positive_int("--num-processes", self.num_processes)
            V.check_nonnegative_int("--process-id", self.process_id)
            if self.process_id >= self.num_processes:
                raise ValueError(
                    f"--process-id must be < --num-processes = {self.num_processes}, got "
                    f"{self.process_id}"
                )
            if self.distributed:
                raise ValueError(
                    "--distributed (auto-detection) and --coordinator-address exclude each other"
                )

    def _check_sizes(self) -> None:
        """``--image-size`` against VGG19's pools and ``--pixels-per-step`` against the image."""
        if self.image_size < MIN_IMAGE_SIZE:
            raise ValueError(
                f"--image-size must be >= {MIN_IMAGE_SIZE}: SVGG19 halves the map in each of "
                f"its {len(vgg.VGG19_BLOCKS)} max pools (a 1x1 map after 32 px), got "
                f"{self.image_size}"
            )
        if self.pixels_per_step > self.image_size**2:
            raise ValueError(
                f"--pixels-per-step must be <= image_size**2 = {self.image_size**2} pixels, got "
                f"{self.pixels_per_step}"
            )

    def _check_layers(self) -> None:
        """``--svebi-layers`` and ``--interpret-layer`` name SVGG19's conv layers."""
        if self.svebi_layers not in SVEBI_LAYER_CHOICES and not all(
            name in conv_layer_names() for name in self.svebi_layers.split(",")
        ):
            raise ValueError(
                f"--svebi-layers must be one of {SVEBI_LAYER_CHOICES} or comma-separated conv "
                f"layers of {conv_layer_names()}, got {self.svebi_layers!r}"
            )
        if self.interpret_layer and self.interpret_layer not in conv_layer_names():
            raise ValueError(
                f"--interpret-layer must be a conv layer of {conv_layer_names()}, got "
                f"{self.interpret_layer!r}"
            )

    @property
    def multi_process(self) -> bool:
        """Whether the run joins several processes (flags or ``--distributed``)."""
        return self.distributed or (self.num_processes or 1) > 1

    def start_processes(self) -> None:
        """Joins this process to the others (``jax.distributed.initialize``), if asked to.

        With ``--coordinator-address HOST:PORT --num-processes N --process-id I`` the
        values are passed on; with ``--distributed`` JAX finds them itself (SLURM, Cloud
        TPU, or the ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``
        environment variables). Must run before anything else touches JAX's devices.
        """
        import jax

        if self.num_processes is not None and self.num_processes > 1:
            jax.distributed.initialize(
                self.coordinator_address,
                num_processes=self.num_processes,
                process_id=self.process_id,
            )
        elif self.distributed:
            jax.distributed.initialize()

    def check_devices(self) -> None:
        """``--batch-size`` splits over the mesh's devices (all processes' devices).

        Raises:
          ValueError: a batch that is not a multiple of the device count.
        """
        import jax

        if not (self.data_parallel or jax.process_count() > 1):
            return
        d = jax.device_count()
        if self.batch_size % d:
            raise ValueError(
                f"--batch-size must be a multiple of the {d} devices with --data-parallel "
                f"(each device takes batch_size / {d} images of every step), got "
                f"{self.batch_size}"
            )

    # ---- derived settings -------------------------------------------------------------------

    @property
    def widths(self) -> tuple[int, ...]:
        """Block widths: VGG19's ``(64, 128, 256, 512, 512)`` times ``--width-scale``."""
        return tuple(max(1, round(w * self.width_scale)) for w in vgg.VGG19_WIDTHS)

    @property
    def hidden(self) -> int:
        """Width of ``fc1``/``fc2``: 4096 times ``--width-scale``."""
        return max(1, round(4096 * self.width_scale))

    @property
    def step(self) -> int:
        """Pixels per insertion/deletion step: ``--pixels-per-step`` or 224 steps per game (the
        paper's 224 pixels per step at 224 x 224, scaled to the image size)."""
        return self.pixels_per_step or max(1, round(self.image_size**2 / PAPER_INSDEL_STEPS))

    def identity(self) -> dict[str, Any]:
        """The settings an interrupted run is resumed with (``--resume`` refuses others):
        all flags but where the run goes and how it runs (``--out``, ``--resume``,
        ``--progress``, ``--num-workers``, ``--data-parallel``, ``--checkpoint-every`` and the
        process flags: a run may be resumed with another process or device count)."""
        how = {
            "out", "resume", "progress", "num_workers", "data_parallel", "checkpoint_every",
            "coordinator_address", "num_processes", "process_id", "distributed",
        }  # fmt: skip
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in how}

    def snn_config(self) -> L.SNNConfig:
        """The network's LIF settings (``θ = 1`` and the library's reset/surrogate) and the
        runner's rematerialization (``--remat chunk``: :func:`jax.checkpoint` per time chunk,
        about 10 GB instead of 57 GB for a 224², T = 25, batch-8 training step; README)."""
        return L.SNNConfig(
            num_steps=self.num_steps, beta=self.beta, threshold=1.0, remat=self.remat
        )

    def train_config(self) -> train.TrainConfig:
        """Adam at a constant ``--learning-rate``, batch ``--batch-size``, no augmentation."""
        return train.TrainConfig(
            seed=self.seed,
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            schedule="constant",
            augment_shift=0,
            snn=self.snn_config(),
        )


def conv_layer_names() -> tuple[str, ...]:
    """``conv1_1 … conv5_4``."""
    return tuple(vgg.TORCHVISION_VGG19_KEYS)[:16]


# ----------------------------------------------------------------------------- prepare


@dataclasses.dataclass
class Prepared:
    """What :func:`prepare` opened: the split sources and the checked weights.

    Attributes:
      source: the whole folder; ``train``/``test`` its seeded split (``train`` cut to
        ``--train-limit``).
      state_dict: ``--weights``' torchvision ``state_dict`` (checked against the network;
        ``None`` without ``--weights``).
      skip: layers the weights do not set (``("fc3",)``: a new readout for these classes).
    """

    source: Any
    train: Any
    test: Any
    state_dict: dict | None
    skip: tuple[str, ...] = ()


def prepare(cfg: ExperimentConfig) -> Prepared:
    """Opens the folder, weights and checkpoint and checks that they fit; no training yet.

    Raises:
      ValueError: naming the flag, for an empty class folder, a folder with fewer than two
        classes or too few images to split, a weights file with a missing, unexpected or
        mis-shaped key (the key and both shapes named), or a checkpoint whose class count,
        image size or width differ from this run's.
    """
    try:
        source = stream.open_stream(cfg.data, image_size=cfg.image_size)
    except (ValueError, FileNotFoundError) as err:
        raise ValueError(f"--data {cfg.data!r}: {err}") from err
    if source.num_classes < 2:
        raise ValueError(
            f"--data {cfg.data!r} has {source.num_classes} class folder; need at least 2"
        )
    try:
        train_src, test_src = source.split(cfg.test_fraction, seed=cfg.seed)
    except ValueError as err:
        raise ValueError(f"--data {cfg.data!r} / --test-fraction: {err}") from err
    if cfg.train_limit and cfg.train_limit < len(train_src):
        train_src = train_src.take(np.arange(cfg.train_limit), name=f"{train_src.name}[:n]")
    if cfg.checkpoint is None and len(train_src) < cfg.batch_size:
        raise ValueError(
            f"--batch-size {cfg.batch_size} is larger than the {len(train_src)} training images"
        )
    state_dict, skip = None, ()
    layers = vgg.svgg19_layers(source.num_classes, widths=cfg.widths, hidden=cfg.hidden)
    shape = (cfg.image_size, cfg.image_size, 3)
    if cfg.weights is not None:
        try:
            state_dict = vgg.read_state_dict(cfg.weights)
            skip = ("fc3",) if source.num_classes != 1000 else ()
            vgg.convert_torchvision_vgg19(state_dict, layers, shape, skip=skip)
        except (ValueError, FileNotFoundError) as err:
            hint = (
                f" (--width-scale {cfg.width_scale:g} shrinks every layer; ImageNet weights "
                "need --width-scale 1)"
                if cfg.width_scale != 1
                else ""
            )
            raise ValueError(f"--weights {cfg.weights!r}: {err}{hint}") from err
    if cfg.checkpoint is not None:
        _check_checkpoint(cfg, source.num_classes, layers, shape)
    return Prepared(source, train_src, test_src, state_dict, skip)


def _check_checkpoint(cfg: ExperimentConfig, num_classes: int, layers, shape) -> None:
    with open(os.path.join(cfg.checkpoint, "config.json")) as f:
        saved = json.load(f)
    k = saved.get("num_classes")
    if k != num_classes:
        raise ValueError(
            f"--checkpoint {cfg.checkpoint!r} was trained for {k} classes, but --data "
            f"{cfg.data!r} has {num_classes} class folders"
        )
    if tuple(saved.get("input_shape", ())) != shape:
        raise ValueError(
            f"--checkpoint {cfg.checkpoint!r} takes {tuple(saved.get('input_shape', ()))} "
            f"images, but --image-size gives {shape}"
        )
    want = [s.features for s in layers if isinstance(s, L.Conv | L.Dense)]
    got = [d.get("features") for d in saved.get("layers", []) if "features" in d]
    if got != want:
        raise ValueError(
            f"--checkpoint {cfg.checkpoint!r} has layer widths {got}, but --width-scale "
            f"{cfg.width_scale:g} gives {want}"
        )


# ----------------------------------------------------------------------------- command line


def parse_args(argv=None, *, description: str | None = None) -> ExperimentConfig:
    """The validated config from the command line (``argparse`` exits 2 on a bad value)."""
    d = ExperimentConfig()
    p = argparse.ArgumentParser(
        prog="python experiments/awa2_svgg19.py",
        description=description,
        formatter_class=HelpFormatter,
    )
    a = p.add_argument
    a("--data", required=True, help="folder:PATH, e.g. folder:AwA2/JPEGImages (<class>/*.jpg)")
    a("--weights", default=None, help="torchvision VGG19 weights as .npz (default: random init)")
    a("--checkpoint", default=None, help="reuse a trained checkpoint directory (no training)")
    a("--out", default=d.out, help="output directory (replaced as a whole when done)")
    a("--seed", type=int, default=d.seed, help="split, initialization and shuffle seed")
    a("--test-fraction", type=float, default=d.test_fraction)
    a("--train-limit", type=int, default=d.train_limit, help="use the first N training images")
    a("--epochs", type=int, default=d.epochs)
    a("--batch-size", type=int, default=d.batch_size)
    a("--learning-rate", type=float, default=d.learning_rate)
    a("--image-size", type=int, default=d.image_size, help=f">= {MIN_IMAGE_SIZE} (five pools)")
    a("--num-steps", type=int, default=d.num_steps, help="T, timesteps per forward pass")
    a("--beta", type=float, default=d.beta)
    a(
        "--remat",
        default=d.remat,
        choices=L.REMAT_POLICIES,
        help="chunk: recompute each time chunk in the backward pass (less memory)",
    )
    a("--width-scale", type=float, default=d.width_scale, help="fraction of VGG19's widths")
    a("--mu", type=float, default=d.mu, help="μ of the lasso (paper: 20)")
    a("--eval-samples", type=int, default=d.eval_samples, help="test images scored (0 = all)")
    a(
        "--pixels-per-step",
        type=int,
        default=d.pixels_per_step,
        help="insertion/deletion pixels per step (0: 224 steps per game)",
    )
    a("--insdel-chunk", type=int, default=d.insdel_chunk, help="perturbed images per forward")
    a("--path-steps", type=int, default=d.path_steps, help="IG path points (not the SNN's T)")
    a("--top-k", type=int, default=d.top_k, help="images averaged per interpreted filter")
    a(
        "--interpret-layer",
        default=d.interpret_layer,
        help="Fig. 4 layer (default: deepest with relevant filters)",
    )
    a(
        "--svebi-layers",
        default=d.svebi_layers,
        help="per-layer SVEBI rows: blocks (last conv of each block) | all | none | conv4_4,...",
    )
    a("--num-figure-images", type=int, default=d.num_figure_images)
    a("--num-workers", type=int, default=d.num_workers, help="decoding processes (0: inline)")
    a(
        "--data-parallel",
        action="store_true",
        help="one mesh over all devices (of all hosts): batches sharded, parameters replicated",
    )
    a(
        "--resume",
        action="store_true",
        help="continue an interrupted run of this --out (training checkpoints, response shards)",
    )
    a(
        "--checkpoint-every",
        type=int,
        default=d.checkpoint_every,
        help="training steps between checkpoints (and at every epoch's end)",
    )
    a("--no-progress", action="store_true")
    g = p.add_argument_group(
        "several processes (hosts)",
        "Start the same command once per process; process 0 writes --out. Several processes "
        "imply --data-parallel over all their devices.",
    )
    g.add_argument(
        "--coordinator-address", default=None, help="HOST:PORT of process 0's coordinator"
    )
    g.add_argument("--num-processes", type=int, default=None, help="number of processes")
    g.add_argument("--process-id", type=int, default=None, help="this process's id, 0..N-1")
    g.add_argument(
        "--distributed",
        action="store_true",
        help="jax.distributed.initialize() with no arguments: JAX detects SLURM, Cloud TPU or "
        "the JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID variables",
    )
    args = vars(p.parse_args(argv))
    args["progress"] = not args.pop("no_progress")
    cfg = ExperimentConfig(**args)
    try:
        return cfg.validate()
    except ValueError as err:
        p.error(str(err))
