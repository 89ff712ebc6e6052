"""The context both reports share: the headline numbers and sentences, group sizes, and the figures
drawn for both (the therapist's trajectories add each client's faint line).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeGuard

import pandas as pd
from matplotlib.figure import Figure as MplFigure
from statsmodels.stats.proportion import proportion_confint

from analysis.contract import Measure
from analysis.params_schema import ModelParams, Params, ReportParams
from analysis.privacy import km_for_peers, responder_cells_small, suppress_count
from analysis.report import clinical as cn
from analysis.report import figures as fg
from analysis.report import provenance as prov
from analysis.report import secondary_text as st
from analysis.report import summary as sm
from analysis.report import therapist as th
from analysis.report.inputs import Figure, ReportInputs
from analysis.report.render import build_date, figure_style, svg_bytes
from analysis.results import PrimaryResult, SecondaryResult


def has_columns(df: pd.DataFrame | None, cols: set[str]) -> TypeGuard[pd.DataFrame]:
    """A non-empty table with at least these columns."""
    return df is not None and not df.empty and cols <= set(df.columns)


def draw_svg(draw: Callable[[], MplFigure], tight: bool = True) -> bytes:
    """The figure ``draw()`` makes, drawn in the pinned style, as SVG bytes."""
    with figure_style():
        return svg_bytes(draw(), tight=tight)


def period_of(dataset: pd.DataFrame) -> tuple[str, str]:
    dates = pd.to_datetime(dataset["session_date"])
    if dates.empty:
        return ("", "")
    return (dates.min().strftime("%Y-%m"), dates.max().strftime("%Y-%m"))


def measure_short(measure: Measure) -> str:
    m = re.search(r"\(([^)]+)\)", measure.label)
    return m.group(1) if m else measure.label


@dataclass(frozen=True)
class ReportContext:
    """What both reports share: the settings, the headline and its words, the groups and the figures' labels.

    Templates see these fields by name (:meth:`template_vars`); builders read them as attributes.
    """

    params: Params
    model: ModelParams
    report: ReportParams
    measure: Measure
    measure_short: str
    primary: PrimaryResult
    primary_ok: bool
    sentence: str
    crosses_zero: bool
    group: pd.Series  # client's group label per dataset row
    stamp: str
    stamp_date: str
    period: tuple[str, str]
    forest: pd.DataFrame
    secondary: list[dict[str, str]]
    robustness: str
    mcid_answer: str
    responders_answer: str
    time_trend_answer: str
    technical_notes: list[str]
    chronicity_answer: str
    balance: list[dict[str, Any]]
    iptw: SecondaryResult | None
    provenance: prov.Provenance
    clinic_label: str
    ylabel: str
    xlabel_forest: str

    def template_vars(self) -> dict[str, Any]:
        """The fields as template variables (shallow: the typed values themselves, not copies)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def common_context(inp: ReportInputs, provenance: prov.Provenance) -> ReportContext:
    """Context shared by both reports."""
    params = inp.params
    m, r = params.model, params.report
    measure = inp.registry[m.measure]
    short = measure_short(measure)
    primary = inp.results.primary
    group = th.assign_group(inp.dataset, tuple(m.exposure.hip_focused), tuple(m.exposure.comparator))
    last = pd.to_datetime(inp.dataset["session_date"]).max()
    stamp = build_date(None if pd.isna(last) else last.date())
    forest = sm.forest_rows(inp.results, inp.tables.get("tipping"))
    favours = "< 0 favours hip-focused" if measure.lower_is_better else "> 0 favours hip-focused"
    return ReportContext(
        params=params,
        model=m,
        report=r,
        measure=measure,
        measure_short=short,
        primary=primary,
        primary_ok=primary.ok,
        sentence=sm.primary_sentence(primary, measure, m.primary_week, short),
        crosses_zero=sm.ci_crosses_zero(primary.ci_low, primary.ci_high),
        group=group,
        stamp=stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
        stamp_date=stamp.date().isoformat(),
        period=period_of(inp.dataset),
        forest=forest,
        secondary=st.secondary_rows(inp.results),
        robustness=sm.robustness_sentence(inp.results, forest),
        mcid_answer=cn.mcid_sentence(inp.results, measure, short),
        responders_answer=cn.responder_sentence(inp.results, m.primary_week),
        time_trend_answer=cn.time_trend_sentence(inp.results, m.primary_week),
        technical_notes=cn.technical_notes(inp.results, short),
        chronicity_answer=sm.chronicity_sentence(inp.results, short),
        balance=balance_rows(inp),
        iptw=inp.results.secondary.get("iptw"),
        provenance=provenance,
        clinic_label=r.clinic_label,
        ylabel=f"{measure.label}, {measure.unit}",
        xlabel_forest=(
            f"Difference at week {m.primary_week:g}, hip- minus knee-focused "
            + (f"({short} points; {favours})" if measure.lower_is_better else f"({favours})")
        ),
    )


def comparison_clients(inp: ReportInputs) -> set[str]:
    """Clients in the primary comparison, as the model step selected them (its ``analysed_clients`` table)."""
    t = inp.tables.get("analysed_clients")
    return set() if t is None or t.empty else set(t["client_id"].astype(str))


def group_ns(n_by_group: pd.Series, min_cell: int) -> dict[str, str]:
    """Group sizes for a table header; when one is suppressed the others are hidden too ("*"), since the
    total is shown and subtraction would give the small one back."""
    shown = {str(g): suppress_count(n, min_cell) for g, n in n_by_group.items()}
    if any(v.startswith("<") for v in shown.values()):
        shown = {g: (v if v.startswith("<") else "*") for g, v in shown.items()}
    return shown


