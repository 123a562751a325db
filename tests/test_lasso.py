"""Tests for svebi_jax.lasso against closed forms, brute force and scipy's SLSQP."""

from __future__ import annotations

import functools
import importlib.util
import itertools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize

from svebi_jax.lasso import LassoResult, mu_lasso, projection_nonneg_l1_ball, relevant_mask

N, M, C = 200, 30, 5  # the shape of every random problem (one compilation per dtype)


def _problem(seed: int, n: int = N, m: int = M, c: int = C):
    """Non-negative responses whose rows sum to ~3 (three 'layers'), correlated one-hot labels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    y[:c] = np.arange(c)  # every class occurs
    blocks = []
    for k in np.array_split(np.arange(m), 3):
        means = rng.gamma(0.5, 1.0, (c, k.size))
        r = rng.gamma(2.0, 1.0, (n, k.size)) * means[y]
        blocks.append(r / r.sum(1, keepdims=True))
    return np.concatenate(blocks, 1), np.eye(c)[y]


def _objective(X, L, W):
    """||X w_j - L_j||^2 per class, in float64 numpy."""
    X, L, W = (np.asarray(a, np.float64) for a in (X, L, W))
    return ((X @ W - L) ** 2).sum(0)


def _slsqp(X, L, mu):
    """Independent reference: SLSQP with bounds w >= 0 and the budget sum(w) <= mu."""
    G, B = X.T @ X, X.T @ L
    m = X.shape[1]
    cons = [{"type": "ineq", "fun": lambda w: mu - w.sum(), "jac": lambda w: -np.ones(m)}]
    W = []
    for j in range(L.shape[1]):
        b, cj = B[:, j], L[:, j] @ L[:, j]
        res = minimize(  # objective divided by c_j = f_j(0) so that ftol is relative
            lambda w, b=b, cj=cj: (w @ G @ w - 2 * b @ w + cj) / cj,
            np.full(m, 0.5 * mu / m),
            jac=lambda w, b=b, cj=cj: 2 * (G @ w - b) / cj,
            method="SLSQP",
            bounds=[(0.0, None)] * m,
            constraints=cons,
            options={"ftol": 1e-13, "maxiter": 2000},
        )
        assert res.success, res.message
        W.append(res.x)
    return np.stack(W, 1)


# ------------------------------------------------------------------------------------------
# Projection
# ------------------------------------------------------------------------------------------


def _brute_force_projection(y, mu):
    """Enumerate supports S and budget active/inactive; keep the nearest feasible candidate."""
    best, best_d = np.zeros_like(y), np.sum(y**2)
    n = y.size
    for r in range(1, n + 1):
        for S in itertools.combinations(range(n), r):
            S = list(S)
            for tau in (0.0, (y[S].sum() - mu) / r):  # inactive budget / active budget
                p = np.zeros_like(y)
                p[S] = y[S] - tau
                if tau >= -1e-15 and p.min() >= -1e-15 and p.sum() <= mu + 1e-12:
                    d = np.sum((p - y) ** 2)
                    if d < best_d:
                        best, best_d = p, d
    return best


@pytest.mark.parametrize("seed", range(6))
def test_projection_is_exact_euclidean_projection(seed):
    rng = np.random.default_rng(seed)
    y = rng.normal(0.3, 1.0, 6)
    pos_sum = np.maximum(y, 0).sum()
    with jax.enable_x64(True):
        for mu in (0.25 * pos_sum, 0.9 * pos_sum, 1.5 * pos_sum + 0.1):  # both branches
            p = np.asarray(projection_nonneg_l1_ball(jnp.asarray(y), mu))
            np.testing.assert_allclose(p, _brute_force_projection(y, mu), atol=1e-12)
            # Variational inequality <y - p, z - p> <= 0 on the vertices z of the feasible set
            # {0, mu e_1, ..., mu e_n} certifies p = P(y) (the inequality is linear in z).
            vertices = np.vstack([np.zeros(y.size), mu * np.eye(y.size)])
            assert np.all((vertices - p) @ (y - p) <= 1e-12)
            assert p.min() >= 0 and p.sum() <= mu * (1 + 1e-12)
    p32 = projection_nonneg_l1_ball(jnp.asarray(y, jnp.float32), 0.5)
    assert p32.dtype == jnp.float32
    np.testing.assert_allclose(p32, _brute_force_projection(y, 0.5), atol=1e-6)


@pytest.mark.parametrize("m", [5, 76, 128, 5504])
@pytest.mark.parametrize("x64", [False, True])
def test_michelot_projection_agrees_with_optax_sort_rule(m, x64):
    """The solvers' projection (Michelot's algorithm, sort-free) gives optax's sort-based
    answer (``optax.projections.projection_simplex`` after ``relu``) to rounding, ties
    included, with the budget active or not."""
    from optax.projections import projection_simplex

    from svebi_jax.lasso import _project

    rng = np.random.default_rng(m)
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        Y = rng.normal(0.2, 1.0, (40, m))
        Y[::4, : m // 2] = Y[::4, m // 2 : 2 * (m // 2)]  # every fourth row: all values tied
        Y[1::4] = np.round(Y[1::4], 1)  # many ties at one decimal
        Y = jnp.asarray(Y, dtype)
        pos = jnp.sum(jnp.maximum(Y, 0), axis=1)
        atol = 1e-12 if x64 else 2e-6

        def optax_rule(y, mu):
            p = jnp.maximum(y, 0)
            return jnp.where(jnp.sum(p) > mu, projection_simplex(p, mu).astype(y.dtype), p)

        for scale in (0.05, 0.5, 0.99, 1.5):  # budget active (three sizes) and inactive
            mus = scale * pos
            got = jax.jit(jax.vmap(_project))(Y, mus)
            want = jax.vmap(optax_rule)(Y, mus)
            assert got.dtype == want.dtype == dtype
            np.testing.assert_allclose(got, want, atol=atol * float(jnp.max(mus)))
            # Tied inputs get tied outputs.
            if m <= 128:
                got = np.asarray(got)
                tied = np.asarray(Y)[:, :, None] == np.asarray(Y)[:, None, :]
                assert np.all((got[:, :, None] == got[:, None, :])[tied])
        # Also exact against brute force on short vectors.
        if m == 5:
            for y, mu in zip(np.asarray(Y[:8], np.float64), np.asarray(0.5 * pos[:8]), strict=True):
                p = np.asarray(_project(jnp.asarray(y, dtype), jnp.asarray(mu, dtype)))
                np.testing.assert_allclose(p, _brute_force_projection(y, mu), atol=10 * atol)


def test_michelot_projection_hand_computed():
    """p = (3, 1, 0.5), mu = 2: tau_0 = (4.5 - 2) / 3 = 5/6 keeps {3, 1}; tau_1 = (4 - 2) / 2
    = 1 drops 1; tau_2 = (3 - 2) / 1 = 1, support {3} again: the projection is (2, 0, 0)."""
    from svebi_jax.lasso import _projection_simplex_michelot

    got = _projection_simplex_michelot(jnp.array([3.0, 1.0, 0.5]), jnp.float32(2.0))
    np.testing.assert_array_equal(np.asarray(got), [2.0, 0.0, 0.0])
    got = _projection_simplex_michelot(jnp.array([1.0, 1.0, 1.0]), jnp.float32(1.5))
    np.testing.assert_allclose(np.asarray(got), [0.5, 0.5, 0.5], rtol=1e-7)


def test_projection_bad_inputs():
    with pytest.raises(ValueError, match=r"\bw\b"):
        projection_nonneg_l1_ball(jnp.ones((2, 2)), 1.0)
    with pytest.raises(ValueError, match=r"\bmu\b"):
        projection_nonneg_l1_ball(jnp.ones(3), 0.0)


# ------------------------------------------------------------------------------------------
# Closed forms
# ------------------------------------------------------------------------------------------


def test_single_column_closed_form():
    rng = np.random.default_rng(1)
    x = rng.normal(0.2, 1.0, (60, 1))  # mixed signs: some classes have x.l < 0 -> w = 0
    L = np.eye(4)[np.arange(60) % 4]
    ratio = (x[:, 0] @ L) / (x[:, 0] @ x[:, 0])
    assert ratio.min() < 0 < ratio.max()
    with jax.enable_x64(True):
        for mu in (0.5 * ratio.max(), 2.0 * ratio.max()):
            res = mu_lasso(x, L, mu)
            expected = np.minimum(mu, np.maximum(0.0, ratio))
            np.testing.assert_allclose(res.W[0], expected, atol=1e-9)
            np.testing.assert_allclose(res.objective, _objective(x, L, expected[None]), rtol=1e-9)
    res32 = mu_lasso(x.astype(np.float32), L.astype(np.float32), 0.5 * ratio.max())
    np.testing.assert_allclose(
        res32.W[0], np.minimum(0.5 * ratio.max(), np.maximum(0, ratio)), atol=1e-6
    )


def _orthogonal_design(kind: str, rng):
    n, m = 50, 5
    scales = np.array([0.5, 1.0, 2.0, 3.0, 4.0])
    if kind == "disjoint_nonneg":  # non-negative, disjoint row supports
        Q = np.zeros((n, m))
        for i, rows in enumerate(np.array_split(rng.permutation(n), m)):
            Q[rows, i] = rng.uniform(0.5, 1.5, rows.size)
        Q /= np.linalg.norm(Q, axis=0)
    else:  # general orthonormal columns (mixed signs)
        Q, _ = np.linalg.qr(rng.normal(size=(n, m)))
    return Q * scales, scales**2


def _capped_solution(b, s2, mu):
    """argmin sum_i s2_i w_i^2 - 2 b_i w_i s.t. w >= 0, sum w <= mu (diagonal G), by bisection.

    KKT: w_i = max(0, (b_i - tau) / s2_i) with tau >= 0, tau = 0 if that is feasible.
    """
    w = lambda tau: np.maximum(0.0, (b - tau) / s2)
    if w(0.0).sum() <= mu:
        return w(0.0)
    lo, hi = 0.0, b.max()
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if w(mid).sum() > mu else (lo, mid)
    return w(0.5 * (lo + hi))


@pytest.mark.parametrize("kind", ["disjoint_nonneg", "orthonormal"])
def test_orthogonal_columns_closed_form(kind):
    rng = np.random.default_rng(2)
    X, s2 = _orthogonal_design(kind, rng)
    L = np.eye(3)[rng.integers(0, 3, X.shape[0])]
    L[:3] = np.eye(3)
    B = X.T @ L
    unconstrained = np.maximum(B, 0) / s2[:, None]
    with jax.enable_x64(True):
        for mu in (0.3 * unconstrained.sum(0).min(), 2.0 * unconstrained.sum(0).max()):
            res = mu_lasso(X, L, mu)
            expected = np.stack([_capped_solution(B[:, j], s2, mu) for j in range(3)], 1)
            np.testing.assert_allclose(res.W, expected, atol=1e-6 * max(1.0, mu))
            np.testing.assert_allclose(res.objective, _objective(X, L, expected), rtol=1e-9)
            assert bool(jnp.all(res.converged))


# ------------------------------------------------------------------------------------------
# Random problems: KKT, SLSQP, path
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mu", [0.6, 50.0])  # budget active / inactive
def test_kkt_conditions(mu):
    X, L = _problem(seed=3)
    with jax.enable_x64(True):
        res = mu_lasso(X, L, mu)
        W = np.asarray(res.W)
    assert W.dtype == np.float64
    G, B = X.T @ X, X.T @ L
    for j in range(C):
        w = W[:, j]
        g = 2 * (G @ w - B[:, j])  # gradient of ||X w - L_j||^2
        scale = np.abs(2 * B[:, j]).max()
        support = w > 1e-9 * mu
        assert support.any()
        nu = max(0.0, -g[support].mean())  # multiplier of the budget 1'w <= mu
        assert np.all(w >= 0) and w.sum() <= mu * (1 + 1e-9)  # primal feasibility
        np.testing.assert_allclose(g[support] + nu, 0.0, atol=1e-5 * scale)  # stationarity
        assert np.all(g[~support] + nu >= -1e-5 * scale)  # dual feasibility of w >= 0
        assert -g[support].mean() >= -1e-5 * scale  # nu >= 0
        assert nu * abs(mu - w.sum()) <= 1e-5 * scale * mu  # complementary slackness
    if mu < 1:
        np.testing.assert_allclose(W.sum(0), mu, rtol=1e-7)  # budget active for all classes
    else:
        assert np.all(W.sum(0) < mu)


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_matches_slsqp_float64_and_float32(seed):
    X, L = _problem(seed)
    for mu in (0.7, 4.0):
        ref = _objective(X, L, _slsqp(X, L, mu))
        with jax.enable_x64(True):
            res64 = mu_lasso(X, L, mu)
        np.testing.assert_allclose(_objective(X, L, res64.W), ref, rtol=1e-5)
        np.testing.assert_allclose(res64.objective, _objective(X, L, res64.W), rtol=1e-10)
        res32 = mu_lasso(X.astype(np.float32), L.astype(np.float32), mu)
        assert res32.W.dtype == jnp.float32 and bool(jnp.all(res32.converged))
        np.testing.assert_allclose(_objective(X, L, res32.W), ref, rtol=1e-5)
        np.testing.assert_allclose(res32.objective, _objective(X, L, res32.W), rtol=1e-5)
        np.testing.assert_allclose(res32.W, res64.W, atol=1e-3 * mu)


def test_mu_path_equals_per_mu_solves_in_callers_order():
    X, L = _problem(seed=7)
    mus = np.array([3.0, 0.2, 1.0, 8.0])  # deliberately unsorted
    with jax.enable_x64(True):
        path = mu_lasso(X, L, mus)
        assert path.W.shape == (4, M, C)
        for field in ("objective", "iterations", "residual", "converged"):
            assert getattr(path, field).shape == (4, C)
        for k, mu in enumerate(mus):
            single = mu_lasso(X, L, mu)
            np.testing.assert_allclose(path.W[k], single.W, atol=1e-5)
            np.testing.assert_allclose(path.objective[k], single.objective, rtol=1e-10)
            assert np.all(np.asarray(path.W[k]).sum(0) <= mu * (1 + 1e-9))
    path32 = mu_lasso(X.astype(np.float32), L.astype(np.float32), mus)
    for k, mu in enumerate(mus):
        single = mu_lasso(X.astype(np.float32), L.astype(np.float32), float(mu))
        np.testing.assert_allclose(path32.objective[k], single.objective, rtol=1e-5)


# ------------------------------------------------------------------------------------------
# Edge cases, validation, jit, dtypes
# ------------------------------------------------------------------------------------------


def test_never_predicted_class_warns_and_is_exactly_zero():
    X, L = _problem(seed=8)
    L = L.copy()
    L[L[:, 2] == 1] = np.eye(C)[0]  # class 2 never predicted
    with pytest.warns(UserWarning, match=r"\[2\]"):
        res = mu_lasso(X, L, 1.0, warm_start=np.ones((M, C)))
    W = np.asarray(res.W)
    assert np.all(W[:, 2] == 0.0)
    assert res.objective[2] == 0.0 and res.residual[2] == 0.0 and bool(res.converged[2])
    assert np.all(W[:, [0, 1, 3, 4]].sum(0) > 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning under jit (values are traced) ...
        W_jit = np.asarray(jax.jit(mu_lasso)(X, L, 1.0).W)
    assert np.all(W_jit[:, 2] == 0.0)  # ... but still exactly zero


_X, _L = _problem(seed=9)
_bad_L = _L.copy()
_bad_L[0, :2] = 1.0  # two ones in a row


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"X": _X[0]}, "X"),
        ({"X": _X[None]}, "X"),
        ({"X": np.where(np.arange(M) == 3, np.nan, _X)}, "X"),
        ({"X": np.where(np.arange(M) == 3, np.inf, _X)}, "X"),
        ({"L": _L[:, 0]}, "L"),
        ({"L": _L[:-1]}, "L"),
        ({"L": 0.5 * _L}, "L"),
        ({"L": 2 * _L}, "L"),
        ({"L": _bad_L}, "L"),
        ({"L": np.where(_L == 1, np.nan, _L)}, "L"),
        ({"mu": 0.0}, "mu"),
        ({"mu": -1.0}, "mu"),
        ({"mu": np.nan}, "mu"),
        ({"mu": np.inf}, "mu"),
        ({"mu": np.array([1.0, -2.0])}, "mu"),
        ({"mu": np.ones((2, 2))}, "mu"),
        ({"mu": np.array([])}, "mu"),
        ({"maxiter": 0}, "maxiter"),
        ({"tol": -1e-6}, "tol"),
        ({"warm_start": np.ones((M, C + 1))}, "warm_start"),
        ({"warm_start": np.full((M, C), np.nan)}, "warm_start"),
    ],
)
def test_bad_inputs_name_the_argument(kwargs, name):
    args = {"X": _X, "L": _L, "mu": 1.0} | kwargs
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        mu_lasso(args.pop("X"), args.pop("L"), args.pop("mu"), **args)


@pytest.mark.parametrize("method", ["fista", "active_set"])
def test_mu_outside_the_working_dtype_is_refused(method):
    # float32 inputs: 1e39 would become inf (NaN weights before), 1e-50 zero; both refused
    # before any work, with the argument and the range named.
    X, L = _X.astype(np.float32), _L.astype(np.float32)
    for mu in (1e39, 1e-50, np.array([1.0, 1e39])):
        with pytest.raises(ValueError, match=r"\bmu\b must lie in \[1.18e-38, 3.4e\+38\].*float32"):
            mu_lasso(X, L, mu, method=method)


def test_mu_at_the_top_of_the_working_dtype_is_solved():
    # float32's largest value is accepted: an inactive budget, whose answer is the budget-free
    # (non-negative least-squares) optimum, the same as for any budget above its L1 norms.
    X, L = _X.astype(np.float32), _L.astype(np.float32)
    big = mu_lasso(X, L, float(np.finfo(np.float32).max), method="active_set")
    free = mu_lasso(X, L, 1e6, method="active_set")
    assert bool(jnp.all(big.converged)) and float(np.asarray(big.W).sum(0).max()) < 1e6
    np.testing.assert_allclose(big.W, free.W, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("method", ["fista", "active_set"])
def test_bad_labels_get_the_right_message(method):
    """L is checked in one pass (equal to the one-hot encoding of its row argmax); the message
    still tells NaN/inf apart from other values that are not one-hot."""
    zero_row = _L.copy()
    zero_row[5] = 0.0
    cases = [
        (np.where(_L == 1, np.nan, _L), "L must be finite"),
        (np.where(_L == 0, -np.inf, _L), "L must be finite"),
        (0.5 * _L, "L must be one-hot"),
        (_bad_L, "L must be one-hot"),
        (zero_row, "L must be one-hot"),
        (_L - 1e-7 * (_L == 0), "L must be one-hot"),
    ]
    for L, message in cases:
        with pytest.raises(ValueError, match=message):
            mu_lasso(_X, L, 1.0, method=method)
    # -0.0 is 0: still one-hot, same answer.
    ok = mu_lasso(_X, np.where(_L == 0, -0.0, _L), 1.0, method=method)
    np.testing.assert_array_equal(ok.W, mu_lasso(_X, _L, 1.0, method=method).W)
    # Traced labels cannot raise: the answer is flagged instead of plausible.
    traced = jax.jit(lambda L: mu_lasso(_X, L, 1.0, method=method))(jnp.asarray(zero_row))
    assert np.isnan(np.asarray(traced.W)).all() and not np.asarray(traced.converged).any()


def test_relevant_mask():
    W = jnp.array([[0.0, 0.2], [1e-9, 0.0], [0.5, 3e-3]])
    np.testing.assert_array_equal(relevant_mask(W), [[False, True], [True, False], [True, True]])
    np.testing.assert_array_equal(
        relevant_mask(W, atol=1e-3), [[False, True], [False, False], [True, True]]
    )
    with pytest.raises(ValueError, match="atol"):
        relevant_mask(W, atol=-1.0)


def test_jit_compatible_and_warm_start():
    X, L = _problem(seed=10)
    X, L = X.astype(np.float32), L.astype(np.float32)
    eager = mu_lasso(X, L, 1.0)
    assert isinstance(eager, LassoResult)
    jitted = jax.jit(mu_lasso)(jnp.asarray(X), jnp.asarray(L), 1.0)
    np.testing.assert_allclose(jitted.W, eager.W, atol=1e-6)
    np.testing.assert_allclose(jitted.objective, eager.objective, rtol=1e-6)
    path = jax.jit(mu_lasso)(X, L, jnp.array([2.0, 0.5]))
    np.testing.assert_allclose(path.objective[1], mu_lasso(X, L, 0.5).objective, rtol=1e-5)
    # FISTA warm-started from the solution: (almost) no iterations needed, same answer.
    cold = mu_lasso(X, L, 1.0, method="fista")
    warm = mu_lasso(X, L, 1.0, method="fista", warm_start=eager.W)
    assert int(warm.iterations.max()) <= 2 < int(cold.iterations.min())
    np.testing.assert_allclose(warm.objective, eager.objective, rtol=1e-5)


def test_dtypes_follow_inputs():
    X, L = _problem(seed=11)
    res = mu_lasso(X, L, 1.0)  # float64 numpy inputs, x64 off -> float32
    assert res.W.dtype == jnp.float32 and res.objective.dtype == jnp.float32
    assert bool(jnp.all(res.converged)) and bool(jnp.all(res.residual <= 1e-6))
    with jax.enable_x64(True):
        r64 = mu_lasso(X, L.astype(bool), 1.0)
        assert r64.W.dtype == r64.objective.dtype == r64.residual.dtype == jnp.float64
        assert bool(jnp.all(r64.residual <= 1e-9))
        r32 = mu_lasso(X.astype(np.float32), L.astype(np.int32), 1.0)
        assert r32.W.dtype == jnp.float32 and r32.residual.dtype == jnp.float32
    np.testing.assert_allclose(_objective(X, L, res.W), _objective(X, L, r64.W), rtol=1e-5)


# ------------------------------------------------------------------------------------------
# method="active_set": working-set homotopy, checked on the full problem
# ------------------------------------------------------------------------------------------

active_set = functools.partial(mu_lasso, method="active_set")


def _kkt_violation(X, L, W, mu):
    """Largest KKT violation per class, relative to max |2 X'L_j| (float64, independent)."""
    G, B = X.T @ X, X.T @ L
    out = []
    for j in range(L.shape[1]):
        w = W[:, j]
        g = 2 * (G @ w - B[:, j])
        scale = max(np.abs(2 * B[:, j]).max(), 1e-300)
        support = w > 1e-12 * mu
        nu = max(0.0, -g[support].mean()) if support.any() else max(0.0, -g.min())
        viol = [
            np.abs(g[support] + nu).max(initial=0.0),  # stationarity on the support
            max(0.0, -(g + nu).min()),  # no column outside the support should enter
            nu * abs(mu - w.sum()) / mu,  # complementary slackness of the budget
        ]
        out.append(max(viol) / scale)
    return np.array(out)


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_active_set_matches_slsqp_and_fista(seed):
    X, L = _problem(seed)
    for mu in (0.7, 4.0):
        ref = _objective(X, L, _slsqp(X, L, mu))
        with jax.enable_x64(True):
            res64 = active_set(X, L, mu)
            fista64 = mu_lasso(X, L, mu)
        assert res64.W.dtype == jnp.float64 and bool(jnp.all(res64.converged))
        f64 = _objective(X, L, res64.W)
        np.testing.assert_array_less(f64, ref * (1 + 1e-7))  # at least as good as SLSQP
        np.testing.assert_allclose(f64, ref, rtol=1e-5)
        np.testing.assert_allclose(f64, _objective(X, L, fista64.W), rtol=1e-8)
        np.testing.assert_allclose(res64.W, fista64.W, atol=1e-5 * mu)
        np.testing.assert_allclose(res64.objective, f64, rtol=1e-10)
        assert np.all(_kkt_violation(X, L, np.asarray(res64.W), mu) < 1e-9)
        res32 = active_set(X.astype(np.float32), L.astype(np.float32), mu)
        assert res32.W.dtype == jnp.float32 and bool(jnp.all(res32.converged))
        np.testing.assert_allclose(_objective(X, L, res32.W), ref, rtol=1e-5)
        np.testing.assert_allclose(res32.objective, _objective(X, L, res32.W), rtol=1e-5)
        np.testing.assert_allclose(res32.W, res64.W, atol=1e-4 * mu)


