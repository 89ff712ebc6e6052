"""Optimiser: minimise the profiled deviance over theta, then prove the optimum.

lme4's ``optimizeLmer`` step. L-BFGS-B (scipy) works on theta with the exact
gradient of :mod:`.objective` and lme4's bounds (diagonal of T >= 0), from a
moment estimate, until its projected gradient is below ``GRAD_TOL``; if its
result does not pass the checks below, a few projected Newton steps polish it,
using a Hessian obtained by central differences of the exact gradient (and if
even that cannot be proven, L-BFGS-B goes on to a tight tolerance). A
component stuck at its bound on a saddle is restarted from the interior. Every
point is solved once per fit (:class:`.evaluator.Evaluator`): the proof, the
polish and the Satterthwaite df step to the same ``theta +/- h e_k``.

Convergence is *declared*, not assumed from the optimiser's flag
(:func:`check_optimum`):

- the projected gradient (components at an active bound that push outwards are
  set to 0) has max-abs below ``GRAD_TOL`` (1e-2 deviance units per unit of
  theta); the gradient scaled by the Hessian's Cholesky factor (lme4's
  ``check.conv.grad`` quantity, tolerance 2e-3 there) has max-abs below
  ``SCALED_GRAD_TOL`` = 1e-3; and the Newton decrement ``g' H^-1 g / 2`` on
  the free components is below ``DECREMENT_TOL`` (1e-8: less than that
  deviance left to gain);
- a final check confirms a local minimum: the Hessian on the free components is
  positive definite, and moving each component at its bound into the interior
  does not lower the deviance.

An optimum that passes is then *polished*: Newton steps until the decrement is below
``POLISH_TOL`` (1e-20, the float limit). L-BFGS-B alone stops wherever its tolerances first pass, and
that point moves with the start and with rounding inside the BLAS (``OPENBLAS_CORETYPE=Prescott`` moved
fixed effects in the 6th-8th significant digit); Newton converges quadratically to the one fixed point,
after which every estimate agrees to at least ~9 significant digits across CPU kernels and starts
(``benchmarks/digits_certain.py``), the finite-difference quantities (Satterthwaite df, the Hessian's
smallest eigenvalue) being the least certain. Outputs are written at ``store.SIGNIFICANT_DIGITS`` = 6,
safely inside that; the convergence checks themselves, noise at a polished optimum, are published on
the fixed grids of ``PUBLISHED_RESOLUTION``.

A fit is *singular* as in lme4's ``isSingular``: some diagonal element of T
(a bounded theta) is below ``SINGULAR_TOL`` = 1e-4.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize

from analysis.model.lmm import objective as ob
from analysis.model.lmm.blas import single_threaded
from analysis.model.lmm.design import Design
from analysis.model.lmm.evaluator import Evaluator

GRAD_TOL = 1e-2
SCALED_GRAD_TOL = 1e-3
DECREMENT_TOL = 1e-8
SINGULAR_TOL = 1e-4
BOUND_EPS = 1e-10
NEWTON_STEPS = 20
POLISH_TOL = 1e-20
#: absolute grid on which the convergence checks are published (far below GRAD_TOL, SCALED_GRAD_TOL,
#: DECREMENT_TOL): at a polished optimum the raw values are float noise that differs between CPUs
PUBLISHED_RESOLUTION = {"gradient_max": 1e-8, "scaled_gradient_max": 1e-8, "newton_decrement": 1e-14}
#: significant digits of the published smallest Hessian eigenvalue (finite differences: ~8 digits certain)
PUBLISHED_HESSIAN_DIGITS = 4
MAX_STARTS = 6
#: L-BFGS-B's projected-gradient tolerances, tried in turn: first ``GRAD_TOL`` (the Newton steps
#: that follow converge quadratically from there, while L-BFGS-B's line search spent ~15 more evaluations
#: in the deviance's rounding noise), then, if no optimum could be proven from that point, lme4-tight
LBFGSB_GTOL = (GRAD_TOL, 1e-6)


@dataclass
class Optimum:
    """theta at the optimum and the evidence that it is one.

    Attributes
    ----------
    theta : the estimate; ``deviance`` the criterion there.
    converged : every check of :func:`check_optimum` passed.
    singular : a diagonal element of T below ``SINGULAR_TOL``.
    reason : why convergence was not declared ('' when converged).
    checks : ``gradient_max`` (projected), ``newton_decrement``, ``hessian_min_eig``
        (free components), ``boundary_ok``, ``iterations``, ``evaluations``, ``optimizer``.
    """

    theta: np.ndarray
    deviance: float
    converged: bool
    singular: bool
    reason: str
    checks: dict[str, Any] = field(default_factory=dict)
    #: wall seconds by piece: ``lbfgsb``, ``polish``, ``proof`` (benchmarks/bench_fit.py prints them)
    seconds: dict[str, float] = field(default_factory=dict, compare=False)
    #: the points solved during the fit, reused by the Satterthwaite df (same finite-difference steps)
    evaluator: Evaluator | None = field(default=None, repr=False, compare=False)


def hessian_fd(grad: Callable[[np.ndarray], np.ndarray], x: np.ndarray, lower: np.ndarray | None = None) -> np.ndarray:
    """Symmetrised central-difference Jacobian of an exact gradient function.

    Steps are ``1e-5 * max(1, |x_k|)``; a component within one step of its lower
    bound uses a one-sided (forward) difference so the bound is respected.
    """
    x = np.asarray(x, dtype=float)
    k = x.size
    H = np.empty((k, k))
    for j in range(k):
        h = 1e-5 * max(1.0, abs(x[j]))
        e = np.zeros(k)
        e[j] = h
        if lower is not None and np.isfinite(lower[j]) and x[j] - h < lower[j]:
            H[:, j] = (grad(x + e) - grad(x)) / h
        else:
            H[:, j] = (grad(x + e) - grad(x - e)) / (2.0 * h)
    return (H + H.T) / 2.0


def _free(theta: np.ndarray, g: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Components not held at their bound (at the bound with a gradient pushing outwards = held)."""
    at = np.isfinite(lower) & (theta <= lower + BOUND_EPS)
    free: np.ndarray = ~(at & (g >= 0))
    return free


