r"""Non-negative, L1-budgeted least squares per class (the SVEBI "mu-lasso").

For every class :math:`j` SVEBI looks for non-negative filter weights with an L1 budget,

.. math::

  w_j = \operatorname*{argmin}_{w \in \mathcal{C}_\mu} \|X w - L_{:, j}\|_2^2,
  \qquad \mathcal{C}_\mu = \{w \in \mathbb{R}^m : w \ge 0,\ \mathbf{1}^\top w \le \mu\},

with ``X`` the ``[N, m]`` filter responses and ``L`` the ``[N, C]`` one-hot predicted labels.
This is what ``spams.lasso(X=L, D=X, lambda1=mu, mode=0, pos=True)`` solves in the authors'
code. Filters with :math:`w_{ij} > 0` are the relevant filters of class :math:`j`.

Two solvers share the certificates of optimality, the projected-gradient residual and the
Frank–Wolfe duality gap on the full problem (see :func:`mu_lasso`):

- ``method="fista"`` works on the Gram form, computed once,

  .. math::

    G = X^\top X \in \mathbb{R}^{m \times m}, \quad B = X^\top L \in \mathbb{R}^{m \times C},
    \quad c_j = \|L_{:, j}\|_2^2, \qquad f_j(w) = w^\top G w - 2 B_{:, j}^\top w + c_j,

  so the iterations never touch ``N``. It runs accelerated projected gradient (FISTA) through
  ``jaxopt.ProjectedGradient``, vmapped over the ``C`` classes, and a ``lax.scan`` over sorted
  :math:`\mu` values (warm-started) for a regularisation path.
- ``method="active_set"`` (default) follows the exact solution path (homotopy, as SPAMS's
  LARS does) on a working set of columns, polishes it with the same
  ``jaxopt.ProjectedGradient`` where needed and checks the full problem with one pass over
  ``X``, growing the working set until no column outside it should enter. The solutions are
  very sparse, so for many columns it never forms the full Gram, and a whole path costs
  about one solve. It is the default: exact, and faster than FISTA on every problem of the
  benchmarks (see ``benchmarks/bench_lasso_peers.py``).

``jaxopt`` is unmaintained upstream; every use of it is confined to this module.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

with warnings.catch_warnings():
    # jaxopt announces at import time that it is no longer maintained; we know, and keep
    # every use of it in this module.
    warnings.filterwarnings("ignore", message="JAXopt is no longer maintained", category=Warning)
    import jaxopt

__all__ = ["LassoResult", "mu_lasso", "projection_nonneg_l1_ball", "relevant_mask"]

_HIGHEST = jax.lax.Precision.HIGHEST
_DEFAULT_TOL = {4: 1e-6, 8: 1e-9}  # by itemsize of the working float dtype
_DEFAULT_MAXITER = 10_000
_METHODS = ("fista", "active_set")
_BLOCK = 128  # columns per block of the working-set Gram
_SCREEN = 8  # columns per class in the initial working set
_GROW = 8  # columns per class and budget added to the working set per round (at most)
_MAX_ROUNDS = 20
_FULL_GRAM_MAX_M = 512  # up to this many columns the working set is all of them
_DEFAULT_MAX_ACTIVE = 32


class LassoResult(NamedTuple):
    r"""Solution of :func:`mu_lasso` (a pytree).

    Shapes are given for a scalar ``mu``; for a 1-D ``mu`` of length ``P`` every field gets a
    leading ``P`` axis in the caller's order of ``mu``.

    Attributes:
      W: ``[m, C]`` (or ``[P, m, C]``) float, the weights :math:`w_j` in column ``j``;
        non-negative, each column sums to at most ``mu``. Exactly zero for classes that never
        occur in ``L``.
      objective: ``[C]`` (or ``[P, C]``) float, :math:`\|X w_j - L_{:, j}\|_2^2` including the
        constant, evaluated directly from ``X`` after the solve (``method="active_set"`` with
        the whole Gram formed: from the Gram form, rounding ~1e-7 of
        :math:`\|L_{:, j}\|^2` in float32).
      iterations: ``[C]`` (or ``[P, C]``) int, FISTA iterations spent on each class (for
        ``method="active_set"``: homotopy steps plus projected-gradient polish iterations,
        summed over the rounds).
      residual: ``[C]`` (or ``[P, C]``) float, the relative projected-gradient residual
        :math:`r_j` defined in :func:`mu_lasso` (zero exactly at the optimum).
      converged: ``[C]`` (or ``[P, C]``) bool, ``residual <= tol`` (for
        ``method="active_set"`` also: no column outside the working set still had to join).
      gap: ``[C]`` (or ``[P, C]``) float, the Frank–Wolfe duality gap
        :math:`2\,(\mu \max(0, \max_i c_i) - c^\top w_j)`, :math:`c = X^\top (L_{:, j} - X
        w_j)`: a certified upper bound on ``objective`` minus the optimum (up to the rounding
        of its own evaluation, ~1e-6 of :math:`\|L_{:, j}\|^2` in float32). Unlike the
        residual it bounds the objective error directly; on ill-conditioned problems FISTA
        can meet ``tol`` on the residual with a much larger gap.
    """

    W: jax.Array
    objective: jax.Array
    iterations: jax.Array
    residual: jax.Array
    converged: jax.Array
    gap: jax.Array


# --------------------------------------------------------------------------------------------
# Projection onto {w >= 0, sum(w) <= mu}
# --------------------------------------------------------------------------------------------


def _project(w: jax.Array, mu: jax.Array) -> jax.Array:
    """Projection onto ``{w >= 0, 1'w <= mu}`` (see :func:`projection_nonneg_l1_ball`); the
    simplex step by :func:`_projection_simplex_michelot`."""
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
    return jnp.where(jnp.sum(p) > mu, _projection_simplex_michelot(p, mu), p)


def _projection_simplex_michelot(p: jax.Array, mu: jax.Array) -> jax.Array:
    r"""Projection of ``[m]`` ``p`` onto :math:`\{w \ge 0, \mathbf 1^\top w = \mu\}` by
    Michelot's algorithm (Michelot 1986; Condat 2016, Algorithm 2).

    The projection is :math:`\max(p - \tau, 0)` with
    :math:`\tau = (\sum_{i \in S} p_i - \mu) / |S|` on its support :math:`S`. Starting
    from :math:`S_0` = all entries, :math:`\tau_k = (\sum_{S_k} p - \mu) / |S_k|` and
    :math:`S_{k+1} = \{i : p_i > \tau_k\}`: :math:`\tau_k` never decreases and
    :math:`S_k` never grows, and once :math:`S` stops shrinking, :math:`\tau` is exact. At
    most ``m`` steps, in practice a handful; each is two reductions over ``p``, with no sort
    and no ``[m, m]`` temporary. On XLA:CPU, for ten rows of 76 entries (the shallow SNN's
    lasso) ~25 us against ~100 us for the sort-based rule of
    ``optax.projections.projection_simplex`` (Duchi et al., 2008) and ~150 us for an
    all-pairs comparison; for 50 rows of 5,504 entries 0.8 ms against 44 ms. It agrees with
    optax's rule to rounding (tests).
    """
    dtype = p.dtype

    def step(state):
        tau, n, _ = state
        S = p > tau
        n_new = jnp.sum(S)
        shrinks = n_new < n
        tau_new = (jnp.sum(jnp.where(S, p, 0)) - mu) / jnp.maximum(n_new, 1).astype(dtype)
        return jnp.where(shrinks, tau_new, tau), jnp.where(shrinks, n_new, n), shrinks

    # S only shrinks in exact arithmetic; stopping as soon as it does not (rather than when
    # two sizes repeat) also ends a rounding see-saw of one entry at the threshold, which
    # would otherwise run to the cap (measured: 77 steps for some of 500 vectors).
    m = p.shape[-1]
    tau0 = ((jnp.sum(p) - mu) / m).astype(dtype)
    tau, *_ = jax.lax.while_loop(lambda st: st[2], step, (tau0, jnp.array(m), jnp.array(True)))
    return jnp.maximum(p - tau, 0)


def projection_nonneg_l1_ball(w: jax.Array, mu: float | jax.Array) -> jax.Array:
    r"""Euclidean projection onto the non-negative part of the L1 ball of radius ``mu``.

    .. math::

      P_\mu(y) = \operatorname*{argmin}_{w \ge 0,\ \mathbf{1}^\top w \le \mu} \|w - y\|_2^2
      = \begin{cases}
          \max(y, 0) & \text{if } \mathbf{1}^\top \max(y, 0) \le \mu, \\
          \Pi_{\Delta_\mu}(\max(y, 0)) & \text{otherwise,}
        \end{cases}

    where :math:`\Pi_{\Delta_\mu}` is the projection onto the simplex
    :math:`\{w \ge 0, \mathbf{1}^\top w = \mu\}`, computed by Michelot's algorithm (exact,
    sort-free; it agrees with ``optax.projections.projection_simplex`` to rounding). The
    composition is the exact projection (see the comment in the source).

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


