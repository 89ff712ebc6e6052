"""Therapist report content: per-client progress and who is not improving (never shared with peers).

Pure functions on the long analysis dataset (one row per client x session x
measure x timing; see :mod:`analysis.join`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.contract import Measure

PROGRESS_COLUMNS = ["client_id", "group", "session_number", "week", "value", "baseline_value"]
NOT_IMPROVING_COLUMNS = [
    "client_id", "group", "sessions", "weeks", "baseline", "latest", "best_improvement", "needed",
]


def assign_group(dataset: pd.DataFrame, hip_focused: tuple[str, ...], comparator: tuple[str, ...]) -> pd.Series:
    """The compared group of each row from the baseline focus: hip-focused, knee-focused or other."""
    bf = dataset["baseline_focus"].astype("string")
    return pd.Series(
        np.select([bf.isin(hip_focused).fillna(False), bf.isin(comparator).fillna(False)],
                  ["hip-focused", "knee-focused"], default="other"),
        index=dataset.index, dtype="string",
    )


def client_progress(dataset: pd.DataFrame, measure: str, timing: str, group: pd.Series) -> pd.DataFrame:
    """Each client's values of one measure over time.

    Returns
    -------
    DataFrame with client_id, group, session_number, week (weeks since first
    session), value, baseline_value; sorted by client_id, session_number.
    Rows without a value are left out (nothing to draw).
    """
    d = dataset.assign(group=group)
    d = d[(d["measure"] == measure) & (d["timing"] == timing) & d["value"].notna()]
    d = d.rename(columns={"weeks_since_first": "week"})
    return d[PROGRESS_COLUMNS].sort_values(["client_id", "session_number"], kind="mergesort").reset_index(drop=True)


def mcid_needed(measure: Measure, baseline: float) -> float:
    """Improvement (points) that counts as clinically important from ``baseline`` (see Measure.mcid_needed)."""
    return measure.mcid_needed(baseline)


def not_improving(progress: pd.DataFrame, measure: Measure, min_sessions: int, min_weeks: float) -> pd.DataFrame:
    """Clients with no clinically important improvement after enough care to expect one.

    A client is listed when they have had at least ``min_sessions`` sessions
    with this measure or at least ``min_weeks`` weeks since the first session,
    and no value so far reached the MCID improvement from baseline. A prompt to
    reassess or refer (some knee pain is knee pathology and needs other care),
    not a judgement.

    Parameters
    ----------
    progress : from :func:`client_progress`.

    Returns
    -------
    DataFrame with :data:`NOT_IMPROVING_COLUMNS`: sessions (number of sessions
    with a value), weeks (since first session, to the latest value), baseline,
    latest, best_improvement (points, positive = better) and needed (MCID in
    points for this client). Sorted by client_id.
    """
    if progress.empty or (not measure.mcid_points and not measure.mcid_percent):
        return pd.DataFrame(columns=NOT_IMPROVING_COLUMNS)
    rows = []
    for cid, d in progress.groupby("client_id", sort=True):
        base = float(d["baseline_value"].iloc[0])
        if not math.isfinite(base):
            continue
        later = d[d["session_number"] > 1]
        sessions = int(d["session_number"].max())
        weeks = float(d["week"].max())
        if sessions < min_sessions and weeks < min_weeks:
            continue
        improvement = measure.improvement(base, later["value"])
        best = float(improvement.max()) if len(improvement) else math.nan
        needed = mcid_needed(measure, base)
        if math.isfinite(best) and best >= needed - 1e-9:
            continue
        rows.append(dict(client_id=cid, group=str(d["group"].iloc[0]), sessions=sessions, weeks=weeks,
                         baseline=base, latest=float(d["value"].iloc[-1]), best_improvement=best, needed=needed))
    return pd.DataFrame(rows, columns=NOT_IMPROVING_COLUMNS)


def glance(dataset: pd.DataFrame, group: pd.Series) -> dict:
    """Headline counts: clients, sessions, follow-up (median and range, weeks) and clients by group.

    Returns
    -------
    dict with n_clients, n_sessions, followup_median, followup_min, followup_max,
    by_group (dict group -> clients), first_date, last_date (ISO strings).
    """
    d = dataset.assign(group=group)
    per_client = d.groupby("client_id", sort=True).agg(weeks=("weeks_since_first", "max"),
                                                        group=("group", "first"))
    dates = pd.to_datetime(d["session_date"])
    return dict(
        n_clients=int(d["client_id"].nunique()),
        n_sessions=int(d["session_id"].nunique()),
        followup_median=float(per_client["weeks"].median()) if len(per_client) else math.nan,
        followup_min=float(per_client["weeks"].min()) if len(per_client) else math.nan,
        followup_max=float(per_client["weeks"].max()) if len(per_client) else math.nan,
        by_group={str(k): int(v) for k, v in per_client["group"].value_counts().sort_index().items()},
        first_date=dates.min().date().isoformat() if len(dates) else "",
        last_date=dates.max().date().isoformat() if len(dates) else "",
    )
