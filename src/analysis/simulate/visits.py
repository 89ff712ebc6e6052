"""The data-generating model, part 2: the visits. When clients come, what each session does, what is
measured, and who stops coming (dropout by observed progress: missing at random).

Every array is on the full client x session-number grid (``n`` x ``sessions_max``); attendance then
decides which cells become real sessions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from analysis.contract import FOCI, TECHNIQUES
from analysis.simulate.config import HIP_FOCI, IR_LEFT, IR_RIGHT, dt64, norm, shares, weekday_forward
from analysis.simulate.people import Exposure, Trajectories


@dataclass(frozen=True)
class Calendar:
    days: np.ndarray  # day numbers of every potential session
    weeks: np.ndarray  # weeks since the client's first session
    reference_day: int  # the data-extract date: no session after it


@dataclass(frozen=True)
class SessionDetails:
    focus: np.ndarray
    therapist: np.ndarray
    therapist_missing: np.ndarray
    technique_text: np.ndarray  # ';'-joined techniques per cell
    techniques_missing: np.ndarray
    minutes: np.ndarray


@dataclass(frozen=True)
class Measured:
    """Recorded values and whether each was taken, per cell."""

    nprs_pre: np.ndarray
    nprs_post: np.ndarray
    ir_pre: tuple[np.ndarray, np.ndarray]  # left, right
    ir_post: tuple[np.ndarray, np.ndarray]
    lefs: np.ndarray
    nprs_pre_taken: np.ndarray
    post_taken: np.ndarray
    ir_left_taken: np.ndarray
    ir_right_taken: np.ndarray
    lefs_taken: np.ndarray


def _pick(u: np.ndarray, weights: Any, choices: np.ndarray) -> np.ndarray:
    return choices[np.minimum(np.searchsorted(np.cumsum(norm(weights)), u, side="right"), len(choices) - 1)]


def draw_calendar(rng: np.random.Generator, p: dict[str, Any], n: int, k_max: int) -> Calendar:
    """First sessions spread over the enrolment window, gamma-distributed gaps, weekends moved to Monday."""
    start = dt64(p["start_date"]).astype(np.int64)
    days = np.empty((n, k_max), dtype=np.int64)
    days[:, 0] = weekday_forward(start + rng.integers(0, int(p["enrol_days"]) + 1, n))
    spacing = float(p["visit_spacing_days"])
    gaps = np.maximum(2, np.rint(rng.gamma(4.0, spacing / 4.0, (n, k_max)))).astype(np.int64)
    for k in range(1, k_max):
        days[:, k] = weekday_forward(days[:, k - 1] + gaps[:, k])
    return Calendar(
        days=days, weeks=(days - days[:, [0]]) / 7.0, reference_day=int(dt64(p["reference_date"]).astype(np.int64))
    )


def draw_session_details(rng: np.random.Generator, p: dict[str, Any], e: Exposure, k_max: int) -> SessionDetails:
    """Each session's focus (some switch from the first), therapist, techniques and minutes."""
    n = len(e.base_focus)
    focus = np.repeat(e.base_focus[:, None], k_max, axis=1)
    switch = rng.random((n, k_max)) < p["focus_switch"]
    switch[:, 0] = False
    u_target = rng.random((n, k_max))
    for b in FOCI:  # the switch target is any other focus, by the switch shares
        cats, w = shares({f: v for f, v in p["focus_switch_shares"].items() if f != b}, FOCI)
        sel = switch & (e.base_focus[:, None] == b)  # by the first focus: no cell switches twice
        focus[sel] = cats[np.minimum(np.searchsorted(np.cumsum(w), u_target[sel], side="right"), len(cats) - 1)]
    therapists = np.array([str(t) for t in p["therapists"]], dtype=object)
    usual = rng.integers(0, len(therapists), n)
    other_t = (usual[:, None] + rng.integers(1, max(len(therapists), 2), (n, k_max))) % len(therapists)
    ther = therapists[np.where(rng.random((n, k_max)) < p["usual_therapist_share"], usual[:, None], other_t)]
    ther_missing = rng.random((n, k_max)) < p["missing_therapist"]
    tech_cats = [t for t in TECHNIQUES if t in p["technique_shares"]]
    tech_p = np.array([float(p["technique_shares"][t]) for t in tech_cats])
    tech_bits = np.array([TECHNIQUES.index(c) for c in tech_cats])
    tech_on = rng.random((n, k_max, len(tech_cats))) < tech_p
    # 'other' focus sessions lean on other techniques; every session uses at least one technique
    if "other" in tech_cats:
        tech_on[..., tech_cats.index("other")] |= (focus == "other") & (rng.random((n, k_max)) < 0.6)
    none = ~tech_on.any(axis=2)
    tech_on[none, int(np.argmax(tech_p))] = True
    tech_code = (tech_on * (1 << tech_bits)).sum(axis=2)
    tech_lookup = np.array(  # bit j of the code = TECHNIQUES[j] used; contract order within the text
        [";".join(t for j, t in enumerate(TECHNIQUES) if c >> j & 1) for c in range(1 << len(TECHNIQUES))],
        dtype=object,
    )
    tech_missing = rng.random((n, k_max)) < p["missing_techniques"]
    mchoices = np.array(p["minutes_choices"], dtype=np.int64)
    u_min = rng.random((n, k_max))
    minutes = np.where(
        np.arange(k_max)[None, :] == 0,
        _pick(u_min, p["minutes_first_shares"], mchoices),
        _pick(u_min, p["minutes_later_shares"], mchoices),
    )
    return SessionDetails(
        focus=focus,
        therapist=ther,
        therapist_missing=ther_missing,
        technique_text=tech_lookup[tech_code],
        techniques_missing=tech_missing,
        minutes=minutes,
    )


