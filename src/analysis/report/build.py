"""Build the reports in memory: the therapist's report, the peer report (HTML, PDF, Word) and the findings
bundle (:func:`build_outputs`, pure apart from drawing).

:func:`analysis.report.publish.run_report` is the I/O edge: it reads what earlier stages wrote (analysis
dataset, exclusion flow, validation summary, model results and tables), calls :func:`build_outputs`, passes
every peer output through the privacy gate and the release checks, and only then writes.

Outputs are byte-identical across runs on the same inputs: see
:mod:`analysis.report.render` for what is pinned.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from analysis.contract import Measure
from analysis.groups import group_label
from analysis.privacy import responder_cells_small, suppress_count
from analysis.privacy.summaries import RULE as SUMMARIES_RULE
from analysis.report import clients as cl
from analysis.report import clinical as cn
from analysis.report import disclosure as dc
from analysis.report import docx_export as dx
from analysis.report import figures as fg
from analysis.report import findings as fnd
from analysis.report import paper as pa
from analysis.report import paper_tables as pt
from analysis.report import peer as pr
from analysis.report import provenance as prov
from analysis.report import recovery as rc
from analysis.report import secondary_text as st
from analysis.report import summary as sm
from analysis.report import therapist as th
from analysis.report import worklist as wl
from analysis.report.context import (
    ReportContext,
    common_context,
    comparison_clients,
    draw_svg,
    group_ns,
    has_columns,
    period_of,
    shared_figures,
)
from analysis.report.inputs import Figure, ReportInputs
from analysis.report.model_tables import model_tables
from analysis.report.render import GROUP_COLOURS, html_to_pdf, render


def therapist_clients(inp: ReportInputs, c: ReportContext) -> pd.DataFrame:
    """The one client table behind the worklist, the finder, clients.csv and worklist.csv."""
    band = rc.band_table(inp.tables.get("expected"), c.report.attention.expected_band)
    clients = wl.client_table(inp.dataset, c.measure, c.model.timing, c.group, c.report.attention, inp.since_last, band)
    return wl.mark_new(clients, inp.previous_clients)


def build_therapist(
    inp: ReportInputs,
    c: ReportContext,
    clients: pd.DataFrame | None = None,
    references: dict[str, str] | None = None,
) -> str:
    """The therapist's report as one self-contained HTML page.

    ``clients`` is :func:`therapist_clients` (computed if not given); ``references`` (client_id -> the
    practice's own patient reference) only in the key holder's real-date view (:mod:`analysis.clinic_view`).
    """
    r = c.report
    measure: Measure = c.measure
    progress = th.client_progress(inp.dataset, measure.key, c.model.timing, c.group)
    individual = progress.loc[progress["week"] <= c.model.followup_weeks, ["client_id", "group", "week", "value"]]
    # the MCID target depends on the first score only: computed once per distinct first score, not per session
    first = pd.Index(pd.unique(progress["baseline_value"]))
    needed = np.array([th.mcid_needed(measure, b) for b in first], dtype=object)
    progress = progress.assign(needed=needed[first.get_indexer(pd.Index(progress["baseline_value"]))].tolist())
    figs = shared_figures(inp, c, individual)
    hip = inp.tables.get("hip_ir_vs_pain")
    if has_columns(hip, {"group"}) and hip.select_dtypes("number").shape[1] >= 2:
        num = [col for col in hip.columns if col != "client_id" and pd.api.types.is_numeric_dtype(hip[col])]
        x, y = num[0], num[1]
        nice = {"ir_gain": "Hip internal rotation gain (degrees)", "pain_change": f"Change in {measure.label} (points)"}
        figs.append(
            Figure(
                "hip_ir",
                "Gain in hip internal rotation against change in knee pain, one dot per client, with a linear fit.",
                "Scatter of hip rotation gain against pain change.",
                draw_svg(
                    lambda: fg.scatter_fit(
                        hip,
                        x=x,
                        y=y,
                        xlabel=nice.get(x, x.replace("_", " ")),
                        ylabel=nice.get(y, y.replace("_", " ")),
                        seed=c.model.seed,
                    )
                ),
            )
        )
    attention = r.attention
    clients = therapist_clients(inp, c) if clients is None else clients
    refs = references or {}
    clients = clients.assign(reference=[refs.get(str(x), "") for x in clients["client_id"]])
    # the trend line is drawn inline for the active rows only (the full worklist draws its own on demand)
    worklist = wl.worklist(clients).assign(
        spark=lambda t: [
            cl.sparkline_svg(v, measure) if a else "" for v, a in zip(t["values"], t["active"], strict=True)
        ]
    )
    glance = th.glance(inp.dataset, c.group)
    dates = th.dates_note(
        glance["first_date"],
        glance["last_date"],
        shift_max_days=inp.shift_max_days,
        has_calendar=inp.since_last is not None,
        true_period=inp.true_period,
        real_view=references is not None,
    )
    band = rc.band_table(inp.tables.get("expected"), attention.expected_band)
    cards = cl.client_cards(clients, progress, measure, band)
    diag_figs = []
    diagnostics = inp.diagnostics
    if has_columns(diagnostics, {"fitted", "residual"}):
        diag_figs.append(
            Figure(
                "residuals",
                "Residuals of the primary model.",
                "Residual plots.",
                draw_svg(lambda: fg.residual_panels(diagnostics)),
            )
        )
    re_tab = inp.tables.get("random_effects")
    if re_tab is not None and not re_tab.empty:
        diag_figs.append(
            Figure(
                "re_qq",
                "Normal QQ plots of the client random effects.",
                "QQ plots.",
                draw_svg(lambda: fg.random_effect_qq(re_tab.drop(columns=["client_id"], errors="ignore"))),
            )
        )
    return render(
        "therapist.html.j2",
        dict(
            c.template_vars(),
            figures={f.key: f for f in figs},
            attention=attention,
            worklist=worklist.to_dict(orient="records"),
            n_active=int(worklist["active"].sum()) if len(worklist) else 0,
            has_previous=inp.previous_clients is not None,
            dates=dates,
            references=references is not None,
            clients=clients.drop(columns=["values"]).to_dict(orient="records"),
            cards=cards,
            status_counts=wl.counts_by_status(clients),
            statuses=wl.STATUSES,
            measures=th.measure_summary(inp.dataset, inp.registry, c.group, c.model.timing).to_dict(orient="records"),
            therapists=th.therapist_breakdown(inp.dataset, clients).to_dict(orient="records"),
            group_colours=GROUP_COLOURS,
            glance=glance,
            flow=inp.flow.to_dict(orient="records"),
            validation=inp.validation.get("summary", {}),
            validation_href=inp.validation_href,
            diagnostics=diag_figs,
            band_note=rc.band_note(attention.expected_band, c.primary_ok, not band.empty, measure),
            band_level=attention.expected_band,
            has_band=not band.empty,
            title="Therapist's report",
        ),
    )


def peer_clients(inp: ReportInputs, c: ReportContext) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The comparison's rows and one row per client (with ``baseline_pain``), as the peer report describes them."""
    d = inp.dataset.assign(group=c.group)
    analysed = d[d["group"] != "other"]
    # describe the clients in the comparison, as the flow diagram counts them (baseline and follow-up in the
    # window, a group's focus), whether or not the primary model could be fitted
    analysed = analysed[analysed["client_id"].isin(comparison_clients(inp))]
    clients = analysed.drop_duplicates("client_id").sort_values("client_id")
    first = analysed[
        (analysed["measure"] == c.measure.key)
        & (analysed["timing"] == c.model.timing)
        & (analysed["session_number"] == 1)
    ].drop_duplicates("client_id")
    clients = clients.merge(
        first[["client_id", "value"]].rename(columns={"value": "baseline_pain"}), on="client_id", how="left"
    )
    return analysed, clients


def build_peer(
    inp: ReportInputs, c: ReportContext, min_cell: int, shown: dict[str, str] | None = None
) -> tuple[str, list[Figure]]:
    """The peer report HTML (aggregate only) and its figures.

    ``shown`` overrides how the shared client counts (:func:`analysis.report.peer.shared_counts` names)
    are shown, as the release audit decided.
    """
    shown = shown or {}
    analysed, clients = peer_clients(inp, c)
    n_by_group = clients["group"].value_counts().sort_index()
    groups_ok = bool(len(n_by_group) == 2 and (n_by_group >= min_cell).all())
    figs = shared_figures(inp, c, None, groups_ok=groups_ok, min_cell=min_cell)
    sessions = analysed.drop_duplicates("session_id")[
        ["client_id", "group", "session_date", "focus", "techniques", "minutes"]
    ]
    tidier = pr.intervention_description(sessions, min_cell)
    steps, group_boxes = pr.peer_flow(inp.flow, min_cell)
    group_boxes = [
        replace(b, clients=shown.get(f"report:flow.group.{b.step.replace('analysed: ', '')}", b.clients))
        for b in group_boxes
    ]
    if steps:
        steps[-1] = replace(steps[-1], clients=shown.get("report:flow.last", steps[-1].clients))
    cont = pr.continuous_summary(clients, min_cell)
    cont["missing"] = [suppress_count(v, min_cell) for v in cont.pop("n_missing")]
    secondary = [
        dict(
            s,
            reason=st.peer_text(s["reason"]),
            result=s["result"] if s["result"] != s["reason"] else st.peer_text(s["result"]),
        )
        for s in c.secondary
    ]
    responders = inp.results.secondary.get("responders")
    withheld = {
        "responders": responder_cells_small(None if responders is None else responders.model_dump(), min_cell),
        # medians of a group under min_cell clients pin a person's time
        "time_to_improvement": not groups_ok,
    }
    secondary = [
        dict(s, result=f"withheld for peers: a count below {min_cell} could be worked out from it", status="withheld")
        if withheld.get(s["key"])
        else s
        for s in secondary
    ]
    forest = c.forest.assign(reason=[st.peer_text(x) for x in c.forest["reason"]])
    # the peer report is dated to the month: an exact last-session date is a person's visit
    month = c.stamp[:7]
    primary = c.primary.model_copy(update={"reason": st.peer_text(c.primary.reason)})
    sentence = sm.primary_sentence(primary, c.measure, c.model.primary_week, c.measure_short)
    model_fixed, model_var = model_tables(primary) if c.primary_ok else ([], [])
    paper = paper_context(inp, c, analysed, clients, n_by_group, min_cell, withheld["responders"], forest)
    html = render(
        "peer.html.j2",
        dict(
            c.template_vars(),
            **paper,
            figures={f.key: f for f in figs},
            groups_ok=groups_ok,
            min_cell=min_cell,
            flow_steps=steps,
            flow_groups=group_boxes,
            baseline=pr.baseline_table(clients, min_cell).to_dict(orient="records"),
            baseline_groups=[str(g) for g in n_by_group.index],
            continuous=cont.to_dict(orient="records"),
            baseline_n={g: shown.get(f"report:table1.n.{g}", v) for g, v in group_ns(n_by_group, min_cell).items()},
            baseline_n_all=shown.get("report:table1.n.all", suppress_count(int(n_by_group.sum()), min_cell)),
            model_fixed=model_fixed,
            model_var=model_var,
            tidier=dict(
                tidier,
                techniques=tidier["techniques"].to_dict(orient="records"),
                focus=tidier["focus"].to_dict(orient="records"),
                n_sessions=suppress_count(tidier["n_sessions"], min_cell),
            ),
            # the model's own count (clients with follow-up in the window), not everyone with a group
            n_analysed=shown.get("report:primary.n", suppress_count(c.primary.n_clients or len(clients), min_cell)),
            title="Peer report",
            secondary=secondary,
            forest=forest,
            primary=primary,
            sentence=sentence,
            stamp=f"{month}-01T00:00:00Z",
            stamp_date=month,
            provenance=prov.for_peers(c.provenance),
            summaries_rule=SUMMARIES_RULE,
        ),
    )
    return html, figs


def paper_context(
    inp: ReportInputs,
    c: ReportContext,
    analysed: pd.DataFrame,
    clients: pd.DataFrame,
    n_by_group: pd.Series,
    min_cell: int,
    responders_withheld: bool,
    forest: pd.DataFrame,
) -> dict[str, Any]:
    """What the peer paper adds to the shared context: abstract, Table 1 with n (%) and SMD, follow-up,
    unadjusted and adjusted estimates, method specifications, discussion, references and the STROBE list."""
    responders = cn.responder_sentence(inp.results, c.model.primary_week, shown=not responders_withheld)
    shown = group_ns(n_by_group, min_cell)
    labels = sorted(shown)
    n_text = {
        "all": suppress_count(int(n_by_group.sum()), min_cell),
        "hip": shown.get(group_label("hip_focused"), "*") if labels else "*",
        "knee": shown.get(group_label("comparator"), "*") if labels else "*",
    }
    t1 = pt.table1(clients, min_cell)
    return dict(
        sections=pa.SECTIONS,
        cite=pa.cite,
        reference_list=pa.reference_list(),
        strobe=pa.strobe_rows(),
        abstract=pa.abstract(
            inp.results,
            c.measure,
            short=c.measure_short,
            period=c.period,
            n_text=n_text,
            robustness=c.robustness,
            responders=responders,
            time_trend=c.time_trend_answer,
        ),
        discussion=pa.discussion(inp.results, c.measure, c.measure_short, list(forest["status"])),
        method_specs=pt.method_specs(inp.results, c.model, c.provenance.packages),
        followup=pt.followup_summary(analysed, c.measure.key, c.model.timing, c.model.primary_week, min_cell),
        table1=t1,
        smd_continuous={r["variable"]: r["smd"] for r in t1["continuous"]},
        estimates=pt.estimate_rows(inp.results),
        responders_answer=responders,
    )


def build_outputs(inp: ReportInputs, provenance: prov.Provenance) -> dict[str, object]:
    """All outputs in memory: ``therapist_html``, ``peer_html``, ``peer_pdf``, ``peer_docx``, ``findings``,
    ``peer_figures``, the therapist's ``clients_csv`` and ``worklist_csv``, and for the release checks
    ``release_counts``, ``release_relations``, ``baseline_scores``, ``results``, ``table1_counts``."""
    c = common_context(inp, provenance)
    min_cell = c.report.min_cell
    clients = therapist_clients(inp, c)
    therapist_html = build_therapist(inp, c, clients)
    # pooled analyses need the clients actually analysed per group (the primary model's), not everyone
    # whose first session had that focus
    analysed = inp.results.primary.n_clients_by_group
    if analysed:
        n_by_group = pd.Series({group_label(k): v for k, v in analysed.items()}).sort_index()
    else:
        d = inp.dataset.assign(group=c.group)
        n_by_group = d[d["group"] != "other"].drop_duplicates("client_id")["group"].value_counts().sort_index()
    measure = inp.registry[inp.params.model.measure]
    scores = dc.baseline_scores(inp, c)
    findings = fnd.build_findings(
        inp.results,
        clinic_id=inp.clinic_id,
        period=inp.true_period or period_of(inp.dataset),
        n_by_group={str(k): int(v) for k, v in n_by_group.items()},
        params=inp.params,
        params_sha256=provenance.params_sha256,
        packages=provenance.packages,
        code_version=provenance.code_version,
        min_cell=min_cell,
        mcid={"points": measure.mcid_points, "percent": measure.mcid_percent},
        baseline_shown=dc.baseline_shown(scores),
    )
    table = wl.clients_csv(clients)
    # one release: every client count of the bundle and the report, hidden together until none is derivable
    described = peer_clients(inp, c)[1]
    clients_by_group = described["group"].value_counts().sort_index()
    counts, relations = dc.release_counts(
        findings, inp.results, {str(k): int(v) for k, v in n_by_group.items()}, clients_by_group, inp.flow, min_cell
    )
    findings = fnd.apply_shown(findings, counts)
    shown = {x.name: x.shown for x in counts if x.name.startswith("report:")}
    peer_html, peer_figs = build_peer(inp, c, min_cell, shown)
    return dict(
        therapist_html=therapist_html,
        clients_csv=table,
        worklist_csv=table[table["on_worklist"]].reset_index(drop=True),
        peer_html=peer_html,
        peer_pdf=html_to_pdf(peer_html),
        peer_docx=dx.html_to_docx(peer_html, title=PAPER_TITLE, created=paper_date(c.stamp)),
        findings=findings,
        peer_figures={f"{f.key}.svg": f.svg for f in peer_figs},
        release_counts=counts,
        release_relations=relations,
        baseline_scores=scores,
        results=inp.results,
        table1_counts=dc.table1_counts(described),
    )


PAPER_TITLE = "Hip-focused versus knee-focused manual therapy for knee pain: an observational cohort from one clinic"


def paper_date(stamp: str) -> dt.datetime:
    """The Word copy's date: the first of the report's month, as the peer report is dated to the month."""
    return dt.datetime.fromisoformat(stamp[:7] + "-01T00:00:00")
