"""The network lead's driver: choose the columns, optimise theta in batched Newton rounds, prove convergence.

Round 0 asks every clinic for counts and its within-clinic ``X'X`` (summed over clinics by the
transport); the lead drops common columns that no client has, levels below
:attr:`Rules.min_level_clients` and columns aliased with others (as lme4 drops rank-deficient columns),
and checks the parameter-to-client ratio. Every later round asks for the pieces
(:mod:`.pieces`) at a small batch of thetas: the current point and a step either side in each
coordinate, so that one round gives the REML criterion, its exact gradient and a central-difference
Hessian of that gradient (the rule of :func:`analysis.model.lmm.optimize.hessian_fd`). The lead takes a
projected Newton step (damped where the Hessian is not positive definite, halved while the criterion
does not fall) until the Newton decrement is at float level, then applies the single-frame engine's
convergence proof (projected gradient, positive-definite Hessian, scaled gradient, decrement) and its
singularity rule. The last round's batch also gives lmerTest's Satterthwaite Hessian in
``varpar = (theta, sigma)``, so the df need no extra round.

A network fit thus costs one round per Newton iteration (typically 6-12), each with at most
``2 * 3 + 1`` thetas, and nothing about one clinic reaches the lead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from analysis.errors import OutcomesError
from analysis.model.lmm import objective as ob
from analysis.model.lmm.inference import ginv
from analysis.model.lmm.optimize import (
    BOUND_EPS,
    DECREMENT_TOL,
    GRAD_TOL,
    SCALED_GRAD_TOL,
    SINGULAR_TOL,
    projected_gradient,
)
from analysis.network import combine as cb
from analysis.network import pieces as pz
from analysis.network.protocol import Request, Total
from analysis.network.spec import N_THETA, Rules, Spec, headline_weights

Q = 2
POLISH_TOL = 1e-18
MAX_HALVINGS = 30


class NetworkFitError(OutcomesError):
    """The network model cannot be fitted; the message says why (no partial result is written)."""

    exit_code = 1


def batch(theta: np.ndarray, lower: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """The thetas of one round and, per coordinate, the rows of its plus and minus points."""
    rows = [theta]
    where = []
    for j in range(theta.size):
        h = 1e-5 * max(1.0, abs(theta[j]))
        plus = theta.copy()
        plus[j] += h
        rows.append(plus)
        if np.isfinite(lower[j]) and theta[j] - h < lower[j]:
            where.append((len(rows) - 1, 0, j))  # forward difference against the centre
        else:
            minus = theta.copy()
            minus[j] -= h
            rows.append(minus)
            where.append((len(rows) - 2, len(rows) - 1, j))
    return np.array(rows), where


@dataclass
class NetworkFit:
    """The :class:`analysis.network.protocol.Driver` of the one-stage network model."""

    spec: Spec
    rules: Rules
    log: list[str] = field(default_factory=list)
    outcome: dict[str, Any] | None = None
    _round: int = 0
    _theta: np.ndarray | None = None
    _cur: dict[str, Any] | None = None
    _step: np.ndarray | None = None
    _t: float = 1.0
    _clinics: int = 0
    _network: dict[str, Any] = field(default_factory=dict)
    lower: np.ndarray = field(default_factory=lambda: ob.lower_bounds(Q))

    def result(self) -> dict[str, Any]:
        """The fit's numbers, verdict and checks (after the last round)."""
        if self.outcome is None:
            raise NetworkFitError("the network fit has not finished")
        return self.outcome

    def first(self) -> Request:
        self._round = 0
        return Request(round=0, kind="summary", spec=self.spec.to_json(), thetas=np.zeros((0, N_THETA)))

    def next(self, total: Total) -> Request | None:
        if self._round == 0:
            self._choose_columns(total)
            self._theta = ob.theta_start(Q)
            return self._ask(self._theta)
        return self._newton(total)

    # ---------------------------------------------------------------- round 0
    def _choose_columns(self, total: Total) -> None:
        self._clinics = total.n
        names = _column_names(self.spec)
        pc = len(names)
        v = total.vector
        n_clinics, n_clients, n_obs = int(round(v[0])), int(round(v[1])), int(round(v[2]))
        counts = v[3 : 3 + pc]
        xtx = v[3 + pc :].reshape(pc, pc)
        keep, notes = [], []
        for j, name in enumerate(names):
            c = int(round(counts[j]))
            if c == 0:
                continue
            if name.startswith("C(") and (
                c < self.rules.min_level_clients or n_clients - c < self.rules.min_level_clients
            ):
                notes.append(
                    f"{name}: fewer than {self.rules.min_level_clients} clients on one side in the network; "
                    "merged into the reference"
                )
                continue
            keep.append(j)
        keep = _independent(xtx, keep)
        dropped = [n for j, n in enumerate(names) if j not in keep and int(round(counts[j])) > 0]
        columns = [names[j] for j in keep]
        for needed in ("week", "hip", "week:hip"):
            if needed not in columns:
                raise NetworkFitError(f"the term {needed} of the estimand is not estimable in the network's records")
        p = len(columns) + n_clinics
        if p > self.rules.max_parameter_ratio * n_clients:
            raise NetworkFitError(
                f"{p} fixed effects for {n_clients} clients: more than {self.rules.max_parameter_ratio:g} per client "
                "(disclosure rule max_parameter_ratio)"
            )
        self.spec = self.spec.with_columns(columns)
        self._network = {
            "clinics": n_clinics,
            "clients": n_clients,
            "observations": n_obs,
            "dropped_columns": dropped,
            "notes": notes,
        }

    # ---------------------------------------------------------------- Newton rounds
    def _ask(self, theta: np.ndarray) -> Request:
        self._round += 1
        rows, self._where = batch(theta, self.lower)
        return Request(round=self._round, kind="pieces", spec=self.spec.to_json(), thetas=rows)

    def _evaluations(self, total: Total, rows: int) -> list[cb.Evaluation]:
        pc = len(self.spec.columns or [])
        k = pz.size(Q, pc)
        if total.vector.size != rows * k:
            raise NetworkFitError(f"round {self._round}: {total.vector.size} values, expected {rows * k}")
        thetas, _ = batch(self._theta, self.lower)  # type: ignore[arg-type]
        return [
            cb.evaluate(pz.unpack(total.vector[i * k : (i + 1) * k], Q, pc), thetas[i], total.n) for i in range(rows)
        ]

    def _newton(self, total: Total) -> Request | None:
        assert self._theta is not None
        rows = batch(self._theta, self.lower)[0].shape[0]
        try:
            evs = self._evaluations(total, rows)
        except np.linalg.LinAlgError as exc:
            raise NetworkFitError(f"round {self._round}: the fixed effects are not estimable ({exc})") from None
        centre = evs[0]
        f, g = centre.deviance, centre.gradient()
        H = np.empty((N_THETA, N_THETA))
        for i_plus, i_minus, j in self._where:
            gm = evs[i_minus].gradient()
            H[:, j] = (evs[i_plus].gradient() - gm) / (evs[i_plus].theta[j] - evs[i_minus].theta[j])
        H = (H + H.T) / 2.0
        if self._cur is not None and not f <= self._cur["f"] + 1e-12 * max(1.0, abs(self._cur["f"])):
            self._t /= 2.0  # the criterion rose: halve the step from the accepted point
            if self._t < 2.0**-MAX_HALVINGS:
                return self._finish(self._cur, "no step lowers the REML criterion")
            assert self._step is not None
            self._theta = np.maximum(self._cur["theta"] + self._t * self._step, self.lower)
            return self._ask(self._theta)
        self._cur = {"theta": self._theta, "f": f, "g": g, "H": H, "evs": evs, "where": self._where}
        self._t = 1.0
        if self._round >= self.rules.max_rounds - 1:
            return self._finish(self._cur, f"no convergence within {self.rules.max_rounds} rounds")
        free = ~((self._theta <= self.lower + BOUND_EPS) & (g >= 0))
        step = np.zeros(N_THETA)
        Hf, gf = H[np.ix_(free, free)], g[free]
        eig = np.linalg.eigvalsh(Hf) if free.any() else np.array([1.0])
        if eig.min() <= 0:
            Hf = Hf + (abs(eig.min()) + 1e-3 * max(1.0, abs(eig.max()))) * np.eye(len(gf))
        if free.any():
            step[free] = -np.linalg.solve(Hf, gf)
        if eig.min() > 0 and -(gf @ step[free]) / 2.0 < POLISH_TOL * max(1.0, abs(f)):
            return self._finish(self._cur, "")
        big = np.max(np.abs(step))
        if big > 1.0:
            step /= big
        self._step = step
        self._theta = np.maximum(self._theta + step, self.lower)
        if np.allclose(self._theta, self._cur["theta"], rtol=0, atol=1e-15):
            return self._finish(self._cur, "")
        return self._ask(self._theta)

    # ---------------------------------------------------------------- the verdict and the numbers
    def _finish(self, cur: dict[str, Any], stop_reason: str) -> Request | None:
        theta, g, H, evs = cur["theta"], cur["g"], cur["H"], cur["evs"]
        problems = [stop_reason] if stop_reason else []
        pg = projected_gradient(theta, g, self.lower)
        checks: dict[str, Any] = {"deviance": cur["f"], "gradient_max": float(np.max(np.abs(pg)))}
        if checks["gradient_max"] > GRAD_TOL:
            problems.append(f"projected gradient {checks['gradient_max']:.3g} > {GRAD_TOL:g}")
        free = ~(np.isfinite(self.lower) & (theta <= self.lower + SINGULAR_TOL))
        eig = np.linalg.eigvalsh(H[np.ix_(free, free)])
        checks["hessian_min_eig"] = float(eig.min())
        if eig.min() <= 0:
            problems.append(f"the criterion's Hessian is not positive definite (smallest eigenvalue {eig.min():.3g})")
        else:
            Hf, gf = H[np.ix_(free, free)], g[free]
            checks["newton_decrement"] = float(gf @ np.linalg.solve(Hf, gf) / 2.0)
            checks["scaled_gradient_max"] = float(np.max(np.abs(np.linalg.solve(np.linalg.cholesky(Hf), gf))))
            if checks["scaled_gradient_max"] > SCALED_GRAD_TOL:
                problems.append(f"scaled gradient {checks['scaled_gradient_max']:.3g} > {SCALED_GRAD_TOL:g}")
            if checks["newton_decrement"] > DECREMENT_TOL:
                problems.append(f"Newton decrement {checks['newton_decrement']:.3g} > {DECREMENT_TOL:g}")
        singular = bool(np.any(theta[[0, 2]] < SINGULAR_TOL))
        if singular:
            problems.append("singular fit: a random-effect standard deviation is estimated at zero")
        self.outcome = self._numbers(evs, cur["where"], checks) | {
            "status": "failed" if problems else "ok",
            "reason": "; ".join(problems),
            "converged": not problems,
            "singular": singular,
            "rounds": self._round,
        }
        if problems:
            self.outcome |= {k: None for k in ("estimate", "se", "df", "ci_low", "ci_high", "p_value")}
        return None

    def _numbers(
        self, evs: list[cb.Evaluation], where: list[tuple[int, int, int]], checks: dict[str, Any]
    ) -> dict[str, Any]:
        c = evs[0]
        sigma = float(np.sqrt(c.sigma2))
        Hvp = np.empty((N_THETA + 1, N_THETA + 1))
        for i_plus, i_minus, j in where:
            gm = evs[i_minus].vp_gradient(sigma)
            Hvp[:, j] = (evs[i_plus].vp_gradient(sigma) - gm) / (evs[i_plus].theta[j] - evs[i_minus].theta[j])
        h = 1e-5 * max(1.0, sigma)
        Hvp[:, N_THETA] = (c.vp_gradient(sigma + h) - c.vp_gradient(sigma - h)) / (2.0 * h)
        Hvp = (Hvp + Hvp.T) / 2.0
        A = 2.0 * ginv(Hvp)
        jac = c.vcov_jacobian(sigma)
        vcov = c.sigma2 * c.S_inv
        columns = list(self.spec.columns or [])

        def contrast(L: np.ndarray) -> dict[str, float]:
            est, var = float(L @ c.beta), float(L @ vcov @ L)
            gk = np.einsum("p,kpr,r->k", L, jac, L)
            denom = float(gk @ A @ gk)
            df = float(2.0 * var**2 / denom) if denom > 0 else float("inf")
            se = float(np.sqrt(var))
            tq = float(stats.t.ppf(1 - self.spec.alpha / 2, df))
            return {
                "estimate": est,
                "se": se,
                "df": df,
                "ci_low": est - tq * se,
                "ci_high": est + tq * se,
                "p_value": float(2 * stats.t.sf(abs(est / se), df)),
            }

        fixed = {name: contrast(np.eye(len(columns))[i]) for i, name in enumerate(columns)}
        weights = headline_weights(columns, self.spec.primary_week)
        cov_re = c.sigma2 * (c.T @ c.T.T)
        sd = np.sqrt(np.diag(cov_re))
        return contrast(weights["headline"]) | {
            "slope_difference": contrast(weights["slope_difference"]),
            "change_by_group": {
                "comparator": contrast(weights["comparator_change"]),
                "hip_focused": contrast(weights["hip_focused_change"]),
            },
            "fixed_effects": fixed,
            "random_effects": {
                "sd_intercept": float(sd[0]),
                "sd_week": float(sd[1]),
                "correlation": float(cov_re[0, 1] / (sd[0] * sd[1])) if sd.all() else None,
                "residual_variance": c.sigma2,
            },
            "theta": c.theta.tolist(),
            "reml_criterion": c.deviance,
            "checks": checks,
            "network": self._network,
            "columns": columns,
        }