def draw_measurements(
    rng: np.random.Generator, p: dict[str, Any], t: Trajectories, cal: Calendar, s: SessionDetails
) -> Measured:
    """NPRS before and after each session, hip IR both sides, LEFS; then which of them were taken."""
    n, k_max = cal.days.shape
    weeks = cal.weeks
    pre_latent = t.level[:, None] + t.slope[:, None] * weeks + p["residual_sd"] * rng.standard_normal((n, k_max))
    nprs_pre = np.clip(np.rint(pre_latent), 0, 10)
    hipish = np.isin(s.focus, HIP_FOCI)
    drop = np.maximum(
        0.0,
        np.where(hipish, p["immediate_drop_hip"], p["immediate_drop_knee"])
        + p["immediate_drop_sd"] * rng.standard_normal((n, k_max)),
    )
    nprs_post = np.clip(np.rint(pre_latent - drop), 0, 10)
    res = float(p["hip_ir_resolution"])
    ir_base = p["hip_ir_mean"] + p["hip_ir_sd"] * rng.standard_normal(n)
    ir_pre, ir_post = [], []
    for _side in (IR_LEFT, IR_RIGHT):
        side_base = ir_base + p["hip_ir_side_sd"] * rng.standard_normal(n)
        pre = side_base[:, None] + t.ir_slope[:, None] * weeks + p["hip_ir_error_sd"] * rng.standard_normal((n, k_max))
        imm = np.where(hipish, p["hip_ir_immediate_hip"], p["hip_ir_immediate_knee"])
        post = pre + imm + p["hip_ir_error_sd"] * rng.standard_normal((n, k_max))
        ir_pre.append(np.clip(np.rint(pre / res) * res, 0, 90))
        ir_post.append(np.clip(np.rint(post / res) * res, 0, 90))
    # function follows pain: LEFS rises as NPRS falls, with its own noise
    lefs_base = (
        p["lefs_mean"]
        + p["lefs_per_nprs"] * (t.level - p["baseline_nprs_mean"])
        + p["lefs_sd"] * rng.standard_normal(n)
    )
    lefs = np.clip(
        np.rint(
            lefs_base[:, None]
            + p["lefs_per_nprs"] * t.slope[:, None] * weeks
            + p["lefs_error_sd"] * rng.standard_normal((n, k_max))
        ),
        0,
        80,
    )
    # which measurements are taken (before dropout decides which sessions happen)
    nprs_pre_taken = rng.random((n, k_max)) >= p["missing_nprs_pre"]
    post_taken = rng.random((n, k_max)) < p["post_taken"]
    ir_taken = rng.random((n, k_max)) < p["hip_ir_taken"]
    one_side = rng.random((n, k_max)) < p["hip_ir_one_side"]
    left_only = rng.random((n, k_max)) < 0.5
    first = np.arange(k_max)[None, :] == 0
    lefs_taken = rng.random((n, k_max)) < np.where(first, p["lefs_taken_first"], p["lefs_taken_later"])
    return Measured(
        nprs_pre=nprs_pre,
        nprs_post=nprs_post,
        ir_pre=(ir_pre[0], ir_pre[1]),
        ir_post=(ir_post[0], ir_post[1]),
        lefs=lefs,
        nprs_pre_taken=nprs_pre_taken,
        post_taken=post_taken,
        ir_left_taken=ir_taken & ~(one_side & ~left_only),
        ir_right_taken=ir_taken & ~(one_side & left_only),
        lefs_taken=lefs_taken,
    )


def draw_attendance(rng: np.random.Generator, p: dict[str, Any], m: Measured, cal: Calendar) -> np.ndarray:
    """Which potential sessions happen: the planned course, ended early by dropout that depends on the
    pain recorded so far (no progress, or recovered), and nothing after the data-extract date."""
    n, k_max = cal.days.shape
    planned = np.clip(1 + rng.poisson(max(float(p["planned_sessions_mean"]) - 1, 0.0), n), 1, k_max)
    u_drop = rng.random((n, k_max))
    observed = np.where(m.nprs_pre_taken, m.nprs_pre, np.nan)
    attend = np.zeros((n, k_max), dtype=bool)
    attend[:, 0] = True
    baseline_obs = observed[:, 0]
    last_obs = observed[:, 0].copy()
    for k in range(1, k_max):
        improvement = baseline_obs - last_obs  # NaN when the baseline was not recorded: no judgement
        not_improving = (k >= p["no_progress_after_sessions"]) & (improvement < p["no_progress_points"])
        recovered = last_obs <= p["recovered_nprs"]
        p_stop = p["dropout_base"] + p["dropout_no_progress"] * not_improving + p["dropout_recovered"] * recovered
        attend[:, k] = (
            attend[:, k - 1] & (k < planned) & (u_drop[:, k] >= p_stop) & (cal.days[:, k] <= cal.reference_day)
        )
        last_obs = np.where(attend[:, k] & ~np.isnan(observed[:, k]), observed[:, k], last_obs)
    return attend
