"""Prepare: the analysis dataset -> the primary model's data, with every exclusion counted.

The primary outcome is one measure at one timing (params ``model.measure``,
``model.timing``; by default pain NPRS measured before treatment). Each client
contributes one row per session within the follow-up window, the first session
being week 0. Clients are compared by the focus of their *first* session
(``baseline_focus``): hip-focused (``hip``, ``hip_and_knee``) against
knee-focused (``knee``); clients whose first session had another focus are
outside the comparison.

Nobody vanishes silently. Each client of the dataset who does not reach the
model is listed in :attr:`PrimaryData.excluded` with the first reason that
applies, in the order of the join step's STROBE flow, so the counts agree:

1. ``no baseline measurement`` - no primary outcome at the first session;
2. ``no follow-up within N weeks`` - no later primary outcome in the window;
3. ``baseline focus <focus>`` - first session's focus in neither group;
4. ``missing covariate <name>`` - a required categorical covariate is blank.

Missing ``sitting_hours`` (an optional column) does not exclude anyone: the
missing values are filled with the mean of the clients who reported it and a
``sitting_hours_missing`` indicator (1 = was missing) enters the model. This
keeps every client in the primary analysis; the indicator method can be biased
when missingness depends on the outcome, so the multiple-imputation
sensitivity analysis (secondary) re-estimates the effect without it. The same
rule applies to any numeric covariate with gaps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from analysis.errors import ModelError
from analysis.params_schema import ModelParams

EXCLUDED_COLUMNS = ["client_id", "reason"]
#: Columns constant within a client (the baseline focus, the covariates, the clinic).
CLIENT_COLUMNS = (
    "baseline_focus",
    "symptom_weeks",
    "log_symptom_weeks",
    "sitting_hours",
    "sitting_hours_missing",
    "age_band",
    "sex",
    "activity",
    "clinic_id",
)
DATA_COLUMNS = [
    "client_id",
    "session_id",
    "session_number",
    "week",
    "y",
    "baseline_y",
    "hip",
    "focus",
    "baseline_focus",
    "cum_hip_sessions",
    *CLIENT_COLUMNS[1:],
]


@dataclass
class PrimaryData:
    """The primary model's data and how it was derived.

    Attributes
    ----------
    data : DataFrame, one row per client x session with the primary outcome,
        sorted by client_id, week, session_number. Columns: ``client_id``,
        ``session_id``, ``session_number``, ``week`` (weeks since the first
        session), ``y`` (the outcome), ``baseline_y`` (outcome at session 1),
        ``hip`` (1 = hip-focused first session, 0 = knee-focused),
        ``focus`` (this session's focus), ``baseline_focus``,
        ``cum_hip_sessions``, ``symptom_weeks``, ``log_symptom_weeks``,
        ``sitting_hours`` (missing filled with the mean),
        ``sitting_hours_missing`` (0/1), ``age_band``, ``sex``, ``activity``,
        ``clinic_id``. Categorical covariates are pandas Categoricals whose
        first category is the reference level.
    excluded : DataFrame with ``client_id``, ``reason``; one row per client of
        the dataset who is not in ``data``.
    covariates : formula terms used for adjustment, e.g.
        ``['C(age_band)', 'C(sex)', 'log_symptom_weeks', 'sitting_hours',
        'sitting_hours_missing', 'C(activity)']``.
    levels : categorical covariate -> its levels, reference first.
    notes : plain-language notes on choices made (dropped covariates,
        filled values, reference levels).
    """

    data: pd.DataFrame
    excluded: pd.DataFrame
    covariates: list[str]
    levels: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def n_clients(self) -> int:
        return int(self.data["client_id"].nunique())

    def n_clients_by_group(self) -> dict[str, int]:
        """Clients per group: ``{'hip_focused': n, 'comparator': n}``."""
        per_client = self.data.drop_duplicates("client_id")["hip"]
        return {"hip_focused": int((per_client == 1).sum()), "comparator": int((per_client == 0).sum())}


def reference_order(values: pd.Series) -> list[str]:
    """Levels of a categorical, the most common first (ties: alphabetical), the rest alphabetical.

    Deterministic, and the most common level as reference gives the most
    precise contrasts.
    """
    counts = values.dropna().astype(str).value_counts()
    if counts.empty:
        return []
    top = counts.max()
    reference = sorted(counts.index[counts == top])[0]
    return [reference] + sorted(level for level in counts.index if level != reference)


def primary_data(dataset: pd.DataFrame, cfg: ModelParams) -> PrimaryData:
    """Select and shape the primary model's data from the analysis dataset.

    Parameters
    ----------
    dataset : the long analysis dataset (:func:`analysis.join.build_analysis_dataset`).
    cfg : params ``model`` section; uses ``measure``, ``timing``,
        ``followup_weeks``, ``exposure`` (``hip_focused``, ``comparator``) and
        ``covariates``.

    Returns
    -------
    PrimaryData
        ``data`` with the columns listed in :class:`PrimaryData`, ``excluded``
        (``client_id``, ``reason``), the covariate formula terms, the
        reference levels and notes.

    Examples
    --------
    >>> from analysis.join import build_analysis_dataset
    >>> from analysis.params import load_params
    >>> from analysis.simulate import simulate_clinic
    >>> params = load_params()
    >>> week = params.model.primary_week
    >>> c = simulate_clinic(params.simulate, seed=1, n_clients=40, primary_week=week)  # a small clinic, in memory
    >>> dataset = build_analysis_dataset(c.clients, c.sessions, c.measurements)
    >>> pdata = primary_data(dataset, params.model)
    >>> pdata.data[["client_id", "week", "y", "hip"]].head(3)
      client_id      week    y  hip
    0     C0001  0.000000  4.0    1
    1     C0001  2.428571  2.0    1
    2     C0001  4.142857  0.0    1
    """
    measure, timing = cfg.measure, cfg.timing
    followup = cfg.followup_weeks
    exposure = cfg.exposure
    hip_foci, comparator = list(exposure.hip_focused), list(exposure.comparator)
    notes: list[str] = []

    outcome = dataset[(dataset["measure"] == measure) & (dataset["timing"] == timing)]
    if outcome.empty:
        raise ModelError(
            f"no {measure} ({timing}) values in the analysis dataset; check params model.measure "
            "and model.timing against config/measures.yaml"
        )
    n_missing_values = int(outcome["value"].isna().sum())
    if n_missing_values:
        notes.append(f"{n_missing_values} {measure} value(s) were blank and not used.")
    outcome = outcome[outcome["value"].notna() & (outcome["weeks_since_first"] <= followup)]
    dupes = outcome.duplicated(["client_id", "session_id"])
    if dupes.any():
        first = outcome.loc[dupes, "session_id"].iloc[0]
        raise ModelError(
            f"session {first} has more than one {measure} ({timing}) value; the analysis dataset "
            "must have one per session (rerun `outcomes validate` and `outcomes join`)"
        )

    clients = dataset.drop_duplicates("client_id").set_index("client_id").sort_index()
    has_baseline = set(outcome.loc[outcome["session_number"] == 1, "client_id"])
    has_followup = set(outcome.loc[outcome["session_number"] > 1, "client_id"])

    reasons: dict[str, str] = {}
    for client_id, row in clients.iterrows():
        client_id = str(client_id)
        if client_id not in has_baseline:
            reasons[client_id] = "no baseline measurement"
        elif client_id not in has_followup:
            reasons[client_id] = f"no follow-up within {followup:g} weeks"
        elif row["baseline_focus"] not in hip_foci + comparator:
            reasons[client_id] = f"baseline focus {row['baseline_focus']}"

    covariate_names = list(cfg.covariates)
    kept = clients.loc[[c for c in clients.index if c not in reasons]]
    categorical = [c for c in covariate_names + ["clinic_id"] if c in kept and not _is_numeric(kept[c])]
    for name in categorical:
        for client_id in kept.index[kept[name].isna()]:
            reasons.setdefault(client_id, f"missing covariate {name}")
    kept = clients.loc[[c for c in clients.index if c not in reasons]]
    if kept.empty:
        raise ModelError(
            f"no client has a baseline and a follow-up {measure} ({timing}) within {followup:g} weeks "
            "in either compared group; see data/processed/flow.csv"
        )

    kept, terms, levels, cov_notes = _covariates(kept, covariate_names)
    notes.extend(cov_notes)

    client_cols = kept[[c for c in CLIENT_COLUMNS if c in kept]]
    rows = outcome[outcome["client_id"].isin(kept.index)]
    data = (
        rows[
            [
                "client_id",
                "session_id",
                "session_number",
                "weeks_since_first",
                "value",
                "baseline_value",
                "focus",
                "cum_hip_sessions",
            ]
        ]
        .rename(columns={"weeks_since_first": "week", "value": "y", "baseline_value": "baseline_y"})
        .merge(client_cols, left_on="client_id", right_index=True, how="left", validate="many_to_one")
    )
    data = data.assign(
        hip=data["baseline_focus"].isin(hip_foci).astype("int64"),
        week=data["week"].astype("float64"),
        y=data["y"].astype("float64"),
    )
    for name, order in levels.items():
        data[name] = pd.Categorical(data[name].astype(str), categories=order)
    data = data.sort_values(["client_id", "week", "session_number"], kind="mergesort").reset_index(drop=True)
    data = data[[c for c in DATA_COLUMNS if c in data.columns]]

    excluded = pd.DataFrame(sorted(reasons.items()), columns=EXCLUDED_COLUMNS)
    if not excluded.empty:
        counts = excluded["reason"].value_counts().sort_index()
        notes.append("excluded clients: " + "; ".join(f"{reason}: {n}" for reason, n in counts.items()) + ".")
    notes.append(
        f"groups by first-session focus: hip-focused = {', '.join(hip_foci)}; "
        f"comparator (reference, hip = 0) = {', '.join(comparator)}."
    )
    return PrimaryData(data=data, excluded=excluded, covariates=terms, levels=levels, notes=notes)


def _is_numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def _covariates(
    clients: pd.DataFrame, names: list[str]
) -> tuple[pd.DataFrame, list[str], dict[str, list[str]], list[str]]:
    """Client-level covariates -> formula terms, reference levels, filled gaps and notes (one row per client)."""
    terms: list[str] = []
    levels: dict[str, list[str]] = {}
    notes: list[str] = []
    out = clients.copy()
    if "sitting_hours" in out:
        out["sitting_hours_missing"] = out["sitting_hours"].isna().astype("int64")
    for name in [*names, "clinic_id"]:
        if name not in out:
            if name != "clinic_id":
                notes.append(f"covariate {name} is not in the dataset; not adjusted for.")
            continue
        col = out[name]
        if _is_numeric(col):
            n_missing = int(col.isna().sum())
            observed = col.dropna().astype("float64")
            if observed.nunique() <= 1:
                notes.append(f"covariate {name} is constant or not recorded among analysed clients; not adjusted for.")
                out[name] = col.astype("float64").fillna(observed.mean() if len(observed) else 0.0)
                continue
            terms.append(name)
            if n_missing:
                indicator = f"{name}_missing"
                mean = float(observed.mean())
                out[name] = col.astype("float64").fillna(mean)
                out[indicator] = col.isna().astype("int64")
                terms.append(indicator)
                notes.append(
                    f"{name} missing for {n_missing} of {len(col)} clients: filled with the mean "
                    f"({mean:.2f}) and adjusted for with the indicator {indicator} (missing-indicator "
                    "method; the multiple-imputation sensitivity analysis checks this choice)."
                )
        else:
            order = reference_order(col)
            if len(order) <= 1:
                if name != "clinic_id":
                    notes.append(
                        f"covariate {name} has one level ({order[0] if order else 'none'}) among "
                        "analysed clients; not adjusted for."
                    )
                continue
            levels[name] = order
            terms.append(f"C({name})")
            notes.append(f"{name}: reference level {order[0]!r} (most common).")
    return out, terms, levels, notes
