"""Objective: the profiled REML/ML deviance as a function of theta only, and its exact gradient.

lme4's ``mkLmerDevfun`` step. ``theta`` holds the lower triangle of the
relative covariance factor ``T`` (``Lambda`` restricted to one group), column
by column as in lme4: for ``q = 2`` ``theta = (T11, T21, T22)`` and the
random-effects covariance is ``sigma^2 T T'``. Diagonal elements are bounded
below by 0 (:func:`lower_bounds`).

For each group the penalised least-squares (PLS) system is solved from the
sufficient statistics of :mod:`.design` with batched q x q Cholesky
factorisations (Bates et al. 2015, eqs. 18-22):

- ``L_g L_g' = T' Z_g'Z_g T + I``;            ``ldL2 = sum_g log|L_g L_g'|``
- ``R_ZX,g = L_g^-1 T' Z_g'X``;  ``c_u,g = L_g^-1 T' Z_g'y``
- ``R_X' R_X = X'X - sum_g R_ZX,g' R_ZX,g``;  ``R_X' c_beta = X'y - sum_g R_ZX,g' c_u,g``
- ``beta = R_X^-1 c_beta``;  penalised RSS ``r2 = y'y - sum |c_u,g|^2 - |c_beta|^2``

and beta and sigma^2 are profiled out:

- ML:   ``d(theta) = ldL2 + n (1 + log(2 pi r2 / n))``
- REML: ``d(theta) = ldL2 + log|R_X|^2 + (n - p) (1 + log(2 pi r2 / (n - p)))``

The gradient is exact. With ``V = I + Z T T' Z'`` (block-diagonal), ``e = y - X beta``
and ``dG_k = d(T T')/d theta_k = E_k T' + T E_k'``:

    d d / d theta_k = tr(S dG_k) = 2 (S T)[r_k, c_k],
    S = A - reml * B - m / r2 * W,   m = n - reml * p,

where ``A = sum_g Z_g'V_g^-1 Z_g``, ``W = sum_g w_g w_g'`` with ``w_g = Z_g'V_g^-1 e_g``,
and ``B = sum_g P_g (X'V^-1 X)^-1 P_g'`` with ``P_g = Z_g'V_g^-1 X_g`` (the REML term).
Every one of them is a q x q sum over groups, computed by Woodbury from the
same sufficient statistics (``Z_g'V_g^-1 = Z_g' - Z_g'Z_g T M_g^-1 T' Z_g'``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.model.lmm.design import Design

LOG_2PI = float(np.log(2.0 * np.pi))


def theta_index(q: int) -> list[tuple[int, int]]:
    """(row, column) of each theta element in T, lme4's column-major lower-triangle order."""
    return [(r, c) for c in range(q) for r in range(c, q)]


def lower_bounds(q: int) -> np.ndarray:
    """0 for diagonal elements of T, -inf for off-diagonal ones (lme4's ``lower``)."""
    return np.array([0.0 if r == c else -np.inf for r, c in theta_index(q)])


def theta_start(q: int) -> np.ndarray:
    """lme4's default start: T = identity."""
    return np.array([1.0 if r == c else 0.0 for r, c in theta_index(q)])


def make_T(theta: np.ndarray, q: int) -> np.ndarray:
    """The q x q lower-triangular relative covariance factor from theta."""
    T = np.zeros((q, q))
    for k, (r, c) in enumerate(theta_index(q)):
        T[r, c] = theta[k]
    return T


