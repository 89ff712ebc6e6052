"""The therapist's "needs attention" worklist: who to look at on Monday, and why (never shared with peers).

Pure functions on the long analysis dataset. For each client with the primary measure recorded, the
latest value is compared with the first (baseline) and with the best so far, using the measure's
MCID (:meth:`analysis.contract.Measure.mcid_needed`: the smaller of the points and percent MCIDs).
Each client gets one status, the first that applies:

1. ``worse``: the latest value is worse than baseline by the MCID or more *and* by the measure's minimal
   detectable change (``mdc_points`` in the registry), so a change within test-retest error (3 -> 4 on
   the NPRS) is never called worse;
2. ``relapsed``: an earlier value reached the MCID improvement, the latest no longer does;
3. ``behind expected recovery``: the latest value (after the first, within the follow-up window) lies
   beyond the expected-recovery band on the worse side -- above it when lower is better -- i.e. this
   client recovers more slowly than the primary model expects for a client with the same first score,
   group and covariates (:mod:`analysis.model.expected`, :mod:`analysis.report.recovery`; band level
   params ``report.attention.expected_band``). Only where the model step wrote a band;
4. ``no important improvement``: at least ``min_sessions`` sessions or ``min_weeks`` weeks of care and no
   value has reached the MCID improvement;
5. ``low baseline``: the MCID improvement cannot be reached from this baseline (e.g. 1/10 on NPRS), so
   the rule cannot judge progress -- shown as such, not as a failure;
6. ``improved`` (reached the MCID and still there) or ``too early`` (fewer sessions and weeks than the
   rule needs): not on the worklist.

A client is *active* when seen within ``active_weeks`` of the end of the data. "Weeks since the last
visit" is counted on the real calendar: from the de-identification's calendar sidecar when the dates
were shifted per client (:mod:`analysis.deidentify.calendar`), else from the dataset's own dates. The
worklist is sorted by urgency: active clients first (they are the ones to act on this week), then by
status (worse first), then the most recently seen, then id. Every threshold comes from params
``report.attention``. ``sessions`` counts every session the client attended (the progress sheet
shows the same number).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from analysis.contract import Measure
from analysis.params_schema import Attention
from analysis.report import recovery as rc

STATUSES = (
    "worse",
    "relapsed",
    "behind expected recovery",
    "no important improvement",
    "low baseline",
    "improved",
    "too early",
)
ON_WORKLIST = STATUSES[:5]
CLIENT_COLUMNS = [
    "client_id",
    "group",
    "status",
    "on_worklist",
    "active",
    "first_visit",
    "last_visit",
    "sessions",
    "weeks",
    "baseline",
    "latest",
    "best",
    "change",
    "needed",
    "expected",
    "expected_low",
    "expected_high",
    "values",
    "therapist_id",
    "weeks_since_last",
    "new",
]
#: the columns of ``clients.csv`` / ``worklist.csv`` (therapist-only), in order, from :data:`CLIENT_COLUMNS`
CSV_COLUMNS = {
    "client_id": "pseudonym",
    "group": "group",
    "sessions": "sessions",
    "first_visit": "first_visit",
    "last_visit": "last_visit",
    "weeks_since_last": "weeks_since_last_visit",
    "baseline": "first_score",
    "latest": "latest_score",
    "best": "best_score",
    "expected": "expected_score",
    "expected_low": "expected_low",
    "expected_high": "expected_high",
    "status": "status",
    "on_worklist": "on_worklist",
    "active": "active",
    "new": "new_since_last_report",
    "therapist_id": "usual_therapist",
}


def classify(
    baseline: float,
    values: list[float],
    sessions: int,
    weeks: float,
    measure: Measure,
    cfg: Attention,
    behind: bool = False,
) -> str:
    """One client's status (see the module docstring); ``values`` in time order, baseline first; ``behind``:
    the latest value lies beyond the expected-recovery band on the worse side."""
    needed = float(measure.mcid_needed(baseline))
    worse_by = max(needed, measure.mdc_points or 0.0)
    improvements = [float(measure.improvement(baseline, v)) for v in values[1:]]
    latest = improvements[-1] if improvements else 0.0
    best = max(improvements) if improvements else -math.inf
    reachable = float(measure.improvement(baseline, measure.minimum if measure.lower_is_better else measure.maximum))
    if improvements and latest <= -worse_by + 1e-9:
        return "worse"
    if best >= needed - 1e-9 > latest:
        return "relapsed"
    if behind:
        return "behind expected recovery"
    if best >= needed - 1e-9:
        return "improved"
    if reachable < needed - 1e-9:
        return "low baseline"
    if sessions >= cfg.min_sessions or weeks >= cfg.min_weeks:
        return "no important improvement"
    return "too early"


def weeks_since_last(dataset: pd.DataFrame) -> pd.Series:
    """Whole weeks from each client's last session to the last session in the data (the dataset's own dates).

    The same rule as the de-identification's calendar sidecar (:func:`analysis.deidentify.calendar.calendar_frame`).
    """
    dates = pd.to_datetime(dataset["session_date"])
    last = dates.groupby(dataset["client_id"], sort=True).max()
    return ((dates.max() - last).dt.days // 7).astype("int64")


def client_table(
    dataset: pd.DataFrame,
    measure: Measure,
    timing: str,
    group: pd.Series,
    cfg: Attention,
    since_last: pd.Series | None = None,
    band: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per client with the primary measure: status, visits, scores, and whether to look again.

    ``since_last`` maps client_id -> whole weeks from the client's last visit to the end of the data on the
    real calendar (the de-identification's sidecar); without it the dataset's own dates are used. ``band`` is
    the expected-recovery band (:func:`analysis.report.recovery.band_table`); None or empty: no client is
    judged against it.

    Returns
    -------
    DataFrame with :data:`CLIENT_COLUMNS`: ``first_visit``/``last_visit`` (ISO dates of any session, as in
    the dataset), ``sessions`` (sessions attended), ``weeks`` (first to last value), ``baseline``,
    ``latest``, ``best`` (the best value), ``change`` (latest - baseline), ``needed`` (MCID in points for
    this client), ``expected``, ``expected_low``, ``expected_high`` (the expected score and the band at the
    latest value's week, the band cut to the measure's range; NaN without a band there), ``values`` (list,
    in time order, for the sparkline), ``therapist_id`` (the client's usual therapist: most sessions),
    ``weeks_since_last`` (whole weeks since the last visit), ``active`` (``weeks_since_last < active_weeks``:
    seen within the last ``active_weeks`` weeks), ``new`` (False; see :func:`mark_new`). Sorted by urgency
    (see the module docstring).
    """
    d = dataset.assign(group=group)
    dates = pd.to_datetime(d["session_date"]).groupby(d["client_id"], sort=True)
    first_visit = dates.min().dt.strftime("%Y-%m-%d").to_dict()
    last_visit = dates.max().dt.strftime("%Y-%m-%d").to_dict()
    attended = d.drop_duplicates("session_id").groupby("client_id", sort=True).size().to_dict()
    own = weeks_since_last(d)
    gap = (own if since_last is None else since_last.reindex(own.index).fillna(own)).to_dict()
    usual = (
        d.drop_duplicates("session_id")
        .dropna(subset=["therapist_id"])
        .groupby(["client_id", "therapist_id"], sort=True)
        .size()
        .reset_index(name="n")
        .sort_values(["client_id", "n", "therapist_id"], ascending=[True, False, True], kind="mergesort")
        .drop_duplicates("client_id")
        .set_index("client_id")["therapist_id"]
        .to_dict()
    )
    m = d[(d["measure"] == measure.key) & (d["timing"] == timing) & d["value"].notna()]
    m = m.sort_values(["client_id", "session_number"], kind="mergesort")
    bands = _split(band, ["week", "expected", "low", "high"]) if band is not None and not band.empty else {}
    per_client = _split(m, ["value", "weeks_since_first"])
    groups = m.drop_duplicates("client_id").set_index("client_id")["group"].to_dict()
    nan = float("nan")
    better = min if measure.lower_is_better else max
    rows = []
    for cid, (value_arr, at) in per_client.items():
        values = value_arr.tolist()
        base = values[0]
        weeks = float(at.max() - at.min())
        n_sessions = int(attended.get(cid, len(values)))
        point = _band_at(bands.get(str(cid)), float(at[-1])) if len(values) > 1 else None
        status = classify(base, values, n_sessions, weeks, measure, cfg, rc.is_behind(values[-1], point, measure))
        since = int(gap.get(cid, 0))
        rows.append(
            dict(
                client_id=str(cid),
                group=str(groups[cid]),
                status=status,
                on_worklist=status in ON_WORKLIST,
                active=bool(since < cfg.active_weeks),
                first_visit=first_visit[cid],
                last_visit=last_visit[cid],
                sessions=n_sessions,
                weeks=weeks,
                baseline=base,
                latest=values[-1],
                best=better(values),
                change=values[-1] - base,
                needed=float(measure.mcid_needed(base)),
                # two decimals: the scores are whole points, and the CSV's bytes must not carry float noise
                expected=round(point.expected, 2) if point else nan,
                expected_low=round(max(point.low, measure.minimum), 2) if point else nan,
                expected_high=round(min(point.high, measure.maximum), 2) if point else nan,
                values=values,
                therapist_id=str(usual.get(cid, "")),
                weeks_since_last=since,
                new=False,
            )
        )
    out = pd.DataFrame(rows, columns=CLIENT_COLUMNS)
    if out.empty:
        return out
    rank = out["status"].map({s: i for i, s in enumerate(STATUSES)})
    recency = out["weeks_since_last"].to_numpy()
    order = np.lexsort((out["client_id"].to_numpy(), recency, rank.to_numpy(), ~out["active"].to_numpy()))
    return out.iloc[order].reset_index(drop=True)