def _check_positive_int(value, name: str, *, allow_none: bool = False) -> None:
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _validate(X, L, mu, maxiter, tol, warm_start, method, capacity, max_active) -> None:
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
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
    mu_ndim = 0 if _is_real_scalar(mu) else np.ndim(mu)
    if mu_ndim not in (0, 1):
        raise ValueError(f"mu must be a scalar or a 1-D array, got shape {np.shape(mu)}")
    if mu_ndim == 1 and np.shape(mu)[0] == 0:
        raise ValueError("mu must be a scalar or a non-empty 1-D array, got an empty array")
    if warm_start is not None and np.shape(warm_start) != (m, c):
        raise ValueError(
            f"warm_start must have shape [m, C] = {(m, c)}, got {np.shape(warm_start)}"
        )
    if _concrete(maxiter):
        _check_positive_int(maxiter, "maxiter")
    _check_positive_int(capacity, "capacity", allow_none=True)
    _check_positive_int(max_active, "max_active", allow_none=True)
    if tol is not None and _concrete(tol):
        t = np.asarray(tol)
        if t.ndim != 0 or not np.isfinite(t) or t <= 0:
            raise ValueError(f"tol must be a finite positive number, got {tol!r}")
    if _is_real_scalar(mu):  # the common case, without NumPy
        if not (math.isfinite(mu) and mu > 0):
            raise ValueError(f"mu must be finite positive number(s), got {mu!r}")
    elif _concrete(mu):
        mu_np = np.asarray(mu, dtype=np.float64)
        if not np.all(np.isfinite(mu_np)) or np.any(mu_np <= 0):
            raise ValueError(f"mu must be finite positive number(s), got {mu!r}")
    # The values of X and L are checked on device, in one pass that also gives the solver its
    # column norms (see _prepare and _check_summary).
    if warm_start is not None and _concrete(warm_start):
        with jax.ensure_compile_time_eval():  # a captured constant is checked, not traced
            if not bool(jnp.all(jnp.isfinite(jnp.asarray(warm_start)))):
                raise ValueError("warm_start must be finite, got NaN or inf entries")


def _is_real_scalar(x) -> bool:
    """A Python ``int``/``float`` (not ``bool``): checked without NumPy."""
    return type(x) is float or (type(x) is int and -(2**53) < x < 2**53)


@functools.cache
def _normal_range(dtype) -> tuple[float, float]:
    """``(tiny, max)`` of a float dtype, as Python floats."""
    info = jnp.finfo(dtype)
    return float(info.tiny), float(info.max)


def _check_mu_range(mu, dtype) -> None:
    """Refuses a concrete ``mu`` that the working ``dtype`` cannot hold (it would become inf,
    or 0 / a subnormal, and give NaN weights): its normal range ``[tiny, max]``."""
    if not _concrete(mu):
        return
    tiny, big = _normal_range(jnp.dtype(dtype))
    if _is_real_scalar(mu):
        ok = tiny <= mu <= big
    else:
        mu_np = np.asarray(mu, dtype=np.float64)
        ok = not (np.any(mu_np > big) or np.any(mu_np < tiny))
    if not ok:
        raise ValueError(
            f"mu must lie in [{tiny:.3g}, {big:.3g}], the range of the "
            f"working dtype {jnp.dtype(dtype).name} (the promotion of X and L with float32), "
            f"got {mu!r}; rescale X (mu scales with 1 / X) or use float64 inputs with "
            "jax_enable_x64"
        )


class _Prepared(NamedTuple):
    colsq: jax.Array  # [m] squared column norms of X (NaN/inf: X not finite or too large)
    counts: jax.Array  # [C] rows per class
    l_one_hot: jax.Array  # bool


