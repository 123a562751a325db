"""A run directory that appears complete or not at all.

An experiment writes into a fresh temporary directory beside ``--out``; only when every stage
has finished is it moved into place (a previous run there is replaced as a whole). A crash or
an interrupt therefore never leaves old ``results.json``/``report.md`` beside new figures: the
old run stays untouched, and the partial outputs (with the checkpoint, if training finished)
are kept in ``.NAME.partial-XXXX`` next to it, whose path is printed.

A *resumable* run (``RunDirectory(out, resume=...)``, e.g. the AwA2 experiment's long
training) works in the fixed directory ``.NAME.partial`` instead, with its identity (the
settings it was started with) in ``run.json``: an interrupted run leaves it there, and
``resume=True`` continues in it (refusing one started with other settings), while
``resume=False`` refuses to start over it silently. The stages keep their resumable state
there (training checkpoints, response shards); the paths in ``scratch`` are deleted before
the directory is moved into place.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import sys
import tempfile

from svebi_jax import _validation as V

#: A directory holding this file is a run of some experiment and may be replaced.
MARKER = "results.json"


def check_out(path, *, flag: str = "--out") -> pathlib.Path:
    """Checks ``--out`` before any work: a new, empty, or earlier run directory.

    Raises:
      ValueError: ``''``, an existing file, an unwritable place, or an existing directory
        that holds other things than an earlier run (it would be replaced as a whole).
    """
    out = V.check_out_dir(flag, path)
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise ValueError(
            f"{flag} {str(out)!r} exists and is not an earlier run (no {MARKER}); a run "
            "replaces its directory as a whole, so choose a new or empty directory"
        )
    return out


class RunDirectory:
    """Context manager: ``with RunDirectory(out) as tmp:`` write into ``tmp``.

    On success ``tmp`` becomes ``out`` (atomically renamed; an earlier run is replaced). On
    an exception ``out`` is left as it was and ``tmp`` is kept for inspection.

    Args:
      out: the run directory (``--out``).
      flag: the option's name in error messages.
      resume: ``None`` (default): a fresh temporary directory per run. ``True``/``False``:
        a resumable run in ``.NAME.partial`` (see the module docstring); ``True`` continues
        an interrupted one there.
      identity: JSON-able settings of a resumable run, compared on resume.
      scratch: names inside the directory deleted on success (resumable state).

    Raises:
      ValueError: (on entering) an interrupted run exists and ``resume`` is False, or it was
        started with other settings (the differing keys are named).
    """

    def __init__(
        self,
        out,
        *,
        flag: str = "--out",
        resume: bool | None = None,
        identity: dict | None = None,
        scratch: tuple[str, ...] = (),
    ):
        self.out = check_out(out, flag=flag).resolve()
        self.flag, self.resume = flag, resume
        self.identity = json.loads(json.dumps(identity or {}, default=str))
        self.scratch = scratch
        self.tmp: pathlib.Path | None = None

    @property
    def work_dir(self) -> pathlib.Path:
        """Where a resumable run works: ``.NAME.partial`` beside ``out``."""
        return self.out.parent / f".{self.out.name}.partial"

    def __enter__(self) -> pathlib.Path:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        if self.resume is None:
            self.tmp = pathlib.Path(
                tempfile.mkdtemp(dir=self.out.parent, prefix=f".{self.out.name}.partial-")
            )
            return self.tmp
        work = self.work_dir
        if work.exists():
            if not self.resume:
                raise ValueError(
                    f"{self.flag} {str(self.out)!r}: an interrupted run is in {str(work)!r}; "
                    "pass --resume to continue it, or delete that directory to start over"
                )
            try:
                saved = json.loads((work / "run.json").read_text())
            except (OSError, ValueError) as err:
                raise ValueError(
                    f"--resume: {str(work)!r} holds no readable run.json ({err}); delete it "
                    "to start over"
                ) from err
            diff = sorted(
                k for k in set(saved) | set(self.identity) if saved.get(k) != self.identity.get(k)
            )
            if diff:
                raise ValueError(
                    f"--resume: the interrupted run in {str(work)!r} was started with other "
                    f"settings (differs in {diff}); rerun with those, or delete it to start over"
                )
            print(f"resuming the interrupted run in {work}", flush=True)
        else:
            work.mkdir()
            write_text(work / "run.json", json.dumps(self.identity, indent=2, sort_keys=True))
        self.tmp = work
        return work

    def __exit__(self, exc_type, exc, tb) -> bool:
        assert self.tmp is not None
        if exc_type is not None:
            again = " (rerun with --resume to continue)" if self.resume is not None else ""
            print(
                f"run failed or was interrupted: {self.out} is unchanged; partial outputs are "
                f"in {self.tmp}{again}",
                file=sys.stderr,
                flush=True,
            )
            return False
        for name in self.scratch:
            path = self.tmp / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        if self.resume is not None:
            (self.tmp / "run.json").unlink(missing_ok=True)
        if self.out.exists():
            old = pathlib.Path(
                tempfile.mkdtemp(dir=self.out.parent, prefix=f".{self.out.name}.old-")
            )
            os.rmdir(old)
            os.rename(self.out, old)
            os.rename(self.tmp, self.out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(self.tmp, self.out)
        return False


def write_text(path: pathlib.Path, text: str) -> None:
    """Writes ``text`` atomically (temporary file + ``os.replace``)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
