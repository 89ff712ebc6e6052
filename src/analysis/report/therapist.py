"""Therapist report content: per-client progress, every measure by group, the per-therapist breakdown
(never shared with peers; the worklist is :mod:`analysis.report.worklist`).

Pure functions on the long analysis dataset (one row per client x session x
measure x timing; see :mod:`analysis.join`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from analysis.contract import Measure, Registry

PROGRESS_COLUMNS = ["client_id", "group", "session_number", "week", "value", "baseline_value"]


def assign_group(dataset: pd.DataFrame, hip_focused: tuple[str, ...], comparator: tuple[str, ...]) -> pd.Series:
    """The compared group of each row from the baseline focus: hip-focused, knee-focused or other."""
    bf = dataset["baseline_focus"].astype("string")
    return pd.Series(
        np.select(
            [bf.isin(hip_focused).fillna(False), bf.isin(comparator).fillna(False)],
            ["hip-focused", "knee-focused"],
            default="other",
        ),
        index=dataset.index,
        dtype="string",
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


def at_timing(rows: pd.DataFrame, timing: str) -> pd.DataFrame:
    """The rows recorded at ``timing`` if the measure has any there, else all of them (a measure taken only
    after the session, or only once, is still summarised)."""
    at = rows["timing"] == timing
    return rows[at] if at.any() else rows


def mcid_needed(measure: Measure, baseline: float) -> float:
    """Improvement (points) that counts as clinically important from ``baseline`` (see Measure.mcid_needed)."""
    return measure.mcid_needed(baseline)


def glance(dataset: pd.DataFrame, group: pd.Series) -> dict[str, Any]:
    """Headline counts: clients, sessions, follow-up (median and range, weeks) and clients by group.

    Returns
    -------
    dict with n_clients, n_sessions, followup_median, followup_min, followup_max,
    by_group (dict group -> clients), first_date, last_date (ISO strings).
    """
    d = dataset.assign(group=group)
    per_client = d.groupby("client_id", sort=True).agg(weeks=("weeks_since_first", "max"), group=("group", "first"))
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


MEASURE_SUMMARY_COLUMNS = [
    "measure",
    "label",
    "unit",
    "group",
    "clients",
    "baseline_mean",
    "latest_mean",
    "change_mean",
    "reached_mcid",
]


def measure_summary(dataset: pd.DataFrame, registry: Registry, group: pd.Series, timing: str = "pre") -> pd.DataFrame:
    """Every measure in the registry, by group: first and latest value and the change (clients with >= 2 values).

    Returns
    -------
    DataFrame with :data:`MEASURE_SUMMARY_COLUMNS`; ``reached_mcid`` is the share of clients whose latest
    value is a clinically important improvement (None for measures without an MCID). Measures recorded
    ``pre`` are summarised at that timing, others at whatever timing they have.
    """
    d = dataset.assign(group=group)
    rows = []
    for key in registry.keys:
        m = registry[key]
        x = d[(d["measure"] == key) & d["value"].notna()]
        if x.empty:
            continue
        x = at_timing(x, timing).sort_values(["client_id", "session_number"], kind="mergesort")
        per = x.groupby("client_id", sort=True).agg(
            first=("value", "first"), latest=("value", "last"), n=("value", "size"), group=("group", "first")
        )
        per = per[per["n"] >= 2]
        for g, p in per.groupby("group", sort=True):
            reached = None
            if m.mcid_points or m.mcid_percent:
                need = m.mcid_needed(p["first"])
                reached = float((m.improvement(p["first"], p["latest"]) >= need - 1e-9).mean())
            rows.append(
                dict(
                    measure=key,
                    label=m.label,
                    unit=m.unit,
                    group=str(g),
                    clients=int(len(p)),
                    baseline_mean=float(p["first"].mean()),
                    latest_mean=float(p["latest"].mean()),
                    change_mean=float((p["latest"] - p["first"]).mean()),
                    reached_mcid=reached,
                )
            )
    return pd.DataFrame(rows, columns=MEASURE_SUMMARY_COLUMNS)


THERAPIST_COLUMNS = ["therapist_id", "clients", "sessions", "median_change", "improved", "needs_attention"]


def therapist_breakdown(dataset: pd.DataFrame, clients: pd.DataFrame) -> pd.DataFrame:
    """Per therapist: clients (as usual therapist), sessions given, median change of the primary measure,
    clients improved (reached the MCID and still there) and on the worklist. Small counts are shown as they
    are (therapist-only page), with the caution that a few clients say little.
    """
    sessions = (
        dataset.drop_duplicates("session_id").dropna(subset=["therapist_id"]).groupby("therapist_id", sort=True).size()
    )
    rows = []
    for t, g in clients[clients["therapist_id"] != ""].groupby("therapist_id", sort=True):
        rows.append(
            dict(
                therapist_id=str(t),
                clients=int(len(g)),
                sessions=int(sessions.get(t, 0)),
                median_change=float(g["change"].median()),
                improved=int((g["status"] == "improved").sum()),
                needs_attention=int(g["on_worklist"].sum()),
            )
        )
    return pd.DataFrame(rows, columns=THERAPIST_COLUMNS)


def dates_note(
    first: str,
    last: str,
    shift_max_days: int = 0,
    has_calendar: bool = False,
    true_period: tuple[str, str] | None = None,
    real_view: bool = False,
) -> dict[str, str]:
    """What the page's dates are, in words: ``mode``, ``period`` (for the header) and ``note``.

    ``first``/``last`` are the dataset's own first and last session dates. Modes: ``recorded`` (dates as in
    the data, not shifted), ``real`` (the clinic's real-date view, dates restored from the crosswalk),
    ``shifted`` (per-client shifts; "active" and "weeks since the last visit" from the calendar sidecar),
    ``shifted-unknown`` (shifted, no sidecar: "active" is only approximate).
    """
    if real_view:
        return dict(
            mode="real",
            period=f"{first} to {last}",
            note="Real visit dates and the practice's own patient references (key holder's view: keep it private).",
        )
    if shift_max_days <= 0:
        return dict(
            mode="recorded",
            period=f"{first} to {last}",
            note='Dates as recorded in the data (not shifted); "active" and "weeks since the last visit" are '
            "counted to the last session in the data.",
        )
    period = f"{true_period[0]} to {true_period[1]} (real months)" if true_period else "real period unknown"
    shifted = (
        f"Visit dates on this page are shifted: each client's dates move by their own offset of up to "
        f"±{shift_max_days} days (de-identification), so a date here is not the real day and dates of "
        "different clients are not on one calendar. "
    )
    if has_calendar:
        return dict(
            mode="shifted",
            period=period,
            note=shifted + '"Active" and "weeks since the last visit" are real: recorded at de-identification '
            "(calendar.csv beside the tables). Real dates and the practice's own references: "
            "outcomes clinic-view --crosswalk DIR --out PRIVATE_DIR.",
        )
    return dict(
        mode="shifted-unknown",
        period=period,
        note=shifted + 'No calendar.csv was found beside the tables, so "active" and "weeks since the last '
        'visit" are counted on shifted dates and are only approximate: de-identify again with this version.',
    )