def _split(frame: pd.DataFrame, cols: list[str]) -> dict[Any, list[np.ndarray]]:
    """client_id -> its rows' ``cols`` as float arrays, in the frame's order (the frame sorted by client_id)."""
    ids = frame["client_id"].to_numpy()
    if not len(ids):
        return {}
    arrays = [frame[c].to_numpy(dtype=float) for c in cols]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    ends = np.r_[starts[1:], len(ids)]
    return {ids[a]: [x[a:b] for x in arrays] for a, b in zip(starts, ends, strict=True)}


def _band_at(rows: list[np.ndarray] | None, week: float) -> rc.BandPoint | None:
    """:func:`analysis.report.recovery.band_at` on one client's band arrays (week, expected, low, high)."""
    if rows is None:
        return None
    weeks = rows[0]
    if not weeks[0] - 1e-9 <= week <= weeks[-1] + 1e-9:
        return None
    return rc.BandPoint(*(float(np.interp(week, weeks, x)) for x in rows[1:]))


def worklist(clients: pd.DataFrame) -> pd.DataFrame:
    """The clients who need attention, most urgent first (rows of :func:`client_table` on the worklist)."""
    return clients[clients["on_worklist"]].reset_index(drop=True)


def mark_new(clients: pd.DataFrame, previous: pd.DataFrame | None) -> pd.DataFrame:
    """``new`` = on the worklist now and not, with this status, in the previous build's ``clients.csv``.

    ``previous`` has that file's columns (:data:`CSV_COLUMNS` names); None (no earlier build) marks nothing.
    """
    if previous is None or previous.empty:
        return clients.assign(new=False)
    before = previous.assign(_flag=previous["on_worklist"].astype(str).str.lower().isin(["true", "1"])).set_index(
        previous["pseudonym"].astype(str)
    )
    was = [
        cid in before.index and bool(before.at[cid, "_flag"]) and str(before.at[cid, "status"]) == status
        for cid, status in zip(clients["client_id"], clients["status"], strict=True)
    ]
    return clients.assign(new=clients["on_worklist"] & ~pd.Series(was, index=clients.index, dtype=bool))


def clients_csv(clients: pd.DataFrame) -> pd.DataFrame:
    """The finder as data: one row per client, :data:`CSV_COLUMNS` in the page's order."""
    out = clients[list(CSV_COLUMNS)].rename(columns=CSV_COLUMNS)
    return out


def counts_by_status(clients: pd.DataFrame) -> dict[str, int]:
    """Clients per status, in :data:`STATUSES` order (zeros included)."""
    c = clients["status"].value_counts()
    return {s: int(c.get(s, 0)) for s in STATUSES}
