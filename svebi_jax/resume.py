"""Resumable long runs: training state with orbax, partial results as atomic npz shards.

Two stores, both written so that an interrupted run (a killed job, a preempted host) resumes
where it stopped and ends with exactly what an uninterrupted run gives.

**Training** (:class:`TrainCheckpoints`). Every ``N`` optimizer steps and at the end,
:func:`svebi_jax.train.fit` saves its whole state with `orbax-checkpoint
<https://orbax.readthedocs.io>`_ (the JAX ecosystem's checkpointer: atomic step directories,
sharded/multi-host arrays, retention of the last few steps):

* ``state``: the leaves of ``(params, opt_state)`` (as ``{"00000": array, ...}``, restored
  into the caller's pytree structure, so any optax state works), and
* ``meta`` (JSON): the step, the training config, the class count ``K``, the per-epoch history
  and the losses/accuracies of the unfinished epoch.

Since the batch order (``seed + epoch``) and the augmentation keys (``fold_in(key, step)``) are
functions of the step index, the resumed run replays exactly the steps the uninterrupted one
would have taken: its parameters are the same bit for bit (on the same machine and devices).

**Partial results** (:class:`ShardStore`). Response extraction writes its rows to
``DIR/shard-00000.npz, shard-00001.npz, ...`` (each written to a temporary file and renamed,
so a shard is complete or absent) beside ``DIR/meta.json``, which holds a fingerprint of
everything the rows depend on (parameters' SHA-256, layers, normalization, batch and shard
sizes, image shape). A rerun with the same fingerprint loads the finished shards and computes
only the rest; a different fingerprint is refused rather than mixed in.

**Several processes** (``jax.distributed.initialize()``, a directory every host sees): orbax
writes the training checkpoints from all processes together (each its own shards, the
replicated arrays and the JSON once) and commits a step only when all have written it, so a
process killed mid-save leaves no step that loads as if whole. The partial-result rows are the
same on every process (the stages gather their results to every host); process 0 writes each
shard and every process waits for it (``multihost_utils.sync_global_devices``) before reading.
A checkpoint written by ``P`` processes restores in any other number of processes (the
arrays are restored into the shardings of the templates).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pathlib
import re
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

__all__ = ["ShardStore", "TrainCheckpoints", "params_fingerprint"]

TRAIN_FORMAT = "svebi_jax.train_checkpoint/1"
SHARDS_FORMAT = "svebi_jax.shards/1"


def params_fingerprint(tree: Any) -> str:
    """SHA-256 over a pytree's structure, leaf shapes, dtypes and bytes (hex)."""
    h = hashlib.sha256()
    leaves, treedef = jax.tree.flatten(tree)
    h.update(str(treedef).encode())
    for leaf in leaves:
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{a.shape}{a.dtype.str}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _check_dir(path: pathlib.Path) -> None:
    if path.exists() and not path.is_dir():
        raise ValueError(f"checkpoint_dir {str(path)!r} exists and is not a directory")


# ----------------------------------------------------------------------------- training


class TrainCheckpoints:
    """Orbax checkpoints of a training run's ``(params, opt_state)`` and progress.

    Args:
      directory: where step directories ``DIR/<step>/`` are written (created if missing).
      every: save every this many optimizer steps (positive int); :meth:`save` with
        ``force=True`` saves off the interval (the end of training).
      max_to_keep: number of most recent steps kept (older ones are deleted).
    """

    def __init__(self, directory: str | os.PathLike, *, every: int, max_to_keep: int = 2):
        import orbax.checkpoint as ocp

        from svebi_jax import _validation as V

        self.every = V.check_positive_int("checkpoint_every", every)
        self.directory = pathlib.Path(directory).absolute()
        _check_dir(self.directory)
        self._ocp = ocp
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                save_interval_steps=self.every,
                max_to_keep=max_to_keep,
                create=True,
                # Synchronous: the next (donating) step must not reuse buffers being written.
                enable_async_checkpointing=False,
            ),
        )

    def latest_step(self) -> int | None:
        """The newest saved step, or ``None``."""
        return self._manager.latest_step()

    def save(self, step: int, params, opt_state, meta: Mapping[str, Any], *, force=False) -> bool:
        """Saves the state after ``step`` optimizer steps when ``step`` is a multiple of
        ``every`` or ``force``; returns whether it saved."""
        if not force and step % self.every:
            return False
        leaves = jax.tree.leaves((params, opt_state))
        state = {f"{i:05d}": leaf for i, leaf in enumerate(leaves)}
        meta = {
            "format": TRAIN_FORMAT,
            "step": int(step),
            "leaves": self.describe_leaves(params, opt_state),
            **dict(meta),
        }
        args = self._ocp.args.Composite(
            state=self._ocp.args.StandardSave(state), meta=self._ocp.args.JsonSave(meta)
        )
        return bool(self._manager.save(int(step), args=args, force=True))

    def read_meta(self) -> tuple[int, dict] | None:
        """``(step, meta)`` of the newest step (JSON only, no arrays), or ``None``."""
        step = self.latest_step()
        if step is None:
            return None
        meta = self._manager.restore(
            step, args=self._ocp.args.Composite(meta=self._ocp.args.JsonRestore())
        )["meta"]
        if not isinstance(meta, dict) or meta.get("format") != TRAIN_FORMAT:
            raise ValueError(
                f"checkpoint_dir {str(self.directory)!r} step {step}: unknown format "
                f"{meta.get('format') if isinstance(meta, dict) else meta!r} "
                f"(expected {TRAIN_FORMAT!r})"
            )
        return int(step), meta

    def restore(self, template_params, template_opt_state) -> tuple[int, Any, Any, dict] | None:
        """``(step, params, opt_state, meta)`` of the newest step, or ``None`` when empty.

        The state is restored into the structure, shapes, dtypes and shardings of the
        templates (the model's freshly initialized parameters and optimizer state).

        Raises:
          ValueError: the checkpoint's leaves do not fit the templates (count, shape or
            dtype; the first mismatching leaf is named).
        """
        latest = self.read_meta()
        if latest is None:
            return None
        step, meta = latest
        leaves, treedef = jax.tree.flatten((template_params, template_opt_state))
        saved = meta.get("leaves", [])
        if len(saved) != len(leaves):
            raise ValueError(
                f"checkpoint_dir {str(self.directory)!r} step {step} holds {len(saved)} state "
                f"arrays, but this model and optimizer have {len(leaves)}"
            )
        for i, (leaf, (shape, dtype)) in enumerate(zip(leaves, saved, strict=True)):
            if tuple(shape) != tuple(np.shape(leaf)) or np.dtype(dtype) != np.dtype(leaf.dtype):
                raise ValueError(
                    f"checkpoint_dir {str(self.directory)!r} step {step}: state array {i} is "
                    f"{tuple(shape)} {np.dtype(dtype)}, the model/optimizer expect "
                    f"{tuple(np.shape(leaf))} {np.dtype(leaf.dtype)}"
                )
        abstract = {
            f"{i:05d}": jax.ShapeDtypeStruct(
                np.shape(leaf), leaf.dtype, sharding=getattr(leaf, "sharding", None)
            )
            for i, leaf in enumerate(leaves)
        }
        state = self._manager.restore(
            step,
            args=self._ocp.args.Composite(state=self._ocp.args.StandardRestore(abstract)),
        )["state"]
        params, opt_state = jax.tree.unflatten(treedef, [state[k] for k in sorted(state)])
        return int(step), params, opt_state, meta

    @staticmethod
    def describe_leaves(params, opt_state) -> list[tuple[list[int], str]]:
        """``[(shape, dtype)]`` of the state's leaves (recorded in ``meta["leaves"]``)."""
        return [
            (list(np.shape(x)), np.dtype(x.dtype).str) for x in jax.tree.leaves((params, opt_state))
        ]

    def close(self) -> None:
        """Waits for pending writes and releases the manager."""
        self._manager.wait_until_finished()
        self._manager.close()


