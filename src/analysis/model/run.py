"""The model step's I/O edge: read the analysis dataset, run every analysis, write ``reports/results/``.

Outputs (folder params ``model.out_dir``; written atomically, byte-identical
for the same inputs and params):

``results.json``
    ::

        {
          "schema_version": 1,
          "exploratory_note": "<which results are confirmatory and which exploratory>",
          "primary": {
            "estimand": "<words>", "measure": "knee_pain_nprs", "timing": "pre",
            "primary_week": 6.0, "followup_weeks": 12.0, "alpha": 0.05,
            "formula": "y ~ week * hip + C(age_band) + ...", "re_formula": "~week" | null (fallback),
            "planned_re_formula": "~week", "groups": "client_id", "method": "REML",
            "df_method": "satterthwaite" | "kenward_roger" | "z", "df_method_label": "<words>",
            "estimate": -0.7, "se": 0.18, "df": 96.3, "ci_low": -1.1, "ci_high": -0.4, "p_value": 0.0001,
                # CI and p from t(df); df null for "z" (normal); Kenward-Roger: adjusted SE
                # headline: difference (hip - knee) in change from baseline at primary_week;
                # negative = hip-focused improved more; null when the fit failed
            "slope_difference": {"estimate", "se", "df", "ci_low", "ci_high", "p_value", "df_method"},  # per week
            "change_by_group": {"hip_focused": {...}, "comparator": {...}},  # change at primary_week
            "n_clients": 528, "n_clients_by_group": {"hip_focused": 274, "comparator": 254},
            "n_observations": 3381,
            "converged": true, "optimizer": "L-BFGS-B + projected Newton",
            "status": "ok" | "fallback" | "failed", "reason": "" | "<why>",
            "checks": {"converged", "singular", "gradient_max", "scaled_gradient_max", "newton_decrement",
                       "hessian_min_eig", "boundary_ok", "theta", "deviance", "criterion"},
            "attempts": [{"model", "ok", "reason"}, ...],
            "fixed_effects": {"<term>": {"estimate", "se", "df", "ci_low", "ci_high", "p_value", "df_method"}},
            "random_effects": {"variances": {"Intercept", "week"}, "covariance": {"cov(Intercept, week)"},
                               "correlation": {"corr(Intercept, week)"}, "residual_variance"},
            "reference_levels": {"age_band": "40-49", ...}, "trajectory_method": "<words>",
            "excluded": {"<reason>": <clients>}, "notes": ["..."]
          },
          "secondary": {"<name>": {"label", "exploratory", "status", "reason", "method", "notes", ...}},
          "data": {"n_clients_dataset", "n_clients_analysed", "n_clients_by_group", "n_observations",
                   "excluded": {"<reason>": n}, "measure", "timing",
                   "window": {"followup_weeks", "primary_week"}},
          "params": {<the params.yaml model section used>}
        }

``metrics.json``
    The headline numbers for ``dvc metrics show``: ``primary.estimate``,
    ``ci_low``, ``ci_high``, ``p_value``, ``slope_difference``, ``n_clients``.
``<table>.csv``
    One CSV per table (primary: ``trajectories`` (group, week, mean, ci_low,
    ci_high), ``fixed_effects``, ``primary_exclusions`` (reason, clients);
    plus every secondary table), rows sorted by their text and integer
    columns, floats written with ``store.SIGNIFICANT_DIGITS`` (6) significant digits -- the one
    rounding rule of :mod:`analysis.store`, also applied to every float in the JSON files and in
    ``diagnostics.parquet``, so the bytes do not depend on where the optimiser stopped.
``diagnostics.parquet``, ``random_effects.csv``, ``analysed_clients.csv``, ``expected.csv``
    Per-observation fitted values and residuals (client_id, week, y, fitted,
    residual), per-client predicted random effects (client_id, intercept,
    slope), for the therapist-only diagnostics, the clients the primary
    comparison selected (client_id, group), which the reports describe, and
    each analysed client's expected recovery under the primary model (client_id,
    week, expected, sd; :mod:`analysis.model.expected`; no rows when the fit failed). They
    carry pseudonymous client ids and must not go into peer outputs.

If the primary model cannot be fitted trustworthily, ``primary.status`` is
``'failed'`` with the reason and null estimates; the files are still written,
the summary line says so loudly and the report states that it failed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import lineage
from analysis.contract import load_registry
from analysis.errors import InputError, ModelError
from analysis.groups import group_label
from analysis.model.expected import expected_trajectories
from analysis.model.prepare import PrimaryData, primary_data
from analysis.model.primary import fit_diagnostics, primary_analysis
from analysis.model.secondary import run_secondary
from analysis.params_schema import Params
from analysis.paths import check_outputs_outside_inputs, resolve
from analysis.results import SCHEMA_VERSION, parse_results
from analysis.store import FLOAT_FORMAT, atomic_path, neutralise_formulas, round_floats, write_json, write_parquet

EXPLORATORY_NOTE = (
    "Observational data from routine care. The primary analysis (difference in change at the primary week from "
    "the mixed model) was specified before looking at the data; every secondary analysis is exploratory and "
    "hypothesis-generating, with no correction for multiple comparisons. Group differences may reflect who was "
    "offered hip-focused care (confounding by indication), not the treatment itself."
)
DIAGNOSTIC_COLUMNS = ["client_id", "week", "y", "fitted", "residual"]
RANDOM_EFFECT_COLUMNS = ["client_id", "intercept", "slope"]


def run_model(params: Params, progress: Callable[[str], None] | None = None) -> str:
    """Read the analysis dataset, run the primary and secondary analyses, write the results folder.

    ``progress`` (optional) is called with the name of each step before it runs.

    Returns
    -------
    str : a short summary for the console (says FAILED loudly if the primary fit failed).
    """

    check_outputs_outside_inputs(params, "model")
    cfg = params.model
    dataset_path = resolve(params.join.out)
    if not dataset_path.is_file():
        raise InputError(f"{dataset_path}: analysis dataset not found; run `outcomes join` first (or `dvc repro`)")
    lineage.check(dataset_path.parent, [dataset_path], "join")
    dataset = pd.read_parquet(dataset_path)
    registry = load_registry(resolve(params.data.registry))
    if cfg.measure not in registry:
        raise InputError(
            f"params.yaml model.measure: {cfg.measure!r} is not in the measures registry ({', '.join(registry.keys)})"
        )

    say = progress or (lambda step: None)
    say(f"primary mixed model ({dataset['client_id'].nunique()} clients in the dataset)")
    pdata = primary_data(dataset, cfg)
    entry, tables, fit = primary_analysis(pdata, cfg)
    secondary, secondary_tables = run_secondary(pdata, dataset, fit, cfg, registry, progress=say)
    say("writing results")
    clash = sorted(set(tables) & set(secondary_tables))
    if clash:
        raise ModelError(f"secondary tables {clash} would overwrite primary tables of the same name")
    tables = {**tables, **secondary_tables}

    if fit.ok:
        diagnostics, random_effects = fit_diagnostics(fit, pdata)
    else:
        diagnostics = pd.DataFrame(columns=DIAGNOSTIC_COLUMNS)
        random_effects = pd.DataFrame(columns=RANDOM_EFFECT_COLUMNS)
    tables["random_effects"] = random_effects
    tables["expected"] = expected_trajectories(fit, cfg.followup_weeks)
    tables["analysed_clients"] = analysed_clients(pdata)

    results = parse_results(
        {
            "schema_version": SCHEMA_VERSION,
            "exploratory_note": EXPLORATORY_NOTE,
            "primary": entry,
            "secondary": dict(sorted(secondary.items())),
            "data": {
                "n_clients_dataset": int(dataset["client_id"].nunique()),
                "n_clients_analysed": entry["n_clients"],
                "n_clients_by_group": entry["n_clients_by_group"],
                "n_observations": entry["n_observations"],
                "excluded": entry["excluded"],
                "measure": cfg.measure,
                "timing": cfg.timing,
                "window": {"followup_weeks": cfg.followup_weeks, "primary_week": cfg.primary_week},
            },
            "params": cfg.model_dump(by_alias=True),
        }
    )
    out = resolve(cfg.out_dir)
    write_json(out / "results.json", results.model_dump(mode="json", by_alias=True))
    write_json(out / "metrics.json", metrics(entry))
    for name, table in sorted(tables.items()):
        write_table(out / f"{name}.csv", table)
    # a table an earlier run wrote but this run did not (its analysis now failed) must not linger for the report
    for stale in sorted(set(out.glob("*.csv")) - {out / f"{name}.csv" for name in tables}):
        stale.unlink()
    write_parquet(out / "diagnostics.parquet", round_floats(diagnostics))
    for name, wide in plot_tables(tables).items():  # for `dvc plots show`: one column per group
        write_table(out / "plots" / f"{name}.csv", wide)
    written = sorted(p for p in out.rglob("*") if p.is_file() and p.name != lineage.MANIFEST)
    lineage.record(out, "model", [dataset_path], written)
    return summary_line(entry, out, len(secondary))


def analysed_clients(pdata: PrimaryData) -> pd.DataFrame:
    """The clients in the primary comparison (client_id, group), as the model selected them: the report
    describes exactly these, whether or not the fit succeeded. Pseudonymous ids: therapist-only."""
    first = pdata.data.drop_duplicates("client_id").sort_values("client_id")
    group = first["hip"].map({1: "hip_focused", 0: "comparator"})
    return pd.DataFrame({"client_id": first["client_id"].astype(str).to_numpy(), "group": group.to_numpy()})


def plot_tables(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Wide copies of the trajectories and Kaplan-Meier tables for DVC's plots: a ``week`` column and one
    column per group, labelled as in the reports (``hip-focused``, ``knee-focused``); Kaplan-Meier values
    are carried forward between a group's event times, so each column is a proper step curve."""
    out = {}
    for name, value in (("trajectories", "mean"), ("km", "survival")):
        t = tables.get(name)
        if t is None or t.empty or not {"group", "week", value} <= set(t.columns):
            continue
        wide = (
            t.assign(group=t["group"].map(group_label))
            .pivot_table(index="week", columns="group", values=value, aggfunc="last")
            .sort_index()
        )
        if name == "km":
            wide = wide.ffill()
        out[name] = wide.reset_index()
    return out


