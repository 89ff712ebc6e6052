"""The data-generating model, part 1: who the clients are, which care they start with, and their true
pain trajectories (the linear mixed model of the package docstring).

Each step is a pure function of the resolved parameters, the random stream and the earlier steps'
typed results; :func:`analysis.simulate.model.simulate_clinic` calls them in a fixed order, so the
same seed gives the same clinic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from analysis.contract import ACTIVITIES, AGE_BANDS, KNEES, SEXES
from analysis.simulate.config import draw, sigmoid


@dataclass(frozen=True)
class Clients:
    """Client characteristics (one entry per client)."""

    sex: np.ndarray
    age: np.ndarray
    activity: np.ndarray
    knee: np.ndarray
    symptom_weeks: np.ndarray  # int, 1..1040
    sitting: np.ndarray  # hours, as drawn (before blanks)
    sitting_missing: np.ndarray  # bool: recorded blank
    log_sw: np.ndarray  # ln(symptom_weeks + 1)
    run_cycle: np.ndarray  # bool
    female: np.ndarray  # bool
    age_idx: np.ndarray  # age band as 0, 1, 2, ...

    @property
    def n(self) -> int:
        return len(self.sex)


@dataclass(frozen=True)
class Exposure:
    """The focus of each client's first session (confounding by indication)."""

    hip: np.ndarray  # bool: hip or hip_and_knee
    base_focus: np.ndarray  # first session's focus
    compared: np.ndarray  # bool: first focus not 'other'


@dataclass(frozen=True)
class Trajectories:
    """Each client's true pain level and slopes (both potential outcomes), and the hip IR slope."""

    centre: float | np.ndarray  # mean ln(symptom_weeks + 1) over the compared clients (per client in a batch)
    direct: float  # direct (non-mediated) slope effect
    indirect: float  # mediated slope effect
    gamma: float  # NPRS slope per unit of hip IR slope
    level: np.ndarray  # NPRS at the first session (latent)
    slope_knee_cf: np.ndarray  # slope without hip focus
    slope_hip_cf: np.ndarray  # slope with hip focus
    slope: np.ndarray  # the slope of the care received
    ir_slope: np.ndarray  # hip internal rotation, degrees per week


def draw_clients(rng: np.random.Generator, p: dict[str, Any], n: int) -> Clients:
    """Sex, age band, activity, knee, symptom duration (right-skewed) and sitting hours."""
    sex = draw(rng, p["sex_shares"], SEXES, n)
    age = draw(rng, p["age_band_shares"], AGE_BANDS, n)
    activity = draw(rng, p["activity_shares"], ACTIVITIES, n)
    knee = draw(rng, p["knee_shares"], KNEES, n)
    # right-skewed duration; a few chronic clients beyond two years, never beyond the contract's 1040
    log_sw_draw = np.log(p["symptom_weeks_median"]) + p["symptom_weeks_log_sd"] * rng.standard_normal(n)
    sw = np.clip(np.rint(np.exp(log_sw_draw)), 1, 1040).astype(np.int64)
    sitting = np.clip(
        np.round(2 * (p["sitting_hours_mean"] + p["sitting_hours_sd"] * rng.standard_normal(n))) / 2, 0, 14
    )
    sitting_missing = rng.random(n) < p["missing_sitting"]
    return Clients(
        sex=sex,
        age=age,
        activity=activity,
        knee=knee,
        symptom_weeks=sw,
        sitting=sitting,
        sitting_missing=sitting_missing,
        log_sw=np.log(sw + 1.0),
        run_cycle=np.isin(activity, ["running", "cycling"]),
        female=sex == "F",
        age_idx=np.searchsorted(np.array(AGE_BANDS, dtype=object), age).astype(float),
    )


def draw_exposure(rng: np.random.Generator, p: dict[str, Any], c: Clients) -> Exposure:
    """First-session focus: hip more likely with more sitting and with running or cycling."""
    p_hip = sigmoid(
        p["hip_logit_intercept"]
        + p["hip_logit_per_sitting_hour"] * (c.sitting - 7.0)
        + p["hip_logit_run_cycle"] * c.run_cycle
    )
    u_other, u_hip, u_hk = rng.random(c.n), rng.random(c.n), rng.random(c.n)
    is_other = u_other < p["focus_other_share"]
    hip = (~is_other) & (u_hip < p_hip)
    base_focus = np.where(
        is_other, "other", np.where(hip, np.where(u_hk < p["hip_and_knee_share"], "hip_and_knee", "hip"), "knee")
    ).astype(object)
    return Exposure(hip=hip, base_focus=base_focus, compared=~is_other)


def compared_centre(log_sw: np.ndarray, compared: np.ndarray) -> float:
    """The centre of the chronicity moderation: mean ln(symptom_weeks + 1) over the compared clients
    (over all clients when none is compared)."""
    return float(log_sw[compared].mean()) if compared.any() else float(log_sw.mean())


def draw_trajectories(
    rng: np.random.Generator, p: dict[str, Any], c: Clients, e: Exposure, centre: np.ndarray | None = None
) -> Trajectories:
    """The linear mixed model: covariates on the level, the hip effect (direct, mediated through the hip
    IR slope, moderated by chronicity) on the slope, correlated random intercepts and slopes.

    ``centre`` (one value per client) is for many clinics drawn at once (:mod:`analysis.simulate.bulk`):
    each client's own clinic's :func:`compared_centre`; None = this one clinic's.
    """
    effect_total = float(p["hip_slope_effect"])
    indirect = float(p["mediated_share"]) * effect_total
    direct = effect_total - indirect
    gamma = indirect / p["hip_ir_gain_per_week"] if p["hip_ir_gain_per_week"] > 0 else 0.0
    centre_used: float | np.ndarray = compared_centre(c.log_sw, e.compared) if centre is None else centre
    cov_effect = (
        p["nprs_per_sitting_hour"] * (c.sitting - 7.0)
        + p["nprs_run_cycle"] * (c.run_cycle - 0.37)
        + p["nprs_female"] * (c.female - 0.6)
        + p["nprs_per_age_band"] * (c.age_idx - 2.5)
        + p["nprs_per_log_symptom_weeks"] * (c.log_sw - math.log(21.0))
    )
    z0, z1 = rng.standard_normal(c.n), rng.standard_normal(c.n)
    rho = float(p["intercept_slope_corr"])
    u0 = p["intercept_sd"] * z0
    u1 = p["slope_sd"] * (rho * z0 + math.sqrt(1 - rho**2) * z1)
    w_ir = p["hip_ir_gain_sd"] * rng.standard_normal(c.n)
    ir_slope = p["hip_ir_gain_knee"] + p["hip_ir_gain_per_week"] * e.hip.astype(float) + w_ir
    level = p["baseline_nprs_mean"] + cov_effect + u0
    hip_term = direct + p["chronicity_moderation"] * (c.log_sw - centre_used)
    slope_knee_cf = p["knee_slope"] + gamma * w_ir + u1  # counterfactual slope without hip focus
    slope_hip_cf = slope_knee_cf + hip_term + gamma * p["hip_ir_gain_per_week"]
    return Trajectories(
        centre=centre_used,
        direct=direct,
        indirect=indirect,
        gamma=gamma,
        level=level,
        slope_knee_cf=slope_knee_cf,
        slope_hip_cf=slope_hip_cf,
        slope=np.where(e.hip, slope_hip_cf, slope_knee_cf),
        ir_slope=ir_slope,
    )