def test_active_set_closed_forms():
    rng = np.random.default_rng(1)
    x = rng.normal(0.2, 1.0, (60, 1))
    L = np.eye(4)[np.arange(60) % 4]
    ratio = (x[:, 0] @ L) / (x[:, 0] @ x[:, 0])
    with jax.enable_x64(True):
        for mu in (0.5 * ratio.max(), 2.0 * ratio.max()):
            res = active_set(x, L, mu)
            np.testing.assert_allclose(res.W[0], np.minimum(mu, np.maximum(0.0, ratio)), atol=1e-12)
        for kind in ("disjoint_nonneg", "orthonormal"):
            X, s2 = _orthogonal_design(kind, np.random.default_rng(2))
            L3 = np.eye(3)[rng.integers(0, 3, X.shape[0])]
            L3[:3] = np.eye(3)
            B = X.T @ L3
            for mu in (0.3, 50.0):
                expected = np.stack([_capped_solution(B[:, j], s2, mu) for j in range(3)], 1)
                res = active_set(X, L3, mu)
                np.testing.assert_allclose(res.W, expected, atol=1e-10 * max(1.0, mu))
                assert bool(jnp.all(res.converged)) and float(jnp.max(res.gap)) < 1e-9


def test_active_set_path_equals_per_mu_solves_and_fista():
    X, L = _problem(seed=7)
    mus = np.array([3.0, 0.2, 1.0, 8.0])  # deliberately unsorted
    with jax.enable_x64(True):
        path = active_set(X, L, mus)
        assert path.W.shape == (4, M, C)
        for field in ("objective", "iterations", "residual", "converged", "gap"):
            assert getattr(path, field).shape == (4, C)
        fista = mu_lasso(X, L, mus)
        for k, mu in enumerate(mus):
            single = active_set(X, L, mu)
            np.testing.assert_allclose(path.W[k], single.W, atol=1e-10)
            np.testing.assert_allclose(
                _objective(X, L, path.W[k]), _objective(X, L, fista.W[k]), rtol=1e-8
            )
            assert np.all(_kkt_violation(X, L, np.asarray(path.W[k]), mu) < 1e-9)
        assert bool(jnp.all(path.converged))