def inv_logdet(M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverses and log-determinants of a stack of small SPD matrices (G, q, q).

    Closed forms for q = 1 and 2 (the usual random intercept / intercept and
    slope) avoid LAPACK's per-matrix overhead on 10^5 tiny systems; larger q
    uses batched numpy. Raises LinAlgError if a matrix is not positive definite.
    """
    q = M.shape[-1]
    if q == 1:
        m = M[:, 0, 0]
        if np.any(m <= 0):
            raise np.linalg.LinAlgError("matrix not positive definite")
        return (1.0 / m)[:, None, None], np.log(m)
    if q == 2:
        a, b, c = M[:, 0, 0], M[:, 0, 1], M[:, 1, 1]
        det = a * c - b * b
        if np.any(det <= 0) or np.any(a <= 0):
            raise np.linalg.LinAlgError("matrix not positive definite")
        inv = np.empty_like(M)
        inv[:, 0, 0], inv[:, 0, 1], inv[:, 1, 0], inv[:, 1, 1] = c / det, -b / det, -b / det, a / det
        return inv, np.log(det)
    sign, logdet = np.linalg.slogdet(M)
    if np.any(sign <= 0):
        raise np.linalg.LinAlgError("matrix not positive definite")
    return np.linalg.inv(M), logdet


def congruence(A: np.ndarray, T: np.ndarray) -> np.ndarray:
    """``T A_g T'`` for a stack ``A`` (G, q, q) and one q x q ``T``, as one (G, q^2) x (q^2, q^2) product.

    ``(T A T')_ab = sum_rs A_rs T_ar T_bs``, so the flattened stack times ``kron(T, T)'`` gives all of them
    at once (a batched matmul of 2 x 2 matrices costs ~5x more in numpy's per-matrix loop).
    """
    g, q = A.shape[0], A.shape[-1]
    out: np.ndarray = (A.reshape(g, q * q) @ np.kron(T, T).T).reshape(g, q, q)
    return out


def _chol_inv(M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse lower Cholesky factors ``L_g^-1`` (``M_g = L_g L_g'``) and log-determinants of a stack of SPD
    matrices; closed form for q = 1, 2. Raises LinAlgError if a matrix is not positive definite."""
    q = M.shape[-1]
    if q == 1:
        m = M[:, 0, 0]
        if np.any(m <= 0):
            raise np.linalg.LinAlgError("matrix not positive definite")
        return (1.0 / np.sqrt(m))[:, None, None], np.log(m)
    if q == 2:
        a, b, c = M[:, 0, 0], M[:, 1, 0], M[:, 1, 1]
        if np.any(a <= 0):
            raise np.linalg.LinAlgError("matrix not positive definite")
        l00 = np.sqrt(a)
        l10 = b / l00
        s = c - l10 * l10
        if np.any(s <= 0):
            raise np.linalg.LinAlgError("matrix not positive definite")
        l11 = np.sqrt(s)
        Linv = np.zeros_like(M)
        Linv[:, 0, 0], Linv[:, 1, 1] = 1.0 / l00, 1.0 / l11
        Linv[:, 1, 0] = -l10 / (l00 * l11)
        return Linv, np.log(a) + np.log(s)
    L = np.linalg.cholesky(M)
    return np.linalg.inv(L), 2.0 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1)


#: groups per block of the per-group sums (a (CHUNK, 2, 25) block of doubles is 0.8 MB: it stays in cache)
CHUNK = 2048


def _chunks(g: int) -> list[slice]:
    return [slice(i, min(i + CHUNK, g)) for i in range(0, g, CHUNK)]


def gsum(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``sum_g A_g' B_g`` for stacks (G, q, m) and (G, q, k) as one BLAS product -> (m, k)."""
    out: np.ndarray = A.reshape(-1, A.shape[-1]).T @ B.reshape(-1, B.shape[-1])
    return out


@dataclass(frozen=True)
class PLS:
    """The solution of the penalised least-squares problem at one theta.

    Attributes
    ----------
    theta, T : the covariance parameters and the factor they build.
    H : per group ``T M_g^-1 T'`` (G, q, q) with ``M_g = T'Z_g'Z_g T + I``, so that
        ``V_g^-1 = I - Z_g H_g Z_g'`` (Woodbury).
    C, C_chol : ``X'V^-1 X = RX'RX`` (unscaled) and its lower Cholesky factor.
    beta : fixed effects; ``r2`` penalised residual sum of squares.
    ldL2, ldRX2 : ``sum_g log|M_g|`` (= log|L L'|) and ``log|RX'RX|``.
    """

    theta: np.ndarray
    T: np.ndarray
    H: np.ndarray
    C: np.ndarray
    C_chol: np.ndarray
    beta: np.ndarray
    r2: float
    ldL2: float
    ldRX2: float
    Zte: np.ndarray

    def b(self) -> np.ndarray:
        """Conditional modes (BLUPs) of the random effects per group (G, q): ``H_g Z_g'(y_g - X_g beta)``.

        Equals lme4's ``T u`` with ``u = L'^-1 (c_u - R_ZX beta)``.
        """
        u: np.ndarray = (self.H @ self.Zte[..., None])[..., 0]
        return u

    def unscaled_cov(self) -> np.ndarray:
        """``(X'V^-1 X)^-1``; times sigma^2 it is the fixed-effects covariance."""
        inv = np.linalg.inv(self.C_chol)
        return inv.T @ inv


def solve_pls(d: Design, theta: np.ndarray) -> PLS:
    """Solve the PLS problem at ``theta`` (see the module docstring).

    ``sum_g R_ZX,g' R_ZX,g = sum_g Z_g'X' H_g Z_g'X`` and ``|c_u,g|^2 = Z_g'y' H_g Z_g'y``,
    so only ``H_g`` and ``log|M_g|`` are needed per group, and the sums over
    groups are single matrix products.

    Raises
    ------
    numpy.linalg.LinAlgError : X'V^-1 X is not positive definite (rank-deficient X).
    """
    q, g = d.q, d.n_groups
    theta = np.asarray(theta, dtype=float)
    T = make_T(theta, q)
    M = congruence(d.ZtZ, T.T) + np.eye(q)
    Linv, logdet = _chol_inv(M)
    Ut = (Linv.reshape(g * q, q) @ T.T).reshape(g, q, q)  # U_g' = L_g^-1 T', so H_g = U_g U_g'
    H = congruence(np.linalg.inv(M) if q > 2 else inv_logdet(M)[0], T)  # T M^-1 T' (faster than U U')
    ku = (Ut @ d.Zty[..., None]).reshape(g, q)  # lme4's c_u: U_g' Z_g'y
    # lme4's R_ZX = U_g' Z_g'X_g, (q, p) per group, summed as R_ZX'R_ZX and R_ZX'c_u chunk by chunk so
    # that each block stays in cache (at 10^5 clients whole-array temporaries made each solve 10x slower)
    C, rhs = d.XtX.copy(), d.Xty.copy()
    for sl in _chunks(g):
        K = (Ut[sl] @ d.ZtX[sl]).reshape(-1, d.p)
        C -= K.T @ K
        rhs -= K.T @ ku[sl].ravel()
    C = (C + C.T) / 2.0
    C_chol = np.linalg.cholesky(C)
    ku = ku.ravel()
    cbeta = np.linalg.solve(C_chol, rhs)
    beta = np.linalg.solve(C_chol.T, cbeta)
    r2 = float(d.yty - ku @ ku - cbeta @ cbeta)
    Zte = d.Zty - d.ZtX @ beta
    return PLS(
        theta=theta,
        T=T,
        H=H,
        C=C,
        C_chol=C_chol,
        beta=beta,
        r2=max(r2, 0.0),
        ldL2=float(logdet.sum()),
        ldRX2=float(2.0 * np.sum(np.log(np.diag(C_chol)))),
        Zte=Zte,
    )


def deviance_from_pls(d: Design, s: PLS, reml: bool) -> float:
    """The profiled deviance (ML) or REML criterion, as lme4's ``deviance()`` / ``REMLcrit()``."""
    n, p = d.n_obs, d.p
    if s.r2 <= 0:
        return float("inf")
    if reml:
        m = n - p
        return float(s.ldL2 + s.ldRX2 + m * (1.0 + LOG_2PI + np.log(s.r2 / m)))
    return float(s.ldL2 + n * (1.0 + LOG_2PI + np.log(s.r2 / n)))


def deviance(d: Design, theta: np.ndarray, reml: bool) -> float:
    """Profiled deviance at ``theta`` (inf where the PLS system cannot be solved)."""
    try:
        return deviance_from_pls(d, solve_pls(d, theta), reml)
    except np.linalg.LinAlgError:
        return float("inf")


@dataclass(frozen=True)
class Blocks:
    """Per-group Woodbury pieces at one theta (everything relative to sigma^2 = 1).

    ``Vi_Z`` = Z'V^-1 Z (G,q,q); ``P`` = Z'V^-1 X (G,q,p); ``w`` = Z'V^-1 e (G,q);
    ``H`` = T M^-1 T' (G,q,q) so that ``V_g^-1 = I - Z_g H_g Z_g'``.
    """

    H: np.ndarray
    ZVZ: np.ndarray
    P: np.ndarray
    w: np.ndarray


def blocks(d: Design, s: PLS) -> Blocks:
    """Woodbury pieces of :class:`Blocks` from the sufficient statistics."""
    ZtZH = d.ZtZ @ s.H
    ZVZ = d.ZtZ - ZtZH @ d.ZtZ
    P = d.ZtX - ZtZH @ d.ZtX
    w = s.Zte - (ZtZH @ s.Zte[..., None])[..., 0]
    return Blocks(H=s.H, ZVZ=ZVZ, P=P, w=w)


@dataclass(frozen=True)
class Sums:
    """The q x q sums over groups that the gradient is assembled from, at one theta (relative to sigma^2 = 1).

    ``A = sum_g Z_g'V_g^-1 Z_g``, ``W = sum_g w_g w_g'`` with ``w_g = Z_g'V_g^-1 e_g``, and the REML term
    ``B = sum_g P_g (X'V^-1 X)^-1 P_g'`` (zeros for ML); ``r2`` the penalised RSS.
    """

    A: np.ndarray
    W: np.ndarray
    B: np.ndarray
    r2: float


def sums(d: Design, s: PLS, reml: bool) -> Sums:
    """:class:`Sums` from the sufficient statistics, never forming a (G, q, p) block other than one product.

    With ``N_g = I - Z_g'Z_g H_g``: ``Z_g'V_g^-1 Z_g = N_g Z_g'Z_g``, ``w_g = N_g Z_g'e_g`` and
    ``P_g = N_g Z_g'X_g``, so ``P_g C^-1 P_g' = N_g D_g N_g'`` with ``D_g = Y_g Y_g'``,
    ``Y_g = Z_g'X_g R^-1`` (``C = R'R``): one (G q, p) x (p, p) product per theta.
    """
    q, p, g = d.q, d.p, d.n_groups
    N = np.eye(q) - d.ZtZ @ s.H
    A = (N @ d.ZtZ).sum(axis=0)
    w = np.einsum("gar,gr->ga", N, s.Zte)
    W = w.T @ w
    if reml:
        Rinv_t = np.linalg.inv(s.C_chol).T
        D = np.empty((g, q, q))
        for sl in _chunks(g):
            Y = (d.ZtX[sl].reshape(-1, p) @ Rinv_t).reshape(-1, q, p)  # one product, not one per group
            for a in range(q):
                for b in range(a, q):
                    D[sl, a, b] = D[sl, b, a] = np.einsum("gj,gj->g", Y[:, a], Y[:, b])
        B = (N @ D @ N.transpose(0, 2, 1)).sum(axis=0)
    else:
        B = np.zeros((q, q))
    return Sums(A=A, W=W, B=B, r2=s.r2)


def s_from_sums(d: Design, sm: Sums, reml: bool, scale: float | None = None) -> np.ndarray:
    """The q x q matrix S with d deviance / d theta_k = tr(S dG_k).

    ``scale`` None profiles sigma^2 (the criterion optimised); a value gives the
    derivative of the deviance at that fixed sigma^2 (``m / r2`` becomes ``1 / scale``).
    """
    S = sm.A - (sm.W * (d.n_obs - (d.p if reml else 0)) / sm.r2 if scale is None else sm.W / scale)
    if reml:
        S = S - sm.B
    sym: np.ndarray = (S + S.T) / 2.0
    return sym


def grad_from_s(S: np.ndarray, T: np.ndarray, q: int) -> np.ndarray:
    """``tr(S dG_k)`` for every theta_k: ``2 (S T)[r_k, c_k]``."""
    ST = S @ T
    return np.array([2.0 * ST[r, c] for r, c in theta_index(q)])


def gradient(d: Design, theta: np.ndarray, reml: bool) -> np.ndarray:
    """Exact gradient of :func:`deviance` with respect to theta."""
    s = solve_pls(d, theta)
    return grad_from_s(s_from_sums(d, sums(d, s, reml), reml), s.T, d.q)


def deviance_and_gradient(d: Design, theta: np.ndarray, reml: bool) -> tuple[float, np.ndarray]:
    """Both at once (one PLS solve), for the optimiser; (inf, zeros) where the system cannot be solved."""
    try:
        s = solve_pls(d, theta)
    except np.linalg.LinAlgError:
        return float("inf"), np.zeros_like(np.asarray(theta, dtype=float))
    dev = deviance_from_pls(d, s, reml)
    if not np.isfinite(dev):
        return dev, np.zeros_like(s.theta)
    return dev, grad_from_s(s_from_sums(d, sums(d, s, reml), reml), s.T, d.q)