def _labels_one_hot(L: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Each row's class (``[N]`` argmax) and whether ``L`` is exactly one-hot (``bool``).

    ``L`` is one-hot (entries 0/1, one 1 per row) if and only if it equals the one-hot
    encoding of its row argmax; NaN/inf entries compare unequal. The argmax also gives the
    solvers their class sums (``segment_sum``), so the check costs one more elementwise pass
    over ``L`` (checking "0 or 1", "row sums 1" and "finite" separately took three).
    """
    labels = jnp.argmax(L, axis=1)
    encoded = (labels[:, None] == jnp.arange(L.shape[1])).astype(L.dtype)
    return labels, jnp.all(L == encoded)


@jax.jit
def _prepare(X: jax.Array, L: jax.Array) -> _Prepared:
    r"""One pass over ``X`` and ``L``: :math:`\|X_{:, i}\|^2` and the value checks of ``L``."""
    return _Prepared(
        colsq=jnp.sum(X * X, axis=0),
        counts=jnp.sum(L, axis=0),
        l_one_hot=_labels_one_hot(L)[1],
    )


def _summary(prep: _Prepared) -> jax.Array:
    """``int32 [2 + C]``: X finite (and not overflowing), L one-hot, rows per class.

    One small array, so that the host fetches the checks in one transfer.
    """
    flags = jnp.stack([jnp.all(jnp.isfinite(prep.colsq)), prep.l_one_hot])
    return jnp.concatenate([flags.astype(jnp.int32), prep.counts.astype(jnp.int32)])


def _check_summary(X, L, summary) -> None:
    """Raises on invalid ``X``/``L`` values (``summary`` from :func:`_summary`, on the host).

    ``X`` and ``L`` are concrete here; their finiteness is looked up again only to word the
    error (the device check does not tell NaN/inf from other non-one-hot values of ``L``).
    """
    if np.all(summary):  # X finite, L one-hot, every class present
        return
    x_ok, l_one_hot = (bool(v) for v in summary[:2])
    if not l_one_hot:
        with jax.ensure_compile_time_eval():  # no tracers from concrete values in a trace
            if not bool(jnp.all(jnp.isfinite(L))):
                raise ValueError("L must be finite, got NaN or inf entries")
        raise ValueError("L must be one-hot: entries 0/1 with exactly one 1 per row")
    if not x_ok:
        with jax.ensure_compile_time_eval():
            if not bool(jnp.all(jnp.isfinite(X))):
                raise ValueError("X must be finite, got NaN or inf entries")
            raise ValueError(
                f"X is too large for {jnp.dtype(X.dtype).name}: its Gram matrix X^T X "
                f"overflows (max |X| = {float(jnp.max(jnp.abs(X))):.3g}); rescale X"
            )
    absent = np.flatnonzero(np.asarray(summary[2:]) == 0)
    if absent.size:
        warnings.warn(
            f"L: class(es) {absent.tolist()} never occur; their weights are set to 0",
            UserWarning,
            stacklevel=3,
        )


def _valid_mask(colsq, one_hot, mu, W0) -> jax.Array:
    r"""On-device validity (for traced inputs, which :func:`_validate` cannot check).

    Shape of ``mu`` (``[]`` or ``[P]``): the checks of ``X`` (finite column norms, i.e. no
    NaN/inf and no overflow of :math:`X^\top X`), ``L`` (one-hot) and ``W0`` (finite) apply
    to every budget, the check of ``mu`` (finite, positive) to each one.
    """
    common = jnp.all(jnp.isfinite(colsq)) & jnp.all(jnp.isfinite(W0)) & one_hot
    return common & jnp.isfinite(mu) & (mu > 0)


def _usable_mu(mu, valid):
    """Invalid budgets replaced by 1 so that they cannot disturb the valid ones of a path."""
    return jnp.where(valid, mu, jnp.ones_like(mu))


def _flag_invalid(result: LassoResult, valid: jax.Array) -> LassoResult:
    """NaN ``W``/``objective``/``residual``/``gap`` and ``converged = False`` where invalid.

    ``valid`` is ``[]`` for a scalar ``mu`` or ``[P]`` for a path (per budget).
    """
    per_class = valid[..., None]  # [C] / [P, C]
    per_weight = valid[..., None, None]  # [m, C] / [P, m, C]
    nan = lambda a, ok: jnp.where(ok, a, jnp.full_like(a, jnp.nan))
    return LassoResult(
        W=nan(result.W, per_weight),
        objective=nan(result.objective, per_class),
        iterations=result.iterations,
        residual=nan(result.residual, per_class),
        converged=result.converged & per_class,
        gap=nan(result.gap, per_class),
    )


# --------------------------------------------------------------------------------------------
# Shared pieces: Lipschitz bound, residual, jaxopt projected gradient
# --------------------------------------------------------------------------------------------


def _lipschitz_bound(G: jax.Array, steps: int = 16) -> jax.Array:
    r"""Upper bound :math:`\bar\lambda \ge \lambda_{\max}(G)` for a symmetric PSD ``[K, K]`` G.

    Collatz–Wielandt: for the non-negative matrix :math:`A = |G|` and any positive vector
    :math:`v`, :math:`\lambda_{\max}(G) \le \rho(A) \le \max_i (A v)_i / v_i`. ``v`` is
    ``steps`` power iterations of ``A`` from :math:`\mathbf 1`, shifted to stay positive; for
    non-negative ``X`` (``A = G``) the bound is tight (within ~1e-3 after 16 steps on SVEBI
    responses). A margin :math:`(1 + \max(K, 16)\,\varepsilon)` covers rounding. This replaces
    ``eigvalsh`` (~0.1 s for ``K = 76`` on XLA:CPU, far longer for thousands of columns).
    Returns 1 for ``G = 0`` (any step is then safe).
    """
    A = jnp.abs(G)
    v = jnp.ones(G.shape[0], G.dtype)

    def power(_, v):
        u = jnp.matmul(A, v, precision=_HIGHEST)
        top = jnp.max(u)
        return jnp.where(top > 0, u / jnp.where(top > 0, top, 1), v)

    v = jax.lax.fori_loop(0, steps, power, v)
    v = v + 1e-3 * jnp.max(v)
    lam = jnp.max(jnp.matmul(A, v, precision=_HIGHEST) / v)
    lam = lam * (1 + max(G.shape[0], 16) * jnp.finfo(G.dtype).eps)
    return jnp.where(lam > 0, lam, jnp.ones_like(lam))


def _lipschitz_bound_through(X: jax.Array, steps: int = 2) -> jax.Array:
    r""":func:`_lipschitz_bound` of :math:`G = X^\top X` without forming it (``[N, m]`` X).

    ``steps`` Collatz–Wielandt steps on :math:`|X|^\top |X|` from the column sums of
    :math:`|X|`, two matrix-vector passes over ``X`` each; within ~2e-5 of
    :math:`\lambda_{\max}(G)` after 2 steps on SVEBI responses. For non-negative ``X``
    (responses are) :math:`|X| = X` and no copy is made; otherwise :math:`|X|` is formed once.
    """

    def bound(A):
        v = jnp.matmul(jnp.ones(A.shape[0], A.dtype), A, precision=_HIGHEST)
        pos = v > 0  # zero columns: zero rows and columns of |G|, which do not change rho
        lam = jnp.zeros((), A.dtype)
        for _ in range(steps):
            Av = jnp.matmul(jnp.matmul(A, v, precision=_HIGHEST), A, precision=_HIGHEST)
            lam = jnp.max(jnp.where(pos, Av / jnp.where(pos, v, 1), 0))
            top = jnp.max(Av)
            v = jnp.where(pos, Av / jnp.where(top > 0, top, 1), 0)
        return lam

    lam = jax.lax.cond(jnp.min(X) >= 0, bound, lambda X: bound(jnp.abs(X)), X)
    lam = lam * (1 + max(X.shape[1], 16) * jnp.finfo(X.dtype).eps)
    return jnp.where(lam > 0, lam, jnp.ones_like(lam))


def _relative_step(w, w_plus):
    """:math:`\\|w - w^+\\|_2 / \\max(\\|w\\|_1, \\|w^+\\|_1)` along the last axis (0/0 := 0)."""
    num = jnp.linalg.norm(w - w_plus, axis=-1)
    den = jnp.maximum(jnp.sum(jnp.abs(w), -1), jnp.sum(jnp.abs(w_plus), -1))
    return jnp.where(num > 0, num / jnp.where(den > 0, den, 1), jnp.zeros_like(num))


def _residual(w, b, Gt, mu):
    """Relative projected-gradient residual of one class (see :func:`mu_lasso`)."""
    w_plus = _project(w - (jnp.matmul(Gt, w, precision=_HIGHEST) - b), mu)
    return _relative_step(w, w_plus)


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


# --------------------------------------------------------------------------------------------
# method="fista": projected gradient on the full Gram form
# --------------------------------------------------------------------------------------------


@jax.jit
def _mu_lasso_fista(X, L, mu, W0, maxiter, tol, colsq):
    """Compiled core of ``mu_lasso(..., method="fista")`` (inputs already cast).

    ``W0`` ``None``: zeros. ``colsq`` ``None``: computed here with the value checks.
    Returns ``(LassoResult, summary or None)`` (:func:`_summary`, when it made the checks).
    """
    prep = None
    if colsq is None:
        prep = _prepare(X, L)
        colsq = prep.colsq
    # A caller's jit may close over a concrete X: keep XLA from constant-folding products of
    # it at compile time (slow for large X, and rounded differently from the compiled ones).
    X, L = jax.lax.optimization_barrier((X, L))
    if W0 is None:
        W0 = jnp.zeros((X.shape[1], L.shape[1]), X.dtype)
    one_hot = _labels_one_hot(L)[1] if prep is None else prep.l_one_hot
    valid = _valid_mask(colsq, one_hot, mu, W0)
    mu = _usable_mu(mu, valid)
    G = _gram(X)
    B = jnp.matmul(X.T, L, precision=_HIGHEST)
    lam = _lipschitz_bound(G)
    # Normalised problem: h_j(w) = f_j(w) / (2 lam) + const = 0.5 w'Gt w - bt_j'w, whose
    # gradient (G w - B_j) / lam = grad f_j / L has Lipschitz constant <= 1 (step size 1).
    Gt, Bt = G / lam, B / lam
    present = jnp.sum(L, axis=0) > 0  # [C]

    def solve(W_prev, mu_k):
        W, iters, res = _solve_one_mu(W_prev, mu_k, Gt, Bt, maxiter, tol)
        # Never-predicted class: B_j = 0 and c_j = 0, so w = 0 is optimal (G is PSD).
        W = jnp.where(present[None, :], W, jnp.zeros_like(W))
        res = jnp.where(present, res, jnp.zeros_like(res))
        R = jnp.matmul(X, W, precision=_HIGHEST) - L
        obj = jnp.sum(R * R, axis=0)
        corr = B - jnp.matmul(G, W, precision=_HIGHEST)
        gap = _duality_gap(W.T, corr.T, mu_k)
        return W, (W, obj, iters, res, res <= tol, gap)

    if mu.ndim == 0:
        _, outs = solve(W0, mu)
    else:
        order = jnp.argsort(mu)
        inverse = jnp.argsort(order)
        _, outs = jax.lax.scan(solve, W0, mu[order])
        outs = jax.tree.map(lambda a: a[inverse], outs)
    return _flag_invalid(LassoResult(*outs), valid), None if prep is None else _summary(prep)


def _duality_gap(W, corr, mu):
    r"""Frank–Wolfe duality gap per row: an upper bound on :math:`f_j(w) - \min f_j`.

    ``W``, ``corr`` ``[..., m]`` with :math:`c = X^\top (L_{:, j} - X w) = -\nabla f_j / 2`;
    ``mu`` broadcasts against the leading axes. By convexity, for every feasible :math:`s`,
    :math:`f^\star \ge f(w) + \nabla f(w)^\top (s - w)`; minimising over the vertices
    :math:`\{0, \mu e_i\}` of the feasible set gives

    .. math::

      f(w) - f^\star \le \nabla f(w)^\top w - \min\big(0, \mu \min_i \nabla f(w)_i\big)
      = 2\,\big(\mu \max(0, \max_i c_i) - c^\top w\big).
    """
    mu = jnp.asarray(mu, W.dtype)
    top = jnp.maximum(jnp.max(corr, axis=-1), 0)
    return jnp.maximum(2 * (mu * top - jnp.sum(corr * W, axis=-1)), 0)


# --------------------------------------------------------------------------------------------
# method="active_set": homotopy on a working set, checked on the full problem
# --------------------------------------------------------------------------------------------


class _PathState(NamedTuple):
    act: jax.Array  # [A] int32, working-set slot of each active variable
    amask: jax.Array  # [A] bool, which entries of `act` are in use
    wa: jax.Array  # [A] weights of the active variables
    Minv: jax.Array  # [A, A] inverse of G_AA, identity on unused entries
    Ga: jax.Array  # [K, A] columns of G of the active variables (zero on unused entries)
    free: jax.Array  # [K] bool, variables that may join
    last_drop: jax.Array  # int32, variable dropped in the previous step (may not rejoin at once)
    s: jax.Array  # current 1'w
    Wa: jax.Array  # [P, A] weights recorded at the budgets passed so far ...
    act_at: jax.Array  # [P, A] ... and the variables they belong to
    steps: jax.Array  # int32
    done: jax.Array  # bool
    complete: jax.Array  # bool, stopped at the largest budget or at the unconstrained optimum
    full: jax.Array  # bool, stopped because a variable had to join a full active set


def _homotopy(G, b, ok, mus, max_active: int, max_steps: int):
    r"""Exact solution path of one class on a working set (positive LARS/homotopy).

    Solves :math:`\min_{w \ge 0, \mathbf 1^\top w \le \mu_p} \tfrac12 w^\top G w - b^\top w`
    for all budgets :math:`\mu_1 \le \dots \le \mu_P` at once by following the solution of the
    penalised problem :math:`\min_{w \ge 0} \tfrac12 w^\top G w - b^\top w + \nu \mathbf 1^\top w`
    from :math:`\nu = \max_i b_i` down to 0. With correlations :math:`c = b - G w`, the active
    set :math:`A` has :math:`c_A = \nu \mathbf 1`; along the direction
    :math:`d_A = G_{AA}^{-1} \mathbf 1` (:func:`_path_direction`) the weights move as
    :math:`w_A + \gamma d_A`, the common level as :math:`\nu - \gamma` and the other
    correlations as :math:`c_i - \gamma\, (G d)_i`. The step :math:`\gamma` stops at the first
    event (:func:`_path_event`): a variable joins (:math:`c_i` reaches the level), an active
    weight reaches 0 (it leaves), :math:`\mathbf 1^\top w` reaches :math:`\mu_P`, or
    :math:`\nu` reaches 0 (the non-negative least-squares optimum). Both :math:`w` and
    :math:`\mathbf 1^\top w` are linear in :math:`\gamma` on each segment, so the solution at
    every :math:`\mu_p` is read off by interpolation (:func:`_record_budgets`). The KKT
    conditions (:math:`c_i \le \nu` for all :math:`i`, equality on the support,
    :math:`\nu \ge 0`, :math:`\nu (\mu - \mathbf 1^\top w) = 0`) hold at every point of the
    path, which is what makes it the exact solution.

    :math:`G_{AA}^{-1}` is updated in :math:`O(A^2)` per event (:func:`_inverse_update`), by
    one symmetric rank-one update and a new row/column (bordering when a variable joins, the
    Schur-complement downdate when one leaves), and each direction gets one step of iterative
    refinement against :math:`G_{AA}` itself: no factorisation inside the loop.

    Fixed shapes: at most ``max_active`` active variables and ``max_steps`` steps.
    Overflowing either, a (numerically) singular :math:`G_{AA}` or no admissible event stops
    the path early with ``complete = False``; the recorded point is still feasible and the
    caller's projected-gradient polish finishes the job.

    Args:
      G: ``[K, K]`` Gram matrix of the working set (PSD).
      b: ``[K]`` :math:`X_U^\top L_{:, j}`.
      ok: ``[K]`` bool, usable variables (in the working set, non-zero column).
      mus: ``[P]`` ascending positive budgets.
      max_active: static, capacity of the active set.
      max_steps: static, maximum number of path steps.

    Returns:
      ``(W [P, K], steps, complete, full)``; ``full``: a variable had to join but all
      ``max_active`` entries were in use.
    """
    state = _path_start(G, b, ok, mus.shape[0], max_active)
    st = jax.lax.while_loop(
        lambda st: ~st.done & (st.steps < max_steps),
        lambda st: _path_step(G, b, mus, st),
        state,
    )
    return _path_weights(st, mus, G.shape[0]), st.steps, st.complete, st.full


def _mv(M, v):
    """Small matrix-vector products of the homotopy: dots (a fused multiply-sum is ~10x
    slower)."""
    return jnp.matmul(M, v, precision=_HIGHEST)


def _path_start(G, b, ok, P: int, A: int) -> _PathState:
    """The path's first point: :math:`w = 0`, the best-correlated usable variable active
    (none, and the path done, if :math:`\\max_i b_i \\le 0`: then :math:`w = 0` is optimal for
    every budget)."""
    K, dtype = G.shape[0], G.dtype
    eye = jnp.eye(A, dtype=dtype)
    slots = jnp.arange(A)
    cols = jnp.arange(K)
    scores = jnp.where(ok, b, -jnp.inf)
    first = jnp.argmax(scores).astype(jnp.int32)
    start = scores[first] > 0  # max_i b_i <= 0: w = 0 is optimal for every budget
    g00 = G[first, first]
    act0 = jnp.zeros(A, jnp.int32).at[0].set(first)
    return _PathState(
        act=act0,
        amask=(slots == 0) & start,
        wa=jnp.zeros(A, dtype),
        Minv=eye.at[0, 0].set(jnp.where(start, 1 / jnp.where(start, g00, 1), 1)),
        Ga=jnp.zeros((K, A), dtype).at[:, 0].set(jnp.where(start, G[:, first], 0)),
        free=ok & (cols != first),
        last_drop=jnp.array(-1, jnp.int32),
        s=jnp.zeros((), dtype),
        Wa=jnp.zeros((P, A), dtype),
        act_at=jnp.zeros((P, A), jnp.int32),
        steps=jnp.zeros((), jnp.int32),
        done=~start,
        complete=~start,
        full=jnp.array(False),
    )


def _path_direction(st: _PathState):
    """``(d, a, 1'd, solved)``: the direction :math:`d = G_{AA}^{-1} \\mathbf 1` on the
    active entries (zero elsewhere) with one refinement step, and :math:`a = G_{:, A} d` for
    all ``K`` variables. The refinement reuses the product it needs anyway:
    :math:`a_0 = G_{:, A} d_0` holds :math:`G_{AA} d_0` in its active rows, so
    :math:`r = \\mathbf 1 - (a_0)_A`, :math:`\\delta = G_{AA}^{-1} r`, :math:`d = d_0 + \\delta`,
    :math:`a = a_0 + G_{:, A} \\delta` (no gather of :math:`G_{AA}`). ``solved``: finite with
    :math:`\\mathbf 1^\\top d > 0` (else ``d = a = 0``)."""
    amask, Minv, Ga = st.amask, st.Minv, st.Ga
    ones = amask.astype(Minv.dtype)
    d0 = _mv(Minv, ones)
    a0 = _mv(Ga, d0)
    delta = jnp.where(amask, _mv(Minv, jnp.where(amask, ones - a0[st.act], 0)), 0)
    d = jnp.where(amask, d0 + delta, 0)
    a = a0 + _mv(Ga, delta)
    one_d = jnp.sum(d)
    solved = jnp.all(jnp.isfinite(d)) & (one_d > 0)
    return jnp.where(solved, d, 0), jnp.where(solved, a, 0), one_d, solved


class _PathEvent(NamedTuple):
    gamma: jax.Array  # step length along d
    i_join: jax.Array  # int32, the variable that would join first
    k_drop: jax.Array  # active entry that would leave first
    g_join: jax.Array  # step at which i_join joins (inf: none can)
    at_budget: jax.Array  # bool, the step ends at the largest budget ...
    at_end: jax.Array  # ... at nu = 0 (the NNLS optimum) ...
    drop: jax.Array  # ... with an active weight reaching 0 ...
    join: jax.Array  # ... or with a variable joining


def _path_event(st: _PathState, b, d, a, one_d, solved, mu_max) -> _PathEvent:
    """The first event along ``d`` and its step (see :func:`_homotopy`); budget and end
    take precedence (they finish the path), then a drop, then a join."""
    amask, wa, Ga = st.amask, st.wa, st.Ga
    dtype = Ga.dtype
    tiny = jnp.sqrt(jnp.finfo(dtype).eps)  # a joining column must not be ~collinear
    cols = jnp.arange(Ga.shape[0])
    ones = amask.astype(dtype)
    c = b - _mv(Ga, wa)  # correlations [K]
    # a = G_{:, A} d: how fast each correlation falls per unit of gamma
    nu = jnp.sum(jnp.where(amask, c[st.act], 0)) / jnp.maximum(jnp.sum(ones), 1)
    # Events (each gamma >= 0; inf when impossible).
    joinable = st.free & (1 - a > tiny) & (cols != st.last_drop)
    g_join_all = jnp.where(
        joinable, jnp.maximum(nu - c, 0) / jnp.where(joinable, 1 - a, 1), jnp.inf
    )
    i_join = jnp.argmin(g_join_all).astype(jnp.int32)
    falling = amask & (d < 0)
    g_drop_all = jnp.where(falling, wa / jnp.where(falling, -d, 1), jnp.inf)
    k_drop = jnp.argmin(g_drop_all)
    g_join, g_drop = g_join_all[i_join], g_drop_all[k_drop]
    g_end = jnp.maximum(nu, 0)
    g_budget = jnp.where(one_d > 0, (mu_max - st.s) / jnp.where(one_d > 0, one_d, 1), jnp.inf)
    gamma = jnp.minimum(jnp.minimum(g_join, g_drop), jnp.minimum(g_end, g_budget))
    gamma = jnp.where(solved, jnp.maximum(gamma, 0), 0)
    at_budget = solved & (g_budget <= gamma)
    at_end = solved & ~at_budget & (g_end <= gamma)
    drop = solved & ~at_budget & ~at_end & (g_drop <= gamma)
    join = solved & ~at_budget & ~at_end & ~drop & jnp.isfinite(g_join)
    return _PathEvent(gamma, i_join, k_drop, g_join, at_budget, at_end, drop, join)


def _record_budgets(st: _PathState, mus, step, s_new, solved):
    """``(Wa, act_at)``: the weights at the budgets :math:`\\mu_p` this segment passes
    (:math:`s < \\mu_p \\le s_{new}`), interpolated (linear in :math:`\\gamma`), with their
    variables; for one budget the path's last point is the answer and nothing is recorded."""
    if mus.shape[0] == 1:
        return st.Wa, st.act_at
    hit = (mus > st.s) & (mus <= s_new) & solved
    frac = jnp.clip((mus - st.s) / jnp.where(s_new > st.s, s_new - st.s, 1), 0, 1)
    Wa = jnp.where(hit[:, None], st.wa[None, :] + frac[:, None] * step[None, :], st.Wa)
    act_at = jnp.where(hit[:, None], st.act[None, :], st.act_at)
    return Wa, act_at


def _inverse_update(st: _PathState, G, ev: _PathEvent):
    """``(Minv, enter, j, g_new)``: :math:`G_{AA}^{-1}` after the event, one of: drop entry
    ``k`` (:math:`M - m m^\\top / m_{kk}`, then identity in row and column ``k``) or join into
    the first unused entry ``j`` (:math:`M + z z^\\top / s` with the border row/column
    :math:`[-z / s, 1 / s]`, :math:`z = M u`, :math:`u = G_{A, i}`,
    :math:`s = g_{ii} - u^\\top z`). ``enter``: the join happens (a free entry, and the
    Schur complement :math:`s` not ~0); ``g_new``: row ``i`` of ``G``."""
    amask, Minv, act = st.amask, st.Minv, st.act
    A, dtype = Minv.shape[0], Minv.dtype
    tiny = jnp.sqrt(jnp.finfo(dtype).eps)
    eye = jnp.eye(A, dtype=dtype)
    slots = jnp.arange(A)
    drop, k_drop, i_join = ev.drop, ev.k_drop, ev.i_join
    j = jnp.argmin(amask)
    g_new = G[i_join]  # [K]: G is symmetric, row = column
    u = jnp.where(amask, g_new[act], 0)
    z = _mv(Minv, u)
    g_ii = g_new[i_join]
    schur = g_ii - jnp.dot(u, z)
    enter = ev.join & ~amask[j] & (schur > tiny * g_ii)
    m_k = Minv[k_drop]
    e = jnp.where(drop, k_drop, j)
    v = jnp.where(drop, m_k, z)
    sigma = jnp.where(drop, -1 / jnp.where(drop, m_k[k_drop], 1), 1 / jnp.where(enter, schur, 1))
    border = jnp.where(drop, eye[k_drop], jnp.where(slots == j, sigma, -z * sigma))
    is_e = slots == e
    updated = jnp.where(
        is_e[:, None],
        border[None, :],
        jnp.where(is_e[None, :], border[:, None], Minv + sigma * jnp.outer(v, v)),
    )
    return jnp.where(drop | enter, updated, Minv), enter, j, g_new


def _path_step(G, b, mus, st: _PathState) -> _PathState:
    """One segment of the path: direction, first event, budgets passed, the active set's
    bookkeeping (stops when the path is finished or stuck: full, singular, no event)."""
    d, a, one_d, solved = _path_direction(st)
    ev = _path_event(st, b, d, a, one_d, solved, mus[-1])
    step = ev.gamma * d
    wa_new = st.wa + step
    s_new = st.s + ev.gamma * one_d
    Wa, act_at = _record_budgets(st, mus, step, s_new, solved)
    Minv, enter, j, g_new = _inverse_update(st, G, ev)
    drop, amask, act = ev.drop, st.amask, st.act
    slots = jnp.arange(amask.shape[0])
    cols = jnp.arange(G.shape[0])
    is_k = (slots == ev.k_drop) & drop
    is_j = (slots == j) & enter
    dropped = act[ev.k_drop]
    # Only column e changes: zeroed on a drop (k), G's column i on a join (j). One select
    # over [K, A] (a single fused pass; a scatter into a copy measured ~3x slower here).
    col = jnp.where(drop, 0, g_new)
    Ga = jnp.where(is_k[None, :] | is_j[None, :], col[:, None], st.Ga)
    act = jnp.where(is_j, ev.i_join, act)
    new_amask = (amask & ~is_k) | is_j
    wa_new = jnp.where(new_amask & ~is_j, wa_new, 0)
    free = (st.free | (drop & (cols == dropped))) & ~(enter & (cols == ev.i_join))
    last_drop = jnp.where(drop, dropped, jnp.array(-1, jnp.int32))
    finished = ev.at_budget | ev.at_end
    return _PathState(
        act=act,
        amask=new_amask,
        wa=wa_new,
        Minv=Minv,
        Ga=Ga,
        free=free,
        last_drop=last_drop,
        s=s_new,
        Wa=Wa,
        act_at=act_at,
        steps=st.steps + 1,
        done=finished | ~(drop | enter),  # also stops when stuck (full, singular, no event)
        complete=finished,
        full=ev.join & amask[j],
    )


def _path_weights(st: _PathState, mus, K: int):
    """``[P, K]`` weights at the budgets from the finished path: budgets beyond its end get
    the unconstrained (NNLS) optimum when the path is complete, else its last (feasible)
    point, which the polish continues from."""
    dtype = st.wa.dtype
    last = jnp.zeros(K, dtype).at[st.act].add(jnp.where(st.amask, st.wa, 0))
    if mus.shape[0] == 1:
        return last[None, :]
    W = jax.vmap(lambda w, i: jnp.zeros(K, dtype).at[i].add(w))(st.Wa, st.act_at)
    return jnp.where((mus > st.s)[:, None], last[None, :], W)


def _solve_working_set(G, B, ok, mus, maxiter, tol, max_active: int, retry: bool):
    """Homotopy for every class; jaxopt projected gradient from its answer where needed.

    Args:
      G: ``[K, K]`` working-set Gram; B: ``[K, C]``; ok: ``[K]`` bool; mus: ``[P]`` ascending.
      max_active: static, the homotopy's active-set capacity.
      retry: static; the caller will retry with a larger ``max_active`` if a homotopy ran
        out of room, so the (then slow) polish is skipped in that case.

    Returns:
      ``(W [P, K, C], iterations [P, C], residual [P, C], full)``: the residual is the
      restricted problem's, with the Lipschitz bound of ``G``; ``full``: some class's
      homotopy ran out of room. The projected-gradient polish runs only if some residual
      exceeds ``tol`` (normally none does: the homotopy is exact).
    """
    steps_cap = 4 * max_active + 16
    W_path, steps, _, full = jax.vmap(
        lambda b: _homotopy(G, b, ok, mus, max_active, steps_cap), out_axes=(2, 0, 0, 0)
    )(B.T)
    full = jnp.any(full)
    lam = _lipschitz_bound(G)
    Gt, Bt = G / lam, B / lam
    # All P x C residuals (and polishes) at once.
    res = jax.vmap(
        lambda W, mu: jax.vmap(lambda w, b: _residual(w, b, Gt, mu), in_axes=(1, 1))(W, Bt)
    )(W_path, mus).astype(G.dtype)

    def polish(W_start):
        W, it, r = jax.vmap(lambda W0, mu: _solve_one_mu(W0, mu, Gt, Bt, maxiter, tol))(
            W_start, mus
        )
        return W, it.astype(steps.dtype), r

    def keep(W_start):
        return W_start, jnp.zeros_like(steps[None, :].repeat(mus.shape[0], 0)), res

    needed = jnp.any(res > tol) & ~(full & retry)
    W, iters, res = jax.lax.cond(needed, polish, keep, W_path)
    return W, iters + steps[None, :], res, full


def _check_full(W, corr, lam, mus, present):
    """Residual and duality gap on the full problem from the correlations.

    ``W``, ``corr`` ``[P, C, m]`` (:math:`c = B - G w = -\\nabla f / 2`), ``lam`` the Lipschitz
    bound of ``G`` (so :math:`\\nabla f / \\mathcal L = -c / \\bar\\lambda`), ``mus`` ``[P]``,
    ``present`` ``[C]``. Returns ``(residual [P, C], gap [P, C])``, zero for absent classes.
    """
    Y = W + corr / lam
    W_plus = jax.vmap(lambda Yp, mu: jax.vmap(lambda y: _project(y, mu))(Yp))(Y, mus)
    res = jnp.where(present, _relative_step(W, W_plus), 0)
    gap = jnp.where(present, _duality_gap(W, corr, mus[:, None]), 0)
    return res, gap


def _append(idx, n_used, new, capacity: int):
    """Appends the columns flagged in ``new`` ``[m]`` to the slots ``idx`` ``[K]``."""
    cols = jnp.nonzero(new, size=capacity, fill_value=0)[0].astype(jnp.int32)
    n_new = jnp.sum(new)
    slots = n_used + jnp.arange(capacity)
    slots = jnp.where(jnp.arange(capacity) < n_new, slots, capacity)  # capacity: dropped
    idx = idx.at[slots].set(cols, mode="drop")
    return idx, jnp.minimum(n_used + n_new, capacity), n_used + n_new > capacity


class _RoundState(NamedTuple):
    idx: jax.Array  # [K] int32 column of X in each slot
    n_used: jax.Array  # slots in use
    n_done: jax.Array  # slots whose rows of XtU and G are computed
    XtU: jax.Array  # [K, N] X[:, idx].T, zero rows for unused slots
    G: jax.Array  # [K, K] XtU XtU'
    W: jax.Array  # [P, K, C]
    iters: jax.Array  # [P, C]
    res: jax.Array  # [P, C] full-problem residual
    gap: jax.Array  # [P, C] full-problem duality gap
    obj: jax.Array  # [P, C]
    rounds: jax.Array
    more: jax.Array  # bool, another round is needed and possible
    unfinished: jax.Array  # [P, C] bool, columns still wanted to join when the rounds stopped
    full_active: jax.Array  # bool, some homotopy ran out of room


def _solve_on_gram(G, B, l_sq, present, mus, maxiter, tol, max_active, retry):
    r"""The restricted solve on the full Gram ``G`` ``[m, m]`` with ``B`` ``[m, C]`` and
    ``l_sq`` ``[C]`` :math:`\|L_{:, j}\|^2`; residual, gap and objective from the Gram
    form (the problem never touches ``N`` again)."""
    ok = jnp.diagonal(G) > 0
    W, iters, res, full = _solve_working_set(G, B, ok, mus, maxiter, tol, max_active, retry)
    W = jnp.where(present, W, jnp.zeros_like(W))
    res = jnp.where(present, res, jnp.zeros_like(res))
    corr = B.T[None] - jnp.einsum("ik,pkc->pci", G, W, precision=_HIGHEST)  # [P, C, m]
    Wt = jnp.swapaxes(W, 1, 2)  # [P, C, m]
    gap = jnp.where(present, _duality_gap(Wt, corr, mus[:, None]), 0)
    # Objective from the Gram form, ||L_j||^2 - b_j'w - c'w (c = b_j - G w): O(m^2 P C)
    # instead of the O(N m P C) of forming X W, 30x faster for a 50-budget path here.
    obj = l_sq - jnp.sum(Wt * (B.T[None] + corr), axis=-1)
    return W, obj, iters, res, gap, jnp.zeros(res.shape, bool), full


def _active_set_rounds(X, L, B, present, mus, W0, maxiter, tol, max_active, retry, capacity, colsq):
    """Working set of ``capacity`` columns, grown until no column outside it should join.

    Each round (:func:`_working_set_round`) fills the Gram blocks of the columns new to the
    set (:func:`_fill_working_set`), solves the restricted problem (:func:`_solve_working_set`),
    checks it on the full problem (:func:`_check_through_x`) and adds the columns that violate
    its optimality conditions (:func:`_grow_working_set`).
    """
    n, m = X.shape
    c = L.shape[1]
    P = mus.shape[0]
    dtype = X.dtype
    block = min(_BLOCK, capacity)
    K = -(-capacity // block) * block
    ok = colsq > 0
    idx, n_used = _seed_working_set(B, colsq, ok, W0, K)
    fixed = _RoundInputs(
        X=X,
        L=L,
        B=B,
        present=present,
        mus=mus,
        ok=ok,
        scale=jnp.sum(L * L, axis=0),  # c_j = f_j(0), the objective's natural scale
        lam=_lipschitz_bound_through(X),
        maxiter=maxiter,
        tol=tol,
    )
    state = _RoundState(
        idx=idx,
        n_used=n_used,
        n_done=jnp.array(0, n_used.dtype),
        XtU=jnp.zeros((K, n), dtype),
        G=jnp.zeros((K, K), dtype),
        W=jnp.zeros((P, K, c), dtype),
        iters=jnp.zeros((P, c), jnp.int32),
        res=jnp.zeros((P, c), dtype),
        gap=jnp.zeros((P, c), dtype),
        obj=jnp.zeros((P, c), dtype),
        rounds=jnp.array(0, jnp.int32),
        more=jnp.array(True),
        unfinished=jnp.zeros((P, c), bool),
        full_active=jnp.array(False),
    )
    st = jax.lax.while_loop(
        lambda s: s.more,
        lambda s: _working_set_round(fixed, s, block, max_active, retry),
        state,
    )
    used = jnp.arange(K) < st.n_used
    W = jnp.zeros((P, m, c), dtype).at[:, st.idx, :].add(jnp.where(used[None, :, None], st.W, 0))
    W = jnp.where(present, W, jnp.zeros_like(W))
    return W, st.obj, st.iters, st.res, st.gap, st.unfinished, st.full_active


class _RoundInputs(NamedTuple):
    """What every round of :func:`_active_set_rounds` reads (fixed for the whole solve)."""

    X: jax.Array  # [N, m]
    L: jax.Array  # [N, C]
    B: jax.Array  # [m, C] X'L
    present: jax.Array  # [C] bool
    mus: jax.Array  # [P] ascending
    ok: jax.Array  # [m] bool, non-zero columns
    scale: jax.Array  # [C] ||L_j||^2
    lam: jax.Array  # Lipschitz bound of X'X
    maxiter: jax.Array
    tol: jax.Array


def _seed_working_set(B, colsq, ok, W0, K: int):
    """``(idx [K], n_used)``: the initial working set, each class's ``_SCREEN`` columns of
    highest correlation :math:`B_{ij} / \\|X_{:, i}\\|`, plus the warm start's support."""
    m = B.shape[0]
    norms = jax.lax.rsqrt(jnp.where(ok, colsq, 1))
    corr0 = jnp.where(ok[:, None] & (B > 0), B * norms[:, None], -jnp.inf)
    top_val, top_idx = jax.lax.top_k(corr0.T, min(_SCREEN, m))
    seed = jnp.zeros(m, bool).at[top_idx.ravel()].max(jnp.isfinite(top_val).ravel())
    seed = (seed | jnp.any(W0 > 0, axis=1)) & ok
    idx, n_used, _ = _append(jnp.zeros(K, jnp.int32), jnp.array(0), seed, K)
    return idx, n_used


def _fill_block(X, block: int, b, carry):
    """Gathers slot block ``b`` (rows of :math:`X_U^\\top`) and the Gram blocks ``(a, b)``,
    ``a <= b`` (the symmetric half, mirrored)."""
    XtU, G, idx, n_used = carry
    n = X.shape[0]
    lo = b * block
    cols = jax.lax.dynamic_slice(idx, (lo,), (block,))
    used = (lo + jnp.arange(block)) < n_used
    rows = jnp.where(used[:, None], X[:, cols].T, 0)
    XtU = jax.lax.dynamic_update_slice(XtU, rows, (lo, 0))

    def pair(a, G):
        Xa = jax.lax.dynamic_slice(XtU, (a * block, 0), (block, n))
        Gab = jnp.matmul(Xa, rows.T, precision=_HIGHEST)
        G = jax.lax.dynamic_update_slice(G, Gab, (a * block, lo))
        return jax.lax.dynamic_update_slice(G, Gab.T, (lo, a * block))

    G = jax.lax.fori_loop(0, b + 1, pair, G)
    return XtU, G, idx, n_used


def _fill_working_set(X, st: _RoundState, block: int):
    """``(XtU, G)`` with the rows of :math:`X_U^\\top` and blocks of :math:`G_{UU}` of the
    slots added since the last round (blocks of ``block`` slots)."""
    b_lo = st.n_done // block
    b_hi = (st.n_used + block - 1) // block
    fill = functools.partial(_fill_block, X, block)
    XtU, G, _, _ = jax.lax.fori_loop(b_lo, b_hi, fill, (st.XtU, st.G, st.idx, st.n_used))
    return XtU, G


def _check_through_x(fx: _RoundInputs, XtU, W, idx):
    """One pass over ``X`` for the working set's answer ``W`` ``[P, K, C]``: objectives
    ``[P, C]`` from the residuals :math:`X W - L` (through :math:`X_U`), correlations
    :math:`c = X^\\top (L - X W)` ``[P, C, m]`` and the full problem's residual and gap."""
    X, L, B = fx.X, fx.L, fx.B
    P, K, c = W.shape
    m = X.shape[1]
    Wt = jnp.swapaxes(W, 1, 2).reshape(P * c, K)  # [(P C), K]
    Rt = jnp.matmul(Wt, XtU, precision=_HIGHEST) - jnp.tile(L.T, (P, 1))  # [(P C), N]
    obj = jnp.sum(Rt * Rt, axis=1).reshape(P, c)
    if P * c <= K:  # P C columns through X ...
        corr = -jnp.matmul(Rt, X, precision=_HIGHEST)
    else:  # ... or X' X_U (K columns), when that is fewer
        GmU = jnp.matmul(XtU, X, precision=_HIGHEST)  # [K, m]
        corr = jnp.tile(B.T, (P, 1)) - jnp.matmul(Wt, GmU, precision=_HIGHEST)
    corr = corr.reshape(P, c, m)
    W_full = jnp.zeros((P, c, m), W.dtype).at[:, :, idx].add(jnp.swapaxes(W, 1, 2))
    res, gap = _check_full(W_full, corr, fx.lam, fx.mus, fx.present)
    return obj, corr, res, gap


def _grow_working_set(fx: _RoundInputs, st: _RoundState, corr, used):
    """``(idx, n_used, full, need, wanted)``: the working set with the columns outside it whose
    correlation exceeds the active level :math:`\\nu` (KKT violators) by enough to alone
    break the gap tolerance, :math:`2 \\mu (c_i - \\nu) > \\mathrm{tol}\\, c_j`, at most
    ``_GROW`` per class and budget, the largest first; ``full``: they did not all fit;
    ``need`` ``[P, C, m]``: the violators; ``wanted``: some column joins."""
    ok, mus, present = fx.ok, fx.mus, fx.present
    P, c, m = corr.shape
    K = st.idx.shape[0]
    in_u = jnp.zeros(m, bool).at[st.idx].max(used)
    nu = jnp.maximum(jnp.max(jnp.where(in_u & ok, corr, -jnp.inf), axis=-1), 0)  # [P, C]
    excess = 2 * mus[:, None, None] * (corr - nu[..., None])
    excess = jnp.where(~in_u & ok & present[:, None], excess, 0)
    need = excess > (fx.tol * fx.scale)[:, None]
    top_val, top_idx = jax.lax.top_k(jnp.where(need, excess, 0).reshape(P * c, m), _GROW)
    new = jnp.zeros(m, bool).at[top_idx.ravel()].max(top_val.ravel() > 0) & ~in_u
    idx, n_used, full = _append(st.idx, st.n_used, new, K)
    return idx, n_used, full, need, jnp.any(new)


def _working_set_round(fx: _RoundInputs, st: _RoundState, block: int, max_active, retry):
    """One round: fill, solve on the working set, check on the full problem, grow."""
    K = st.idx.shape[0]
    # 1. Rows of X_U' and blocks of G_UU for the slots added since the last round.
    XtU, G = _fill_working_set(fx.X, st, block)
    # 2-3. Homotopy (+ polish) on the working set.
    used = jnp.arange(K) < st.n_used
    BU = jnp.where(used[:, None], fx.B[st.idx], 0)
    W, iters, _, full_a = _solve_working_set(
        G, BU, used & fx.ok[st.idx], fx.mus, fx.maxiter, fx.tol, max_active, retry
    )
    W = jnp.where(used[None, :, None], W, 0)
    # 4. One pass over X: objectives, correlations, the full problem's residual and gap.
    obj, corr, res, gap = _check_through_x(fx, XtU, W, st.idx)
    # 5. Grow by the columns that should join.
    idx, n_used, full, need, wanted = _grow_working_set(fx, st, corr, used)
    last = st.rounds + 1 >= _MAX_ROUNDS
    return _RoundState(
        idx=idx,
        n_used=n_used,
        n_done=st.n_used,
        XtU=XtU,
        G=G,
        W=W,
        iters=st.iters + iters,
        res=res,
        gap=gap,
        obj=obj,
        rounds=st.rounds + 1,
        more=wanted & ~full & ~last & ~(full_a & retry),
        unfinished=jnp.any(need, axis=-1) & (full | last),
        full_active=st.full_active | full_a,
    )


@functools.partial(jax.jit, static_argnames=("capacity", "max_active", "retry", "l_checked"))
def _mu_lasso_active_set(
    X, L, mu, W0, maxiter, tol, colsq, *, capacity, max_active, retry, l_checked=False
):
    """Compiled core of ``mu_lasso(..., method="active_set")`` (inputs already cast).

    ``W0`` ``None``: zeros. ``colsq`` ``None``: computed here with the value checks, in the
    same compiled call (the diagonal of the full Gram when all columns are in the working set).
    ``l_checked`` (static): the caller checks that ``L`` is one-hot itself (on the host, see
    :func:`_host_one_hot`), so the compiled call does not; the summary's one-hot flag is then
    the caller's to fill in. ``retry``: the caller retries with more room when ``unfinished``
    or ``full_active`` (see :func:`_solve_working_set`).

    Returns ``(LassoResult, status)``: ``int32`` ``[unfinished, full_active, *summary]``,
    ``unfinished``: the working set ran out of capacity (for some class); ``full_active``: a
    homotopy ran out of active-set room; ``summary`` (:func:`_summary`) only when the checks
    were made here. One small array: one transfer to the host.
    """
    X, L = jax.lax.optimization_barrier((X, L))  # see _mu_lasso_fista
    m, c = X.shape[1], L.shape[1]
    one_hot = jnp.array(True) if l_checked else _labels_one_hot(L)[1]
    counts = jnp.sum(L, axis=0)  # [C]
    # All columns: the full Gram, whose diagonal is the squared column norms (no extra pass
    # over X; finite exactly when X is finite and X'X does not overflow, as
    # |G_ij| <= sqrt(G_ii G_jj)).
    G = _gram(X) if capacity >= m else None
    B = jnp.matmul(L.T, X, precision=_HIGHEST).T  # [m, C] X'L
    prep = None
    if colsq is None:
        colsq = jnp.diagonal(G) if G is not None else jnp.sum(X * X, axis=0)
        prep = _Prepared(colsq=colsq, counts=counts, l_one_hot=one_hot)
    if W0 is None:
        W0 = jnp.zeros((m, c), X.dtype)
    valid = _valid_mask(colsq, one_hot, mu, W0)
    mus = jnp.atleast_1d(_usable_mu(mu, valid))
    order = jnp.argsort(mus)
    mus_sorted = mus[order]
    present = counts > 0
    if G is not None:
        # ||L_j||^2 = counts_j for one-hot L (otherwise the result is flagged).
        solved = _solve_on_gram(
            G, B, counts, present, mus_sorted, maxiter, tol, min(max_active, m), retry
        )
    else:
        solved = _active_set_rounds(
            X,
            L,
            B,
            present,
            mus_sorted,
            W0,
            maxiter,
            tol,
            min(max_active, capacity),
            retry,
            capacity,
            colsq,
        )
    summary = None if prep is None else _summary(prep)
    return _active_set_result(solved, order, mu, tol, valid, retry, summary)


def _active_set_result(solved, order, mu, tol, valid, retry, summary):
    """``(LassoResult, status)`` of a compiled active-set call from its sorted-budget
    answers ``solved`` (see :func:`_mu_lasso_active_set`)."""
    W, obj, iters, res, gap, unfinished, full_active = solved
    inverse = jnp.argsort(order)
    W, obj, iters, res, gap, unfinished = (
        a[inverse] for a in (W, obj, iters, res, gap, unfinished)
    )
    stopped = unfinished | (full_active & retry)
    result = LassoResult(W, obj, iters, res, (res <= tol) & ~stopped, gap)
    if mu.ndim == 0:
        result = LassoResult(*(a[0] for a in result))
    ok = jnp.all(valid)
    status = jnp.stack([jnp.any(unfinished) & ok, full_active & ok]).astype(jnp.int32)
    if summary is not None:
        status = jnp.concatenate([status, summary])
    return _flag_invalid(result, valid), status


def _gram(X: jax.Array) -> jax.Array:
    r""":math:`G = X^\top X` ``[m, m]`` as the sum of the Grams of the two halves of the rows.

    One batched product over the halves (and the last row's outer product when ``N`` is odd):
    XLA:CPU spreads the two halves over its threads, where one ``X.T @ X`` with its long
    contraction and small output leaves the second core partly idle. Measured on 2 cores for
    ``X`` ``[5000, 76]``: ~10% less time for the whole default :func:`mu_lasso` call than
    with ``X.T @ X``; the result is the same up to the order of the float sums.
    """
    n, m = X.shape
    half = n // 2
    if half == 0:
        return jnp.matmul(X.T, X, precision=_HIGHEST)
    Xb = X[: 2 * half].reshape(2, half, m)
    G = jax.lax.dot_general(Xb, Xb, (((1,), (1,)), ((0,), (0,))), precision=_HIGHEST).sum(0)
    if n % 2:
        G = G + jnp.outer(X[-1], X[-1])
    return G


def _default_capacity(m: int, c: int, seeded: int | None = None) -> int:
    """Working-set capacity: all columns for small ``m``, else room to grow the seed set."""
    if m <= _FULL_GRAM_MAX_M:
        return m
    want = max(512, 16 * c) if seeded is None else max(256, 3 * seeded)
    want = -(-want // _BLOCK) * _BLOCK
    return m if want >= m else want


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def mu_lasso(
    X: jax.Array,
    L: jax.Array,
    mu: float | jax.Array,
    *,
    method: str = "active_set",
    maxiter: int = _DEFAULT_MAXITER,
    tol: float | None = None,
    warm_start: jax.Array | None = None,
    capacity: int | None = None,
    max_active: int | None = None,
) -> LassoResult:
    r"""Per-class non-negative least squares with an L1 budget (SVEBI's filter selection).

    For every class :math:`j = 1..C` and every budget :math:`\mu`,

    .. math::

      w_j = \operatorname*{argmin}_{w \ge 0,\ \mathbf{1}^\top w \le \mu}
            f_j(w), \qquad
      f_j(w) = \|X w - L_{:, j}\|_2^2 = w^\top G w - 2 B_{:, j}^\top w + c_j,

    with :math:`G = X^\top X`, :math:`B = X^\top L`, :math:`c_j = \|L_{:, j}\|^2`. This is the
    problem ``spams.lasso(X=L, D=X, lambda1=mu, mode=0, pos=True)`` solves in the authors' code.

    **method="fista"**: accelerated projected gradient (FISTA,
    ``jaxopt.ProjectedGradient``) on the full Gram form, computed once (the iterations cost
    :math:`O(m^2 C)` and never touch ``N``), with the fixed step :math:`1 / \mathcal{L}`,
    :math:`\mathcal{L} = 2 \bar\lambda`, where :math:`\bar\lambda \ge \lambda_{\max}(G)` is a
    Collatz–Wielandt bound (16 power iterations of :math:`|G|`, times
    :math:`1 + \max(m, 16)\varepsilon`; tight for non-negative ``X``, at most
    :math:`\rho(|G|) / \lambda_{\max}(G)` too large otherwise). For a quadratic the Lipschitz
    constant of :math:`\nabla f_j` is known, so a fixed step is both safe and as large as
    FISTA's theory allows; a line search would add function evaluations (and data-dependent
    inner loops under ``vmap``) without a faster rate. All ``C`` classes are solved in one
    ``vmap``-ed loop; each class stops on its own. A 1-D ``mu`` is solved as a path in one
    compiled ``lax.scan`` over the sorted values, each warm-started from the previous solution.

    **method="active_set"** (default, the fastest exact method): the exact solution path by
    homotopy (positive LARS, what SPAMS does) on a working set of columns, polished and
    checked by the same projected gradient:

    1. A working set :math:`U` starts as each class's ``8`` columns of highest correlation
       :math:`B_{ij} / \|X_{:, i}\|` (plus the support of ``warm_start``).
    2. For every class, the homotopy follows the penalised path
       :math:`\min_{w \ge 0} \tfrac12 w^\top G_{UU} w - B_{U j}^\top w + \nu \mathbf 1^\top w`
       from :math:`\nu = \max_i B_{ij}` down to the budget (see :func:`_homotopy`); all budgets
       of a path come from one run, by interpolation between its breakpoints. Only
       :math:`G_{UU} = X_U^\top X_U` is formed, in ``128``-column blocks, the symmetric half
       only, and only for columns new to :math:`U`; the full ``m x m`` Gram never is.
    3. ``jaxopt.ProjectedGradient`` (FISTA, as above) runs from the homotopy's answer on the
       restricted problem until its residual is below ``tol`` (normally zero iterations: the
       homotopy is exact up to rounding; it takes over when the homotopy stops early).
    4. The full problem is checked with one pass over ``X``: correlations
       :math:`c = X^\top (L_{:, j} - X w_j)` on all ``m`` columns give the residual
       :math:`r_j` below and the duality gap (``LassoResult.gap``). A column :math:`i`
       outside :math:`U` violates the optimality conditions if :math:`c_i > \nu_j` (the
       correlation level of the support); those that alone would break the gap tolerance,
       :math:`2 \mu (c_i - \nu_j) > \mathrm{tol}\, \|L_{:, j}\|^2`, join :math:`U` (at most
       ``8`` per class and budget, the largest first). Steps 2-4 repeat until no column is
       left to add (at most 20 rounds).

    For ``m <= 512`` the working set is simply all columns (one round on the full Gram; the
    objective is then evaluated from the Gram form). Checks, Gram, class sums and solve are
    one compiled call, eagerly or under ``jit``. The answer is the same problem's optimum
    as ``"fista"``'s, certified by the same residual on the full problem, so ``converged``
    means the same for both methods (plus: no column was left out). On SVEBI-sized problems it
    is much faster: a path costs about as much as a single budget, and for thousands of
    columns the cost is a few passes over ``X`` instead of the :math:`2 N m^2` FLOPs of the
    Gram.

    Stopping rule and ``residual`` (both methods): with the projected-gradient step
    :math:`w^+ = P_\mu\big(w - \nabla f_j(w) / \mathcal{L}\big)`,

    .. math::

      r_j(w) = \frac{\|w - w^+\|_2}{\max(\|w\|_1, \|w^+\|_1)}, \qquad (0/0 := 0),

    i.e. the length of a full projected-gradient step relative to the size of the weights. It
    is zero if and only if :math:`w` is optimal, is invariant to rescaling ``X`` (with ``mu``),
    and does not depend on whether the budget is active. ``converged = residual <= tol``. For
    ``"fista"`` and for ``"active_set"`` with all columns in the working set,
    :math:`\mathcal L` is the bound above; when the Gram is not formed, :math:`\bar\lambda` is
    two Collatz–Wielandt steps through :math:`|X|` from its column sums (within 2e-5 of
    :math:`\lambda_{\max}(G)` on SVEBI-like responses, ~1% on the tests' random ones). The
    residual is a step length, not an objective error: on ill-conditioned problems (large
    budgets) FISTA can meet ``tol`` while its objective is still ~1e-3 above the optimum;
    ``gap`` bounds that error directly.

    Accuracy: with the defaults (``tol=1e-6`` in float32, ``1e-9`` in float64,
    ``maxiter=10000``) FISTA came within ``5e-7`` relative of the optimum in float32 and
    ``1e-12`` in float64 (optimum from a float64 solve at ``tol=1e-12``, itself within ``1e-5``
    of SciPy's SLSQP in the tests) on random non-negative problems with rows summing to ~3
    (``N`` = 200..3000, ``m`` = 30..120, ``C`` = 5..10, budgets active and inactive); float32
    needed at most ~600 iterations there, float64 at most ~5000. Ill-conditioned ``G`` slows
    FISTA (iterations grow like the square root of the condition number); check ``converged``
    and raise ``maxiter`` if needed (or check ``gap``). ``"active_set"`` is exact up to
    rounding: in float32 it agreed with SPAMS's float64 objective to ~1e-8 relative on the
    benchmark problems, with ``gap`` below ~1e-6 of :math:`\|L_{:, j}\|^2`
    (``benchmarks/bench_lasso_peers.py``).

    Precision: the working dtype is the promotion of ``X`` and ``L`` with float32, so float32
    by default; with ``jax_enable_x64`` on and float64 inputs everything stays float64. All
    matrix products use ``Precision.HIGHEST`` (no TF32/bf16 passes on accelerators).

    ``jit`` and ``vmap``: both methods trace with fixed shapes (the working set has a fixed
    ``capacity``, padded and masked). Called eagerly, ``"active_set"`` retries with twice the
    capacity if the working set filled up; under a caller's ``jit`` it cannot, and reports
    ``converged = False`` instead (pass a larger ``capacity``). Under ``jit`` the value checks
    below cannot raise (except for concrete arrays the jitted function closes over, which are
    still checked); invalid traced values (NaN/inf in ``X``, ``L`` or ``warm_start``, ``L``
    not one-hot, ``X`` so large that :math:`X^\top X` overflows, ``mu <= 0``) give NaN ``W``,
    ``objective``, ``residual`` and ``gap`` and ``converged = False`` (per budget for an
    invalid ``mu`` in a path) instead of a plausible-looking answer.

    Args:
      X: ``[N, m]`` float responses (``N`` images, ``m`` filters). Usually non-negative, but any
        finite real values are accepted.
      L: ``[N, C]`` one-hot (0/1, one 1 per row) predicted labels, any numeric/bool dtype.
        A class that never occurs gets a ``UserWarning`` and ``w_j = 0`` exactly (its optimum).
      mu: positive scalar, or ``[P]`` 1-D array of budgets (a path); results come back in the
        caller's order of ``mu``.
      method: ``"active_set"`` (default: exact, and on SVEBI problems the fastest) or
        ``"fista"`` (see above).
      maxiter: maximum FISTA iterations per class and per ``mu`` (for ``"active_set"``, of
        the polish in each round).
      tol: stopping tolerance on the residual :math:`r_j`; ``None`` picks ``1e-6`` for float32
        and ``1e-9`` for float64.
      warm_start: optional ``[m, C]`` initial weights. ``"fista"``: the starting point
        (projected onto the feasible set first; for a path it initialises the smallest
        ``mu``). ``"active_set"``: its support joins the initial working set.
      capacity: ``"active_set"`` only: the working set's size in columns (static). ``None``:
        all columns if ``m <= 512``, else ``max(512, 16 C)`` rounded up to 128.
      max_active: ``"active_set"`` only: the most non-zero weights one class's homotopy can
        hold (static; ``None``: 32). Called eagerly, a homotopy that runs out of room is
        rerun with 4x the room; under a caller's ``jit`` the projected-gradient polish
        finishes from where it stopped (correct, but slower).

    Returns:
      A :class:`LassoResult`; ``W`` is ``[m, C]`` for a scalar ``mu`` and ``[P, m, C]`` for a
      1-D ``mu``, the other fields ``[C]`` or ``[P, C]``.

    Raises:
      ValueError: on malformed shapes, an unknown ``method`` or a non-positive-integer
        ``capacity``/``max_active``/``maxiter``; and, when the values are concrete (not
        traced), on a non-finite or non-positive ``mu`` or one outside the working dtype's
        normal range (e.g. ``1e39`` in float32, which would overflow), NaN/inf in ``X``, ``L`` or
        ``warm_start``, an ``X`` so large that :math:`X^\top X` overflows, or ``L`` not
        one-hot. ``X`` and ``L`` are checked on the device in the same compiled call as the
        solve (one pass over ``X`` that the solver needs anyway), and the error is raised when
        it returns.
    """
    _validate(X, L, mu, maxiter, tol, warm_start, method, capacity, max_active)

    dtype = _working_dtype(X, L)
    _check_mu_range(mu, dtype)
    if not (_is_array_of(X, dtype) and _is_array_of(L, dtype)):
        # Concrete values stay concrete (also constants a jitted caller closes over), so that
        # they are checked eagerly below; traced ones stay traced.
        with jax.ensure_compile_time_eval():
            X = _as(X, dtype)
            L = _as(L, dtype)
    m, c = X.shape[1], L.shape[1]
    if tol is None:
        tol = _DEFAULT_TOL.get(jnp.dtype(dtype).itemsize, 1e-6)
    W0 = None if warm_start is None else _as(warm_start, dtype)
    # Scalars as host values: the compiled call transfers them (no extra dispatches).
    args = (X, L, _host(mu, dtype), W0, _host(maxiter, np.int32), _host(tol, dtype))
    eager = all(_concrete(a) for a in (X, L, mu, W0, maxiter, tol))
    if eager:  # one compiled call checks and solves; the checks raise after it
        colsq = None
    else:  # checks of concrete X/L (closed over by a caller's jit) before tracing the solve
        with jax.ensure_compile_time_eval():
            prep = _prepare(X, L)
            if _concrete(prep.colsq):
                _check_summary(X, L, jax.device_get(_summary(prep)))
        colsq = prep.colsq
    if method == "fista":
        result, summary = _mu_lasso_fista(*args, colsq)
        if eager:
            _check_summary(X, L, jax.device_get(summary))
        return result

    cap = _default_capacity(m, c) if capacity is None else min(int(capacity), m)
    active = min(_DEFAULT_MAX_ACTIVE if max_active is None else int(max_active), cap)
    # L in CPU memory is checked on the host while the device solves (the compiled call then
    # skips that pass over L, the slowest of its checks on XLA:CPU); elsewhere, on the device.
    host_l = eager and _on_cpu_host(L)
    l_ok = None  # the host check's answer, once (a retry does not repeat it)
    while True:
        retry = eager and (cap < m or active < cap)
        result, status = _mu_lasso_active_set(
            *args, colsq, capacity=cap, max_active=active, retry=retry, l_checked=host_l
        )
        if eager:
            if host_l and l_ok is None:
                l_ok = _host_one_hot(L)
            status = np.array(status)  # waits for the call; a writable host copy
            if host_l:
                status[3] = l_ok  # the summary's one-hot flag
            _check_summary(X, L, status[2:])
            unfinished, full_active = bool(status[0]), bool(status[1])
            if unfinished and cap < m:  # the working set filled up: retry with more room
                cap = min(2 * cap, m)
                active = min(active, cap)
                continue
            if full_active and active < cap:  # a homotopy filled up: retry with more room
                active = min(4 * active, cap)
                continue
        return result


def _on_cpu_host(x) -> bool:
    """Whether ``x`` is a NumPy array or a JAX array whose every shard is in this process's CPU
    memory (its host view then needs no transfer)."""
    if isinstance(x, np.ndarray):
        return True
    return (
        isinstance(x, jax.Array)
        and x.is_fully_addressable
        and all(d.platform == "cpu" for d in x.devices())
    )


def _host_one_hot(L) -> bool:
    """Whether the concrete ``L`` ``[N, C]`` is one-hot (entries 0/1, one 1 per row), by NumPy
    on its host view (no copy for CPU arrays); NaN/inf entries are not.

    ``N`` non-zero entries and every row summing to 1 imply one-hot: no row sums to 1 without
    a non-zero, so each row has exactly one, and a row with a single non-zero sums to it
    exactly. Counted on the float's bits (an unsigned-integer view, ~5x faster than comparing
    floats): a bit pattern other than ``+0.0`` counts, so ``-0.0`` entries make the count too
    large, and only then are the values compared. ~20 us for 5,000 x 10 float32.
    """
    Lh = np.asarray(L)
    n, ones = Lh.shape[0], np.ones(Lh.shape[1], Lh.dtype)
    bits = {4: np.uint32, 8: np.uint64}.get(Lh.dtype.itemsize)
    if bits is None or not Lh.flags.c_contiguous or Lh.dtype.kind != "f":
        nonzero = np.count_nonzero(Lh)
    else:
        nonzero = np.count_nonzero(Lh.view(bits))
        if nonzero > n:  # -0.0 entries (bits set, value 0): count the values
            nonzero = np.count_nonzero(Lh)
    if nonzero != n:
        return False
    with np.errstate(all="ignore"):
        return bool(np.all(Lh @ ones == 1))


def _working_dtype(X, L):
    """The promotion of ``X`` and ``L`` with float32 (a default float if that is not a float
    dtype); float32 inputs, the usual case, without JAX's promotion machinery."""
    f32 = np.dtype(np.float32)
    if getattr(X, "dtype", None) == f32 and getattr(L, "dtype", None) == f32:
        return f32
    dtype = jnp.result_type(X, L, jnp.float32)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    return dtype


def _is_array_of(x, dtype) -> bool:
    return isinstance(x, jax.Array) and x.dtype == dtype


def _as(x, dtype):
    """``x`` as a JAX array of ``dtype``, without a dispatch when it already is one."""
    if isinstance(x, jax.Array) and x.dtype == dtype:
        return x
    return jnp.asarray(x, dtype)


def _host(x, dtype):
    """A scalar or small array argument: NumPy on the host, unless traced."""
    return np.asarray(x, dtype) if _concrete(x) else jnp.asarray(x, dtype)