# ----------------------------------------------------------------------------- shards


def _writer() -> bool:
    """Whether this process writes shared files (process 0 of ``jax.process_count()``)."""
    return jax.process_index() == 0


def _sync(name: str) -> None:
    """Waits until every process got here (no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


_SHARD_RE = re.compile(r"^shard-(\d{5})\.npz$")


def _atomic_write(path: pathlib.Path, payload: bytes) -> None:
    from svebi_jax.checkpoint import _atomic_write as write

    write(path, payload)


class ShardStore:
    """Numbered ``.npz`` shards of partial results, resumable and fingerprinted.

    Args:
      directory: where ``meta.json`` and ``shard-NNNNN.npz`` live (created if missing).
      fingerprint: JSON-able dict of everything the rows depend on. An existing store with
        another fingerprint raises ``ValueError`` naming the differing keys (nothing is
        overwritten); choose a new directory or delete the old one.
    """

    def __init__(self, directory: str | os.PathLike, fingerprint: Mapping[str, Any]):
        self.directory = pathlib.Path(directory)
        _check_dir(self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        meta = {"format": SHARDS_FORMAT, "fingerprint": json.loads(json.dumps(fingerprint))}
        path = self.directory / "meta.json"
        if path.exists():
            try:
                old = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise ValueError(f"checkpoint_dir: {str(path)!r} is not valid JSON: {err}") from err
            if old != meta:
                a = old.get("fingerprint", {}) if isinstance(old, dict) else {}
                b = meta["fingerprint"]
                diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
                raise ValueError(
                    f"checkpoint_dir {str(self.directory)!r} holds shards of another run "
                    f"(differs in {diff or ['format']}); use a new directory or delete it"
                )
        elif _writer():
            _atomic_write(path, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
        _sync(f"svebi_jax.ShardStore:{self.directory}:meta")

    def path(self, k: int) -> pathlib.Path:
        """Path of shard ``k``."""
        return self.directory / f"shard-{k:05d}.npz"

    def completed(self) -> int:
        """Number of consecutive finished shards ``0, 1, ..., k-1`` on disk."""
        present = {
            int(m.group(1)) for p in self.directory.iterdir() if (m := _SHARD_RE.match(p.name))
        }
        k = 0
        while k in present:
            k += 1
        return k

    def write(self, k: int, arrays: Mapping[str, np.ndarray]) -> pathlib.Path:
        """Writes shard ``k`` atomically (temporary file, fsync, rename).

        With several processes every process calls this with the same rows; process 0 writes
        and all return once the file is there.
        """
        path = self.path(k)
        if _writer():
            buf = io.BytesIO()
            np.savez(buf, **{n: np.asarray(a) for n, a in arrays.items()})
            _atomic_write(path, buf.getvalue())
        _sync(f"svebi_jax.ShardStore:{self.directory}:{k}")
        return path

    def read(self, k: int) -> dict[str, np.ndarray]:
        """The arrays of shard ``k``.

        Raises:
          ValueError: naming the file, when it cannot be read as an npz archive.
        """
        path = self.path(k)
        try:
            with np.load(path, allow_pickle=False) as z:
                return {n: z[n] for n in z.files}
        except (OSError, ValueError) as err:
            raise ValueError(f"checkpoint_dir: shard {str(path)!r} is unreadable: {err}") from err
