r"""Non-negative, L1-budgeted least squares per class (the SVEBI "mu-lasso").

For every class :math:`j` SVEBI looks for non-negative filter weights with an L1 budget,

.. math::

  w_j = \operatorname*{argmin}_{w \in \mathcal{C}_\mu} \|X w - L_{:, j}\|_2^2,
  \qquad \mathcal{C}_\mu = \{w \in \mathbb{R}^m : w \ge 0,\ \mathbf{1}^\top w \le \mu\},

with ``X`` the ``[N, m]`` filter responses and ``L`` the ``[N, C]`` one-hot predicted labels.
This is what ``spams.lasso(X=L, D=X, lambda1=mu, mode=0, pos=True)`` solves in the authors'
code. Filters with :math:`w_{ij} > 0` are the relevant filters of class :math:`j`.

The solver works on the Gram form, computed once,

.. math::

  G = X^\top X \in \mathbb{R}^{m \times m}, \quad B = X^\top L \in \mathbb{R}^{m \times C}, \quad
  c_j = \|L_{:, j}\|_2^2, \qquad
  f_j(w) = w^\top G w - 2 B_{:, j}^\top w + c_j,

so the iterations never touch ``N``. It runs accelerated projected gradient (FISTA) through
``jaxopt.ProjectedGradient``, vmapped over the ``C`` classes, and a ``lax.scan`` over sorted
:math:`\mu` values (warm-started) for a regularisation path.

``jaxopt`` is unmaintained upstream; every use of it is confined to this module.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from optax.projections import projection_simplex

with warnings.catch_warnings():
    # jaxopt announces at import time that it is no longer maintained; we know, and keep
    # every use of it in this module.
    warnings.filterwarnings("ignore", message="JAXopt is no longer maintained", category=Warning)
    import jaxopt

__all__ = ["LassoResult", "mu_lasso", "projection_nonneg_l1_ball", "relevant_mask"]

_HIGHEST = jax.lax.Precision.HIGHEST
_DEFAULT_TOL = {4: 1e-6, 8: 1e-9}  # by itemsize of the working float dtype
_DEFAULT_MAXITER = 10_000


class LassoResult(NamedTuple):
    r"""Solution of :func:`mu_lasso` (a pytree).

    Shapes are given for a scalar ``mu``; for a 1-D ``mu`` of length ``P`` every field gets a
    leading ``P`` axis in the caller's order of ``mu``.

    Attributes:
      W: ``[m, C]`` (or ``[P, m, C]``) float, the weights :math:`w_j` in column ``j``;
        non-negative, each column sums to at most ``mu``. Exactly zero for classes that never
        occur in ``L``.
      objective: ``[C]`` (or ``[P, C]``) float, :math:`\|X w_j - L_{:, j}\|_2^2` including the
        constant, evaluated directly from ``X`` (not from the Gram form) after the solve.
      iterations: ``[C]`` (or ``[P, C]``) int, FISTA iterations spent on each class.
      residual: ``[C]`` (or ``[P, C]``) float, the relative projected-gradient residual
        :math:`r_j` defined in :func:`mu_lasso` (zero exactly at the optimum).
      converged: ``[C]`` (or ``[P, C]``) bool, ``residual <= tol``.
    """

    W: jax.Array
    objective: jax.Array
    iterations: jax.Array
    residual: jax.Array
    converged: jax.Array


# --------------------------------------------------------------------------------------------
# Projection onto {w >= 0, sum(w) <= mu}
# --------------------------------------------------------------------------------------------


def _project(w: jax.Array, mu: jax.Array) -> jax.Array:
    # Exactness. Let C = {w >= 0, 1'w <= mu}, O = {w >= 0} and D = {w >= 0, 1'w = mu}.
    # (a) If 1'relu(y) <= mu: relu(y) = P_O(y) is the nearest point of O, and it lies in C,
    #     which is a subset of O; hence it is also the nearest point of C: P_C(y) = relu(y).
    # (b) Otherwise the KKT conditions of min ||w - y||^2 over C read
    #       w = relu(y - tau 1),  tau >= 0,  tau (1'w - mu) = 0.
    #     tau = 0 would give w = relu(y), which is infeasible, so tau > 0 and 1'w = mu: w is the
    #     KKT point (sign-free multiplier tau) of the projection onto D, i.e. P_C(y) = P_D(y).
    #     Moreover, because tau > 0, relu(y - tau) = relu(relu(y) - tau), so projecting relu(y)
    #     or y onto D gives the same point; we project p = relu(y).
    # Both branches are evaluated (jnp.where), which is cheap and keeps this jit/vmap friendly.
    p = jnp.maximum(w, 0)
    # optax promotes to float64 when x64 is on (its `1 / arange` is int64): cast back.
    on_simplex = projection_simplex(p, mu).astype(w.dtype)
    return jnp.where(jnp.sum(p) > mu, on_simplex, p)


def projection_nonneg_l1_ball(w: jax.Array, mu: float | jax.Array) -> jax.Array:
    r"""Euclidean projection onto the non-negative part of the L1 ball of radius ``mu``.

    .. math::

      P_\mu(y) = \operatorname*{argmin}_{w \ge 0,\ \mathbf{1}^\top w \le \mu} \|w - y\|_2^2
      = \begin{cases}
          \max(y, 0) & \text{if } \mathbf{1}^\top \max(y, 0) \le \mu, \\
          \Pi_{\Delta_\mu}(\max(y, 0)) & \text{otherwise,}
        \end{cases}

    where :math:`\Pi_{\Delta_\mu}` is the projection onto the simplex
    :math:`\{w \ge 0, \mathbf{1}^\top w = \mu\}` (``optax.projections.projection_simplex``).
    The composition is the exact projection (see the comment in the source).

    Args:
      w: ``[m]`` float array, the point to project.
      mu: positive scalar, the L1 budget.

    Returns:
      ``[m]`` array of the dtype of ``w``, the projection.
    """
    w = jnp.asarray(w)
    if w.ndim != 1:
        raise ValueError(f"w must be a 1-D array [m], got shape {w.shape}")
    if not jnp.issubdtype(w.dtype, jnp.floating):
        w = w.astype(jnp.result_type(float))
    if not isinstance(mu, jax.core.Tracer):
        mu_np = np.asarray(mu)
        if mu_np.ndim != 0 or not np.isfinite(mu_np) or mu_np <= 0:
            raise ValueError(f"mu must be a finite positive scalar, got {mu!r}")
    return _project(w, jnp.asarray(mu, w.dtype))


def relevant_mask(W: jax.Array, *, atol: float = 0.0) -> jax.Array:
    """Which filters are relevant: ``W > atol``.

    Args:
      W: ``[m, C]`` (or ``[P, m, C]``) float weights from :func:`mu_lasso`.
      atol: non-negative threshold; weights at or below it are not relevant.

    Returns:
      Bool array of the shape of ``W``.
    """
    if not isinstance(atol, jax.core.Tracer):
        a = np.asarray(atol)
        if a.ndim != 0 or not np.isfinite(a) or a < 0:
            raise ValueError(f"atol must be a finite non-negative number, got {atol!r}")
    return jnp.asarray(W) > atol


# --------------------------------------------------------------------------------------------
# Validation (eager; skipped for tracers)
# --------------------------------------------------------------------------------------------


def _concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _validate(X, L, mu, maxiter, tol, warm_start) -> None:
    if np.ndim(X) != 2:
        raise ValueError(f"X must be a 2-D array [N, m], got shape {np.shape(X)}")
    if np.ndim(L) != 2:
        raise ValueError(f"L must be a 2-D one-hot array [N, C], got shape {np.shape(L)}")
    (n, m), (n_l, c) = np.shape(X), np.shape(L)
    if n != n_l:
        raise ValueError(f"X and L must have the same number of rows N, got X {n} and L {n_l}")
    if n == 0 or m == 0:
        raise ValueError(f"X must have at least one row and one column, got shape {(n, m)}")
    if c == 0:
        raise ValueError(f"L must have at least one column (class), got shape {(n_l, c)}")
    if np.ndim(mu) not in (0, 1):
        raise ValueError(f"mu must be a scalar or a 1-D array, got shape {np.shape(mu)}")
    if np.ndim(mu) == 1 and np.shape(mu)[0] == 0:
        raise ValueError("mu must be a scalar or a non-empty 1-D array, got an empty array")
    if warm_start is not None and np.shape(warm_start) != (m, c):
        raise ValueError(
            f"warm_start must have shape [m, C] = {(m, c)}, got {np.shape(warm_start)}"
        )
    if _concrete(maxiter):
        if isinstance(maxiter, bool) or not isinstance(maxiter, (int, np.integer)) or maxiter < 1:
            raise ValueError(f"maxiter must be a positive integer, got {maxiter!r}")
    if tol is not None and _concrete(tol):
        t = np.asarray(tol)
        if t.ndim != 0 or not np.isfinite(t) or t <= 0:
            raise ValueError(f"tol must be a finite positive number, got {tol!r}")
    # Values known at trace time (also constants a jitted caller closes over) are checked
    # eagerly, without staging anything into the caller's trace.
    with jax.ensure_compile_time_eval():
        if _concrete(mu):
            mu_np = np.asarray(mu, dtype=np.float64)
            if not np.all(np.isfinite(mu_np)) or np.any(mu_np <= 0):
                raise ValueError(f"mu must be finite positive number(s), got {mu!r}")
        if _concrete(X):  # on device: no host copy of a large X
            X = jnp.asarray(X)
            if not bool(jnp.all(jnp.isfinite(X))):
                raise ValueError("X must be finite, got NaN or inf entries")
            dtype = jnp.result_type(X, jnp.float32)
            if not bool(jnp.all(jnp.isfinite(jnp.sum(jnp.square(X.astype(dtype)), axis=0)))):
                raise ValueError(
                    f"X is too large for {jnp.dtype(dtype).name}: its Gram matrix X^T X "
                    f"overflows (max |X| = {float(jnp.max(jnp.abs(X))):.3g}); rescale X"
                )
        if _concrete(L):
            l_np = np.asarray(L, dtype=np.float64)
            if not np.all(np.isfinite(l_np)):
                raise ValueError("L must be finite, got NaN or inf entries")
            if not (np.all((l_np == 0) | (l_np == 1)) and np.all(l_np.sum(axis=1) == 1)):
                raise ValueError("L must be one-hot: entries 0/1 with exactly one 1 per row")
            absent = np.flatnonzero(l_np.sum(axis=0) == 0)
            if absent.size:
                warnings.warn(
                    f"L: class(es) {absent.tolist()} never occur; their weights are set to 0",
                    UserWarning,
                    stacklevel=3,
                )
        if warm_start is not None and _concrete(warm_start):
            if not bool(jnp.all(jnp.isfinite(jnp.asarray(warm_start)))):
                raise ValueError("warm_start must be finite, got NaN or inf entries")


def _flag_invalid(result: LassoResult, X, L, mu) -> LassoResult:
    """Marks a solve whose (traced, so unchecked) inputs were invalid: ``W``, ``objective``
    and ``residual`` become NaN and ``converged`` False, instead of plausible weights."""
    mu = jnp.asarray(mu)
    ok = jnp.all(jnp.isfinite(X)) & jnp.all(jnp.isfinite(jnp.sum(X * X, axis=0)))
    ok = ok & jnp.all(jnp.isfinite(L)) & jnp.all((L == 0) | (L == 1)) & jnp.all(L.sum(1) == 1)
    ok = ok & jnp.isfinite(mu) & (mu > 0)  # [] or [P]
    if result.W.ndim == 3:
        ok_w, ok_c = ok[:, None, None], ok[:, None]
    else:
        ok_w, ok_c = ok, ok
    nan = jnp.asarray(jnp.nan, result.W.dtype)
    return LassoResult(
        W=jnp.where(ok_w, result.W, nan),
        objective=jnp.where(ok_c, result.objective, nan),
        iterations=result.iterations,
        residual=jnp.where(ok_c, result.residual, nan),
        converged=result.converged & ok_c,
    )


# --------------------------------------------------------------------------------------------
# Solver
# --------------------------------------------------------------------------------------------


def _residual(w, b, Gt, mu):
    """Relative projected-gradient residual of one class (see :func:`mu_lasso`)."""
    w_plus = _project(w - (jnp.matmul(Gt, w, precision=_HIGHEST) - b), mu)
    num = jnp.linalg.norm(w - w_plus)
    den = jnp.maximum(jnp.sum(jnp.abs(w)), jnp.sum(jnp.abs(w_plus)))
    return jnp.where(num > 0, num / jnp.where(den > 0, den, 1), jnp.zeros_like(num))


def _solve_one_mu(W0, mu, Gt, Bt, maxiter, tol):
    """FISTA for all classes at one ``mu``; ``W0`` ``[m, C]`` initial point (any real)."""
    dtype = Gt.dtype

    def fun(w, b):
        # Normalised objective f_j(w) / L up to a constant, L = 2 lambda: Lipschitz const. 1.
        g = jnp.matmul(Gt, w, precision=_HIGHEST) - b
        return 0.5 * jnp.dot(w, g - b, precision=_HIGHEST), g

    solver = jaxopt.ProjectedGradient(
        fun=fun,
        projection=_project,
        value_and_grad=True,
        stepsize=1.0,  # = 1 / Lipschitz constant of the normalised objective
        acceleration=True,
        implicit_diff=False,  # we drive `update` ourselves, `run` is not used
    )

    def one_class(w0, b):
        w0 = _project(w0, mu)
        state0 = solver.init_state(w0, mu, b)

        def cond(carry):
            _, state, r = carry
            return (state.iter_num < maxiter) & (r > tol)

        def body(carry):
            w, state, _ = carry
            new = solver.update(w, state, mu, b)
            # jaxopt keeps its momentum scalar `t` in the default float dtype: under x64 it
            # would silently promote float32 iterates. Cast back to the carried dtypes.
            w, state = jax.tree.map(lambda a, o: jnp.asarray(a, o.dtype), tuple(new), (w, state))
            return w, state, _residual(w, b, Gt, mu).astype(dtype)

        r0 = _residual(w0, b, Gt, mu).astype(dtype)
        w, state, r = jax.lax.while_loop(cond, body, (w0, state0, r0))
        return w, state.iter_num, r

    return jax.vmap(one_class, in_axes=(1, 1), out_axes=(1, 0, 0))(W0, Bt)


def mu_lasso(
    X: jax.Array,
    L: jax.Array,
    mu: float | jax.Array,
    *,
    maxiter: int = _DEFAULT_MAXITER,
    tol: float | None = None,
    warm_start: jax.Array | None = None,
) -> LassoResult:
    r"""Per-class non-negative least squares with an L1 budget (SVEBI's filter selection).

    For every class :math:`j = 1..C` and every budget :math:`\mu`,

    .. math::

      w_j = \operatorname*{argmin}_{w \ge 0,\ \mathbf{1}^\top w \le \mu}
            f_j(w), \qquad
      f_j(w) = \|X w - L_{:, j}\|_2^2 = w^\top G w - 2 B_{:, j}^\top w + c_j,

    with :math:`G = X^\top X`, :math:`B = X^\top L`, :math:`c_j = \|L_{:, j}\|^2` computed once
    (the iterations cost :math:`O(m^2 C)` and never touch ``N``). The problem is solved with
    accelerated projected gradient (FISTA, ``jaxopt.ProjectedGradient``) and a fixed step
    :math:`1 / \mathcal{L}`, :math:`\mathcal{L} = 2 \hat\lambda`, where
    :math:`\hat\lambda = \lambda_{\max}(G)\,(1 + \max(m, 16)\,\varepsilon)` comes from
    ``jnp.linalg.eigvalsh`` (:math:`\varepsilon` the dtype's machine epsilon, a margin for its
    rounding). For a quadratic the Lipschitz constant of :math:`\nabla f_j` is known exactly,
    so a fixed step is both safe and the largest one FISTA's theory allows; a backtracking
    line search would only add function evaluations (and data-dependent inner loops under
    ``vmap``) without a faster rate. The projection is :func:`projection_nonneg_l1_ball`.
    All ``C`` classes are solved in one ``vmap``-ed loop; each class stops on its own.

    Stopping rule and ``residual``: with the projected-gradient step
    :math:`w^+ = P_\mu\big(w - \nabla f_j(w) / \mathcal{L}\big)`,

    .. math::

      r_j(w) = \frac{\|w - w^+\|_2}{\max(\|w\|_1, \|w^+\|_1)}, \qquad (0/0 := 0),

    i.e. the length of a full projected-gradient step relative to the size of the weights. It
    is zero if and only if :math:`w` is optimal, is invariant to rescaling ``X`` (with ``mu``),
    and does not depend on whether the budget is active. A class stops when
    :math:`r_j \le` ``tol``; ``converged = residual <= tol``. The residual is evaluated at
    the iterate every iteration (one extra ``[m, m]`` matvec and projection per step), so the
    stopping rule and the reported ``residual`` are the same number.

    Accuracy: with the defaults (``tol=1e-6`` in float32, ``1e-9`` in float64,
    ``maxiter=10000``) the objective came within ``5e-7`` relative of the optimum in float32
    and ``1e-12`` in float64 (optimum from a float64 solve at ``tol=1e-12``, itself within
    ``1e-5`` of SciPy's SLSQP in the tests), on random non-negative problems with rows summing
    to ~3 (``N`` = 200..3000, ``m`` = 30..120, ``C`` = 5..10, budgets active and inactive);
    float32 needed at most ~600 iterations there, float64 at most ~5000. Ill-conditioned
    ``G`` slows FISTA (iterations grow like the square root of the condition number); check
    ``converged`` and raise ``maxiter`` if needed.

    Precision: the working dtype is the promotion of ``X`` and ``L`` with float32, so float32
    by default; with ``jax_enable_x64`` on and float64 inputs everything stays float64. All
    matrix products use ``Precision.HIGHEST`` (no TF32/bf16 passes on accelerators).

    Args:
      X: ``[N, m]`` float responses (``N`` images, ``m`` filters). Usually non-negative, but any
        finite real values are accepted.
      L: ``[N, C]`` one-hot (0/1, one 1 per row) predicted labels, any numeric/bool dtype.
        A class that never occurs gets a ``UserWarning`` and ``w_j = 0`` exactly (its optimum).
      mu: positive scalar, or ``[P]`` 1-D array of budgets. A 1-D ``mu`` is solved as a path
        in one compiled ``lax.scan`` over the sorted values, each warm-started from the
        previous solution; results come back in the caller's order.
      maxiter: maximum FISTA iterations per class and per ``mu``.
      tol: stopping tolerance on the residual :math:`r_j`; ``None`` picks ``1e-6`` for float32
        and ``1e-9`` for float64.
      warm_start: optional ``[m, C]`` initial weights (projected onto the feasible set first);
        for a path it initialises the smallest ``mu``.

    Returns:
      A :class:`LassoResult`; ``W`` is ``[m, C]`` for a scalar ``mu`` and ``[P, m, C]`` for a
      1-D ``mu``, the other fields ``[C]`` or ``[P, C]``.

    Raises:
      ValueError: on malformed shapes; and, when the values are concrete (outside ``jit``, or
        constants a jitted caller closes over), on a non-finite or non-positive ``mu``,
        NaN/inf in ``X``, ``L`` or ``warm_start``, an ``X`` so large that ``X^T X``
        overflows, or ``L`` not one-hot. Where these values are traced (under the caller's
        ``jit``/``vmap``) they cannot raise: an invalid input gives ``W``, ``objective`` and
        ``residual`` of NaN and ``converged`` False (per μ for a path), never plausible
        weights.
    """
    _validate(X, L, mu, maxiter, tol, warm_start)

    dtype = jnp.result_type(X, L, jnp.float32)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    X = jnp.asarray(X, dtype)
    L = jnp.asarray(L, dtype)
    m, c = X.shape[1], L.shape[1]
    if tol is None:
        tol = _DEFAULT_TOL.get(jnp.dtype(dtype).itemsize, 1e-6)
    W0 = jnp.zeros((m, c), dtype) if warm_start is None else jnp.asarray(warm_start, dtype)
    mu = jnp.asarray(mu, dtype)
    result = _mu_lasso(X, L, mu, W0, jnp.asarray(maxiter), jnp.asarray(tol, dtype))
    if _concrete(X) and _concrete(L) and _concrete(mu):
        return result  # validated above
    return _flag_invalid(result, X, L, mu)


@jax.jit
def _mu_lasso(X, L, mu, W0, maxiter, tol) -> LassoResult:
    """Compiled core of :func:`mu_lasso` (inputs already validated and cast)."""
    dtype = X.dtype
    m = X.shape[1]
    G = jnp.matmul(X.T, X, precision=_HIGHEST)
    B = jnp.matmul(X.T, L, precision=_HIGHEST)
    lam = jnp.linalg.eigvalsh(G)[-1] * (1 + max(m, 16) * jnp.finfo(dtype).eps)
    lam = jnp.where(lam > 0, lam, jnp.ones_like(lam))  # X == 0: any step works (gradient 0)
    # Normalised problem: h_j(w) = f_j(w) / (2 lam) + const = 0.5 w'Gt w - bt_j'w, whose
    # gradient (G w - B_j) / lam = grad f_j / L has Lipschitz constant 1 (step size 1).
    Gt, Bt = G / lam, B / lam
    present = jnp.sum(L, axis=0) > 0  # [C]

    def solve(W_prev, mu_k):
        W, iters, res = _solve_one_mu(W_prev, mu_k, Gt, Bt, maxiter, tol)
        # Never-predicted class: B_j = 0 and c_j = 0, so w = 0 is optimal (G is PSD).
        W = jnp.where(present[None, :], W, jnp.zeros_like(W))
        res = jnp.where(present, res, jnp.zeros_like(res))
        R = jnp.matmul(X, W, precision=_HIGHEST) - L
        obj = jnp.sum(R * R, axis=0)
        return W, (W, obj, iters, res, res <= tol)

    if mu.ndim == 0:
        _, (W, obj, iters, res, conv) = solve(W0, mu)
        return LassoResult(W, obj, iters, res, conv)

    order = jnp.argsort(mu)
    inverse = jnp.argsort(order)
    _, outs = jax.lax.scan(solve, W0, mu[order])
    W, obj, iters, res, conv = jax.tree.map(lambda a: a[inverse], outs)
    return LassoResult(W, obj, iters, res, conv)