def projected_gradient(theta: np.ndarray, g: np.ndarray, lower: np.ndarray) -> np.ndarray:
    pg: np.ndarray = np.where(_free(theta, g, lower), g, 0.0)
    return pg


def _newton_polish(
    ev: Evaluator, theta: np.ndarray, lower: np.ndarray, stop: float = DECREMENT_TOL * 1e-2
) -> tuple[np.ndarray, float, int]:
    """Projected Newton steps with backtracking; stops when the decrement is below ``stop``."""
    f, g = ev.deviance_and_gradient(theta)
    n_eval = 1
    for _ in range(NEWTON_STEPS):
        free = _free(theta, g, lower)
        if not free.any():
            break
        H = hessian_fd(ev.gradient, theta, lower)[np.ix_(free, free)]
        n_eval += 2 * theta.size
        try:
            eig = np.linalg.eigvalsh(H)
        except np.linalg.LinAlgError:
            break
        if eig.min() <= 0:
            break
        step = np.zeros_like(theta)
        step[free] = -np.linalg.solve(H, g[free])
        if -(g[free] @ step[free]) / 2.0 < stop:
            break
        t = 1.0
        while t > 1e-8:
            cand = np.maximum(theta + t * step, lower)
            fc, gc = ev.deviance_and_gradient(cand)
            n_eval += 1
            if fc <= f + 1e-12 * max(1.0, abs(f)):
                break
            t /= 2.0
        else:
            break
        theta, f, g = cand, fc, gc
    return theta, f, n_eval


