"""μ-lasso against SPAMS (the SVEBI authors' solver), side by side in one run.

Usage::

    python benchmarks/bench_lasso_peers.py [--quick] [--rows small path big]
        [--out FILE] [--check] [--repeats N] [--big-fista]

Prints one JSON row per comparison on stdout, ``{name, svebi_s, peer_s, ratio, agreement,
notes}`` (``ratio = peer_s / svebi_s``: above 1 means svebi_jax is faster), then the Markdown
table on stderr, and writes every number (timings of both sides, agreement, settings, the
machine and its load average) to ``--out`` (default ``benchmarks/results_lasso_peers.json``,
``..._quick.json`` with ``--quick``). ``--check`` exits with status 1 if svebi_jax did not converge,
or ``method="active_set"``'s objective is more than ``1e-4`` relative above SPAMS's, or
``method="fista"``'s excess exceeds its own duality gap (what the test suite
needs from a quick run: that both sides compute the same thing, not their speed).

Rows (svebi_jax side: ``mu_lasso`` **with its defaults**, ``mu_lasso(X, L, mu)``, which is
``method="active_set"``; ``method="fista"``, an option, as a second row; peer:
``spams.lasso(X=L, D=X, lambda1=mu, mode=0, pos=True)``, see ``peers_spams.py``):

- ``small``: the shallow SNN's responses, ``N = 5000`` mnist-5k digits, ``m = 76`` filters
  (12 + 64, energy shares: each layer's block of a row sums to 1), ``C = 10`` (one-hot true
  labels), ``μ = 2``; the default (``method="active_set"``) and ``method="fista"``.
- ``path``: the same problem, ``μ = 1, ..., 50``: one ``mu_lasso`` call with the 1-D ``mu``
  against 50 SPAMS calls as the authors make them, and against SPAMS with the Gram matrix
  formed once (``Q``/``q`` interface).
- ``big``: synthetic SVGG19-like responses (:func:`svgg19_like_responses`), ``N = 30000``,
  ``m = 5504``, ``C = 50``, ``μ = 20``; the default (``--big-fista`` adds
  ``method="fista"``, minutes per call).

Method. Both sides get their inputs in their preferred form before timing (svebi_jax: float32
device arrays; SPAMS: Fortran-ordered float64 arrays). Warm-up first: svebi_jax's first call
(compilation included) is timed on its own and reported as ``compile_s ≈ first call − median``;
SPAMS is called with ``numThreads=1`` and with all cores (its default), and keeps the faster
(best of three warm-up calls when they are cheap; on a shared 2-core machine its OpenMP
threads can make it several times slower). Then rounds, each timing both sides back to back,
the order alternating between rounds (wall clock, and process CPU time as a load-robust second
opinion), until each side has ``repeats`` timed calls, stopping early after ``max_time_s`` once
``min_repeats`` are done; calls under 50 ms are timed in runs of 5 per side and round after
three untimed calls, so that each side is timed at its steady speed and neither is charged
with the other's spinning threads (see ``harness.side_by_side``), and then also one at a time
after 0.2 s of idle time, the sides taking turns (``after_pause`` in the JSON, and in the
row's notes). Reported: median, min, max and quartiles.
Agreement: objectives :math:`\\|X w_j - L_{:,j}\\|^2` of both answers in float64 from ``X``,
relative difference per class and budget (positive: svebi_jax's is higher), plus svebi_jax's
certified duality gap relative to :math:`\\|L_{:,j}\\|^2` and the supports' agreement.
Roofline: achieved GFLOP/s of a FLOP model of the row (stated per row) against this machine's
measured peak, a large float32 matmul under ``jax.jit``, measured in the same run.

Why ``spams-bin``: it is the binary wheel of SPAMS, the library the SVEBI authors call; it is
in the ``bench`` extra only.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import svebi_jax as sv
from svebi_jax import data

try:  # run as a script: benchmarks/ is on sys.path
    import harness
    import peers_spams
    from harness import matmul_peak, side_by_side
except ImportError:  # pragma: no cover - imported as benchmarks.bench_lasso_peers
    from benchmarks import harness, peers_spams
    from benchmarks.harness import matmul_peak, side_by_side

HERE = Path(__file__).resolve().parent
GAIN = 3.0  # input gain for the untrained shallow SNN (as in benchmarks/run.py)
VGG19_CHANNELS = (64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512)
AGREEMENT_TOL = 1e-4
#: What ``mu_lasso(X, L, mu)`` runs without options: the rows time that call.
DEFAULT_METHOD = inspect.signature(sv.mu_lasso).parameters["method"].default


def lasso_call(X, L, mu, method: str):
    """``mu_lasso(X, L, mu)`` as a user writes it for the default method, else with
    ``method=``; returns ``(call, label)``."""
    if method == DEFAULT_METHOD:
        return (lambda: sv.mu_lasso(X, L, mu)), f"default ({method})"
    return (lambda: sv.mu_lasso(X, L, mu, method=method)), method


# ------------------------------------------------------------------------------- problems


def svgg19_like_responses(
    n: int = 30000,
    n_classes: int = 50,
    *,
    seed: int = 0,
    channels: tuple[int, ...] = VGG19_CHANNELS,
    label_noise: float = 0.15,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Synthetic filter responses with SVGG19's structure, and correlated one-hot predictions.

    ``X`` ``[n, m]`` float32, ``m = sum(channels)`` (5504 for VGG19's 16 conv layers), built
    per layer :math:`\ell` (depth :math:`t = \ell / 15`, deeper layers sparser and more
    class-selective) as energy shares, like SVEBI's responses
    :math:`x = \|\bar S_f\|^2 / \sum_{f'} \|\bar S_{f'}\|^2`:

    .. math::

      e_{nf} = a_f \, g_{y_n f} \, \epsilon_{nf} \, \mathbb 1[u_{nf} \ge s_\ell], \qquad
      x_{nf} = e_{nf} / \textstyle\sum_{f' \in \ell} e_{nf'}

    with a filter activity :math:`a_f \sim \Gamma(1, 1)`, a class gain
    :math:`g_{kf} = e^{0.25 z_{kf}}` (:math:`z \sim N(0, 1)`: every filter weakly
    class-dependent) multiplied, for :math:`\mathrm{round}(6 t^2)` filters per class and layer
    (none in the first layers, 6 in the last), by :math:`1 + \Gamma(2, 2t)` (the few
    class-selective filters), image noise :math:`\epsilon \sim \Gamma(2, 0.5)`, and silent
    filters with probability :math:`s_\ell = 0.1 + 0.6 t` (:math:`u \sim U(0, 1)`). A row
    whose layer is all silent gets the uniform share :math:`1 / c_\ell`. So each layer's block
    of a row sums to 1 (rows sum to 16), about half the entries are zero, and only some columns
    correlate with the labels.

    Labels: true classes :math:`y_n` drawn with Dirichlet(3) class proportions (every class
    present), then "predicted" labels ``L`` ``[n, n_classes]``: the true class, replaced by a
    uniformly random one with probability ``label_noise`` (an imperfect classifier).

    Deterministic for a given ``seed`` (NumPy's PCG64); the benchmark uses ``seed=0``. At the
    full size the μ = 20 solutions have 6-14 non-zero weights per class, 470 distinct filters
    over the 50 classes (SPAMS's answer).
    """
    rng = np.random.default_rng(seed)
    props = rng.dirichlet(np.full(n_classes, 3.0))
    y = rng.choice(n_classes, n, p=props)
    y[:n_classes] = np.arange(n_classes)
    pred = np.where(rng.random(n) < label_noise, rng.integers(0, n_classes, n), y)
    depth = max(len(channels) - 1, 1)
    blocks = []
    for layer, c in enumerate(channels):
        t = layer / depth
        silent = 0.1 + 0.6 * t
        activity = rng.gamma(1.0, 1.0, c)
        gain = np.exp(0.25 * rng.standard_normal((n_classes, c)))
        n_selective = min(int(round(6 * t**2)), c)
        if n_selective:
            for k in range(n_classes):
                f = rng.choice(c, n_selective, replace=False)
                gain[k, f] *= 1.0 + rng.gamma(2.0, 2.0 * t, n_selective)
        e = (activity * gain[y]).astype(np.float32)
        e *= rng.gamma(2.0, 0.5, (n, c)).astype(np.float32)
        e *= rng.random((n, c), dtype=np.float32) >= silent
        s = e.sum(axis=1, keepdims=True)
        blocks.append(np.divide(e, s, out=np.full_like(e, 1.0 / c), where=s > 0))
    X = np.concatenate(blocks, axis=1)
    L = np.eye(n_classes, dtype=np.float32)[pred]
    return X, L


