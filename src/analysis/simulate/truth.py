"""The ground truth of a simulated clinic: the true effects on the latent and the recorded scale."""

from __future__ import annotations

import math
from typing import Any

from analysis.simulate.config import MODEL_VERSION, expected_recorded
from analysis.simulate.people import Clients, Exposure, Trajectories


def clinic_truth(
    p: dict[str, Any],
    clients: Clients,
    exposure: Exposure,
    trajectories: Trajectories,
    *,
    primary_week: float,
    n_sessions: int,
    n_measurements: int,
) -> dict[str, Any]:
    """The ground truth of one simulated clinic, for truth.json and the self-check.

    ``primary_week`` is the analysis's (params ``model.primary_week``): the true change difference and
    its recorded-scale counterpart are given at that week.
    """
    effect = float(p["hip_slope_effect"])
    mod = float(p["chronicity_moderation"])
    t = trajectories
    centre = float(t.centre)
    hip, compared, log_sw = exposure.hip, exposure.compared, clients.log_sw
    week = float(primary_week)
    # The average over the compared clients of the client-level slope difference is exactly the
    # headline effect, because the moderation term is centred at their mean ln(symptom_weeks + 1).
    att = effect + mod * (float(log_sw[hip].mean()) - centre) if hip.any() else None
    # Effect on the recorded scale at week 6: both potential outcomes of each compared client, their
    # expectation over the residual as recorded (rounded, clipped to 0-10); the floor at 0 makes it
    # smaller in size than 6 x the slope difference.
    y_hip = expected_recorded(t.level + t.slope_hip_cf * week, p["residual_sd"])
    y_knee = expected_recorded(t.level + t.slope_knee_cf * week, p["residual_sd"])
    observed_scale = float((y_hip - y_knee)[compared].mean()) if compared.any() else None
    by_sw = {str(int(w)): effect + mod * (math.log(float(w) + 1.0) - centre) for w in p["truth_symptom_weeks"]}
    slope_var_total = p["slope_sd"] ** 2 + (t.gamma * p["hip_ir_gain_sd"]) ** 2
    params_used = {
        k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, (list, tuple)) else v) for k, v in p.items()
    }
    return {
        "model_version": MODEL_VERSION,
        "seed": p["seed"],
        "reference_date": str(p["reference_date"]),
        "true_slope_difference": effect,
        "true_change_difference_primary_week": round(week * effect, 12),
        "primary_week": week,
        "units": "NPRS points per week (slope) and NPRS points (change); negative = hip focus lowers pain more",
        "estimand": (
            "difference in the mean NPRS (timing pre) slope over the first 12 weeks, first session hip-focused "
            "(hip or hip_and_knee) minus knee-focused, averaged over the compared clients (first session not "
            "'other'); the change difference at the primary week is primary_week x the slope difference. Later "
            "focus switches do not change a client's trajectory: exposure is the first session's focus."
        ),
        "knee_slope": float(p["knee_slope"]),
        "hip_slope": round(float(p["knee_slope"]) + effect, 12),
        "moderation": {
            "per_log_unit": mod,
            "covariate": "ln(symptom_weeks + 1)",
            "centre_log_symptom_weeks": centre,
            "centre_symptom_weeks": math.exp(centre) - 1.0,
            "centred_over": "mean ln(symptom_weeks + 1) over this clinic's compared clients (hip or knee first "
            "session), so the average effect over them equals true_slope_difference",
            "formula": "slope difference(sw) = true_slope_difference + per_log_unit * (ln(sw + 1) - centre)",
            "slope_difference_at_symptom_weeks": by_sw,
        },
        "mediation": {
            "mediator": "hip IR gain (mean of left and right change from baseline), degrees",
            "mediated_share": float(p["mediated_share"]),
            "indirect_slope": round(t.indirect, 12),
            "direct_slope": round(t.direct, 12),
            "hip_ir_slope_difference_deg_per_week": float(p["hip_ir_gain_per_week"]),
            "nprs_slope_per_ir_slope": round(t.gamma, 12),
        },
        "sample": {
            "average_slope_difference_compared": effect,
            "average_slope_difference_hip_focused": att,
            "change_difference_primary_week_recorded_scale": observed_scale,  # expected over the residual
            "note_rounding": (
                "NPRS is rounded to whole points and clipped to 0-10 as recorded; the floor at 0 attenuates "
                "slopes, so an estimate on recorded values may be slightly closer to 0 than the truth "
                "(change_difference_primary_week_recorded_scale: the expected difference at the primary week of "
                "the recorded values "
                "of both potential outcomes, averaged over this clinic's compared clients, shows the size of this)"
            ),
        },
        "variance_components": {
            "intercept_sd": float(p["intercept_sd"]),
            "slope_sd_total": math.sqrt(slope_var_total),
            "intercept_slope_corr_non_mediated": float(p["intercept_slope_corr"]),
            "residual_sd": float(p["residual_sd"]),
        },
        "dgp": (
            "NPRS_pre(i,t) = b0 + covariates_i + u0_i + (knee_slope + hip_i*(direct + moderation*(L_i - centre)) "
            "+ gamma*(ir_slope_i - hip_ir_gain_knee) + u1_i)*t + e_it, L = ln(symptom_weeks+1), t = weeks since the "
            "first session; covariates act on the level only (sitting hours, running/cycling, sex F, age band, L); "
            "hip_i depends on sitting hours and running/cycling (confounding by indication); then rounded, "
            "clipped to 0-10. Clients whose first session is 'other' follow the knee-focused trajectory. Dropout "
            "depends on observed NPRS only (missing at random)."
        ),
        "counts": {
            "clients": int(len(log_sw)),
            "clients_hip_focused": int(hip.sum()),
            "clients_knee_focused": int((compared & ~hip).sum()),
            "clients_other_focus": int((~compared).sum()),
            "sessions": int(n_sessions),
            "measurements": int(n_measurements),
        },
        "params": params_used,
    }