def _wide_problem():
    return _problem(seed=12, m=120)


@pytest.mark.slow  # ~30 s; the other active-set tests stay
def test_active_set_working_set_grows_until_the_full_check_passes():
    """A working set smaller than m: rounds of solve and full check reach the optimum.

    Under jit a working set that fills up cannot grow: ``converged`` is False and the gap large.
    """
    X, L = _wide_problem()
    mus = np.array([0.5, 3.0])
    with jax.enable_x64(True):
        ref = active_set(X, L, mus)  # m <= 512: all columns, one round
        got = jax.jit(lambda X: active_set(X, L, mus, capacity=64))(X)
        np.testing.assert_allclose(got.W, ref.W, atol=1e-9)
        np.testing.assert_allclose(got.objective, ref.objective, rtol=1e-10)
        assert bool(jnp.all(got.converged))
        assert np.all(_kkt_violation(X, L, np.asarray(got.W[1]), 3.0) < 1e-9)
        small = jax.jit(lambda X: active_set(X, L, mus, capacity=16))(X)
        unmet = ~np.asarray(small.converged)
        assert unmet.any()
        scale = np.broadcast_to(L.sum(0), unmet.shape)
        assert np.all(np.asarray(small.gap)[unmet] > 1e-6 * scale[unmet])


