"""The generator's parameters (params ``simulate``), the result type and small random-draw helpers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.special import ndtr

from analysis.contract import (
    ACTIVITIES,
    AGE_BANDS,
    FOCI,
    KNEES,
    SEXES,
    TECHNIQUES,
)
from analysis.errors import InputError

NPRS = "knee_pain_nprs"
IR_LEFT = "hip_ir_left_deg"
IR_RIGHT = "hip_ir_right_deg"
LEFS = "lefs"
MEASURES = (IR_LEFT, IR_RIGHT, NPRS, LEFS)  # alphabetical: the row order within a session
HIP_FOCI = ("hip", "hip_and_knee")
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
    truth : dict[str, Any]
        The true effects, the data-generating model, the seed and every parameter used.
    """

    clients: pd.DataFrame
    sessions: pd.DataFrame
    measurements: pd.DataFrame
    truth: dict[str, Any]


# --------------------------------------------------------------------------- configuration


def resolve_config(
    cfg: dict[str, Any], seed: int, n_clients: int | None = None, effect: float | None = None
) -> dict[str, Any]:
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
        raise InputError("params.yaml simulate.minutes_*shares: need one share per minutes_choices entry")
    return p


def dt64(text: str) -> np.datetime64:
    """An ISO date as numpy day precision (raises ValueError if invalid)."""
    return np.datetime64(str(text), "D")


def shares(mapping: dict[str, Any], order: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    cats = np.array([c for c in order if c in mapping], dtype=object)
    w = np.array([float(mapping[c]) for c in cats])
    return cats, w / w.sum()


def draw(rng: np.random.Generator, mapping: dict[str, Any], order: tuple[str, ...], size: int) -> np.ndarray:
    """``size`` categories drawn with the mapping's shares."""
    cats, w = shares(mapping, order)
    drawn: np.ndarray = cats[rng.choice(len(cats), size=size, p=w)]
    return drawn


def weekday_forward(days: np.ndarray) -> np.ndarray:
    """Move Saturdays and Sundays (days since 1970-01-01, a Thursday) to the next Monday."""
    dow = (days + 3) % 7  # Monday = 0
    moved: np.ndarray = days + np.where(dow == 5, 2, np.where(dow == 6, 1, 0))
    return moved


def sigmoid(x: np.ndarray) -> np.ndarray:
    p: np.ndarray = 1.0 / (1.0 + np.exp(-x))
    return p


def norm(weights: npt.ArrayLike) -> np.ndarray:
    """Weights scaled to sum to 1."""
    w = np.asarray(weights, dtype=float)
    scaled: np.ndarray = w / w.sum()
    return scaled


def blank(values: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """``values`` as an object array with None where ``missing`` (a blank cell in the tables)."""
    out = values.astype(object)
    out[missing] = None
    return out


def ids(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    """Pseudonyms such as C0001 / S00001, as an object array."""
    return np.char.add(prefix, np.char.zfill(numbers.astype(str), width)).astype(object)


def expected_recorded(mu: np.ndarray, sd: float) -> np.ndarray:
    """E[clip(round(mu + e), 0, 10)] for e ~ N(0, sd): the sum over j = 1..10 of P(recorded >= j)."""
    j = np.arange(1, 11)
    expected: np.ndarray = (1.0 - ndtr((j[None, :] - 0.5 - mu[:, None]) / sd)).sum(axis=1)
    return expected
