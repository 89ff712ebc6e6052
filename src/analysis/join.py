"""Join: validated tables -> the long analysis dataset and the exclusion flow.

The analysis dataset has one row per client x session x measure x timing and
carries everything later steps need (time since first session, session number,
baseline values, baseline treatment focus, cumulative hip-focused sessions and
the client covariates), so the model and report steps never re-derive them.

No record vanishes silently: merges assert their cardinality, and every client
that does not reach the primary analysis is counted with its reason in the
STROBE-style flow (:func:`exclusion_flow`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis import lineage
from analysis.contract import TABLES
from analysis.errors import InputError
from analysis.params_schema import Params
from analysis.paths import check_outputs_outside_inputs, resolve
from analysis.store import write_csv, write_parquet

HIP_FOCI = ("hip", "hip_and_knee")

DATASET_COLUMNS = [
    "client_id",
    "clinic_id",
    "sex",
    "age_band",
    "symptom_weeks",
    "log_symptom_weeks",
    "sitting_hours",
    "activity",
    "knee",
    "session_id",
    "session_date",
    "therapist_id",
    "focus",
    "techniques",
    "minutes",
    "session_number",
    "n_sessions",
    "days_since_first",
    "weeks_since_first",
    "baseline_focus",
    "cum_hip_sessions",
    "measure",
    "timing",
    "value",
    "baseline_value",
    "change_from_baseline",
]
FLOW_COLUMNS = ["step", "clients", "sessions", "measurements", "excluded_clients", "reason"]


@dataclass(frozen=True)
class FlowConfig:
    """What defines reaching the primary analysis, for the flow.

    Attributes
    ----------
    measure, timing : the primary outcome (e.g. ``knee_pain_nprs``, ``pre``).
    followup_weeks : follow-up window; a follow-up must fall within it.
    hip_focused, comparator : baseline foci forming the two compared groups.
    """

    measure: str = "knee_pain_nprs"
    timing: str = "pre"
    followup_weeks: float = 12.0
    hip_focused: tuple[str, ...] = HIP_FOCI
    comparator: tuple[str, ...] = ("knee",)


def session_timeline(sessions: pd.DataFrame, hip_foci: tuple[str, ...] = HIP_FOCI) -> pd.DataFrame:
    """Per-session derived columns, one row per session.

    Sessions are ordered within client by date, then session_id, so clients
    with two sessions on one day are still ordered deterministically.

    Returns
    -------
    DataFrame with the session columns plus ``session_number`` (1-based),
    ``n_sessions``, ``days_since_first``, ``weeks_since_first``,
    ``baseline_focus`` and ``cum_hip_sessions`` (sessions with a focus in
    ``hip_foci`` -- params ``model.exposure.hip_focused`` -- up to and including this one).
    """
    s = sessions.sort_values(["client_id", "session_date", "session_id"], kind="mergesort").reset_index(drop=True)
    by_client = s.groupby("client_id", sort=False)
    first_date = by_client["session_date"].transform("min")
    days = (s["session_date"] - first_date).dt.days.astype("int64")
    is_hip = s["focus"].isin(hip_foci).astype("int64")
    return s.assign(
        session_number=by_client.cumcount().astype("int64") + 1,
        n_sessions=by_client["session_id"].transform("size").astype("int64"),
        days_since_first=days,
        weeks_since_first=days / 7.0,
        baseline_focus=by_client["focus"].transform("first"),
        cum_hip_sessions=is_hip.groupby(s["client_id"], sort=False).cumsum().astype("int64"),
    )


def build_analysis_dataset(
    clients: pd.DataFrame,
    sessions: pd.DataFrame,
    measurements: pd.DataFrame,
    hip_foci: tuple[str, ...] = HIP_FOCI,
) -> pd.DataFrame:
    """Join the typed contract tables into the long analysis dataset.

    Parameters
    ----------
    clients, sessions, measurements : typed, validated contract tables.
    hip_foci : session foci that count as hip-focused (params ``model.exposure.hip_focused``).

    Returns
    -------
    DataFrame with :data:`DATASET_COLUMNS`, one row per client x session x
    measure x timing, sorted by client_id, session_number, measure, timing.
    ``baseline_value`` is the client's value of the same measure measured
    ``pre`` at session 1 (NaN if not measured); ``change_from_baseline`` is
    ``value - baseline_value``. Sessions without measurements are kept in the
    timeline (they count for ``session_number``) but produce no rows.

    Examples
    --------
    >>> from analysis.params import load_params
    >>> from analysis.simulate import simulate_clinic
    >>> c = simulate_clinic(load_params().simulate, seed=1, n_clients=20, primary_week=6)
    >>> dataset = build_analysis_dataset(c.clients, c.sessions, c.measurements)
    >>> dataset[["client_id", "measure", "timing", "weeks_since_first", "value"]].head(3)
      client_id         measure timing  weeks_since_first  value
    0     C0001  knee_pain_nprs   post                0.0    5.0
    1     C0001  knee_pain_nprs    pre                0.0    7.0
    2     C0001            lefs    pre                0.0   28.0
    """
    timeline = session_timeline(sessions, hip_foci)
    m = measurements.merge(timeline, on="session_id", how="left", validate="many_to_one", indicator=True)
    orphans = int((m["_merge"] != "both").sum())
    if orphans:
        raise InputError(f"{orphans} measurement(s) refer to unknown sessions; run `outcomes validate` first")
    m = m.drop(columns="_merge").merge(clients, on="client_id", how="left", validate="many_to_one", indicator=True)
    orphans = int((m["_merge"] != "both").sum())
    if orphans:
        raise InputError(f"{orphans} session(s) refer to unknown clients; run `outcomes validate` first")
    m = m.drop(columns="_merge")
    baseline = m.loc[(m["session_number"] == 1) & (m["timing"] == "pre"), ["client_id", "measure", "value"]].rename(
        columns={"value": "baseline_value"}
    )
    m = m.merge(baseline, on=["client_id", "measure"], how="left", validate="many_to_one")
    m = m.assign(
        log_symptom_weeks=np.log(m["symptom_weeks"].astype("float64") + 1.0),
        change_from_baseline=m["value"] - m["baseline_value"],
    )
    m = m.sort_values(["client_id", "session_number", "measure", "timing"], kind="mergesort")
    return m[DATASET_COLUMNS].reset_index(drop=True)


def exclusion_flow(
    dataset: pd.DataFrame,
    clients: pd.DataFrame,
    sessions: pd.DataFrame,
    measurements: pd.DataFrame,
    config: FlowConfig,
    received: dict[str, int] | None = None,
) -> pd.DataFrame:
    """STROBE-style flow from clients received to clients in the primary comparison.

    Parameters
    ----------
    dataset : the analysis dataset from :func:`build_analysis_dataset`.
    clients, sessions, measurements : the valid typed tables.
    config : what counts as baseline, follow-up and the compared groups.
    received : row counts per table as received, before validation (from the
        validation summary); when None the valid counts are used.

    Returns
    -------
    DataFrame with :data:`FLOW_COLUMNS`; each step's ``excluded_clients`` is
    the number of clients lost since the previous step, for ``reason``.
    The last two rows split the analysed clients by group.
    """
    rows: list[dict[str, Any]] = []
    # sessions and measurements per client, counted once (each step then sums them over its clients)
    session_client = sessions.drop_duplicates("session_id").set_index("session_id")["client_id"]
    per_client = {
        "sessions": sessions["client_id"].value_counts(),
        "measurements": measurements["session_id"].map(session_client).value_counts(),
    }

    def count(table: str, ids: pd.Index) -> int:
        return int(per_client[table].reindex(ids).fillna(0).sum())

    def add(step: str, client_ids: pd.Index | pd.Series, reason: str) -> None:
        ids = pd.Index(client_ids).unique()
        previous = rows[-1]["clients"] if rows else len(ids)
        rows.append(
            dict(
                step=step,
                clients=len(ids),
                sessions=count("sessions", ids),
                measurements=count("measurements", ids),
                excluded_clients=previous - len(ids),
                reason=reason,
            )
        )

    if received:
        rows.append(
            dict(
                step="received",
                clients=int(received.get("clients", 0)),
                sessions=int(received.get("sessions", 0)),
                measurements=int(received.get("measurements", 0)),
                excluded_clients=0,
                reason="",
            )
        )
    add("valid", clients["client_id"], "failed validation (see data/interim/rejects.csv)" if received else "")
    with_sessions = clients.loc[clients["client_id"].isin(sessions["client_id"]), "client_id"]
    add("with at least one session", with_sessions, "no sessions recorded")

    primary = dataset[(dataset["measure"] == config.measure) & (dataset["timing"] == config.timing)]
    with_baseline = primary.loc[primary["session_number"] == 1, "client_id"]
    add(
        f"with baseline {config.measure} ({config.timing}) at the first session",
        with_baseline,
        f"no {config.measure} ({config.timing}) at the first session",
    )

    follow = primary[
        (primary["session_number"] > 1)
        & (primary["weeks_since_first"] <= config.followup_weeks)
        & primary["client_id"].isin(with_baseline)
    ]["client_id"]
    add(
        f"with at least one follow-up within {config.followup_weeks:g} weeks",
        follow,
        f"no later {config.measure} ({config.timing}) within {config.followup_weeks:g} weeks",
    )

    focus = dataset.drop_duplicates("client_id").set_index("client_id")["baseline_focus"]
    in_comparison = [c for c in pd.Index(follow).unique() if focus.get(c) in config.hip_focused + config.comparator]
    add(
        "in the comparison (baseline focus hip-focused or knee-focused)",
        pd.Index(in_comparison),
        "first session's focus outside both groups (e.g. 'other')",
    )
    hip = [c for c in in_comparison if focus.get(c) in config.hip_focused]
    knee = [c for c in in_comparison if focus.get(c) in config.comparator]
    for step, ids in (("analysed: hip-focused", hip), ("analysed: knee-focused", knee)):
        n_sess, n_meas = count("sessions", pd.Index(ids)), count("measurements", pd.Index(ids))
        rows.append(dict(zip(FLOW_COLUMNS, [step, len(ids), n_sess, n_meas, 0, "group"], strict=True)))
    return pd.DataFrame(rows, columns=FLOW_COLUMNS)


def flow_config(params: Params) -> FlowConfig:
    """FlowConfig from params (join section, exposure from the model section)."""
    j, exposure = params.join, params.model.exposure
    return FlowConfig(
        measure=j.primary_measure,
        timing=j.primary_timing,
        followup_weeks=j.followup_weeks,
        hip_focused=tuple(exposure.hip_focused),
        comparator=tuple(exposure.comparator),
    )


def read_valid_tables(folder: Path) -> dict[str, pd.DataFrame]:
    """Read the validated typed tables written by `outcomes validate`."""
    tables = {}
    for name in TABLES:
        path = folder / f"{name}.parquet"
        if not path.is_file():
            raise InputError(f"{path}: validated table not found; run `outcomes validate` first")
        tables[name] = pd.read_parquet(path)
    return tables


def _received_counts(validation_json: Path) -> dict[str, int] | None:
    try:
        summary = json.loads(validation_json.read_text(encoding="utf-8")).get("summary", {})
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    tables = summary.get("tables", summary)
    counts = {}
    for name in TABLES:
        entry = tables.get(name, {})
        n = entry.get("rows_received") if isinstance(entry, dict) else None
        if n is None:
            return None
        counts[name] = int(n)
    return counts


def check_validation_passed(validation_json: Path, rejects: Path, allow_rejects: bool) -> None:
    """Refuse to join after a validation that found errors, unless ``validate.allow_rejects`` is true."""
    if not validation_json.is_file():
        raise InputError(f"{validation_json}: not found; run `outcomes validate` first (or `dvc repro`)")
    summary = (json.loads(validation_json.read_text(encoding="utf-8")) or {}).get("summary") or {}
    errors = int(summary.get("errors") or 0)
    if errors and not allow_rejects:
        html = validation_json.with_name("validation.html")
        raise InputError(
            f"the last `outcomes validate` found {errors} problem(s) and params validate.allow_rejects "
            f"is false, so nothing was joined; see {html} and {rejects}, fix the inputs and validate "
            "again (or set validate.allow_rejects: true to go on with the valid rows only)"
        )


def run_join(params: Params, input_dir: Path | None = None) -> str:
    """I/O edge: read data/interim, write the analysis parquet and the flow table."""
    check_outputs_outside_inputs(params, "join", input_dir)
    v, j = params.validate_, params.join
    interim = resolve(input_dir) if input_dir else resolve(v.out_dir)
    validation_json = resolve(v.report_dir) / "validation.json"
    check_validation_passed(validation_json, interim / "rejects.csv", v.allow_rejects)
    validated = [interim / f"{n}.parquet" for n in TABLES] + [validation_json]
    lineage.check(interim, validated, "validate")
    tables = read_valid_tables(interim)
    config = flow_config(params)
    dataset = build_analysis_dataset(tables["clients"], tables["sessions"], tables["measurements"], config.hip_focused)
    received = _received_counts(validation_json)
    flow = exclusion_flow(dataset, tables["clients"], tables["sessions"], tables["measurements"], config, received)
    out, flow_path = resolve(j.out), resolve(j.flow)
    write_parquet(out, dataset)
    write_csv(flow_path, flow)
    lineage.record(out.parent, "join", validated, [out, flow_path])
    last = flow.iloc[-3]
    return (
        f"analysis dataset: {len(dataset)} rows, {dataset['client_id'].nunique()} clients -> {out}\n"
        f"flow: {int(last['clients'])} clients reach the primary comparison -> {flow_path}"
    )