def metrics(entry: dict[str, Any]) -> dict[str, Any]:
    """The few headline numbers for ``dvc metrics show`` / ``dvc metrics diff``."""
    sd = entry.get("slope_difference") or {}
    return {
        "primary": {
            "estimate": entry.get("estimate"),
            "ci_low": entry.get("ci_low"),
            "ci_high": entry.get("ci_high"),
            "p_value": entry.get("p_value"),
            "slope_difference": sd.get("estimate"),
            "n_clients": entry.get("n_clients"),
            "fitted": entry.get("status") in ("ok", "fallback"),
        }
    }


def sort_table(df: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted (stably) by the leading text columns (the group keys), keeping the producer's order within.

    Sorting by later numeric columns would scramble ordered tables (a Kaplan-Meier table sorted by
    ``at_risk`` is no longer in time order); the producers already give a deterministic order.
    """
    keys = []
    for c in df.columns:
        if not (
            pd.api.types.is_object_dtype(df[c])
            or pd.api.types.is_string_dtype(df[c])
            or isinstance(df[c].dtype, pd.CategoricalDtype)
        ):
            break
        if df[c].map(lambda v: isinstance(v, (dict, list))).any():
            break
        keys.append(c)
    if not keys or df.empty:
        return df.reset_index(drop=True)
    return df.sort_values(keys, kind="mergesort", na_position="last").reset_index(drop=True)


def write_table(path: Path, df: pd.DataFrame) -> None:
    """A results table as CSV: sorted rows, floats at the published precision, LF line ends, atomic."""
    with atomic_path(path) as tmp:
        neutralise_formulas(sort_table(df)).to_csv(tmp, index=False, lineterminator="\n", float_format=FLOAT_FORMAT)


def summary_line(entry: dict[str, Any], out: Path, n_secondary: int) -> str:
    """The console summary: the headline with its CI, or FAILED with the reason."""
    week = entry["primary_week"]
    if entry["status"] == "failed":
        return (
            f"PRIMARY MODEL FAILED - no estimate: {entry['reason']}\n"
            f"results (with the failure recorded) and {n_secondary} secondary analyses -> {out}"
        )
    text = (
        f"primary ({entry['n_clients']} clients, {entry['n_observations']} observations, "
        f"optimiser {entry['optimizer']}): difference in change at week {week:g}, hip- minus knee-focused = "
        f"{entry['estimate']:.2f} (95% CI {entry['ci_low']:.2f} to {entry['ci_high']:.2f}, "
        f"p = {entry['p_value']:.3g}); slope difference {entry['slope_difference']['estimate']:.3f}/week"
    )
    if entry["status"] == "fallback":
        text += f"\nWARNING: FALLBACK MODEL - {entry['reason']}"
    return text + f"\nresults and {n_secondary} secondary analyses -> {out}"