def shallow_snn_responses(n: int) -> tuple[np.ndarray, np.ndarray, float]:
    """``(X [n, 76], L [n, 10], seconds)``: the untrained shallow SNN on mnist-5k digits.

    The same problem as section 3 of ``benchmarks/run.py``: ``ShallowSNN(rngs=nnx.Rngs(0))``,
    T = 10, digits shuffled with seed 0 and scaled by 3 (so that every layer spikes), ``L``
    the one-hot *true* labels (a trained network's predictions nearly are).
    """
    from flax import nnx

    ds = data.load("mnist-5k")
    perm = np.random.default_rng(0).permutation(len(ds.labels))
    images, labels = ds.images[perm][:n], ds.labels[perm][:n]
    model = sv.ShallowSNN(rngs=nnx.Rngs(0), config=sv.SNNConfig(num_steps=10))
    apply_fn, params = sv.functional(model)
    t0 = time.perf_counter()
    resp = sv.compute_responses(apply_fn, params, jnp.asarray(images) * GAIN)
    X = np.asarray(resp.X, np.float32)
    seconds = time.perf_counter() - t0
    L = np.eye(resp.L.shape[1], dtype=np.float32)[labels]
    return X, L, seconds


# --------------------------------------------------------------------------------- timing
# ``side_by_side`` (warm-up, peer variant choice, alternating rounds) and ``matmul_peak`` (the
# roofline's roof) live in ``harness.py``, shared with every section of ``run.py``.


