"""Peer report content: aggregate tables only, every count suppressed below ``report.min_cell``.

Pure functions from the analysis dataset, the exclusion flow and the model
results to tables the peer template shows. No client or session id, no
per-client value and no count in 1..min_cell-1 leaves this module; counts
that could be recovered by subtraction are suppressed too (complementary
suppression via :func:`analysis.privacy.suppress_table`, and small exclusion
steps of the flow are merged with the next step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.contract import TECHNIQUES
from analysis.privacy import pinned_cells, suppress_count, suppress_table
from analysis.privacy.summaries import rounded, summaries_shown


@dataclass(frozen=True)
class FlowBox:
    """One box of the STROBE flow diagram: clients at a step and who left before it."""

    step: str
    clients: str
    excluded: str
    reason: str


def peer_flow(flow: pd.DataFrame, min_cell: int) -> tuple[list[FlowBox], list[FlowBox]]:
    """The exclusion flow made safe for peers.

    A step that loses 1..min_cell-1 clients is merged with the next step (its
    clients count is not shown and the exclusions are added up with both
    reasons), so no small exclusion can be worked out by subtracting two shown
    counts. If even the merged exclusions stay small at the end, the count
    before them is hidden as well.

    Parameters
    ----------
    flow : columns step, clients, excluded_clients, reason; rows whose reason is
        ``group`` are the analysed groups.

    Returns
    -------
    (steps, groups) : lists of :class:`FlowBox` with counts as text ("<5" where suppressed).
    """
    is_group = flow["reason"].astype("string").fillna("").eq("group")
    steps = flow[~is_group].reset_index(drop=True)
    groups = flow[is_group].reset_index(drop=True)
    boxes: list[dict[str, Any]] = []
    pending_excl, pending_reasons = 0, list[str]()
    for i, (_, r) in enumerate(steps.iterrows()):
        excl = int(r["excluded_clients"]) + pending_excl
        reasons = pending_reasons + ([str(r["reason"])] if int(r["excluded_clients"]) > 0 else [])
        if 0 < excl < min_cell and i < len(steps) - 1:
            pending_excl, pending_reasons = excl, reasons
            continue
        pending_excl, pending_reasons = 0, []
        boxes.append(
            dict(
                step=str(r["step"]), clients=int(r["clients"]), excluded=excl, reason="; ".join(x for x in reasons if x)
            )
        )
    # A small exclusion left at the end cannot move forward: fold the step before it into it instead.
    hide_first = False
    while len(boxes) >= 2 and 0 < boxes[-1]["excluded"] < min_cell:
        if len(boxes) == 2:
            hide_first = True  # only "received" is left to pair with: its count is not shown
            break
        prev = boxes.pop(-2)
        boxes[-1]["excluded"] += prev["excluded"]
        boxes[-1]["reason"] = "; ".join(x for x in (prev["reason"], boxes[-1]["reason"]) if x)
    out: list[FlowBox] = []
    for j, b in enumerate(boxes):
        out.append(
            FlowBox(
                step=b["step"],
                clients=("not shown" if (hide_first and j == 0) else suppress_count(b["clients"], min_cell)),
                excluded=suppress_count(b["excluded"], min_cell),
                reason=b["reason"],
            )
        )
    g = pd.DataFrame({"step": groups["step"].astype(str), "n": groups["clients"].astype(float)})
    if len(g):
        wide = suppress_table(
            pd.DataFrame([g["n"].to_list() + [g["n"].sum()]], columns=[*g["step"], "total"]),
            [*g["step"], "total"],
            min_cell,
        )
        group_boxes = [FlowBox(step=s, clients=str(wide[s].iloc[0]), excluded="0", reason="group") for s in g["step"]]
    else:
        group_boxes = []
    return out, group_boxes


def shared_counts(
    n_by_group: pd.Series, flow: pd.DataFrame, n_analysed: int, min_cell: int
) -> dict[str, tuple[int, str]]:
    """The client counts the peer report shows outside Table 1's body: ``{name: (true value, shown)}``.

    Names: ``report:table1.n.<group>`` and ``report:table1.n.all`` (Table 1's header),
    ``report:flow.group.<group>`` and ``report:flow.last`` (the flow diagram's last step and groups),
    ``report:primary.n`` (clients in the primary model). The release audit
    (:func:`analysis.privacy.audit.coarsen`) may hide more of them; :func:`analysis.report.build.build_peer`
    shows its verdict.
    """
    shown = {str(g): suppress_count(n, min_cell) for g, n in n_by_group.items()}
    if any(v.startswith("<") for v in shown.values()):
        shown = {g: (v if v.startswith("<") else "*") for g, v in shown.items()}
    out = {f"report:table1.n.{g}": (int(n), shown[str(g)]) for g, n in n_by_group.items()}
    total = int(n_by_group.sum())
    out["report:table1.n.all"] = (total, suppress_count(total, min_cell))
    steps, boxes = peer_flow(flow, min_cell)
    is_group = flow["reason"].astype("string").fillna("").eq("group")
    true_groups = dict(zip(flow.loc[is_group, "step"].astype(str), flow.loc[is_group, "clients"], strict=True))
    for b in boxes:
        out[f"report:flow.group.{b.step.replace('analysed: ', '')}"] = (int(true_groups[b.step]), b.clients)
    if steps and steps[-1].clients != "not shown":
        out["report:flow.last"] = (int(flow.loc[~is_group, "clients"].iloc[-1]), steps[-1].clients)
    out["report:primary.n"] = (int(n_analysed), suppress_count(n_analysed, min_cell))
    return out


def baseline_table(clients: pd.DataFrame, min_cell: int) -> pd.DataFrame:
    """Baseline characteristics by group as suppressed counts (one row per variable level).

    Parameters
    ----------
    clients : one row per analysed client with columns group, sex, age_band, activity, knee.

    Returns
    -------
    DataFrame with variable, level and one string column per group plus ``total``
    ("<5" where suppressed, with complementary suppression across each row and
    within each variable's column block).
    """
    groups = sorted(clients["group"].unique())
    blocks = []
    for var in ("sex", "age_band", "activity", "knee"):
        tab = (
            clients.groupby([var, "group"], observed=True, sort=True)
            .size()
            .unstack("group")
            .reindex(columns=groups)
            .fillna(0)
        )
        tab["total"] = tab.sum(axis=1)
        tab = tab.reset_index().rename(columns={var: "level"}).assign(variable=var)
        tab["level"] = tab["level"].astype(str)
        # column totals are the group sizes, shown elsewhere: suppress within the block as if they were a row
        totals = pd.DataFrame([{**{g: tab[g].sum() for g in [*groups, "total"]}, "level": "(all)", "variable": var}])
        full = pd.concat([tab, totals], ignore_index=True)
        safe = audited(full, suppress_table(full, [*groups, "total"], min_cell), [*groups, "total"], min_cell)
        blocks.append(safe.iloc[:-1])
    out = pd.concat(blocks, ignore_index=True)
    return out[["variable", "level", *groups, "total"]]


def audited(full: pd.DataFrame, safe: pd.DataFrame, cols: list[str], min_cell: int) -> pd.DataFrame:
    """Suppress more until no hidden cell of ``safe`` is pinned by the shown numbers (:func:`pinned_cells`).

    Each round hides the smallest count still shown (a 0 included) in the row or column of a pinned cell,
    as a complementary "*". The totals row (the group sizes) is known to peers and stays.
    """
    counts = full[cols].apply(pd.to_numeric, errors="coerce").fillna(0).to_numpy(dtype=float)
    hidden = safe[cols].isin(["*"]).to_numpy() | safe[cols].apply(lambda c: c.str.startswith("<")).to_numpy()
    safe = safe.copy()
    # the totals row (group sizes, and the number of clients) is treated as known to peers, the worst case
    last = len(counts) - 1
    small = safe[cols].apply(lambda c: c.str.startswith("<")).to_numpy()
    hidden[last, :] = small[last, :] = False
    for _ in range(2 * counts.size):
        pinned = pinned_cells(counts, hidden, min_cell, small)
        if not pinned:
            return safe
        lines = {c for i, j in pinned for c in [(i, k) for k in range(len(cols))] + [(k, j) for k in range(last)]}
        shown = sorted((counts[c], c) for c in lines if not hidden[c] and c[0] != last)
        if shown:
            _, (a, b) = shown[0]  # the smallest shown count (a 0 too) in a line of a pinned cell
            hidden[a, b] = True
            safe.iloc[a, _position(safe, cols[b])] = "*"
            continue
        # everything beside them is hidden already: "<5" itself is the clue (e.g. two rows "<5" of a group
        # of 8 must be 4 and 4), so those cells are shown as "*" (hidden, with no hint of their size)
        relabel = [c for c in sorted(lines) if small[c] and c[0] != last]
        if not relabel:
            break
        for c in relabel:
            small[c] = False
            safe.iloc[c[0], _position(safe, cols[c[1]])] = "*"
    if pinned_cells(counts, hidden, min_cell, small):  # no way found: show nothing of this block
        safe.iloc[:last, [_position(safe, c) for c in cols]] = "*"
    return safe


def continuous_summary(clients: pd.DataFrame, min_cell: int) -> pd.DataFrame:
    """Median (IQR) of the baseline pain (when ``clients`` has ``baseline_pain``), symptom weeks and sitting
    hours by group.

    A group of fewer than ``min_cell`` clients gets no quartiles: with one or
    two clients they would be the clients' own values. The baseline pain (a 0-10 score) follows the
    stricter rule of :mod:`analysis.privacy.summaries`: rounded to 1 decimal, and shown only when its
    median and quartiles, with the bundle's mean and SD, fit more than one set of scores.

    Returns
    -------
    DataFrame with variable, group, median, q1, q3, n_missing (a count: suppressed by the caller).
    """
    rows = []
    for var in [v for v in ("baseline_pain", "symptom_weeks", "sitting_hours") if v in clients.columns]:
        for g, d in clients.groupby("group", sort=True):
            v = d[var].astype(float)
            score = var == "baseline_pain"
            ok = v.notna().sum() >= min_cell and (not score or summaries_shown(v.dropna().tolist()))
            q = v.quantile([0.25, 0.5, 0.75]) if ok else pd.Series([np.nan] * 3, index=[0.25, 0.5, 0.75])
            if score and ok:
                q = q.map(rounded)
            rows.append(
                dict(variable=var, group=g, median=q[0.5], q1=q[0.25], q3=q[0.75], n_missing=int(v.isna().sum()))
            )
    return pd.DataFrame(rows)


def intervention_description(sessions: pd.DataFrame, min_cell: int) -> dict[str, Any]:
    """TIDieR-style description of what was delivered, from the session records.

    Parameters
    ----------
    sessions : one row per analysed session: client_id, group, session_date, focus,
        techniques (';'-separated or NA), minutes.

    Returns
    -------
    dict with ``techniques`` (DataFrame: technique, sessions (suppressed text),
    share (% of sessions)), ``focus`` (DataFrame: focus, sessions, share),
    ``minutes``, ``sessions_per_client`` and ``spacing_days`` (dicts of median,
    q1, q3 by group name).
    """
    s = sessions.sort_values(["client_id", "session_date"], kind="mergesort")
    n = len(s)
    tech = s["techniques"].astype("string").fillna("").str.split(";")
    counts = {t: int(tech.map(lambda xs, t=t: t in xs).sum()) for t in TECHNIQUES}
    tech_df = pd.DataFrame({"technique": list(counts), "n_sessions": list(counts.values())})
    tech_df = tech_df.assign(share=100 * tech_df["n_sessions"] / max(n, 1))
    tech_df = tech_df.sort_values(["n_sessions", "technique"], ascending=[False, True]).reset_index(drop=True)
    tech_df["sessions"] = [suppress_count(v, min_cell) for v in tech_df["n_sessions"]]
    tech_df["share"] = [
        np.nan if 0 < v < min_cell else sh for v, sh in zip(tech_df["n_sessions"], tech_df["share"], strict=True)
    ]
    focus = s["focus"].astype(str).value_counts().sort_index()
    focus_df = pd.DataFrame({"focus": focus.index, "n_sessions": focus.to_numpy()})
    # the total number of sessions is shown, so one hidden focus could be found by subtraction:
    # suppress with the total as an extra row, which makes suppress_table hide a second cell
    with_total = pd.concat([focus_df, pd.DataFrame({"focus": ["(total)"], "n_sessions": [n]})], ignore_index=True)
    focus_df["sessions"] = suppress_table(with_total, ["n_sessions"], min_cell)["n_sessions"].iloc[:-1].to_numpy()
    focus_df["share"] = [
        np.nan if str(t).startswith(("<", "*")) else 100 * v / max(n, 1)
        for t, v in zip(focus_df["sessions"], focus_df["n_sessions"], strict=True)
    ]
    per_client = s.groupby(["group", "client_id"], sort=True).size().rename("n").reset_index()
    gaps = s.assign(gap=s.groupby("client_id")["session_date"].diff().dt.days).dropna(subset=["gap"])
    return dict(
        n_sessions=n,
        techniques=tech_df.drop(columns="n_sessions"),
        focus=focus_df.drop(columns="n_sessions"),
        minutes=_quartiles(s, "minutes", min_cell),
        sessions_per_client=_quartiles(per_client, "n", min_cell),
        spacing_days=_quartiles(gaps, "gap", min_cell),
    )


def _quartiles(df: pd.DataFrame, col: str, min_cell: int) -> dict[str, dict[str, float]]:
    """Median and quartiles of ``col`` overall and by group; none for fewer than ``min_cell`` clients."""
    out = {}
    for g, d in [("all", df), *sorted(df.groupby("group", sort=True), key=lambda x: str(x[0]))]:
        v = d[col].astype(float)
        out[str(g)] = (
            {"median": float(v.median()), "q1": float(v.quantile(0.25)), "q3": float(v.quantile(0.75))}
            if d["client_id"].nunique() >= min_cell
            else {"median": math.nan, "q1": math.nan, "q3": math.nan}
        )
    return out


def _position(frame: pd.DataFrame, column: str) -> int:
    """The position of a column (the tables built here have unique column names)."""
    pos = frame.columns.get_loc(column)
    if not isinstance(pos, int):
        raise ValueError(f"column {column!r} is not unique")
    return pos
