"""Helpers of the ``svebi`` command line (:mod:`svebi_jax.cli`): outputs proven writable,
checkpoints saved or rescued, models and images loaded, tables written.

Everything here checks its input and raises ``ValueError`` naming the command-line flag
(``--out``, ``--checkpoint``, ``--data``, ``--images``) so that :func:`svebi_jax.cli.main`
can print it and exit with status 2 before any work starts.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from svebi_jax import _validation as V

#: ITU-R BT.601 luma weights (Pillow's ``convert("L")``): RGB files for a 1-channel model.
LUMA = np.array([0.299, 0.587, 0.114])


class SaveFailed(RuntimeError):
    """The final save failed after the work was done (the message says where the result is)."""


# ----------------------------------------------------------------------------- outputs


def _nearest_existing(path: pathlib.Path) -> pathlib.Path:
    parent = path
    while not parent.exists():
        parent = parent.parent
    return parent


def probe_writable(name: str, path, *, kind: str = "dir") -> pathlib.Path:
    """Proves that ``path`` can be written by creating (and removing) a file where it goes.

    ``os.access`` is not proof (read-only mounts, ACLs, quotas and some network file systems
    say yes and then refuse); a file actually created is. Nothing is left behind.

    Args:
      name: the flag, e.g. ``"--out"``, named in every message.
      path: the output: a directory (``kind="dir"``, created later with its parents) or a
        file (``kind="file"``; its directory is probed).
      kind: ``"dir"`` or ``"file"``.

    Returns:
      ``path`` as a ``pathlib.Path``.

    Raises:
      ValueError: ``path`` empty, an existing file where a directory is meant (or the other
        way round), below a file, or a place where no file can be created.
    """
    if kind == "dir":
        p = V.check_out_dir(name, path)
        where = _nearest_existing(p)
    else:
        if path is None or not str(os.fspath(path)).strip():
            raise ValueError(f"{name} must be a file path, got {path!r} (empty)")
        p = pathlib.Path(os.fspath(path)).expanduser()
        if p.is_dir():
            raise ValueError(f"{name} must be a file, but {str(p)!r} is an existing directory")
        where = _nearest_existing(p.parent)
        if not where.is_dir():
            raise ValueError(f"{name}: cannot create {str(p)!r}: {str(where)!r} is a file")
    try:
        fd, probe = tempfile.mkstemp(dir=where, prefix=".svebi-write-probe-")
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ValueError(
            f"{name}: cannot write {str(p)!r}: no file can be created in {str(where)!r} ({reason})"
        ) from None
    return p


def _rescue_dirs(out: pathlib.Path):
    stamp = time.strftime("%Y%m%d-%H%M%S")
    yield out.parent / f"{out.name}.rescued-{stamp}-{os.getpid()}"
    yield pathlib.Path(tempfile.mkdtemp(prefix=f"svebi-rescued-{out.name}-"))


def save_checkpoint_or_rescue(out, params, *, config, metrics=None) -> pathlib.Path:
    """:func:`svebi_jax.checkpoint.save_checkpoint` to ``out``; when that fails, the same
    checkpoint next to ``out`` (``OUT.rescued-STAMP-PID``) or else in the temp directory.

    Raises:
      SaveFailed: ``out`` could not be written; the message names ``--out``, the reason and
        the directory that holds the parameters now (or says that none could be written).
    """
    from svebi_jax import checkpoint

    out = pathlib.Path(out)
    try:
        return checkpoint.save_checkpoint(out, params, config=config, metrics=metrics)
    except (OSError, ValueError) as err:
        first = err
    tried = []
    for rescue in _rescue_dirs(out):
        try:
            checkpoint.save_checkpoint(rescue, params, config=config, metrics=metrics)
        except (OSError, ValueError) as err:
            tried.append(f"{str(rescue)!r} ({err})")
            continue
        raise SaveFailed(
            f"--out {str(out)!r}: the checkpoint could not be written ({first}); "
            f"the result was saved to {str(rescue)!r} instead"
        )
    raise SaveFailed(
        f"--out {str(out)!r}: the checkpoint could not be written ({first}), nor at "
        + ", ".join(tried)
    )


def save_file_or_rescue(name: str, out: pathlib.Path, save) -> pathlib.Path:
    """``save(out)``; when that fails, ``save`` into a new temp directory, same file name.

    Raises:
      SaveFailed: naming ``name``, the reason and where the file was written instead.
    """
    try:
        return pathlib.Path(save(out))
    except OSError as err:
        first = err
    rescue = pathlib.Path(tempfile.mkdtemp(prefix="svebi-rescued-")) / out.name
    try:
        save(rescue)
    except OSError as err:
        msg = f"{name} {str(out)!r} could not be written ({first}), nor {str(rescue)!r} ({err})"
        raise SaveFailed(msg) from err
    raise SaveFailed(
        f"{name} {str(out)!r} could not be written ({first}); it was saved to {str(rescue)!r}"
    )


def write_json(path: pathlib.Path, obj: Any) -> None:
    """``obj`` as indented JSON (NaN written as ``NaN``), with a final newline."""
    path.write_text(json.dumps(obj, indent=2, allow_nan=True) + "\n")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table; floats with 4 decimals."""

    def cell(v):
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- inputs