def check_optimum(
    d: Design, theta: np.ndarray, reml: bool, ev: Evaluator | None = None
) -> tuple[bool, str, dict[str, Any]]:
    """Is ``theta`` a provable local minimum of the deviance? (converged, reason, checks).

    ``ev``: the fit's :class:`~.evaluator.Evaluator`, so points already solved are not solved again.
    """
    q = d.q
    lower = ob.lower_bounds(q)
    ev = ev if ev is not None else Evaluator(d, reml)
    f, g = ev.deviance_and_gradient(theta)
    checks: dict[str, Any] = {"deviance": f}
    if not np.isfinite(f):
        return False, "the deviance is not finite at the estimate", checks
    pg = projected_gradient(theta, g, lower)
    checks["gradient_max"] = float(np.max(np.abs(pg))) if pg.size else 0.0
    free = _free(theta, g, lower) & ~(np.isfinite(lower) & (theta <= lower + SINGULAR_TOL))
    problems = []
    if checks["gradient_max"] > GRAD_TOL:
        problems.append(f"projected gradient {checks['gradient_max']:.3g} > {GRAD_TOL:g}")
    H = hessian_fd(ev.gradient, theta, lower)
    if free.any():
        Hf = H[np.ix_(free, free)]
        eig = np.linalg.eigvalsh(Hf)
        checks["hessian_min_eig"] = float(eig.min())
        if eig.min() <= 0:
            problems.append(f"the deviance's Hessian is not positive definite (smallest eigenvalue {eig.min():.3g})")
        else:
            dec = float(g[free] @ np.linalg.solve(Hf, g[free]) / 2.0)
            checks["newton_decrement"] = dec
            scaled = np.linalg.solve(np.linalg.cholesky(Hf), g[free])
            checks["scaled_gradient_max"] = float(np.max(np.abs(scaled)))
            if checks["scaled_gradient_max"] > SCALED_GRAD_TOL:
                problems.append(f"scaled gradient {checks['scaled_gradient_max']:.3g} > {SCALED_GRAD_TOL:g}")
            if dec > DECREMENT_TOL:
                problems.append(f"Newton decrement {dec:.3g} > {DECREMENT_TOL:g} (deviance still falling)")
    else:
        checks["hessian_min_eig"] = None
        checks["newton_decrement"] = 0.0
    # components at (or numerically at) their bound: stepping into the interior must not help.
    # (The gradient of a diagonal element of T is exactly 0 where its column of T is 0, so a
    # gradient-based optimiser can stop there on a saddle.)
    boundary_ok, best_f = True, f
    for k in np.flatnonzero(np.isfinite(lower) & (theta <= lower + SINGULAR_TOL)):
        for h in (1e-3, 1e-2, 1e-1):
            t2 = theta.copy()
            t2[k] = lower[k] + h
            f2 = ev.deviance(t2)
            if f2 < best_f - 1e-8 * max(1.0, abs(f)):
                boundary_ok, best_f = False, f2
                checks["escape"] = t2
    checks["boundary_ok"] = boundary_ok
    if not boundary_ok:
        problems.append("the deviance falls when a variance at its bound moves into the interior")
    return not problems, "; ".join(problems), checks


def is_singular(theta: np.ndarray, q: int, tol: float = SINGULAR_TOL) -> bool:
    """lme4's ``isSingular``: a bounded theta (diagonal of T) below ``tol``."""
    lower = ob.lower_bounds(q)
    return bool(np.any(theta[np.isfinite(lower)] < tol))