@pytest.mark.slow
def test_active_set_eager_capacity_doubling():
    """Called eagerly with a too small working set, mu_lasso doubles it until it suffices."""
    X, L = _wide_problem()
    mus = np.array([0.5, 3.0])
    with jax.enable_x64(True):
        ref = active_set(X, L, mus)
        got = active_set(X, L, mus, capacity=16)
        np.testing.assert_allclose(got.W, ref.W, atol=1e-9)
        assert bool(jnp.all(got.converged))


@pytest.mark.slow
def test_active_set_small_active_capacity_is_retried_or_polished():
    """``max_active`` smaller than a support: eager retries; under jit the polish finishes."""
    X, L = _problem(seed=13)
    mu = 50.0  # budget inactive: the non-negative least squares supports are large
    with jax.enable_x64(True):
        ref = active_set(X, L, mu)
        assert int(np.max(np.sum(np.asarray(ref.W) > 0, axis=0))) > 2
        eager = active_set(X, L, mu, max_active=2)
        np.testing.assert_allclose(eager.W, ref.W, atol=1e-9)
        jitted = jax.jit(lambda X: active_set(X, L, mu, max_active=2))(X)
        assert bool(jnp.all(jitted.converged))
        np.testing.assert_allclose(_objective(X, L, jitted.W), _objective(X, L, ref.W), rtol=1e-8)
        assert int(jnp.max(jitted.iterations)) > int(jnp.max(ref.iterations))  # it polished