def thin_from(inp: ReportInputs, c: ReportContext, share: float = 0.25) -> float | None:
    """First whole week after which fewer than ``share`` of the analysed clients are still followed."""
    d = inp.dataset[(inp.dataset["measure"] == c.measure.key) & inp.dataset["value"].notna()]
    if d.empty:
        return None
    last = d.groupby("client_id")["weeks_since_first"].max()
    for week in range(int(c.model.followup_weeks) + 1):
        if (last >= week).mean() < share:
            return float(max(week - 1, 0))
    return None


def balance_rows(inp: ReportInputs) -> list[dict[str, Any]]:
    """The IPTW balance table (covariate, level, SMD before and after weighting), largest imbalance first."""
    b = inp.tables.get("balance")
    if b is None or b.empty or not {"smd_unweighted", "smd_weighted"} <= set(b.columns):
        return []
    # a numeric covariate has no level: written as an empty cell, read back as NaN, shown blank
    level = b["level"].fillna("").astype(str) if "level" in b.columns else ""
    b = b.assign(level=level, abs_w=b["smd_weighted"].abs())
    b = b.sort_values(["abs_w", "covariate"], ascending=[False, True])
    return [{str(k): v for k, v in row.items()} for row in b.drop(columns="abs_w").to_dict(orient="records")]


def shared_figures(
    inp: ReportInputs,
    c: ReportContext,
    individual: pd.DataFrame | None,
    groups_ok: bool = True,
    min_cell: int | None = None,
) -> list[Figure]:
    """Figures in both reports (the therapist's adds faint individual lines to the trajectories)."""
    t = inp.tables
    out: list[Figure] = []
    traj = t.get("trajectories")
    if has_columns(traj, {"group", "week", "mean", "ci_low", "ci_high"}) and groups_ok:
        out.append(
            Figure(
                "trajectories",
                f"{c.measure.label} over time by group: model-adjusted means with 95% CI bands"
                + (" over each client's observed values (faint lines)." if individual is not None else "."),
                "Line chart of adjusted mean pain by week for hip-focused and knee-focused groups.",
                draw_svg(
                    lambda: fg.trajectories(
                        traj,
                        individual,
                        ylabel=c.ylabel,
                        primary_week=c.model.primary_week,
                        ylim=(c.measure.minimum, c.measure.maximum),
                        thin_from=thin_from(inp, c),
                    )
                ),
            )
        )
    forest = c.forest
    out.append(
        Figure(
            "forest",
            "The primary estimate (diamond) beside each sensitivity analysis, with 95% CIs.",
            "Forest plot of the primary estimate and the sensitivity analyses.",
            draw_svg(lambda: fg.forest(forest, xlabel=c.xlabel_forest)),
        )
    )
    resp = responder_shares(t.get("responders"), c.model.alpha)
    responders = inp.results.secondary.get("responders")
    peer_small = min_cell is not None and responder_cells_small(
        None if responders is None else responders.model_dump(), min_cell
    )
    if has_columns(resp, {"group", "proportion", "ci_low", "ci_high"}) and groups_ok and not peer_small:
        out.append(
            Figure(
                "responders",
                "Share of clients reaching a clinically important improvement (MCID) by group, with 95% CIs.",
                "Bar chart of responders by group.",
                draw_svg(lambda: fg.proportions(resp, ylabel="Responders (%)")),
            )
        )
    km = t.get("km")
    if min_cell is not None:
        km = km_for_peers(km, min_cell)
    if has_columns(km, {"group", "week", "survival"}) and groups_ok:
        out.append(
            Figure(
                "km",
                "Time to the first clinically important improvement (Kaplan–Meier), by group.",
                "Kaplan-Meier curves of time to improvement by group.",
                draw_svg(lambda: fg.kaplan_meier(km, event="MCID improvement")),
            )
        )
    chron = t.get("chronicity")
    if chron is not None and "effect" in chron.columns and "estimate" not in chron.columns:
        chron = chron.rename(columns={"effect": "estimate"})
    if has_columns(chron, {"symptom_weeks", "estimate", "ci_low", "ci_high"}):
        out.append(
            Figure(
                "chronicity",
                "Chronicity: the estimated hip-minus-knee difference for clients "
                "with different durations of symptoms before the first session.",
                "Effect estimate against symptom weeks.",
                draw_svg(
                    lambda: fg.effect_curve(
                        chron,
                        x="symptom_weeks",
                        xlabel="Weeks the pain had lasted at the first session (log scale)",
                        ylabel=f"Difference in change at week {c.model.primary_week:g} (hip − knee)",
                        log_x=True,
                        favours=(
                            ("↓ favours hip-focused care", "↑ favours knee-focused care")
                            if c.measure.lower_is_better
                            else ("↓ favours knee-focused care", "↑ favours hip-focused care")
                        ),
                    )
                ),
            )
        )
    return out


def responder_shares(table: pd.DataFrame | None, alpha: float) -> pd.DataFrame | None:
    """Responders table (group, n, responders, share) with a Wilson CI per group.

    Returns
    -------
    DataFrame with group, proportion, ci_low, ci_high (proportions 0-1), or the input if it lacks the columns.
    """
    if not has_columns(table, {"group", "n", "responders"}):
        return table

    d = table[table["n"] > 0].sort_values("group")
    lo, hi = proportion_confint(d["responders"].to_numpy(), d["n"].to_numpy(), alpha=alpha, method="wilson")
    return pd.DataFrame(
        {
            "group": d["group"].to_numpy(),
            "proportion": (d["responders"] / d["n"]).to_numpy(),
            "ci_low": lo,
            "ci_high": hi,
        }
    )
