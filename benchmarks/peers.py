"""Peer implementations for the benchmarks: what a user would write without svebi_jax.

These are deliberately the straightforward versions (Python loops over timesteps, classes,
images and metric steps) and serve two purposes in ``benchmarks/run.py``: a timing baseline
and an independent check that the vectorised library functions compute the same numbers.
They are not part of the library and are never imported by it or by the tests.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from svebi_jax.lif import LIFState, init_state, lif_step, spike_function

__all__ = [
    "naive_lif_loop",
    "make_lif_step",
    "rise_auc",
    "rise_insdel_loop",
    "single_thread_blas",
    "slsqp_mu_lasso",
    "slsqp_mu_path",
]


# ----------------------------------------------------------------------------------- LIF


def make_lif_step(*, beta: float, threshold: float = 1.0, reset: str = "subtract") -> Callable:
    """A jitted single LIF timestep ``(state, current [B, ...]) -> (state, (spikes, membrane))``.

    Same dynamics and surrogate (triangle) as :func:`svebi_jax.lif_scan`'s defaults.
    """
    spike_fn = spike_function("triangle", threshold=threshold)

    def step(state: LIFState, current: jax.Array):
        return lif_step(
            state, current, beta=beta, threshold=threshold, reset=reset, spike_fn=spike_fn
        )

    return jax.jit(step)


def naive_lif_loop(step_fn: Callable, currents: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Runs a LIF layer with a Python loop over timesteps, one jitted call per step.

    Args:
      step_fn: from :func:`make_lif_step`.
      currents: ``[T, ...]`` float32 input currents, time-major.

    Returns:
      ``(spikes, membrane)``, both ``[T, ...]`` float32 (stacked per-step outputs).
    """
    state = init_state(currents.shape[1:], currents.dtype)
    spikes, membrane = [], []
    for t in range(currents.shape[0]):
        state, (s, u) = step_fn(state, currents[t])
        spikes.append(s)
        membrane.append(u)
    return jnp.stack(spikes), jnp.stack(membrane)


# ------------------------------------------------------------------------------- mu-lasso