def test_active_set_jit_vmap_and_edge_cases():
    X, L = _problem(seed=10)
    X, L = X.astype(np.float32), L.astype(np.float32)
    eager = active_set(X, L, 1.0)
    jitted = jax.jit(lambda X, L, mu: active_set(X, L, mu))(X, L, 1.0)
    np.testing.assert_allclose(jitted.W, eager.W, atol=1e-6)
    Xs = np.stack([X, X[::-1] * 1.5])
    Ls = np.stack([L, L[::-1]])
    batched = jax.vmap(lambda X, L: active_set(X, L, 1.0))(Xs, Ls)
    for i in range(2):
        single = active_set(Xs[i], Ls[i], 1.0)
        np.testing.assert_allclose(batched.W[i], single.W, atol=1e-6)
        np.testing.assert_array_equal(batched.converged[i], single.converged)
    # A never-predicted class: warned eagerly, exactly zero weights.
    L2 = L.copy()
    L2[L2[:, 2] == 1] = np.eye(C, dtype=np.float32)[0]
    with pytest.warns(UserWarning, match=r"\[2\]"):
        res = active_set(X, L2, 1.0)
    assert np.all(np.asarray(res.W)[:, 2] == 0.0) and float(res.objective[2]) == 0.0
    # Invalid traced values: flagged per budget, never plausible weights.
    path = jax.jit(lambda mu: active_set(X, L, mu))(jnp.array([1.0, -1.0, 2.0]))
    np.testing.assert_array_equal(np.asarray(path.converged).all(axis=1), [True, False, True])
    assert np.isnan(np.asarray(path.W[1])).all()
    with pytest.raises(ValueError, match=r"\bmethod\b"):
        mu_lasso(X, L, 1.0, method="lars")
    with pytest.raises(ValueError, match=r"\bcapacity\b"):
        active_set(X, L, 1.0, capacity=0)
    with pytest.raises(ValueError, match=r"\bmax_active\b"):
        active_set(X, L, 1.0, max_active=1.5)


