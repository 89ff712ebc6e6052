"""Build the reports: the therapist's report, the peer report (HTML + PDF) and the findings bundle.

:func:`run_report` is the I/O edge: it reads what earlier stages wrote
(analysis dataset, exclusion flow, validation summary, model results and
tables), calls :func:`build_outputs` (pure apart from drawing), passes every
peer output through :func:`analysis.privacy.assert_peer_safe` and only then
writes. If the gate refuses, no peer file is written and the reason is given.

Outputs are byte-identical across runs on the same inputs: see
:mod:`analysis.report.render` for what is pinned.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import lineage
from analysis.contract import Measure, Registry, load_registry
from analysis.errors import InputError
from analysis.params import section
from analysis.paths import project_root, resolve
from analysis.privacy import assert_peer_safe, km_for_peers, responder_cells_small, suppress_count
from analysis.report import clients as cl
from analysis.report import figures as fg
from analysis.report import findings as fnd
from analysis.report import peer as pr
from analysis.report import provenance as prov
from analysis.report import summary as sm
from analysis.report import therapist as th
from analysis.report import worklist as wl
from analysis.report.render import GROUP_COLOURS, build_date, data_uri, figure_style, html_to_pdf, render, svg_bytes

RESULT_TABLES = (
    "trajectories",
    "responders",
    "balance",
    "tipping",
    "chronicity",
    "km",
    "immediate",
    "hip_ir_vs_pain",
    "random_effects",
)


@dataclass
class ReportInputs:
    """Everything the reports are built from, already read from disk."""

    params: dict[str, Any]
    registry: Registry
    dataset: pd.DataFrame
    flow: pd.DataFrame
    results: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    diagnostics: pd.DataFrame | None = None
    validation: dict[str, Any] = field(default_factory=dict)
    validation_href: str = "../validation/validation.html"
    clinic_id: str = "unknown"
    true_period: tuple[str, str] | None = None  # from deidentify_log.json when the dates were shifted


@dataclass(frozen=True)
class Figure:
    """An embedded figure: id, caption, alt text and the SVG bytes."""

    key: str
    caption: str
    alt: str
    svg: bytes

    @property
    def shape(self) -> str:
        """CSS class: square figures are shown narrower than wide ones."""
        return "square" if self.key in {"responders", "chronicity", "hip_ir"} else "wide"

    @property
    def uri(self) -> str:
        return data_uri(self.svg)


# ----------------------------------------------------------------------------- reading


def _read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.is_file() else pd.DataFrame()


def load_report_inputs(params: dict[str, Any], root: Path | None = None) -> tuple[ReportInputs, list[Path]]:
    """Read the report's inputs; returns them and the list of files read (for provenance)."""
    root = root or project_root()
    j, m, v, r = (section(params, s) for s in ("join", "model", "validate", "report"))
    data = section(params, "data")
    dataset_path, flow_path = resolve(j["out"], root), resolve(j["flow"], root)
    results_dir = resolve(m["out_dir"], root)
    results_path = results_dir / "results.json"
    for path, cmd in ((dataset_path, "join"), (flow_path, "join"), (results_path, "model")):
        if not path.is_file():
            raise InputError(f"{path}: not found; run `outcomes {cmd}` first (or `dvc repro`)")
    # the results must come from the model run on *this* dataset, and the dataset from the last join
    joined = lineage.check(dataset_path.parent, [dataset_path, flow_path], "join")
    lineage.check(results_dir, [results_path], "model")
    if not lineage.read_by(results_dir, dataset_path, joined[lineage.key(dataset_path)]):
        raise InputError(
            f"{results_path}: was made from another analysis dataset than {dataset_path} (the last "
            "`outcomes model` run failed or is older than the last join); re-run `outcomes model`"
        )
    try:
        results = json.loads(results_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{results_path}: not valid JSON ({exc.msg}); rerun `outcomes model`") from None
    validation_path = resolve(v["report_dir"], root) / "validation.json"
    validation = json.loads(validation_path.read_text(encoding="utf-8")) if validation_path.is_file() else {}
    tables = {name: _read_csv(results_dir / f"{name}.csv") for name in RESULT_TABLES}
    diag_path = results_dir / "diagnostics.parquet"
    diagnostics = pd.read_parquet(diag_path) if diag_path.is_file() else None
    therapist_dir = resolve(r["therapist_dir"], root)
    href = os.path.relpath(resolve(v["report_dir"], root) / "validation.html", therapist_dir)
    registry_path = resolve(data.get("registry", "config/measures.yaml"), root)
    registry = load_registry(registry_path)
    read = [
        resolve(data["input"], root),
        registry_path,
        dataset_path,
        flow_path,
        results_path,
        validation_path,
        diag_path,
        *(results_dir / f"{n}.csv" for n in RESULT_TABLES),
        results_dir / "metrics.json",
    ]
    true_period = None
    deid_log = resolve(data["input"], root) / "deidentify_log.json"
    if deid_log.is_file():
        tp = (json.loads(deid_log.read_text(encoding="utf-8")) or {}).get("true_period") or {}
        if tp.get("first_month") and tp.get("last_month"):
            true_period = (str(tp["first_month"]), str(tp["last_month"]))
        read.append(deid_log)
    return (
        ReportInputs(
            params=params,
            registry=registry,
            dataset=pd.read_parquet(dataset_path),
            flow=pd.read_csv(flow_path),
            results=results,
            tables=tables,
            diagnostics=diagnostics,
            validation=validation,
            validation_href=Path(href).as_posix(),
            clinic_id=fnd.clinic_identity(
                params, demo=resolve(data["input"], root).resolve() == (root / "data/raw/demo").resolve()
            ),
            true_period=true_period,
        ),
        read,
    )


# ----------------------------------------------------------------------------- building


def _has(df: pd.DataFrame | None, cols: set[str]) -> bool:
    return df is not None and not df.empty and cols <= set(df.columns)


def _svg(draw, tight: bool = True) -> bytes:
    with figure_style():
        return svg_bytes(draw(), tight=tight)


def _period(dataset: pd.DataFrame) -> tuple[str, str]:
    dates = pd.to_datetime(dataset["session_date"])
    if dates.empty:
        return ("", "")
    return (dates.min().strftime("%Y-%m"), dates.max().strftime("%Y-%m"))


def _measure_short(measure: Measure) -> str:
    m = re.search(r"\(([^)]+)\)", measure.label)
    return m.group(1) if m else measure.label


def _common(inp: ReportInputs, provenance: prov.Provenance) -> dict[str, Any]:
    """Context shared by both reports."""
    params = inp.params
    m, r = section(params, "model"), section(params, "report")
    measure = inp.registry[m["measure"]]
    primary = inp.results.get("primary", {}) or {}
    exposure = m.get("exposure", {})
    group = th.assign_group(inp.dataset, tuple(exposure.get("hip_focused", ())), tuple(exposure.get("comparator", ())))
    last = pd.to_datetime(inp.dataset["session_date"]).max()
    stamp = build_date(None if pd.isna(last) else last.date())
    forest = sm.forest_rows(inp.results, inp.tables.get("tipping"))
    return dict(
        params=params,
        m=m,
        r=r,
        measure=measure,
        measure_short=_measure_short(measure),
        primary=primary,
        primary_ok=sm.primary_ok(primary),
        sentence=sm.primary_sentence(primary, measure, float(m["primary_week"]), _measure_short(measure)),
        crosses_zero=sm.ci_crosses_zero(primary.get("ci_low"), primary.get("ci_high")),
        group=group,
        stamp=stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
        stamp_date=stamp.date().isoformat(),
        period=_period(inp.dataset),
        forest=forest,
        secondary=sm.secondary_rows(inp.results),
        robustness=sm.robustness_sentence(inp.results, forest),
        chronicity_answer=sm.chronicity_sentence(inp.results, _measure_short(measure)),
        balance=_balance_rows(inp),
        iptw=(inp.results.get("secondary") or {}).get("iptw") or {},
        provenance=provenance,
        clinic_label=str(r.get("clinic_label", "")),
        ylabel=f"{measure.label}, {measure.unit}",
        xlabel_forest=(
            f"Difference at week {float(m['primary_week']):g}, hip- minus knee-focused "
            f"({_measure_short(measure)} points; < 0 favours hip-focused)"
            if measure.lower_is_better
            else f"Difference at week {float(m['primary_week']):g}, hip- minus knee-focused (> 0 favours hip-focused)"
        ),
    )


def comparison_clients(dataset: pd.DataFrame, model_cfg: dict[str, Any]) -> set[str]:
    """Clients in the primary comparison by the model step's own rules (:func:`analysis.model.prepare.primary_data`)."""
    from analysis.errors import ModelError
    from analysis.model.prepare import primary_data

    try:
        return set(primary_data(dataset, model_cfg).data["client_id"].astype(str))
    except ModelError:
        return set()


def _group_ns(n_by_group: pd.Series, min_cell: int) -> dict[str, str]:
    """Group sizes for a table header; when one is suppressed the others are hidden too ("*"), since the
    total is shown and subtraction would give the small one back."""
    shown = {str(g): suppress_count(n, min_cell) for g, n in n_by_group.items()}
    if any(v.startswith("<") for v in shown.values()):
        shown = {g: (v if v.startswith("<") else "*") for g, v in shown.items()}
    return shown


def _thin_from(inp: ReportInputs, c: dict[str, Any], share: float = 0.25) -> float | None:
    """First whole week after which fewer than ``share`` of the analysed clients are still followed."""
    d = inp.dataset[(inp.dataset["measure"] == c["measure"].key) & inp.dataset["value"].notna()]
    if d.empty:
        return None
    last = d.groupby("client_id")["weeks_since_first"].max()
    for week in range(0, int(float(c["m"]["followup_weeks"])) + 1):
        if (last >= week).mean() < share:
            return float(max(week - 1, 0))
    return None


def _balance_rows(inp: ReportInputs) -> list[dict[str, Any]]:
    """The IPTW balance table (covariate, level, SMD before and after weighting), largest imbalance first."""
    b = inp.tables.get("balance")
    if b is None or b.empty or not {"smd_unweighted", "smd_weighted"} <= set(b.columns):
        return []
    b = b.assign(abs_w=b["smd_weighted"].abs()).sort_values(["abs_w", "covariate"], ascending=[False, True])
    return b.drop(columns="abs_w").to_dict(orient="records")


def _shared_figures(
    inp: ReportInputs,
    c: dict[str, Any],
    individual: pd.DataFrame | None,
    groups_ok: bool = True,
    min_cell: int | None = None,
) -> list[Figure]:
    """Figures in both reports (the therapist's adds faint individual lines to the trajectories)."""
    t = inp.tables
    out: list[Figure] = []
    traj = t.get("trajectories")
    if _has(traj, {"group", "week", "mean", "ci_low", "ci_high"}) and groups_ok:
        out.append(
            Figure(
                "trajectories",
                f"{c['measure'].label} over time by group: model-adjusted means with 95% CI bands"
                + (" over each client's observed values (faint lines)." if individual is not None else "."),
                "Line chart of adjusted mean pain by week for hip-focused and knee-focused groups.",
                _svg(
                    lambda: fg.trajectories(
                        traj,
                        individual,
                        ylabel=c["ylabel"],
                        primary_week=float(c["m"]["primary_week"]),
                        ylim=(c["measure"].minimum, c["measure"].maximum),
                        thin_from=_thin_from(inp, c),
                    )
                ),
            )
        )
    forest = c["forest"]
    out.append(
        Figure(
            "forest",
            "The primary estimate (diamond) beside each sensitivity analysis, with 95% CIs.",
            "Forest plot of the primary estimate and the sensitivity analyses.",
            _svg(lambda: fg.forest(forest, xlabel=c["xlabel_forest"])),
        )
    )
    resp = responder_shares(t.get("responders"), float(c["m"].get("alpha", 0.05)))
    peer_small = min_cell is not None and responder_cells_small(
        (inp.results.get("secondary") or {}).get("responders"), min_cell
    )
    if _has(resp, {"group", "proportion", "ci_low", "ci_high"}) and groups_ok and not peer_small:
        out.append(
            Figure(
                "responders",
                "Share of clients reaching a clinically important improvement (MCID) by group, with 95% CIs.",
                "Bar chart of responders by group.",
                _svg(lambda: fg.proportions(resp, ylabel="Responders (%)")),
            )
        )
    km = t.get("km")
    if min_cell is not None:
        km = km_for_peers(km, min_cell)
    if _has(km, {"group", "week", "survival"}) and groups_ok:
        out.append(
            Figure(
                "km",
                "Time to the first clinically important improvement (Kaplan–Meier), by group.",
                "Kaplan-Meier curves of time to improvement by group.",
                _svg(lambda: fg.kaplan_meier(km, event="MCID improvement")),
            )
        )
    chron = t.get("chronicity")
    if chron is not None and "effect" in chron.columns and "estimate" not in chron.columns:
        chron = chron.rename(columns={"effect": "estimate"})
    if _has(chron, {"symptom_weeks", "estimate", "ci_low", "ci_high"}):
        out.append(
            Figure(
                "chronicity",
                "Chronicity: the estimated hip-minus-knee difference for clients "
                "with different durations of symptoms before the first session.",
                "Effect estimate against symptom weeks.",
                _svg(
                    lambda: fg.effect_curve(
                        chron,
                        x="symptom_weeks",
                        xlabel="Weeks the pain had lasted at the first session (log scale)",
                        ylabel=f"Difference in change at week {float(c['m']['primary_week']):g} (hip − knee)",
                        log_x=True,
                        favours=(
                            ("↓ favours hip-focused care", "↑ favours knee-focused care")
                            if c["measure"].lower_is_better
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
    if not _has(table, {"group", "n", "responders"}):
        return table
    from statsmodels.stats.proportion import proportion_confint

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


def build_therapist(inp: ReportInputs, c: dict[str, Any]) -> str:
    """The therapist's report as one self-contained HTML page."""
    r = c["r"]
    measure: Measure = c["measure"]
    progress = th.client_progress(inp.dataset, measure.key, c["m"]["timing"], c["group"])
    individual = progress.loc[
        progress["week"] <= float(c["m"]["followup_weeks"]), ["client_id", "group", "week", "value"]
    ]
    progress = progress.assign(needed=[th.mcid_needed(measure, b) for b in progress["baseline_value"]])
    figs = _shared_figures(inp, c, individual)
    hip = inp.tables.get("hip_ir_vs_pain")
    if _has(hip, {"group"}) and hip.select_dtypes("number").shape[1] >= 2:
        num = [col for col in hip.columns if col != "client_id" and pd.api.types.is_numeric_dtype(hip[col])]
        x, y = num[0], num[1]
        nice = {"ir_gain": "Hip internal rotation gain (degrees)", "pain_change": f"Change in {measure.label} (points)"}
        figs.append(
            Figure(
                "hip_ir",
                "Gain in hip internal rotation against change in knee pain, one dot per client, with a linear fit.",
                "Scatter of hip rotation gain against pain change.",
                _svg(
                    lambda: fg.scatter_fit(
                        hip,
                        x=x,
                        y=y,
                        xlabel=nice.get(x, x.replace("_", " ")),
                        ylabel=nice.get(y, y.replace("_", " ")),
                        seed=int(c["m"].get("seed", 0)),
                    )
                ),
            )
        )
    attention = wl.rules(r.get("attention"))
    clients = wl.client_table(inp.dataset, measure, c["m"]["timing"], c["group"], attention)
    worklist = wl.worklist(clients).assign(spark=lambda t: [cl.sparkline_svg(v, measure) for v in t["values"]])
    cards = cl.client_cards(clients, progress, measure)
    diag_figs = []
    if _has(inp.diagnostics, {"fitted", "residual"}):
        diag_figs.append(
            Figure(
                "residuals",
                "Residuals of the primary model.",
                "Residual plots.",
                _svg(lambda: fg.residual_panels(inp.diagnostics)),
            )
        )
    re_tab = inp.tables.get("random_effects")
    if re_tab is not None and not re_tab.empty:
        diag_figs.append(
            Figure(
                "re_qq",
                "Normal QQ plots of the client random effects.",
                "QQ plots.",
                _svg(lambda: fg.random_effect_qq(re_tab.drop(columns=["client_id"], errors="ignore"))),
            )
        )
    return render(
        "therapist.html.j2",
        dict(
            c,
            figures={f.key: f for f in figs},
            attention=attention,
            worklist=worklist.to_dict(orient="records"),
            clients=clients.drop(columns=["values"]).to_dict(orient="records"),
            cards=cards,
            status_counts=wl.counts_by_status(clients),
            statuses=wl.STATUSES,
            measures=th.measure_summary(inp.dataset, inp.registry, c["group"], c["m"]["timing"]).to_dict(
                orient="records"
            ),
            therapists=th.therapist_breakdown(inp.dataset, clients).to_dict(orient="records"),
            group_colours=GROUP_COLOURS,
            glance=th.glance(inp.dataset, c["group"]),
            flow=inp.flow.to_dict(orient="records"),
            validation=inp.validation.get("summary", {}),
            validation_href=inp.validation_href,
            diagnostics=diag_figs,
            title="Therapist's report",
        ),
    )


def build_peer(inp: ReportInputs, c: dict[str, Any], min_cell: int) -> tuple[str, list[Figure]]:
    """The peer report HTML (aggregate only) and its figures."""
    d = inp.dataset.assign(group=c["group"])
    analysed = d[d["group"] != "other"]
    # describe the clients in the comparison, as the flow diagram counts them (baseline and follow-up in the
    # window, a group's focus), whether or not the primary model could be fitted
    analysed = analysed[analysed["client_id"].isin(comparison_clients(inp.dataset, c["m"]))]
    clients = analysed.drop_duplicates("client_id").sort_values("client_id")
    first = analysed[
        (analysed["measure"] == c["measure"].key)
        & (analysed["timing"] == c["m"]["timing"])
        & (analysed["session_number"] == 1)
    ].drop_duplicates("client_id")
    clients = clients.merge(
        first[["client_id", "value"]].rename(columns={"value": "baseline_pain"}), on="client_id", how="left"
    )
    n_by_group = clients["group"].value_counts().sort_index()
    groups_ok = bool(len(n_by_group) == 2 and (n_by_group >= min_cell).all())
    figs = _shared_figures(inp, c, None, groups_ok=groups_ok, min_cell=min_cell)
    sessions = analysed.drop_duplicates("session_id")[
        ["client_id", "group", "session_date", "focus", "techniques", "minutes"]
    ]
    tidier = pr.intervention_description(sessions, min_cell)
    steps, group_boxes = pr.peer_flow(inp.flow, min_cell)
    cont = pr.continuous_summary(clients, min_cell)
    cont["missing"] = [suppress_count(v, min_cell) for v in cont.pop("n_missing")]
    secondary = [
        dict(
            s,
            reason=sm.peer_text(s["reason"]),
            result=s["result"] if s["result"] != s["reason"] else sm.peer_text(s["result"]),
        )
        for s in c["secondary"]
    ]
    sec = inp.results.get("secondary") or {}
    withheld = {
        "responders": responder_cells_small(sec.get("responders"), min_cell),
        # medians of a group under min_cell clients pin a person's time
        "time_to_improvement": not groups_ok,
    }
    secondary = [
        dict(s, result=f"withheld for peers: a count below {min_cell} could be worked out from it", status="withheld")
        if withheld.get(s["key"])
        else s
        for s in secondary
    ]
    forest = c["forest"].assign(reason=[sm.peer_text(x) for x in c["forest"]["reason"]])
    # the peer report is dated to the month: an exact last-session date is a person's visit
    month = c["stamp"][:7]
    primary = dict(c["primary"], reason=sm.peer_text(str(c["primary"].get("reason") or "")))
    sentence = sm.primary_sentence(primary, c["measure"], float(c["m"]["primary_week"]), c["measure_short"])
    model_fixed, model_var = sm.model_tables(primary) if c["primary_ok"] else ([], [])
    html = render(
        "peer.html.j2",
        dict(
            c,
            figures={f.key: f for f in figs},
            groups_ok=groups_ok,
            min_cell=min_cell,
            flow_steps=steps,
            flow_groups=group_boxes,
            baseline=pr.baseline_table(clients, min_cell).to_dict(orient="records"),
            baseline_groups=[str(g) for g in n_by_group.index],
            continuous=cont.to_dict(orient="records"),
            baseline_n=_group_ns(n_by_group, min_cell),
            baseline_n_all=suppress_count(int(n_by_group.sum()), min_cell),
            model_fixed=model_fixed,
            model_var=model_var,
            tidier=dict(
                tidier,
                techniques=tidier["techniques"].to_dict(orient="records"),
                focus=tidier["focus"].to_dict(orient="records"),
                n_sessions=suppress_count(tidier["n_sessions"], min_cell),
            ),
            # the model's own count (clients with follow-up in the window), not everyone with a group
            n_analysed=suppress_count(c["primary"].get("n_clients") or len(clients), min_cell),
            title="Peer report",
            secondary=secondary,
            forest=forest,
            primary=primary,
            sentence=sentence,
            stamp=f"{month}-01T00:00:00Z",
            stamp_date=month,
        ),
    )
    return html, figs


def build_outputs(inp: ReportInputs, provenance: prov.Provenance) -> dict[str, object]:
    """All outputs in memory: ``therapist_html``, ``peer_html``, ``peer_pdf``, ``findings``, ``peer_figures``."""
    c = _common(inp, provenance)
    min_cell = int(c["r"].get("min_cell", 5))
    therapist_html = build_therapist(inp, c)
    peer_html, peer_figs = build_peer(inp, c, min_cell)
    # pooled analyses need the clients actually analysed per group (the primary model's), not everyone
    # whose first session had that focus
    analysed = (inp.results.get("primary") or {}).get("n_clients_by_group") or {}
    if analysed:
        n_by_group = pd.Series({fg.group_label(k): v for k, v in analysed.items()}).sort_index()
    else:
        d = inp.dataset.assign(group=c["group"])
        n_by_group = d[d["group"] != "other"].drop_duplicates("client_id")["group"].value_counts().sort_index()
    measure = inp.registry[inp.params["model"]["measure"]]
    findings = fnd.build_findings(
        inp.results,
        clinic_id=inp.clinic_id,
        period=inp.true_period or _period(inp.dataset),
        n_by_group={str(k): int(v) for k, v in n_by_group.items()},
        params=inp.params,
        params_sha256=provenance.params_sha256,
        packages=provenance.packages,
        code_version=provenance.code_version,
        min_cell=min_cell,
        mcid={"points": measure.mcid_points, "percent": measure.mcid_percent},
    )
    return dict(
        therapist_html=therapist_html,
        peer_html=peer_html,
        peer_pdf=html_to_pdf(peer_html),
        findings=findings,
        peer_figures={f"{f.key}.svg": f.svg for f in peer_figs},
    )


_DATA_URI = re.compile(r"data:image/[a-z+]+;base64,[A-Za-z0-9+/=]+")


def check_peer(outputs: dict[str, Any], dataset: pd.DataFrame, min_cell: int) -> None:
    """The privacy gate over every peer output; raises PrivacyError (nothing is written then).

    Embedded images are checked as their own text (SVG) rather than as base64, where a
    random run of letters could look like an id.
    """
    forbidden = set()
    for col in ("client_id", "session_id"):
        if col in dataset.columns:
            forbidden |= {str(v) for v in dataset[col].dropna().unique()}
    html = _DATA_URI.sub("data:", outputs["peer_html"])
    assert_peer_safe(html, forbidden_ids=forbidden, min_cell=min_cell, label="reports/peer/report.html")
    assert_peer_safe(
        outputs["findings"], forbidden_ids=forbidden, min_cell=min_cell, label="reports/peer/findings.json"
    )
    for name, svg in outputs["peer_figures"].items():
        assert_peer_safe(
            svg.decode("utf-8"), forbidden_ids=forbidden, min_cell=min_cell, label=f"reports/peer/figures/{name}"
        )


def write_outputs(outputs: dict[str, Any], therapist_dir: Path, peer_dir: Path) -> list[Path]:
    """Write every output atomically; stale peer figures are removed so the folder matches this build."""
    from analysis.store import to_json_text, write_bytes, write_text

    written = []
    write_text(therapist_dir / "index.html", outputs["therapist_html"])
    written.append(therapist_dir / "index.html")
    fig_dir = peer_dir / "figures"
    keep = set(outputs["peer_figures"])
    if fig_dir.is_dir():
        for old in sorted(fig_dir.glob("*.svg")):
            if old.name not in keep:
                old.unlink()
    for name, data in sorted(outputs["peer_figures"].items()):
        write_bytes(fig_dir / name, data)
        written.append(fig_dir / name)
    write_text(peer_dir / "report.html", outputs["peer_html"])
    write_bytes(peer_dir / "report.pdf", outputs["peer_pdf"])
    write_text(peer_dir / "findings.json", to_json_text(outputs["findings"]))
    written += [peer_dir / "report.html", peer_dir / "report.pdf", peer_dir / "findings.json"]
    return written


def run_report(params: dict[str, Any], progress=None) -> str:
    """I/O edge: read the pipeline outputs, build all reports, gate the peer ones, write.

    ``progress`` (optional) is called with the name of each step before it runs.
    Returns a summary of what was written and how long it took.
    """
    say = progress or (lambda step: None)
    t0 = time.perf_counter()
    root = project_root()
    r = section(params, "report")
    say("reading the results and the analysis dataset (checking their lineage)")
    inp, read = load_report_inputs(params, root)
    provenance = prov.collect(params, root, read)
    say(f"building the therapist's report, the peer report and its PDF ({inp.dataset['client_id'].nunique()} clients)")
    outputs = build_outputs(inp, provenance)
    say("privacy gate over every peer output")
    check_peer(outputs, inp.dataset, int(r.get("min_cell", 5)))
    therapist_dir, peer_dir = resolve(r["therapist_dir"], root), resolve(r["peer_dir"], root)
    say("writing")
    written = write_outputs(outputs, therapist_dir, peer_dir)
    took = time.perf_counter() - t0
    lines = [f"wrote {p}" for p in written]
    lines.append(f"reports built in {took:.1f} s")
    return "\n".join(lines)


def analysis_dataset(params: dict[str, Any], n_clients: int | None = None) -> tuple[pd.DataFrame, str]:
    """The analysis dataset for the notebooks: the pipeline's parquet, else a simulated clinic in memory.

    A fresh clone has no data until ``make report`` (or ``dvc repro``) ran; the
    notebooks then still work on a synthetic clinic (params ``simulate``, joined
    with :func:`analysis.join.build_analysis_dataset`), and say so.

    Returns
    -------
    (dataset, source) : the long analysis dataset (:data:`analysis.join.DATASET_COLUMNS`)
    and where it came from, in words.
    """
    path = resolve(section(params, "join")["out"])
    if path.is_file():
        return pd.read_parquet(path), f"pipeline output {path}"
    from analysis.join import build_analysis_dataset
    from analysis.simulate import simulate_clinic

    sim = section(params, "simulate")
    clinic = simulate_clinic(sim, seed=int(sim["seed"]), n_clients=n_clients)
    dataset = build_analysis_dataset(clinic.clients, clinic.sessions, clinic.measurements)
    return dataset, f"simulated clinic in memory ({dataset['client_id'].nunique()} clients; {path} not found)"
