"""The therapist's "needs attention" worklist: who to look at on Monday, and why (never shared with peers).

Pure functions on the long analysis dataset. For each client with the primary measure recorded, the
latest value is compared with the first (baseline) and with the best so far, using the measure's
MCID (:meth:`analysis.contract.Measure.mcid_needed`: the smaller of the points and percent MCIDs).
Each client gets one status, the first that applies:

1. ``worse``: the latest value is worse than baseline by the MCID or more;
2. ``relapsed``: an earlier value reached the MCID improvement, the latest no longer does;
3. ``no important improvement``: at least ``min_sessions`` sessions or ``min_weeks`` weeks of care and no
   value has reached the MCID improvement;
4. ``low baseline``: the MCID improvement cannot be reached from this baseline (e.g. 1/10 on NPRS), so
   the rule cannot judge progress -- shown as such, not as a failure;
5. ``improved`` (reached the MCID and still there) or ``too early`` (fewer sessions and weeks than the
   rule needs): not on the worklist.

A client is *active* when seen within ``active_weeks`` of the last session in the data. The worklist
is sorted by urgency: active clients first (they are the ones to act on this week), then by status
(worse first), then the most recently seen, then id. Every threshold comes from params
``report.attention``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.contract import Measure
from analysis.params_schema import Attention

STATUSES = ("worse", "relapsed", "no important improvement", "low baseline", "improved", "too early")
ON_WORKLIST = STATUSES[:4]
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
    "values",
    "therapist_id",
]


def classify(
    baseline: float, values: list[float], sessions: int, weeks: float, measure: Measure, cfg: Attention
) -> str:
    """One client's status (see the module docstring); ``values`` in time order, baseline first."""
    needed = float(measure.mcid_needed(baseline))
    improvements = [float(measure.improvement(baseline, v)) for v in values[1:]]
    latest = improvements[-1] if improvements else 0.0
    best = max(improvements) if improvements else -math.inf
    reachable = float(measure.improvement(baseline, measure.minimum if measure.lower_is_better else measure.maximum))
    if improvements and latest <= -needed + 1e-9:
        return "worse"
    if best >= needed - 1e-9:
        return "improved" if latest >= needed - 1e-9 else "relapsed"
    if reachable < needed - 1e-9:
        return "low baseline"
    if sessions >= cfg.min_sessions or weeks >= cfg.min_weeks:
        return "no important improvement"
    return "too early"


def client_table(
    dataset: pd.DataFrame, measure: Measure, timing: str, group: pd.Series, cfg: Attention
) -> pd.DataFrame:
    """One row per client with the primary measure: status, visits, scores, and whether to look again.

    Returns
    -------
    DataFrame with :data:`CLIENT_COLUMNS`: ``first_visit``/``last_visit`` (ISO dates of any session),
    ``sessions`` (sessions with a value), ``weeks`` (first to last value), ``baseline``, ``latest``,
    ``best`` (the best value), ``change`` (latest - baseline), ``needed`` (MCID in points for this
    client), ``values`` (list, in time order, for the sparkline), ``therapist_id`` (the client's usual
    therapist: most sessions). Sorted by urgency (see the module docstring).
    """
    d = dataset.assign(group=group)
    visits = d.groupby("client_id", sort=True).agg(
        first_visit=("session_date", "min"), last_visit=("session_date", "max")
    )
    visit_rows = visits.to_dict("index")
    usual = (
        d.drop_duplicates("session_id")
        .dropna(subset=["therapist_id"])
        .groupby(["client_id", "therapist_id"], sort=True)
        .size()
        .reset_index(name="n")
        .sort_values(["client_id", "n", "therapist_id"], ascending=[True, False, True], kind="mergesort")
        .drop_duplicates("client_id")
        .set_index("client_id")["therapist_id"]
    )
    m = d[(d["measure"] == measure.key) & (d["timing"] == timing) & d["value"].notna()]
    m = m.sort_values(["client_id", "session_number"], kind="mergesort")
    last_day = pd.to_datetime(d["session_date"]).max()
    rows = []
    for cid, g in m.groupby("client_id", sort=True):
        values = [float(v) for v in g["value"]]
        base = values[0]
        weeks = float(g["weeks_since_first"].max() - g["weeks_since_first"].min())
        status = classify(base, values, len(values), weeks, measure, cfg)
        v = visit_rows[cid]
        last = pd.Timestamp(v["last_visit"])
        better = min if measure.lower_is_better else max
        rows.append(
            dict(
                client_id=str(cid),
                group=str(g["group"].iloc[0]),
                status=status,
                on_worklist=status in ON_WORKLIST,
                active=bool((last_day - last).days <= 7 * cfg.active_weeks),
                first_visit=pd.Timestamp(v["first_visit"]).date().isoformat(),
                last_visit=last.date().isoformat(),
                sessions=len(values),
                weeks=weeks,
                baseline=base,
                latest=values[-1],
                best=better(values),
                change=values[-1] - base,
                needed=float(measure.mcid_needed(base)),
                values=values,
                therapist_id=str(usual.get(cid, "")) if cid in usual.index else "",
            )
        )
    out = pd.DataFrame(rows, columns=CLIENT_COLUMNS)
    if out.empty:
        return out
    rank = out["status"].map({s: i for i, s in enumerate(STATUSES)})
    recency = -pd.to_datetime(out["last_visit"]).to_numpy().astype("int64")
    order = np.lexsort((out["client_id"].to_numpy(), recency, rank.to_numpy(), ~out["active"].to_numpy()))
    return out.iloc[order].reset_index(drop=True)


def worklist(clients: pd.DataFrame) -> pd.DataFrame:
    """The clients who need attention, most urgent first (rows of :func:`client_table` on the worklist)."""
    return clients[clients["on_worklist"]].reset_index(drop=True)


def counts_by_status(clients: pd.DataFrame) -> dict[str, int]:
    """Clients per status, in :data:`STATUSES` order (zeros included)."""
    c = clients["status"].value_counts()
    return {s: int(c.get(s, 0)) for s in STATUSES}