def test_default_is_the_exact_active_set_and_eager_equals_jit():
    # The default method is the exact homotopy; eagerly and under jit it is one compiled
    # program, so both give the same answer.
    import inspect

    assert inspect.signature(mu_lasso).parameters["method"].default == "active_set"
    X, L = _problem(seed=12)
    X, L = X.astype(np.float32), L.astype(np.float32)

    def objectives(W):  # per budget, [P, C]
        W = np.asarray(W)
        return np.stack([_objective(X, L, w) for w in W.reshape(-1, *W.shape[-2:])])

    for mu in (1.0, np.array([2.0, 0.5, 1.0], np.float32)):
        eager = mu_lasso(X, L, mu)
        xla = jax.jit(lambda X, L, mu: mu_lasso(X, L, mu))(X, L, mu)
        assert bool(jnp.all(eager.converged)) and bool(jnp.all(xla.converged))
        np.testing.assert_allclose(eager.W, xla.W, atol=1e-5)
        np.testing.assert_allclose(objectives(eager.W), objectives(xla.W), rtol=1e-6)
        # The objective from the Gram form: rounding ~1e-7 of ||L_j||^2 in float32.
        got = np.reshape(eager.objective, (-1, C))
        assert np.all(np.abs(got - objectives(eager.W)) <= 1e-6 * L.sum(0))