def driver_from_config(config: dict[str, Any]) -> NetworkFit:
    """The lead's driver from a Flower run config (optional ``params``: the network's params.yaml)."""
    from analysis.network.spec import primary_spec
    from analysis.params import load_params

    params = load_params(Path(str(config["params"]))) if config.get("params") else load_params()
    spec = primary_spec(list(params.model.covariates), params.model.primary_week, params.model.alpha)
    return NetworkFit(spec, Rules.from_min_cell(params.report.min_cell))


def _column_names(spec: Spec) -> list[str]:
    """The common columns of the full spec, in patsy's order (built from a one-row frame of reference levels)."""
    import pandas as pd

    from analysis.model.lmm import design as dz

    row: dict[str, Any] = {"client_id": ["a", "a"], "y": [0.0, 1.0], "week": [0.0, 1.0], "hip": [0, 0]}
    for name, levels in spec.levels.items():
        row[name] = pd.Categorical([levels[0]] * 2, categories=levels)
    for term in spec.terms:
        if not term.startswith("C(") and "*" not in term:
            row[term] = [0.0, 0.0]
    names = dz.from_formula(pd.DataFrame(row), spec.formula(), spec.groups, spec.re_formula).fixed_names
    return names[1:]


def _independent(xtx: np.ndarray, candidates: list[int], tol: float = 1e-7) -> list[int]:
    """Greedy pivot-free rank check in the order given (lme4 keeps the earlier of aliased columns)."""
    keep: list[int] = []
    for j in candidates:
        idx = keep + [j]
        M = xtx[np.ix_(idx, idx)]
        scale = np.sqrt(np.maximum(np.diag(M), 1e-300))
        Ms = M / np.outer(scale, scale)
        if np.linalg.eigvalsh(Ms).min() > tol:
            keep.append(j)
    return keep
