"""Section 3: ``mu_lasso`` with its defaults (``method="active_set"``) on real responses vs
SciPy SLSQP per class."""

from __future__ import annotations

import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import peers
from harness import GAIN, Context, Row, block, capture, log, row, timer, with_roofline

import svebi_jax as sv


def _objectives(X: np.ndarray, L: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``[..., C]`` float64 :math:`\\|X w_j - L_j\\|^2` for ``W`` ``[..., m, C]``."""
    R = np.einsum("nm,...mc->...nc", X, W) - L
    return np.sum(R * R, axis=-2)


def _agreement(X, L, W_jax, W_ref) -> dict[str, Any]:
    """Objective agreement over the classes that occur in ``L`` (absent ones are 0 in both)."""
    present = L.sum(axis=0) > 0
    f_jax = _objectives(X, L, np.asarray(W_jax, np.float64))[..., present]
    f_ref = _objectives(X, L, np.asarray(W_ref, np.float64))[..., present]
    rel = (f_jax - f_ref) / np.maximum(np.abs(f_ref), 1e-12)
    return {
        # > 0: svebi_jax's objective is higher (worse) than SLSQP's.
        "max_rel_objective_diff": float(np.max(rel)),
        "min_rel_objective_diff": float(np.min(rel)),
        "median_rel_objective_diff": float(np.median(rel)),
        "max_abs_objective_diff": float(np.max(np.abs(f_jax - f_ref))),
        "objective_range": [float(np.min(f_ref)), float(np.max(f_ref))],
    }


def bench_lasso(apply_fn, params, images, labels, cfg) -> dict[str, Any]:
    """Section 3: mu_lasso (scalar mu and the mu path) vs SLSQP per class.

    ``X`` are the real filter responses of the (untrained) shallow SNN; ``L`` is the one-hot
    of the *true* labels, which is what the predictions of a trained network nearly are (the
    untrained network predicts only a few classes, which would leave trivial problems).
    """
    t0 = time.perf_counter()
    resp = sv.compute_responses(apply_fn, params, jnp.asarray(images) * GAIN)
    block(resp.X)
    t_resp = time.perf_counter() - t0
    X = resp.X
    c = resp.L.shape[1]
    L = jax.nn.one_hot(jnp.asarray(labels), c, dtype=X.dtype)
    Xn = np.asarray(X, np.float64)
    Ln = np.asarray(L, np.float64)
    n, m = X.shape
    mus = np.asarray(cfg["mu_path"], np.float32)
    out: dict[str, Any] = {
        "N": int(n),
        "m": int(m),
        "C": int(c),
        "L": "one-hot true labels",
        "responses_s_incl_compile": t_resp,
        "mean_response": float(jnp.mean(X)),
        "dead_filters": int(jnp.sum(jnp.all(X == 0, axis=0))),
        "mu": 2.0,
        "mu_path": [float(v) for v in mus],
    }
    log(f"  responses X {tuple(X.shape)} in {t_resp:.1f} s")
    have_scipy = True
    try:
        import scipy  # noqa: F401
    except ImportError:  # pragma: no cover
        have_scipy = False
        log("  scipy not installed: SLSQP peer skipped")

    for key, mu in (("scalar", 2.0), ("path", mus)):
        run_jax, box = capture(lambda mu=mu: sv.mu_lasso(X, L, mu))
        t = timer(cfg)(run_jax, cfg["repeats"])
        sol = box["out"]
        res: dict[str, Any] = {
            "mu_lasso": {
                **t,
                "compile_s_approx": t["first_call_s"] - t["median_s"],
                "max_iterations": int(np.max(sol.iterations)),
                "all_converged": bool(np.all(sol.converged)),
                "max_residual": float(np.max(sol.residual)),
            }
        }
        if have_scipy:
            if key == "scalar":
                peer = functools.partial(peers.slsqp_mu_lasso, Xn, Ln, 2.0)
            else:
                peer = functools.partial(peers.slsqp_mu_path, Xn, Ln, mus)
            run_peer, pbox = capture(peer)
            tp = timer(cfg)(lambda run_peer=run_peer: run_peer()["W"], cfg["repeats"], warmup=0)
            ref = pbox["out"]
            res["slsqp"] = {
                **tp,
                "all_success": bool(np.all(ref["success"])),
                "n_success": int(np.sum(ref["success"])),
                "n_solves": int(np.size(ref["success"])),
                "messages": sorted(set(np.ravel(ref["messages"]).tolist())),
                "max_iterations": int(np.max(ref["iterations"])),
                "blas_threads": 1,
            }
            res["speedup"] = tp["median_s"] / t["median_s"]
            res.update(_agreement(Xn, Ln, sol.W, ref["W"]))
            log(
                f"  {key}: mu_lasso {t['median_s']:.3f} s, SLSQP {tp['median_s']:.3f} s, "
                f"rel objective diff {res['min_rel_objective_diff']:.1e}.."
                f"{res['max_rel_objective_diff']:.1e}"
            )
        out[key] = res
    return out


def rows(la: dict[str, Any]) -> list[Row]:
    dims = f"N={la['N']}, m={la['m']}, C={la['C']}"
    mp = la["mu_path"]
    out = []
    for key, label in (
        ("scalar", f"μ={la['mu']:g}"),
        ("path", f"μ path {mp[0]:g}..{mp[-1]:g} ({len(mp)} values)"),
    ):
        res = la[key]
        ml = res["mu_lasso"]
        peer = res.get("slsqp")
        agreement = ""
        if peer:
            agreement = (
                f"objective rel. diff {res['min_rel_objective_diff']:+.1e}.."
                f"{res['max_rel_objective_diff']:+.1e}"
            )
        out.append(
            row(
                f"3. `mu_lasso` {label}, {dims}",
                ml["median_s"],
                peer["median_s"] if peer else None,
                agreement=agreement,
                notes=f"≤{ml['max_iterations']} it.; peer: SciPy SLSQP per class; "
                f"compile ~{ml['compile_s_approx']:.2f} s",
            )
        )
    return out


def run(ctx: Context) -> tuple[dict[str, Any], list[Row]]:
    n = ctx.cfg["lasso_n"]
    details = bench_lasso(ctx.apply_fn, ctx.params, ctx.images[:n], ctx.labels[:n], ctx.cfg)
    n, m, c = details["N"], details["m"], details["C"]
    gram = 2 * n * m * m + 2 * n * m * c
    return details, [with_roofline(r, gram, ctx, "Gram + X'L") for r in rows(details)]
