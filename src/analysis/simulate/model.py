"""The data-generating model: clients, their sessions and measurements, drawn as the primary model says.

Pure: (params, seed) -> :class:`~.config.Clinic`; see the package docstring for the model.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from analysis.contract import (
    ACTIVITIES,
    AGE_BANDS,
    FOCI,
    KNEES,
    SEXES,
    TABLES,
    TECHNIQUES,
)
from analysis.simulate.config import (
    HIP_FOCI,
    IR_LEFT,
    IR_RIGHT,
    LEFS,
    NPRS,
    Clinic,
    blank,
    draw,
    dt64,
    ids,
    norm,
    resolve_config,
    shares,
    sigmoid,
    weekday_forward,
)
from analysis.simulate.truth import clinic_truth

# --------------------------------------------------------------------------- the generator


def simulate_clinic(
    cfg: dict[str, Any], seed: int, *, n_clients: int | None = None, effect: float | None = None
) -> Clinic:
    """Simulate one clinic from the ``simulate`` parameters.

    Parameters
    ----------
    cfg : dict[str, Any]
        The ``simulate`` section of params.yaml (every key of :data:`REQUIRED_KEYS`).
    seed : int
        Seed of the ``numpy.random.default_rng`` stream; same seed, same clinic.
    n_clients : int, optional
        Overrides ``cfg["n_clients"]``.
    effect : float, optional
        Overrides ``cfg["hip_slope_effect"]``: the true average difference in the
        NPRS slope (points per week), hip-focused minus knee-focused first session.

    Returns
    -------
    Clinic
        ``clients`` (client_id, clinic_id, sex, age_band, symptom_weeks,
        sitting_hours, activity, knee), ``sessions`` (session_id, client_id,
        session_date, therapist_id, focus, techniques, minutes),
        ``measurements`` (session_id, measure, timing, value) and ``truth``
        (``true_slope_difference``, ``true_change_difference_week6``, the model,
        the seed and the parameters used).

    Examples
    --------
    >>> from analysis.params import load_params
    >>> c = simulate_clinic(load_params()["simulate"], seed=1, n_clients=20)
    >>> len(c.clients), c.truth["true_slope_difference"], c.truth["true_change_difference_week6"]
    (20, -0.15, -0.9)
    """
    p = resolve_config(cfg, seed, n_clients, effect)
    rng = np.random.default_rng(p["seed"])
    n, K = int(p["n_clients"]), int(p["sessions_max"])

    # ---- clients -----------------------------------------------------------------------------
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
    log_sw = np.log(sw + 1.0)
    run_cycle = np.isin(activity, ["running", "cycling"])
    female = sex == "F"
    age_idx = np.searchsorted(np.array(AGE_BANDS, dtype=object), age).astype(float)

    # ---- exposure: focus of the first session (confounding by indication) -------------------
    sit_c = sitting - 7.0
    p_hip = sigmoid(
        p["hip_logit_intercept"] + p["hip_logit_per_sitting_hour"] * sit_c + p["hip_logit_run_cycle"] * run_cycle
    )
    u_other, u_hip, u_hk = rng.random(n), rng.random(n), rng.random(n)
    is_other = u_other < p["focus_other_share"]
    hip = (~is_other) & (u_hip < p_hip)
    base_focus = np.where(
        is_other, "other", np.where(hip, np.where(u_hk < p["hip_and_knee_share"], "hip_and_knee", "hip"), "knee")
    ).astype(object)
    compared = ~is_other
    hip_f = hip.astype(float)

    # ---- latent pain trajectory (the linear mixed model) ------------------------------------
    effect_total = float(p["hip_slope_effect"])
    indirect = float(p["mediated_share"]) * effect_total
    direct = effect_total - indirect
    gamma = indirect / p["hip_ir_gain_per_week"] if p["hip_ir_gain_per_week"] > 0 else 0.0
    centre = float(log_sw[compared].mean()) if compared.any() else float(log_sw.mean())
    cov_effect = (
        p["nprs_per_sitting_hour"] * sit_c
        + p["nprs_run_cycle"] * (run_cycle - 0.37)
        + p["nprs_female"] * (female - 0.6)
        + p["nprs_per_age_band"] * (age_idx - 2.5)
        + p["nprs_per_log_symptom_weeks"] * (log_sw - math.log(21.0))
    )
    z0, z1 = rng.standard_normal(n), rng.standard_normal(n)
    rho = float(p["intercept_slope_corr"])
    u0 = p["intercept_sd"] * z0
    u1 = p["slope_sd"] * (rho * z0 + math.sqrt(1 - rho**2) * z1)
    w_ir = p["hip_ir_gain_sd"] * rng.standard_normal(n)
    ir_slope = p["hip_ir_gain_knee"] + p["hip_ir_gain_per_week"] * hip_f + w_ir
    level = p["baseline_nprs_mean"] + cov_effect + u0
    hip_term = direct + p["chronicity_moderation"] * (log_sw - centre)
    slope_knee_cf = p["knee_slope"] + gamma * w_ir + u1  # counterfactual slope without hip focus
    slope_hip_cf = slope_knee_cf + hip_term + gamma * p["hip_ir_gain_per_week"]
    slope = np.where(hip, slope_hip_cf, slope_knee_cf)

    # ---- calendar: first session, gaps, weekdays ---------------------------------------------
    start = dt64(p["start_date"]).astype(np.int64)
    ref = dt64(p["reference_date"]).astype(np.int64)
    days = np.empty((n, K), dtype=np.int64)
    days[:, 0] = weekday_forward(start + rng.integers(0, int(p["enrol_days"]) + 1, n))
    spacing = float(p["visit_spacing_days"])
    gaps = np.maximum(2, np.rint(rng.gamma(4.0, spacing / 4.0, (n, K)))).astype(np.int64)
    for k in range(1, K):
        days[:, k] = weekday_forward(days[:, k - 1] + gaps[:, k])
    weeks = (days - days[:, [0]]) / 7.0

    # ---- sessions' focus, therapist, techniques, minutes -------------------------------------
    focus = np.repeat(base_focus[:, None], K, axis=1)
    switch = rng.random((n, K)) < p["focus_switch"]
    switch[:, 0] = False
    u_target = rng.random((n, K))
    for b in FOCI:  # the switch target is any other focus, by the switch shares
        cats, w = shares({f: v for f, v in p["focus_switch_shares"].items() if f != b}, FOCI)
        sel = switch & (base_focus[:, None] == b)  # by the first focus: no cell switches twice
        focus[sel] = cats[np.minimum(np.searchsorted(np.cumsum(w), u_target[sel], side="right"), len(cats) - 1)]
    therapists = np.array([str(t) for t in p["therapists"]], dtype=object)
    usual = rng.integers(0, len(therapists), n)
    other_t = (usual[:, None] + rng.integers(1, max(len(therapists), 2), (n, K))) % len(therapists)
    ther = therapists[np.where(rng.random((n, K)) < p["usual_therapist_share"], usual[:, None], other_t)]
    ther_missing = rng.random((n, K)) < p["missing_therapist"]
    tech_cats = [t for t in TECHNIQUES if t in p["technique_shares"]]
    tech_p = np.array([float(p["technique_shares"][t]) for t in tech_cats])
    tech_bits = np.array([TECHNIQUES.index(c) for c in tech_cats])
    tech_on = rng.random((n, K, len(tech_cats))) < tech_p
    # 'other' focus sessions lean on other techniques; every session uses at least one technique
    if "other" in tech_cats:
        tech_on[..., tech_cats.index("other")] |= (focus == "other") & (rng.random((n, K)) < 0.6)
    none = ~tech_on.any(axis=2)
    tech_on[none, int(np.argmax(tech_p))] = True
    tech_code = (tech_on * (1 << tech_bits)).sum(axis=2)
    tech_lookup = np.array(  # bit j of the code = TECHNIQUES[j] used; contract order within the text
        [";".join(t for j, t in enumerate(TECHNIQUES) if c >> j & 1) for c in range(1 << len(TECHNIQUES))],
        dtype=object,
    )
    tech_missing = rng.random((n, K)) < p["missing_techniques"]
    mchoices = np.array(p["minutes_choices"], dtype=np.int64)
    u_min = rng.random((n, K))
    minutes = np.where(
        np.arange(K)[None, :] == 0,
        mchoices[
            np.minimum(
                np.searchsorted(np.cumsum(norm(p["minutes_first_shares"])), u_min, side="right"), len(mchoices) - 1
            )
        ],
        mchoices[
            np.minimum(
                np.searchsorted(np.cumsum(norm(p["minutes_later_shares"])), u_min, side="right"), len(mchoices) - 1
            )
        ],
    )

    # ---- measurements on the full client x session grid --------------------------------------
    pre_latent = level[:, None] + slope[:, None] * weeks + p["residual_sd"] * rng.standard_normal((n, K))
    nprs_pre = np.clip(np.rint(pre_latent), 0, 10)
    hipish = np.isin(focus, HIP_FOCI)
    drop = np.maximum(
        0.0,
        np.where(hipish, p["immediate_drop_hip"], p["immediate_drop_knee"])
        + p["immediate_drop_sd"] * rng.standard_normal((n, K)),
    )
    nprs_post = np.clip(np.rint(pre_latent - drop), 0, 10)
    res = float(p["hip_ir_resolution"])
    ir_base = p["hip_ir_mean"] + p["hip_ir_sd"] * rng.standard_normal(n)
    ir_pre, ir_post = [], []
    for _side in (IR_LEFT, IR_RIGHT):
        side_base = ir_base + p["hip_ir_side_sd"] * rng.standard_normal(n)
        pre = side_base[:, None] + ir_slope[:, None] * weeks + p["hip_ir_error_sd"] * rng.standard_normal((n, K))
        imm = np.where(hipish, p["hip_ir_immediate_hip"], p["hip_ir_immediate_knee"])
        post = pre + imm + p["hip_ir_error_sd"] * rng.standard_normal((n, K))
        ir_pre.append(np.clip(np.rint(pre / res) * res, 0, 90))
        ir_post.append(np.clip(np.rint(post / res) * res, 0, 90))
    # function follows pain: LEFS rises as NPRS falls, with its own noise
    lefs_base = (
        p["lefs_mean"] + p["lefs_per_nprs"] * (level - p["baseline_nprs_mean"]) + p["lefs_sd"] * rng.standard_normal(n)
    )
    lefs = np.clip(
        np.rint(
            lefs_base[:, None]
            + p["lefs_per_nprs"] * slope[:, None] * weeks
            + p["lefs_error_sd"] * rng.standard_normal((n, K))
        ),
        0,
        80,
    )

    # which measurements are taken (before dropout decides which sessions happen)
    nprs_pre_taken = rng.random((n, K)) >= p["missing_nprs_pre"]
    post_taken = rng.random((n, K)) < p["post_taken"]
    ir_taken = rng.random((n, K)) < p["hip_ir_taken"]
    one_side = rng.random((n, K)) < p["hip_ir_one_side"]
    left_only = rng.random((n, K)) < 0.5
    ir_left_taken = ir_taken & ~(one_side & ~left_only)
    ir_right_taken = ir_taken & ~(one_side & left_only)
    lefs_taken = rng.random((n, K)) < np.where(np.arange(K)[None, :] == 0, p["lefs_taken_first"], p["lefs_taken_later"])

    # ---- attendance: planned course, dropout by observed progress, data-extract date ---------
    planned = np.clip(1 + rng.poisson(max(float(p["planned_sessions_mean"]) - 1, 0.0), n), 1, K)
    u_drop = rng.random((n, K))
    observed = np.where(nprs_pre_taken, nprs_pre, np.nan)
    attend = np.zeros((n, K), dtype=bool)
    attend[:, 0] = True
    baseline_obs = observed[:, 0]
    last_obs = observed[:, 0].copy()
    for k in range(1, K):
        improvement = baseline_obs - last_obs  # NaN when the baseline was not recorded: no judgement
        not_improving = (k >= p["no_progress_after_sessions"]) & (improvement < p["no_progress_points"])
        recovered = last_obs <= p["recovered_nprs"]
        p_stop = p["dropout_base"] + p["dropout_no_progress"] * not_improving + p["dropout_recovered"] * recovered
        attend[:, k] = attend[:, k - 1] & (k < planned) & (u_drop[:, k] >= p_stop) & (days[:, k] <= ref)
        last_obs = np.where(attend[:, k] & ~np.isnan(observed[:, k]), observed[:, k], last_obs)

    # ---- assemble the typed tables ------------------------------------------------------------
    cw = max(4, len(str(n)))
    client_ids = ids("C", np.arange(1, n + 1), cw)
    clients = pd.DataFrame(
        {
            "client_id": pd.array(client_ids, dtype="str"),
            "clinic_id": pd.array(np.full(n, str(p["clinic_id"]), dtype=object), dtype="str"),
            "sex": pd.array(sex, dtype="str"),
            "age_band": pd.array(age, dtype="str"),
            "symptom_weeks": sw.astype(np.int64),
            "sitting_hours": np.where(sitting_missing, np.nan, sitting).astype(np.float64),
            "activity": pd.array(activity, dtype="str"),
            "knee": pd.array(knee, dtype="str"),
        }
    )[TABLES["clients"].column_names]

    ci, ki = np.nonzero(attend)  # row-major: client by client, session by session
    n_sess = len(ci)
    sw_ids = max(5, len(str(n_sess)))
    session_ids = ids("S", np.arange(1, n_sess + 1), sw_ids)
    sessions = pd.DataFrame(
        {
            "session_id": pd.array(session_ids, dtype="str"),
            "client_id": pd.array(client_ids[ci], dtype="str"),
            "session_date": pd.to_datetime(days[ci, ki].astype("datetime64[D]")).astype("datetime64[ns]"),
            "therapist_id": pd.array(blank(ther[ci, ki], ther_missing[ci, ki]), dtype="str"),
            "focus": pd.array(focus[ci, ki], dtype="str"),
            "techniques": pd.array(blank(tech_lookup[tech_code[ci, ki]], tech_missing[ci, ki]), dtype="str"),
            "minutes": minutes[ci, ki].astype(np.int64),
        }
    )[TABLES["sessions"].column_names]

    pieces = (  # (measure, timing, values grid, taken grid)
        (IR_LEFT, "pre", ir_pre[0], ir_left_taken),
        (IR_LEFT, "post", ir_post[0], ir_left_taken & post_taken),
        (IR_RIGHT, "pre", ir_pre[1], ir_right_taken),
        (IR_RIGHT, "post", ir_post[1], ir_right_taken & post_taken),
        (NPRS, "pre", nprs_pre, nprs_pre_taken),
        (NPRS, "post", nprs_post, nprs_pre_taken & post_taken),
        (LEFS, "pre", lefs, lefs_taken),
    )
    sess_index = np.full((n, K), -1, dtype=np.int64)
    sess_index[ci, ki] = np.arange(n_sess)
    rows_s, rows_p, rows_v = [], [], []
    for order, (_m, _t, values, taken) in enumerate(pieces):
        mask = attend & taken
        rows_s.append(sess_index[mask])
        rows_p.append(np.full(int(mask.sum()), order, dtype=np.int64))
        rows_v.append(values[mask])
    s_all, p_all, v_all = np.concatenate(rows_s), np.concatenate(rows_p), np.concatenate(rows_v)
    sort = np.lexsort((p_all, s_all))
    s_all, p_all, v_all = s_all[sort], p_all[sort], v_all[sort]
    measure_names = np.array([m for m, _, _, _ in pieces], dtype=object)
    timing_names = np.array([t for _, t, _, _ in pieces], dtype=object)
    measurements = pd.DataFrame(
        {
            "session_id": pd.array(session_ids[s_all], dtype="str"),
            "measure": pd.array(measure_names[p_all], dtype="str"),
            "timing": pd.array(timing_names[p_all], dtype="str"),
            "value": v_all.astype(np.float64),
        }
    )[TABLES["measurements"].column_names]

    # ---- the truth -----------------------------------------------------------------------------
    truth = clinic_truth(
        p,
        dict(
            centre=centre,
            direct=direct,
            indirect=indirect,
            gamma=gamma,
            hip=hip,
            compared=compared,
            log_sw=log_sw,
            level=level,
            slope_knee_cf=slope_knee_cf,
            slope_hip_cf=slope_hip_cf,
            n_sessions=n_sess,
            n_measurements=len(measurements),
            attend=attend,
        ),
    )
    return Clinic(clients=clients, sessions=sessions, measurements=measurements, truth=truth)