def single_thread_blas():
    """Context limiting NumPy's BLAS to one thread (``threadpoolctl``), when available.

    SLSQP works on ``m x m`` matrices with ``m`` ~ 76: a multi-threaded BLAS gains nothing
    there and, on a loaded machine, its spinning threads made the solver up to ~60x slower
    in our runs. The peer gets its best setting.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _slsqp_one(G, b, c, mu, w0, *, maxiter, ftol):
    from scipy.optimize import minimize

    m = G.shape[0]

    def fun(w):
        g = G @ w
        return float(w @ g - 2.0 * b @ w + c), 2.0 * (g - b)

    cons = [{"type": "ineq", "fun": lambda w: mu - w.sum(), "jac": lambda w: -np.ones(m)}]
    res = minimize(
        fun,
        w0,
        jac=True,
        method="SLSQP",
        bounds=[(0.0, None)] * m,
        constraints=cons,
        options={"maxiter": maxiter, "ftol": ftol},
    )
    return np.clip(res.x, 0.0, None), bool(res.success), int(res.nit), str(res.message)


def slsqp_mu_lasso(
    X: np.ndarray,
    L: np.ndarray,
    mu: float,
    *,
    warm_start: np.ndarray | None = None,
    maxiter: int = 1000,
    ftol: float = 1e-10,
) -> dict:
    r"""The μ-lasso with ``scipy.optimize.minimize(method="SLSQP")``, one class at a time.

    For every class :math:`j`: :math:`\min_{w \ge 0,\ \mathbf 1^\top w \le \mu}
    \|Xw - L_{:,j}\|^2`, in float64 on the Gram form
    :math:`w^\top G w - 2 B_{:,j}^\top w + c_j` (:math:`G = X^\top X`, computed once, with the
    analytic gradient), which is the strongest simple SciPy formulation; BLAS runs
    single-threaded (:func:`single_thread_blas`).

    Args:
      X: ``[N, m]`` float responses.
      L: ``[N, C]`` one-hot labels.
      mu: positive L1 budget.
      warm_start: optional ``[m, C]`` initial weights (default zeros).
      maxiter: SLSQP iteration limit per class.
      ftol: SLSQP's tolerance on the objective.

    Returns:
      dict with ``W`` ``[m, C]`` float64, ``success`` ``[C]`` bool, ``iterations`` ``[C]`` int
      and ``messages`` (SciPy's exit message per class).
    """
    X = np.asarray(X, np.float64)
    L = np.asarray(L, np.float64)
    G, B, c = X.T @ X, X.T @ L, np.sum(L * L, axis=0)
    m, n_classes = X.shape[1], L.shape[1]
    W0 = np.zeros((m, n_classes)) if warm_start is None else np.asarray(warm_start, np.float64)
    W = np.zeros((m, n_classes))
    success = np.zeros(n_classes, bool)
    iters = np.zeros(n_classes, int)
    messages = []
    with single_thread_blas():
        for j in range(n_classes):
            W[:, j], success[j], iters[j], msg = _slsqp_one(
                G, B[:, j], c[j], mu, W0[:, j], maxiter=maxiter, ftol=ftol
            )
            messages.append(msg)
    return {"W": W, "success": success, "iterations": iters, "messages": messages}


def slsqp_mu_path(X: np.ndarray, L: np.ndarray, mus, **kwargs) -> dict:
    """:func:`slsqp_mu_lasso` over increasing budgets, each warm-started from the previous.

    Returns:
      dict with ``W`` ``[P, m, C]``, ``success`` ``[P, C]``, ``iterations`` ``[P, C]`` and
      ``messages`` (``P`` lists of ``C``) in the order of ``mus`` (which must be increasing).
    """
    outs, prev = [], None
    for mu in np.asarray(mus, np.float64):
        out = slsqp_mu_lasso(X, L, float(mu), warm_start=prev, **kwargs)
        prev = out["W"]
        outs.append(out)
    out = {k: np.stack([o[k] for o in outs]) for k in ("W", "success", "iterations")}
    out["messages"] = [o["messages"] for o in outs]
    return out


# ------------------------------------------------------------------------ insertion/deletion


def rise_auc(curve: np.ndarray) -> float:
    """RISE's ``auc``: trapezoidal area under a curve on ``[0, 1]``."""
    return float((curve.sum() - curve[0] / 2 - curve[-1] / 2) / (curve.shape[0] - 1))


def rise_insdel_loop(
    prob_fn: Callable[[np.ndarray], jax.Array],
    images: np.ndarray,
    saliency: np.ndarray,
    *,
    mode: str,
    step: int,
    substrate: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """RISE's ``CausalMetric.single_run``, image by image and step by step.

    Follows ``evaluation.py`` of ``eclique/RISE``: pixels ranked by
    ``flip(argsort(saliency))`` (a stable argsort here), one model call per curve point on a
    batch of one image, the score of the class predicted on the unperturbed image.

    Args:
      prob_fn: jitted ``[1, H, W, C] -> [1, K]`` class probabilities.
      images: ``[B, H, W, C]`` float32 images.
      saliency: ``[B, H, W]`` maps, higher = more important.
      mode: ``"insertion"`` or ``"deletion"``.
      step: pixels changed per step.
      substrate: ``[B, H, W, C]`` what deleted pixels become / insertion starts from.

    Returns:
      ``(curves [B, n + 1], aucs [B])`` float64 NumPy arrays, ``n = ceil(H W / step)``.
    """
    b, h, w, ch = images.shape
    hw = h * w
    n_steps = (hw + step - 1) // step
    curves = np.empty((b, n_steps + 1))
    for k in range(b):
        img = images[k : k + 1]
        c = int(np.argmax(np.asarray(prob_fn(img))[0]))
        if mode == "deletion":
            start, finish = img.copy(), substrate[k : k + 1]
        else:
            start, finish = substrate[k : k + 1].copy(), img
        order = np.flip(np.argsort(saliency[k].reshape(-1), kind="stable"))
        for i in range(n_steps + 1):
            curves[k, i] = np.asarray(prob_fn(start))[0, c]
            if i < n_steps:
                coords = order[step * i : step * (i + 1)]
                start.reshape(hw, ch)[coords] = finish.reshape(hw, ch)[coords]
    aucs = np.array([rise_auc(cv) for cv in curves])
    return curves, aucs
