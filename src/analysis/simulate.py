"""Simulate: a synthetic clinic that follows the contract, with its ground truth.

The demo clinic in ``data/raw/demo`` and the self-check's simulated clinics
come from here. The data-generating model is the linear mixed model the
primary analysis fits, so its truth can be recovered:

    NPRS_pre(i, t) = b0 + covariates_i + u0_i
                     + (knee_slope + hip_i * (direct + moderation * (L_i - c))
                        + gamma * (ir_slope_i - ir_gain_knee) + u1_i) * t + e_it

with ``t`` the weeks since the client's first session, ``hip_i`` the focus of
the first session (hip or hip_and_knee = 1, knee = 0), ``L_i = ln(symptom_weeks
+ 1)``, ``c`` the mean of ``L`` over the compared clients (so the average
effect over the simulated clients equals the headline effect), and the hip
internal rotation (IR) slope ``ir_slope_i = ir_gain_knee + hip_i * ir_gain_hip
+ w_i`` carrying the mediated share of the effect (``gamma * ir_gain_hip``).
The latent value is then rounded and clipped to 0-10, as a clinician records
it; the floor at 0 attenuates observed slopes slightly (reported in
truth.json).

Dropout depends on observed progress only (missing at random): clients whose
recorded pain has not improved are more likely to stop, and so are those who
have recovered. The focus of the first session depends on sitting hours and
on running/cycling (confounding by indication); both also raise or lower
baseline pain.

Everything is vectorised over clients (a loop runs over the at most
``sessions_max`` session numbers only), so 20,000 clients take seconds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

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
    load_registry,
)
from analysis.errors import InputError
from analysis.params import section
from analysis.paths import resolve
from analysis.store import write_csv, write_json

NPRS = "knee_pain_nprs"
IR_LEFT = "hip_ir_left_deg"
IR_RIGHT = "hip_ir_right_deg"
LEFS = "lefs"
MEASURES = (IR_LEFT, IR_RIGHT, NPRS, LEFS)  # alphabetical: the row order within a session
HIP_FOCI = ("hip", "hip_and_knee")
PRIMARY_WEEK = 6
MODEL_VERSION = "simulate-lmm-1"

#: simulate keys that must be present in params.yaml (documented there).
REQUIRED_KEYS = (
    "seed", "n_clients", "clinic_id", "therapists", "usual_therapist_share",
    "start_date", "enrol_days", "reference_date", "planned_sessions_mean", "sessions_max", "visit_spacing_days",
    "sex_shares", "age_band_shares", "activity_shares", "knee_shares",
    "symptom_weeks_median", "symptom_weeks_log_sd", "sitting_hours_mean", "sitting_hours_sd",
    "focus_other_share", "hip_logit_intercept", "hip_logit_per_sitting_hour", "hip_logit_run_cycle",
    "hip_and_knee_share", "focus_switch", "focus_switch_shares",
    "baseline_nprs_mean", "nprs_per_sitting_hour", "nprs_run_cycle", "nprs_female", "nprs_per_age_band",
    "nprs_per_log_symptom_weeks", "intercept_sd", "slope_sd", "intercept_slope_corr", "residual_sd",
    "knee_slope", "hip_slope_effect", "chronicity_moderation",
    "immediate_drop_knee", "immediate_drop_hip", "immediate_drop_sd",
    "hip_ir_mean", "hip_ir_sd", "hip_ir_side_sd", "hip_ir_error_sd", "hip_ir_resolution",
    "hip_ir_gain_knee", "hip_ir_gain_per_week", "hip_ir_gain_sd", "hip_ir_immediate_hip", "hip_ir_immediate_knee",
    "mediated_share",
    "lefs_mean", "lefs_sd", "lefs_per_nprs", "lefs_error_sd",
    "dropout_base", "dropout_no_progress", "dropout_recovered", "no_progress_points", "no_progress_after_sessions",
    "recovered_nprs",
    "technique_shares", "minutes_choices", "minutes_first_shares", "minutes_later_shares",
    "missing_sitting", "missing_therapist", "missing_techniques", "missing_nprs_pre", "post_taken",
    "hip_ir_taken", "hip_ir_one_side", "lefs_taken_first", "lefs_taken_later",
    "truth_symptom_weeks",
)  # fmt: skip


@dataclass(frozen=True)
class Clinic:
    """A simulated clinic: the three typed contract tables and the ground truth.

    Attributes
    ----------
    clients, sessions, measurements : DataFrame
        The typed tables (columns and dtypes as :mod:`analysis.validate` hands them on).
    truth : dict
        The true effects, the data-generating model, the seed and every parameter used.
    """

    clients: pd.DataFrame
    sessions: pd.DataFrame
    measurements: pd.DataFrame
    truth: dict


# --------------------------------------------------------------------------- configuration


def resolve_config(cfg: dict, seed: int, n_clients: int | None = None, effect: float | None = None) -> dict:
    """The simulate parameters with overrides applied, checked.

    Raises :class:`InputError` naming the key for a missing or unusable value.
    """
    missing = [k for k in REQUIRED_KEYS if k not in cfg]
    if missing:
        raise InputError(
            f"params.yaml simulate: missing key(s) {', '.join(missing)}; see the documented "
            "simulate section of the project's params.yaml"
        )
    p = {k: cfg[k] for k in REQUIRED_KEYS}
    p["seed"] = int(seed)
    p["start_date"], p["reference_date"] = str(p["start_date"]), str(p["reference_date"])
    if n_clients is not None:
        p["n_clients"] = int(n_clients)
    if effect is not None:
        p["hip_slope_effect"] = float(effect)
    if p["n_clients"] < 1:
        raise InputError("params.yaml simulate.n_clients: must be at least 1")
    if not 1 <= int(p["sessions_max"]) <= 60:
        raise InputError("params.yaml simulate.sessions_max: must be 1-60")
    for name, cats in (
        ("sex_shares", SEXES),
        ("age_band_shares", AGE_BANDS),
        ("activity_shares", ACTIVITIES),
        ("knee_shares", KNEES),
        ("focus_switch_shares", FOCI),
        ("technique_shares", TECHNIQUES),
    ):
        bad = sorted(set(map(str, p[name])) - set(cats))
        if bad:
            raise InputError(f"params.yaml simulate.{name}: unknown categories {bad}; allowed: {', '.join(cats)}")
    try:
        start = dt64(p["start_date"])
        ref = dt64(p["reference_date"])
    except ValueError:
        raise InputError("params.yaml simulate.start_date/reference_date: must be YYYY-MM-DD dates") from None
    if start + np.timedelta64(int(p["enrol_days"]) + 3, "D") > ref:
        raise InputError("params.yaml simulate: start_date + enrol_days must lie before reference_date")
    if p["hip_ir_gain_per_week"] <= 0 and p["mediated_share"] != 0:
        raise InputError("params.yaml simulate.mediated_share: must be 0 when hip_ir_gain_per_week is 0")
    k = len(p["minutes_choices"])
    if len(p["minutes_first_shares"]) != k or len(p["minutes_later_shares"]) != k:
        raise InputError("params.yaml simulate.minutes_*_shares: need one share per minutes_choices entry")
    return p


def dt64(text: str) -> np.datetime64:
    """An ISO date as numpy day precision (raises ValueError if invalid)."""
    return np.datetime64(str(text), "D")


def _shares(mapping: dict, order: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    cats = np.array([c for c in order if c in mapping], dtype=object)
    w = np.array([float(mapping[c]) for c in cats])
    return cats, w / w.sum()


def _draw(rng: np.random.Generator, mapping: dict, order: tuple[str, ...], size) -> np.ndarray:
    cats, w = _shares(mapping, order)
    return cats[rng.choice(len(cats), size=size, p=w)]


def _weekday_forward(days: np.ndarray) -> np.ndarray:
    """Move Saturdays and Sundays (days since 1970-01-01, a Thursday) to the next Monday."""
    dow = (days + 3) % 7  # Monday = 0
    return days + np.where(dow == 5, 2, np.where(dow == 6, 1, 0))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# --------------------------------------------------------------------------- the generator


def simulate_clinic(cfg: dict, seed: int, *, n_clients: int | None = None, effect: float | None = None) -> Clinic:
    """Simulate one clinic from the ``simulate`` parameters.

    Parameters
    ----------
    cfg : dict
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
    sex = _draw(rng, p["sex_shares"], SEXES, n)
    age = _draw(rng, p["age_band_shares"], AGE_BANDS, n)
    activity = _draw(rng, p["activity_shares"], ACTIVITIES, n)
    knee = _draw(rng, p["knee_shares"], KNEES, n)
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
    p_hip = _sigmoid(
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
    days[:, 0] = _weekday_forward(start + rng.integers(0, int(p["enrol_days"]) + 1, n))
    spacing = float(p["visit_spacing_days"])
    gaps = np.maximum(2, np.rint(rng.gamma(4.0, spacing / 4.0, (n, K)))).astype(np.int64)
    for k in range(1, K):
        days[:, k] = _weekday_forward(days[:, k - 1] + gaps[:, k])
    weeks = (days - days[:, [0]]) / 7.0

    # ---- sessions' focus, therapist, techniques, minutes -------------------------------------
    focus = np.repeat(base_focus[:, None], K, axis=1)
    switch = rng.random((n, K)) < p["focus_switch"]
    switch[:, 0] = False
    u_target = rng.random((n, K))
    for b in FOCI:  # the switch target is any other focus, by the switch shares
        cats, w = _shares({f: v for f, v in p["focus_switch_shares"].items() if f != b}, FOCI)
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
                np.searchsorted(np.cumsum(_norm(p["minutes_first_shares"])), u_min, side="right"), len(mchoices) - 1
            )
        ],
        mchoices[
            np.minimum(
                np.searchsorted(np.cumsum(_norm(p["minutes_later_shares"])), u_min, side="right"), len(mchoices) - 1
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
    client_ids = _ids("C", np.arange(1, n + 1), cw)
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
    session_ids = _ids("S", np.arange(1, n_sess + 1), sw_ids)
    sessions = pd.DataFrame(
        {
            "session_id": pd.array(session_ids, dtype="str"),
            "client_id": pd.array(client_ids[ci], dtype="str"),
            "session_date": pd.to_datetime(days[ci, ki].astype("datetime64[D]")).astype("datetime64[ns]"),
            "therapist_id": pd.array(np.where(ther_missing[ci, ki], None, ther[ci, ki]), dtype="str"),
            "focus": pd.array(focus[ci, ki], dtype="str"),
            "techniques": pd.array(np.where(tech_missing[ci, ki], None, tech_lookup[tech_code[ci, ki]]), dtype="str"),
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
    order = np.lexsort((p_all, s_all))
    s_all, p_all, v_all = s_all[order], p_all[order], v_all[order]
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
    truth = _truth(
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


def _norm(shares) -> np.ndarray:
    w = np.asarray(shares, dtype=float)
    return w / w.sum()


def _ids(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    """Pseudonyms such as C0001 / S00001, as an object array."""
    return np.char.add(prefix, np.char.zfill(numbers.astype(str), width)).astype(object)


def _expected_recorded(mu: np.ndarray, sd: float) -> np.ndarray:
    """E[clip(round(mu + e), 0, 10)] for e ~ N(0, sd): the sum over j = 1..10 of P(recorded >= j)."""
    from scipy.special import ndtr

    j = np.arange(1, 11)
    return (1.0 - ndtr((j[None, :] - 0.5 - mu[:, None]) / sd)).sum(axis=1)


def _truth(p: dict, s: dict) -> dict:
    """The ground truth of one simulated clinic, for truth.json and the self-check."""
    effect = float(p["hip_slope_effect"])
    mod = float(p["chronicity_moderation"])
    centre = s["centre"]
    hip, compared, log_sw = s["hip"], s["compared"], s["log_sw"]
    # The average over the compared clients of the client-level slope difference is exactly the
    # headline effect, because the moderation term is centred at their mean ln(symptom_weeks + 1).
    att = effect + mod * (float(log_sw[hip].mean()) - centre) if hip.any() else None
    # Effect on the recorded scale at week 6: both potential outcomes of each compared client, their
    # expectation over the residual as recorded (rounded, clipped to 0-10); the floor at 0 makes it
    # smaller in size than 6 x the slope difference.
    y_hip = _expected_recorded(s["level"] + s["slope_hip_cf"] * PRIMARY_WEEK, p["residual_sd"])
    y_knee = _expected_recorded(s["level"] + s["slope_knee_cf"] * PRIMARY_WEEK, p["residual_sd"])
    observed_scale = float((y_hip - y_knee)[compared].mean()) if compared.any() else None
    by_sw = {str(int(w)): effect + mod * (math.log(float(w) + 1.0) - centre) for w in p["truth_symptom_weeks"]}
    slope_var_total = p["slope_sd"] ** 2 + (s["gamma"] * p["hip_ir_gain_sd"]) ** 2
    params_used = {
        k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, (list, tuple)) else v) for k, v in p.items()
    }
    return {
        "model_version": MODEL_VERSION,
        "seed": p["seed"],
        "reference_date": str(p["reference_date"]),
        "true_slope_difference": effect,
        "true_change_difference_week6": round(PRIMARY_WEEK * effect, 12),
        "primary_week": PRIMARY_WEEK,
        "units": "NPRS points per week (slope) and NPRS points (change); negative = hip focus lowers pain more",
        "estimand": (
            "difference in the mean NPRS (timing pre) slope over the first 12 weeks, first session hip-focused "
            "(hip or hip_and_knee) minus knee-focused, averaged over the compared clients (first session not "
            "'other'); the week-6 change difference is 6 x the slope difference. Later focus switches do not "
            "change a client's trajectory: exposure is the first session's focus."
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
            "indirect_slope": round(s["indirect"], 12),
            "direct_slope": round(s["direct"], 12),
            "hip_ir_slope_difference_deg_per_week": float(p["hip_ir_gain_per_week"]),
            "nprs_slope_per_ir_slope": round(s["gamma"], 12),
        },
        "sample": {
            "average_slope_difference_compared": effect,
            "average_slope_difference_hip_focused": att,
            "change_difference_week6_recorded_scale": observed_scale,  # expected over the residual
            "note_rounding": (
                "NPRS is rounded to whole points and clipped to 0-10 as recorded; the floor at 0 attenuates "
                "slopes, so an estimate on recorded values may be slightly closer to 0 than the truth "
                "(change_difference_week6_recorded_scale: the expected week-6 difference of the recorded values "
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
            "sessions": int(s["n_sessions"]),
            "measurements": int(s["n_measurements"]),
        },
        "params": params_used,
    }


# --------------------------------------------------------------------------- writing


def format_tables(clinic: Clinic) -> dict[str, pd.DataFrame]:
    """The three tables as text, ready to write as contract CSV files.

    Dates become ``YYYY-MM-DD``; whole numbers have no decimals (``6``, not
    ``6.0``); other numbers at most one decimal (``34.5``); missing optional
    values are empty.

    Returns
    -------
    dict of table name -> DataFrame of strings, columns in contract order.
    """
    c = clinic.clients.assign(sitting_hours=_number_text(clinic.clients["sitting_hours"].to_numpy()))
    s = clinic.sessions.assign(
        session_date=clinic.sessions["session_date"].to_numpy().astype("datetime64[D]").astype(str),
    )
    m = clinic.measurements.assign(value=_number_text(clinic.measurements["value"].to_numpy()))
    return {"clients": c, "sessions": s, "measurements": m}


def _number_text(values: np.ndarray) -> np.ndarray:
    """Non-negative numbers as text with at most one decimal; NaN -> empty (vectorised, no float repr)."""
    missing = np.isnan(values)
    tenths = np.rint(np.where(missing, 0, values) * 10).astype(np.int64)
    whole, frac = tenths // 10, tenths % 10
    text = np.char.add(whole.astype(str), np.where(frac == 0, "", np.char.add(".", frac.astype(str))))
    return np.where(missing, "", text).astype(object)


def run_simulate(
    out_dir: Path | str,
    params: dict,
    seed: int | None = None,
    n_clients: int | None = None,
    effect: float | None = None,
) -> str:
    """Simulate a clinic and write clients.csv, sessions.csv, measurements.csv and truth.json.

    Files are written atomically and are byte-identical for the same
    parameters and seed. Returns a one-line summary.
    """
    cfg = section(params, "simulate")
    registry_path = (params.get("data") or {}).get("registry")
    if registry_path:
        registry = load_registry(resolve(registry_path))
        absent = [m for m in MEASURES if m not in registry]
        if absent:
            raise InputError(
                f"{registry.source}: the simulator records {', '.join(absent)}; add them to the measures registry"
            )
    seed = int(cfg.get("seed", 0) if seed is None else seed)
    t0 = time.perf_counter()
    clinic = simulate_clinic(cfg, seed, n_clients=n_clients, effect=effect)
    out = resolve(out_dir)
    for name, frame in format_tables(clinic).items():
        write_csv(out / TABLES[name].filename, frame)
    write_json(out / "truth.json", clinic.truth)
    t = clinic.truth
    return (
        f"wrote {out}: {len(clinic.clients):,} clients, {len(clinic.sessions):,} sessions, "
        f"{len(clinic.measurements):,} measurements (seed {seed}, {time.perf_counter() - t0:.1f} s); "
        f"true slope difference {t['true_slope_difference']:g} NPRS/week, "
        f"week {PRIMARY_WEEK} change difference {t['true_change_difference_week6']:g}"
    )