# ------------------------------------------------------------------------------ agreement


def objectives(X: np.ndarray, L: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``[..., C]`` float64 :math:`\\|X w_j - L_{:,j}\\|^2` for ``W`` ``[..., m, C]``."""
    X64 = np.asarray(X, np.float64)
    R = np.einsum("nm,...mc->...nc", X64, np.asarray(W, np.float64)) - np.asarray(L, np.float64)
    return np.sum(R * R, axis=-2)


def agreement(X, L, result: sv.LassoResult, W_peer: np.ndarray, *, exact: bool) -> dict[str, Any]:
    """Objective, gap and support agreement of svebi_jax's ``result`` with the peer's ``W``.

    ``exact``: the method claims the optimum (``active_set``), so ``ok`` requires the
    objectives to agree to ``AGREEMENT_TOL`` relative; otherwise (``fista``) ``ok`` requires
    svebi_jax's excess over SPAMS to stay within its own certified duality gap.
    """
    W = np.asarray(result.W, np.float64)
    present = np.asarray(L).sum(axis=0) > 0
    f_ours = objectives(X, L, W)[..., present]
    f_peer = objectives(X, L, W_peer)[..., present]
    rel = (f_ours - f_peer) / np.maximum(np.abs(f_peer), 1e-300)
    scale = np.asarray(L, np.float64).sum(axis=0)[present]
    gap = np.asarray(result.gap, np.float64)[..., present] / scale
    s_ours, s_peer = W > 0, np.asarray(W_peer) > 0
    union = np.sum(s_ours | s_peer)
    return {
        "max_rel_objective_diff": float(np.max(rel)),
        "min_rel_objective_diff": float(np.min(rel)),
        "median_rel_objective_diff": float(np.median(rel)),
        "max_rel_gap": float(np.max(gap)),
        "all_converged": bool(np.all(np.asarray(result.converged))),
        "max_residual": float(np.max(np.asarray(result.residual))),
        "max_iterations": int(np.max(np.asarray(result.iterations))),
        "support_jaccard": float(np.sum(s_ours & s_peer) / union) if union else 1.0,
        "max_nonzeros_per_class": int(np.max(np.sum(s_ours, axis=-2))),
        "distinct_filters": int(np.sum(np.any(s_ours.reshape(-1, *W.shape[-2:]), axis=(0, 2)))),
        # The check: active_set is exact, so its objective must match SPAMS's to 1e-4; FISTA
        # stops on a step-length residual, so its excess must stay within its certified gap.
        "ok": bool(
            np.all(np.asarray(result.converged))
            and (
                np.max(rel) <= AGREEMENT_TOL
                if exact
                else np.all(f_ours - f_peer <= gap * scale + 1e-6 * scale)
            )
        ),
    }


def agreement_text(a: dict[str, Any]) -> str:
    return (
        f"objective rel. diff {a['min_rel_objective_diff']:+.1e}.."
        f"{a['max_rel_objective_diff']:+.1e}"
        f"; gap ≤ {a['max_rel_gap']:.1e}·‖L_j‖²; supports Jaccard {a['support_jaccard']:.3f}"
        + ("" if a["all_converged"] else "; NOT all converged")
    )


# ------------------------------------------------------------------------------------ rows


def make_row(
    name: str,
    timing: dict[str, Any],
    agree: dict[str, Any],
    notes: str,
    flops: float | None,
    peak: float,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The table row and its detailed record."""
    s, p = timing["svebi"], timing["peer"]
    roof = ""
    pause = ""
    if "after_pause" in s:
        pause = (
            f"; single calls after {s['after_pause']['pause_s']:g} s idle: svebi"
            f" {s['after_pause']['median_s'] * 1e3:.2f} ms, peer"
            f" {p['after_pause']['median_s'] * 1e3:.2f} ms"
        )
    if flops:
        gflops = flops / s["median_s"] / 1e9
        roof = f"; {gflops:.1f} GFLOP/s = {gflops / peak:.1%} of the {peak:.0f} GFLOP/s peak"
    row = {
        "name": name,
        "svebi_s": s["median_s"],
        "peer_s": p["median_s"],
        "ratio": p["median_s"] / s["median_s"],
        "agreement": agreement_text(agree),
        "notes": (
            f"{notes}; SPAMS numThreads={p['variant']}; compile ~{s['compile_s_approx']:.1f} s"
            f"; CPU-time ratio {p['cpu_median_s'] / s['cpu_median_s']:.2f}"
            f"; {s['repeats']} timed calls each, svebi {s['min_s']:.3g}-{s['max_s']:.3g} s"
            f", peer {p['min_s']:.3g}-{p['max_s']:.3g} s{pause}{roof}"
        ),
    }
    detail = {
        "row": row,
        "svebi": s,
        "peer": p,
        "agreement": agree,
        "flop_model": flops,
        "loadavg_end": _loadavg(),
    }
    return row, detail


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):  # pragma: no cover
        return None


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def spams_variants(fn: Callable[..., Any], *args) -> dict[str, Callable[[], Any]]:
    return {str(t): (lambda t=t: fn(*args, num_threads=t)) for t in (1, -1)}


