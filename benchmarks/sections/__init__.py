"""Benchmark sections: each module's ``run(ctx) -> (details, rows)`` (see ``harness``)."""