def test_duality_gap_bounds_the_objective_error():
    """``gap`` >= f(w) - f* for an unconverged FISTA run; ~0 for converged answers."""
    X, L = _problem(seed=14)
    with jax.enable_x64(True):
        best = _objective(X, L, active_set(X, L, 2.0).W)
        rough = mu_lasso(X, L, 2.0, method="fista", maxiter=5)
        excess = _objective(X, L, rough.W) - best
        assert np.all(excess > 1e-6) and not bool(jnp.any(rough.converged))
        assert np.all(np.asarray(rough.gap) >= excess * (1 - 1e-9))
        fine = active_set(X, L, 2.0)
        assert np.all(np.asarray(fine.gap) <= 1e-10 * L.sum(0))


def test_lipschitz_bound_is_an_upper_bound_and_tight_for_nonnegative_x():
    from svebi_jax.lasso import _lipschitz_bound, _lipschitz_bound_through

    rng = np.random.default_rng(15)
    with jax.enable_x64(True):
        for X, tight in ((_problem(16)[0], True), (rng.normal(size=(80, 12)), False)):
            G = X.T @ X
            exact = np.linalg.eigvalsh(G)[-1]
            # 16 power steps on the formed Gram; 2 steps through X (within ~1% here).
            for bound, rtol in (
                (_lipschitz_bound(jnp.asarray(G)), 1e-3),
                (_lipschitz_bound_through(X), 2e-2),
            ):
                assert float(bound) >= exact * (1 - 1e-12)
                if tight:
                    assert float(bound) <= exact * (1 + rtol)