@dataclasses.dataclass(frozen=True)
class Model:
    """A restored checkpoint: the network, its ``apply_fn`` and ``params``."""

    path: pathlib.Path
    network: Any
    apply_fn: Any
    params: Any

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.network.input_shape)

    @property
    def num_classes(self) -> int:
        return int(self.network.layers[-1].features)

    @property
    def conv_layers(self) -> tuple[str, ...]:
        return tuple(self.network.conv_layer_names)


def check_checkpoint(path) -> pathlib.Path:
    """An existing checkpoint directory (``--checkpoint``), checked before any work."""
    from svebi_jax import checkpoint

    p = pathlib.Path(os.fspath(path)).expanduser()
    if not p.is_dir():
        raise ValueError(f"--checkpoint {str(p)!r} is not an existing directory")
    if not (p / checkpoint.CONFIG_FILE).is_file():
        raise ValueError(
            f"--checkpoint {str(p)!r} holds no {checkpoint.CONFIG_FILE} (write one with "
            "'svebi train' or 'svebi import-nir')"
        )
    return p


def load_model(path) -> Model:
    """Restores ``--checkpoint`` (:func:`svebi_jax.checkpoint.restore_model`)."""
    from svebi_jax import checkpoint
    from svebi_jax.models import functional

    p = check_checkpoint(path)
    network = checkpoint.restore_model(p)
    apply_fn, params = functional(network)
    return Model(p, network, apply_fn, params)


@dataclasses.dataclass(frozen=True)
class Inputs:
    """Images to explain or score: ``images [B, H, W, C]``, ``labels [B]`` (or ``None`` for
    image files) and one source name per image."""

    images: np.ndarray
    labels: np.ndarray | None
    sources: tuple[str, ...]
    name: str


def check_image_files(paths: Sequence[str]) -> tuple[pathlib.Path, ...]:
    """Existing files (``--images``), before any work."""
    out = []
    for path in paths:
        p = pathlib.Path(path).expanduser()
        if not p.is_file():
            raise ValueError(f"--images: {str(p)!r} is not an existing file")
        out.append(p)
    return tuple(out)


def read_images(paths: Sequence[pathlib.Path], input_shape) -> Inputs:
    """Image files (PNG, JPEG, ...) decoded and resized to the model's ``(H, W)``.

    Each file is read as RGB and resized with Pillow's bilinear filter
    (:func:`svebi_jax.data.folder.read_image`, ``resize="stretch"``); a 1-channel model gets
    the luma :math:`0.299 R + 0.587 G + 0.114 B`. Pixels are scaled to ``[0, 1]``.
    """
    from svebi_jax.data.folder import read_image

    h, w, c = input_shape
    if c not in (1, 3):
        raise ValueError(f"--images: the model takes {c} channels; image files give 1 or 3")
    rgb = np.stack([read_image(p, (h, w)) for p in paths]).astype(np.float64) / 255.0
    images = rgb @ LUMA if c == 1 else rgb
    images = images.reshape(len(paths), h, w, c).astype(np.float32)
    return Inputs(images, None, tuple(str(p) for p in paths), "image files")


def load_inputs(args, input_shape, num_classes: int) -> Inputs:
    """``--data``/``--split``/``--limit``/``--seed``, or ``--images``, for a model."""
    from svebi_jax import data

    if getattr(args, "images", None):
        return read_images(check_image_files(args.images), input_shape)
    ds = data.load(args.data, split=args.split)
    index = np.arange(len(ds))
    if args.limit is not None and args.limit < len(ds):
        # data.subset's documented draw: default_rng(seed).permutation(N)[:n]
        index = np.random.default_rng(args.seed).permutation(len(ds))[: args.limit]
        ds = data.subset(ds, args.limit, seed=args.seed)
    if ds.image_shape != tuple(input_shape):
        raise ValueError(
            f"--data images have shape {ds.image_shape}, but the checkpoint's model takes "
            f"{tuple(input_shape)}"
        )
    if int(ds.labels.max(initial=0)) >= num_classes:
        raise ValueError(
            f"--data labels must lie in [0, {num_classes}) for this model, got "
            f"{int(ds.labels.max())}"
        )
    sources = tuple(f"{args.data} ({args.split}) #{i}" for i in index)
    return Inputs(ds.images, ds.labels, sources, ds.name)


def parse_target(value: str, inputs: Inputs, num_classes: int) -> np.ndarray | None:
    """``--target``: ``predicted`` → ``None``; ``label`` → the data's labels; ``K`` → all K."""
    if value == "predicted":
        return None
    if value == "label":
        if inputs.labels is None:
            raise ValueError("--target label needs --data (image files carry no label)")
        return np.asarray(inputs.labels, np.int32)
    k = int(value)
    if not 0 <= k < num_classes:
        raise ValueError(f"--target must be a class in [0, {num_classes}), got {k}")
    return np.full(len(inputs.images), k, np.int32)


def to_builtin(tree: Mapping | Sequence | Any):
    """Nested dicts/lists of numpy scalars and arrays → JSON-able Python values."""
    if isinstance(tree, Mapping):
        return {str(k): to_builtin(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [to_builtin(v) for v in tree]
    if hasattr(tree, "tolist"):
        return np.asarray(tree).tolist()
    return tree