def run(args, peak: dict[str, Any] | None = None) -> dict[str, Any]:
    """The rows ``args.rows`` (``args.quick``, ``args.repeats``, ``args.big_fista`` as on the
    command line); ``peak``: a :func:`harness.matmul_peak` already measured (else measured
    here). Returns ``{"rows", "details", "peak"}``."""
    quick = args.quick
    repeats = args.repeats or (3 if quick else 20)
    timing_cfg = {
        "repeats": repeats,
        "min_repeats": min(2 if quick else 3, repeats),
        "max_time_s": 2.0 if quick else 30.0,
        "pause_trials": 0 if quick else harness.PAUSE_TRIALS,
    }
    peak = peak or matmul_peak(1024 if quick else 4096)
    log(f"matmul peak {peak['gflops']:.1f} GFLOP/s; load {_loadavg()}")
    rows, details = [], []

    def emit(row, detail):
        rows.append(row)
        details.append(detail)
        print(json.dumps(row), flush=True)

    if {"small", "path"} & set(args.rows):
        n = 1000 if quick else 5000
        X, L, resp_s = shallow_snn_responses(n)
        Xj, Lj = jnp.asarray(X), jnp.asarray(L)
        Xf, Lf = peers_spams.spams_inputs(X, L)
        n_, m, c = X.shape[0], X.shape[1], L.shape[1]
        dims = f"N={n_}, m={m}, C={c}"
        gram_flops = 2 * n_ * m * m + 2 * n_ * m * c
        log(f"shallow SNN responses {X.shape} in {resp_s:.1f} s")
        if "small" in args.rows:
            mu = 2.0
            # ~1 ms calls: 200 timed calls per side (under a second) for a stable median.
            small_cfg = {**timing_cfg, "repeats": args.repeats or (3 if quick else 200)}
            for method in (DEFAULT_METHOD, "fista"):
                call, label = lasso_call(Xj, Lj, mu, method)
                log(f"[small/{label}] load {_loadavg()}")
                t = side_by_side(
                    call,
                    spams_variants(peers_spams.spams_mu_lasso, Xf, Lf, mu),
                    **small_cfg,
                )
                a = agreement(X, L, t["out_svebi"], t["out_peer"], exact=method == "active_set")
                emit(
                    *make_row(
                        f"mu_lasso {label}, mu={mu:g}, {dims}",
                        t,
                        a,
                        f"model: Gram + X'L = {gram_flops / 1e6:.0f} MFLOP",
                        gram_flops,
                        peak["gflops"],
                    )
                )
        if "path" in args.rows:
            mus = np.arange(1, 6 if quick else 51, dtype=np.float32)
            label = f"mu path {mus[0]:g}..{mus[-1]:g} ({mus.size} values)"
            for method in (DEFAULT_METHOD, "fista"):
                call, mlabel = lasso_call(Xj, Lj, jnp.asarray(mus), method)
                peers_ = {
                    "authors' calls (D=X each time)": (peers_spams.spams_mu_path, Xf, Lf, mus),
                    "Gram once (Q/q)": (peers_spams.spams_mu_path_gram, Xf, Lf, mus),
                }
                if method == "fista":  # the slow option: against the authors' usage only
                    peers_.pop("Gram once (Q/q)")
                for peer_name, (fn, *fargs) in peers_.items():
                    log(f"[path/{mlabel} vs {peer_name}] load {_loadavg()}")
                    t = side_by_side(
                        call,
                        spams_variants(fn, *fargs),
                        **timing_cfg,
                    )
                    a = agreement(X, L, t["out_svebi"], t["out_peer"], exact=method == "active_set")
                    emit(
                        *make_row(
                            f"mu_lasso {mlabel}, {label}, {dims} vs SPAMS {peer_name}",
                            t,
                            a,
                            f"model: one Gram + X'L = {gram_flops / 1e6:.0f} MFLOP",
                            gram_flops,
                            peak["gflops"],
                        )
                    )

    if "big" in args.rows:
        if quick:
            channels = tuple(c // 4 for c in VGG19_CHANNELS)
            n, n_classes, mu = 3000, 20, 20.0
        else:
            channels, n, n_classes, mu = VGG19_CHANNELS, 30000, 50, 20.0
        t0 = time.perf_counter()
        X, L = svgg19_like_responses(n, n_classes, seed=0, channels=channels)
        log(f"SVGG19-like responses {X.shape} in {time.perf_counter() - t0:.1f} s")
        Xj, Lj = jnp.asarray(X), jnp.asarray(L)
        Xf, Lf = peers_spams.spams_inputs(X, L)
        n_, m, c = X.shape[0], X.shape[1], L.shape[1]
        big_cfg = dict(timing_cfg)
        if not quick:
            big_cfg.update(repeats=args.repeats or 3, min_repeats=3, max_time_s=0.0)
        methods = [DEFAULT_METHOD] + (["fista"] if args.big_fista else [])
        for method in methods:
            call, label = lasso_call(Xj, Lj, mu, method)
            log(f"[big/{label}] load {_loadavg()}")
            t = side_by_side(
                call,
                spams_variants(peers_spams.spams_mu_lasso, Xf, Lf, mu),
                **big_cfg,
            )
            a = agreement(X, L, t["out_svebi"], t["out_peer"], exact=method == "active_set")
            s = a["distinct_filters"]
            flops = 4 * n_ * m * c + n_ * s * s
            emit(
                *make_row(
                    f"mu_lasso {label}, mu={mu:g}, SVGG19-like N={n_}, m={m}, C={c}",
                    t,
                    a,
                    f"model: X'L + one full check (4NmC) + the support's Gram (N s², s={s})"
                    f" = {flops / 1e9:.1f} GFLOP; SPAMS's Gram alone is N m² ="
                    f" {n_ * m * m / 1e9:.0f} GFLOP",
                    flops,
                    peak["gflops"],
                )
            )
    return {"rows": rows, "details": details, "peak": peak}


def markdown(rows: list[dict[str, Any]]) -> str:
    head = (
        "| row | svebi_jax (s) | SPAMS (s) | ratio | agreement | notes |\n|---|---|---|---|---|---|"
    )
    body = "\n".join(
        f"| {r['name']} | {r['svebi_s']:.4g} | {r['peer_s']:.4g} | {r['ratio']:.2f}× "
        f"| {r['agreement']} | {r['notes']} |"
        for r in rows
    )
    return f"{head}\n{body}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument(
        "--rows", nargs="+", choices=("small", "path", "big"), default=["small", "path", "big"]
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON output file")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per side and row")
    parser.add_argument("--big-fista", action="store_true", help="also time method='fista' big")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 unless every row agrees and converged"
    )
    args = parser.parse_args(argv)
    if not peers_spams.available():
        log("spams is not installed (pip install spams-bin, or the 'bench' extra)")
        return 2
    out_path = args.out or HERE / (
        "results_lasso_peers_quick.json" if args.quick else "results_lasso_peers.json"
    )
    info = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "cpu_count": os.cpu_count(),
        "loadavg_start": _loadavg(),
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
    }
    t0 = time.perf_counter()
    report = run(args)
    info["loadavg_end"] = _loadavg()
    info["total_s"] = time.perf_counter() - t0
    report = {"machine": info, "quick": args.quick, **report}
    for d in report["details"]:  # results, not JSON
        d.pop("out_svebi", None)
        d.pop("out_peer", None)
    log(markdown(report["rows"]))
    log(f"load average start {info['loadavg_start']}, end {info['loadavg_end']}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {out_path}")
    if args.check and not all(d["agreement"]["ok"] for d in report["details"]):
        log("CHECK FAILED: a row's objectives disagree or svebi_jax did not converge")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