@pytest.mark.skipif(not importlib.util.find_spec("spams"), reason="spams-bin not installed")
def test_active_set_matches_spams():
    """The authors' solver, spams.lasso(mode=0, pos=True), as an independent reference."""
    import spams

    X, L = _problem(seed=17)
    Xf, Lf = np.asfortranarray(X), np.asfortranarray(L)
    with jax.enable_x64(True):
        for mu in (0.5, 3.0, 30.0):
            ref = spams.lasso(X=Lf, D=Xf, lambda1=mu, mode=0, pos=True).toarray()
            got = active_set(X, L, mu)
            np.testing.assert_allclose(_objective(X, L, got.W), _objective(X, L, ref), rtol=1e-10)
            np.testing.assert_allclose(got.W, ref, atol=1e-8 * max(1.0, mu))
            np.testing.assert_array_equal(np.asarray(got.W) > 0, ref > 0)


def test_svgg19_like_benchmark_problem_is_deterministic_and_structured():
    from benchmarks.bench_lasso_peers import svgg19_like_responses

    channels = (4, 4, 8, 8, 16, 16, 16, 16, 32, 32, 32, 32, 32, 32, 32, 32)
    X, L = svgg19_like_responses(300, 7, seed=0, channels=channels)
    X2, L2 = svgg19_like_responses(300, 7, seed=0, channels=channels)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(L, L2)
    assert X.shape == (300, sum(channels)) and X.dtype == np.float32 and X.min() >= 0
    edges = np.cumsum((0, *channels))
    for a, b in zip(edges[:-1], edges[1:], strict=True):  # each layer block of a row sums to 1
        np.testing.assert_allclose(X[:, a:b].sum(axis=1), 1.0, rtol=1e-5)
    assert np.all(L.sum(axis=1) == 1) and np.all(L.sum(axis=0) > 0)
    assert 0.2 < np.mean(X == 0) < 0.8


def test_host_one_hot_check_agrees_with_the_device_check():
    """The host check (a count on the floats' bits, row sums) against the compiled one (L equal
    to the one-hot encoding of its row argmax), on labels that are and are not one-hot."""
    from svebi_jax.lasso import _host_one_hot, _labels_one_hot

    L = np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 1, 0]]
    swapped = L.copy()
    swapped[0] = [1, 1, 0, 0]  # two ones here ...
    swapped[1] = 0  # ... none here: N non-zeros in all, rows wrong
    cases = {
        "one-hot": L,
        "-0.0 for 0": np.where(L == 0, np.float32(-0.0), L),
        "float64": L.astype(np.float64),
        "Fortran order": np.asfortranarray(L),
        "int32": L.astype(np.int32),
        "N non-zeros, rows wrong": swapped,
        "NaN": np.where(L == 1, np.float32(np.nan), L),
        "a 2": 2 * L,
        "-1 for 1": -L,
        "0.5 twice": np.where(L == 1, 0.5, 0) + np.roll(np.where(L == 1, 0.5, 0), 1, axis=1),
    }
    expected = {name: True for name in ("one-hot", "-0.0 for 0", "float64", "Fortran order")}
    expected["int32"] = True
    for name, labels in cases.items():
        device = bool(_labels_one_hot(jnp.asarray(labels, jnp.float32))[1])
        assert _host_one_hot(labels) == device == expected.get(name, False), name


def test_gram_from_row_halves_equals_x_transpose_x():
    """The Gram from the two halves of the rows (plus the last row when N is odd)."""
    from svebi_jax.lasso import _gram

    rng = np.random.default_rng(3)
    with jax.enable_x64(True):
        for n in (1, 2, 7, 100, 101):
            X = rng.normal(size=(n, 5))
            np.testing.assert_allclose(_gram(jnp.asarray(X)), X.T @ X, rtol=1e-13, atol=1e-13)