@single_threaded
def optimize_theta(d: Design, reml: bool, starts: Sequence[np.ndarray | None] | None = None) -> Optimum:
    """Minimise the profiled deviance from each start in turn; return the first provable optimum.

    The default start is a moment estimate (:func:`moment_start`; it halves the
    evaluations on clinic data), then lme4's (T = identity); if none passes :func:`check_optimum`, the best
    attempt is returned with ``converged=False`` and the reason.
    """
    q = d.q
    lower = ob.lower_bounds(q)
    bounds = [(0.0 if np.isfinite(lo) else None, None) for lo in lower]
    starts = starts if starts is not None else [moment_start(d), ob.theta_start(q)]
    best: Optimum | None = None
    queue: list[np.ndarray] = [np.asarray(t, dtype=float) for t in starts if t is not None]
    i = 0
    ev = Evaluator(d, reml)
    seconds = {"lbfgsb": 0.0, "polish": 0.0, "proof": 0.0}
    clock = time.perf_counter()

    def lap(piece: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[piece] += now - clock
        clock = now

    while i < len(queue) and i < MAX_STARTS:
        start = queue[i]
        x0, nit, nfev, n_newton = start, 0, 0, 0
        for gtol in LBFGSB_GTOL:
            res = optimize.minimize(
                ev.deviance_and_gradient,
                x0,
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                options={"maxiter": 1000, "ftol": 1e-13, "gtol": gtol, "maxcor": 20},
            )
            nit, nfev = nit + int(res.nit), nfev + int(res.nfev)
            theta = np.maximum(np.asarray(res.x, dtype=float), lower)
            lap("lbfgsb")
            ok, reason, checks = check_optimum(d, theta, reml, ev)
            lap("proof")
            if not ok and "escape" not in checks:
                # polish only when L-BFGS-B stopped short of a provable optimum
                theta, _, n_more = _newton_polish(ev, theta, lower)
                n_newton += n_more
                lap("polish")
                ok, reason, checks = check_optimum(d, theta, reml, ev)
                lap("proof")
            if ok or "escape" in checks:
                break
            x0 = theta  # Newton could not finish from there: let L-BFGS-B go on to its tight tolerance
        if ok:
            # Converge to the float limit: L-BFGS-B stops where its tolerances pass, and where that is
            # depends on rounding inside the BLAS (another CPU kernel) and on the start, moving the
            # estimates in the 6th-8th significant digit. Newton steps converge quadratically to the
            # one fixed point, so the published digits (store.SIGNIFICANT_DIGITS) do not depend on them.
            polished, _, n_more = _newton_polish(ev, theta, lower, stop=POLISH_TOL)
            lap("polish")
            n_newton += n_more
            ok2, reason2, checks2 = check_optimum(d, polished, reml, ev)
            lap("proof")
            if ok2:
                theta, ok, reason, checks = polished, ok2, reason2, checks2
        escape = checks.pop("escape", None)
        if escape is not None:
            queue.insert(i + 1, escape)  # restart from the better interior point
        checks.update(
            iterations=nit,
            evaluations=nfev + n_newton,
            pls_solves=ev.solves,
            optimizer="L-BFGS-B + projected Newton",
            start=i,
        )
        opt = Optimum(
            theta=theta,
            deviance=float(checks["deviance"]),
            converged=ok,
            singular=is_singular(theta, q),
            reason=reason,
            checks=checks,
            seconds=dict(seconds),
            evaluator=ev,
        )
        if ok:
            return opt
        if best is None or opt.deviance < best.deviance:
            best = opt
        i += 1
    assert best is not None
    return best


def moment_start(d: Design) -> np.ndarray | None:
    """theta from a method-of-moments estimate of the random-effects covariance, relative to sigma^2.

    Per-group least-squares fits of the OLS residuals on Z give coefficients whose covariance is the
    random-effects covariance plus their sampling covariance; the within-group residual variance
    ``s_w^2`` (pooled over groups) estimates sigma^2, so ``cov(coefs) - s_w^2 mean((Z_g'Z_g)^-1)``
    estimates sigma^2 T T' (eigenvalues clipped to be positive). On clinic data it starts L-BFGS-B
    within a few deviance units of the optimum. Groups with fewer than q + 1 observations or a
    rank-deficient Z are skipped; None if under 3 remain (then lme4's identity start is used).
    """
    q = d.q
    try:
        beta = np.linalg.solve(d.XtX, d.Xty)
    except np.linalg.LinAlgError:
        return None
    Zte = d.Zty - d.ZtX @ beta
    ok = (d.n_per_group > q) & _full_rank(d.ZtZ)
    if ok.sum() < 3:
        return None
    ZtZ_inv = ob.inv_logdet(d.ZtZ[ok])[0]
    coefs = (ZtZ_inv @ Zte[ok][..., None])[..., 0]
    resid = d.y - d.X @ beta
    ete = np.bincount(d.group_codes, weights=resid * resid, minlength=d.n_groups)[ok]
    rss_within = float(np.sum(ete - np.sum(Zte[ok] * coefs, axis=1)))
    scale = rss_within / float(np.sum(d.n_per_group[ok] - q))
    if not scale > 0:
        return None
    cov = np.atleast_2d(np.cov(coefs, rowvar=False)) - scale * ZtZ_inv.mean(axis=0)
    eig, vec = np.linalg.eigh((cov + cov.T) / 2.0 / scale)
    eig = np.clip(eig, max(eig.max(), 1e-6) * 1e-3, None)
    T = np.linalg.cholesky((vec * eig) @ vec.T)
    return np.array([T[r, c] for r, c in ob.theta_index(q)])


def _full_rank(A: np.ndarray) -> np.ndarray:
    """Per matrix of a stack of small symmetric PSD matrices: rank full (``np.linalg.matrix_rank``'s
    tolerance, closed form for 1 x 1 and 2 x 2: LAPACK's per-matrix SVD took 0.2 s at 10^5 clients)."""
    q = A.shape[-1]
    eps = np.finfo(float).eps
    if q == 1:
        full: np.ndarray = A[:, 0, 0] > 0
        return full
    if q == 2:
        a, b, c = A[:, 0, 0], A[:, 0, 1], A[:, 1, 1]
        half_gap = np.hypot((a - c) / 2.0, b)
        big, small = (a + c) / 2.0 + half_gap, (a + c) / 2.0 - half_gap
        full = (big > 0) & (small > big * 2 * eps)
        return full
    full = np.linalg.matrix_rank(A) == q
    return full
