"""SPAMS (``spams-bin``), the SVEBI authors' μ-lasso solver, as a benchmark peer.

The authors select relevant filters with ``spams.lasso(X=L, D=X, lambda1=mu, mode=0,
pos=True)``: for every column ``l_j`` of ``L`` (one per class), the LARS homotopy solves

.. math::

  \\min_{w \\ge 0} \\|X w - l_j\\|_2^2 \\quad \\text{s.t.} \\quad \\|w\\|_1 \\le \\mu,

the problem of :func:`svebi_jax.mu_lasso`. SPAMS forms the full Gram matrix
:math:`X^\\top X` (``m x m``, :math:`N m^2` FLOPs with a symmetric product) and :math:`X^\\top L`
in its own BLAS, then runs one LARS path per class on it, in C++ with OpenMP threads.

``spams-bin`` is a binary wheel of SPAMS (the ``bench`` extra installs it); it is imported
lazily so that the rest of the benchmarks run without it. It is only ever a peer: the library
never imports it, and the tests that compare against it are skipped when it is missing.
"""

from __future__ import annotations

import numpy as np

try:  # run as a script: benchmarks/ is on sys.path
    from peers import single_thread_blas
except ImportError:  # pragma: no cover - imported as benchmarks.peers_spams
    from benchmarks.peers import single_thread_blas

__all__ = [
    "available",
    "spams_gram",
    "spams_inputs",
    "spams_mu_lasso",
    "spams_mu_path",
    "spams_mu_path_gram",
]


def available() -> bool:
    """Whether ``spams`` can be imported."""
    try:
        import spams  # noqa: F401
    except ImportError:
        return False
    return True


def spams_inputs(X, L, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Fortran-ordered copies of ``X`` ``[N, m]`` and ``L`` ``[N, C]``, as SPAMS requires.

    Made once, outside any timing: the peer gets its inputs in its preferred layout (SPAMS
    would otherwise reject C-ordered arrays). ``float64`` is SPAMS's usual precision; it also
    accepts ``float32``.
    """
    return np.asfortranarray(X, dtype=dtype), np.asfortranarray(L, dtype=dtype)


def spams_mu_lasso(Xf: np.ndarray, Lf: np.ndarray, mu: float, *, num_threads: int = -1):
    """``spams.lasso(X=L, D=X, lambda1=mu, mode=0, pos=True)`` as a dense ``[m, C]`` array.

    Args:
      Xf: ``[N, m]`` Fortran-ordered responses (the dictionary ``D`` in SPAMS's terms).
      Lf: ``[N, C]`` Fortran-ordered one-hot labels (the signals ``X`` in SPAMS's terms).
      mu: the L1 budget (``lambda1`` with ``mode=0``: the constraint form).
      num_threads: SPAMS's ``numThreads`` (``-1``: all cores, its default).

    Returns:
      ``[m, C]`` float64 weights, column ``j`` for class ``j``.
    """
    import spams

    W = spams.lasso(X=Lf, D=Xf, lambda1=float(mu), mode=0, pos=True, numThreads=int(num_threads))
    return np.asarray(W.toarray(), np.float64)


def spams_mu_path(Xf: np.ndarray, Lf: np.ndarray, mus, *, num_threads: int = -1):
    """One :func:`spams_mu_lasso` call per budget (what a user of SPAMS does for a μ path).

    SPAMS's ``mode=0`` takes a single budget per call (``return_reg_path`` returns the
    breakpoints of the first signal's penalised path, not the constrained solutions of every
    class at given budgets), so a path of ``P`` budgets costs ``P`` calls, each forming the
    Gram matrix again, as the authors' code does.

    Returns:
      ``[P, m, C]`` float64 weights in the order of ``mus``.
    """
    return np.stack([spams_mu_lasso(Xf, Lf, mu, num_threads=num_threads) for mu in mus])


def spams_gram(Xf: np.ndarray, Lf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(Q, q) = (X'X, X'L)``, Fortran-ordered, for :func:`spams_mu_path_gram`.

    NumPy's BLAS, limited to one thread (``threadpoolctl``) when available: on a shared
    2-core machine its spinning threads made this product several times slower.
    """
    with single_thread_blas():
        return np.asfortranarray(Xf.T @ Xf), np.asfortranarray(Xf.T @ Lf)


def spams_mu_path_gram(Xf, Lf, mus, *, num_threads: int = -1):
    """The μ path as a SPAMS user who knows its ``Q``/``q`` interface would write it.

    The Gram matrix is formed once (:func:`spams_gram`, included in the time) and every budget
    calls ``spams.lasso(X=L, Q=X'X, q=X'L, lambda1=mu, mode=0, pos=True)``: the same LARS
    without forming ``X'X`` again. Stronger than the authors' usage; same solutions.

    Returns:
      ``[P, m, C]`` float64 weights in the order of ``mus``.
    """
    import spams

    Q, q = spams_gram(Xf, Lf)
    out = [
        spams.lasso(
            X=Lf, Q=Q, q=q, lambda1=float(mu), mode=0, pos=True, numThreads=int(num_threads)
        ).toarray()
        for mu in mus
    ]
    return np.stack(out).astype(np.float64)
