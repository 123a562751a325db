"""μ-lasso against SPAMS (the SVEBI authors' solver): the rows of ``bench_lasso_peers.py``.

Runs :func:`bench_lasso_peers.run` (its ``small``, ``path`` and ``big`` rows: N = 5000 real
responses of the shallow SNN at μ = 2 and along μ = 1..50, and SVGG19-sized synthetic
responses, N = 30000, m = 5504, C = 50, μ = 20; ``--quick``: reduced sizes) with the run's
measured peak, and turns its rows into the table's rows with the roofline columns. The
svebi_jax side is ``mu_lasso(X, L, mu)`` with its defaults (``method="active_set"``), plus
``method="fista"`` rows (an option). ``ok``: every row converged and agreed (the exact
default's objective within 1e-4 relative of SPAMS's, ``method="fista"``'s excess within its
certified duality gap).
"""

from __future__ import annotations

import argparse
from typing import Any

from harness import Context, Row, log, row


def available() -> bool:
    """Whether ``spams`` (``spams-bin``, the ``bench`` extra) imports."""
    import peers_spams

    return peers_spams.available()


def run(ctx: Context) -> tuple[dict[str, Any], list[Row]]:
    if not available():
        log("  spams not installed: lasso_peers skipped (pip install -e '.[bench]')")
        return {"skipped": "spams not installed"}, []
    import bench_lasso_peers

    args = argparse.Namespace(
        quick=ctx.cfg["quick"],
        rows=list(ctx.cfg["lasso_peer_rows"]),
        repeats=1 if ctx.cfg["quick"] else None,  # --quick checks agreement, not speed
        big_fista=False,
    )
    report = bench_lasso_peers.run(args, peak=ctx.peak)
    peak = report["peak"]["gflops"]
    details = []
    for d in report["details"]:
        d.pop("out_svebi", None)
        d.pop("out_peer", None)
        details.append(d)
    out = {
        "details": details,
        "peak": report["peak"],
        "ok": all(d["agreement"]["ok"] for d in details),
    }
    rows = [
        row(
            d["row"]["name"],
            d["row"]["svebi_s"],
            d["row"]["peer_s"],
            agreement=d["row"]["agreement"],
            notes=d["row"]["notes"],
            flops=d["flop_model"],
            peak_gflops=peak,
        )
        for d in details
    ]
    return out, rows
