"""A run directory that appears complete or not at all.

An experiment writes into a fresh temporary directory beside ``--out``; only when every stage
has finished is it moved into place (a previous run there is replaced as a whole). A crash or
an interrupt therefore never leaves old ``results.json``/``report.md`` beside new figures: the
old run stays untouched, and the partial outputs (with the checkpoint, if training finished)
are kept in ``.NAME.partial-XXXX`` next to it, whose path is printed.
"""

from __future__ import annotations

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
    """

    def __init__(self, out, *, flag: str = "--out"):
        self.out = check_out(out, flag=flag).resolve()
        self.tmp: pathlib.Path | None = None

    def __enter__(self) -> pathlib.Path:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = pathlib.Path(
            tempfile.mkdtemp(dir=self.out.parent, prefix=f".{self.out.name}.partial-")
        )
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> bool:
        assert self.tmp is not None
        if exc_type is not None:
            print(
                f"run failed or was interrupted: {self.out} is unchanged; partial outputs are "
                f"in {self.tmp}",
                file=sys.stderr,
                flush=True,
            )
            return False
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
