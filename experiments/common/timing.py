"""Wall-clock seconds per pipeline stage (reported in ``results.json["timings_s"]``)."""

from __future__ import annotations

import contextlib
import time


class StageTimer:
    """``with timer("responses"): ...`` records and prints the stage's seconds."""

    def __init__(self, *, verbose: bool = True):
        self.seconds: dict[str, float] = {}
        self.verbose = verbose

    @contextlib.contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        if self.verbose:
            print(f"[{name}] ...", flush=True)
        yield
        self.seconds[name] = round(time.perf_counter() - t0, 2)
        if self.verbose:
            print(f"[{name}] {self.seconds[name]:.1f} s", flush=True)
