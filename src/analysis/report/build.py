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

import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.contract import Measure
from analysis.errors import PrivacyError
from analysis.groups import group_label
from analysis.params_schema import Params
from analysis.paths import project_root, resolve
from analysis.privacy import assert_peer_safe, responder_cells_small, suppress_count
from analysis.privacy import release as rl
from analysis.privacy.summaries import RULE as SUMMARIES_RULE
from analysis.report import clients as cl
from analysis.report import disclosure as dc
from analysis.report import figures as fg
from analysis.report import findings as fnd
from analysis.report import peer as pr
from analysis.report import provenance as prov
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
from analysis.report.inputs import Figure, ReportInputs, load_report_inputs
from analysis.report.model_tables import model_tables
from analysis.report.render import GROUP_COLOURS, html_to_pdf, render


def build_therapist(inp: ReportInputs, c: ReportContext) -> str:
    """The therapist's report as one self-contained HTML page."""
    r = c.report
    measure: Measure = c.measure
    progress = th.client_progress(inp.dataset, measure.key, c.model.timing, c.group)
    individual = progress.loc[progress["week"] <= c.model.followup_weeks, ["client_id", "group", "week", "value"]]
    progress = progress.assign(needed=[th.mcid_needed(measure, b) for b in progress["baseline_value"]])
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
    clients = wl.client_table(inp.dataset, measure, c.model.timing, c.group, attention)
    worklist = wl.worklist(clients).assign(spark=lambda t: [cl.sparkline_svg(v, measure) for v in t["values"]])
    cards = cl.client_cards(clients, progress, measure)
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
            clients=clients.drop(columns=["values"]).to_dict(orient="records"),
            cards=cards,
            status_counts=wl.counts_by_status(clients),
            statuses=wl.STATUSES,
            measures=th.measure_summary(inp.dataset, inp.registry, c.group, c.model.timing).to_dict(orient="records"),
            therapists=th.therapist_breakdown(inp.dataset, clients).to_dict(orient="records"),
            group_colours=GROUP_COLOURS,
            glance=th.glance(inp.dataset, c.group),
            flow=inp.flow.to_dict(orient="records"),
            validation=inp.validation.get("summary", {}),
            validation_href=inp.validation_href,
            diagnostics=diag_figs,
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
    html = render(
        "peer.html.j2",
        dict(
            c.template_vars(),
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


def build_outputs(inp: ReportInputs, provenance: prov.Provenance) -> dict[str, object]:
    """All outputs in memory: ``therapist_html``, ``peer_html``, ``peer_pdf``, ``findings``, ``peer_figures``,
    and for the release checks ``release_counts``, ``release_relations``, ``baseline_scores``, ``results``."""
    c = common_context(inp, provenance)
    min_cell = c.report.min_cell
    therapist_html = build_therapist(inp, c)
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
        peer_html=peer_html,
        peer_pdf=html_to_pdf(peer_html),
        findings=findings,
        peer_figures={f"{f.key}.svg": f.svg for f in peer_figs},
        release_counts=counts,
        release_relations=relations,
        baseline_scores=scores,
        results=inp.results,
        table1_counts=dc.table1_counts(described),
    )


_DATA_URI = re.compile(r"data:image/[a-z+]+;base64,[A-Za-z0-9+/=]+")


def check_peer(
    outputs: dict[str, Any],
    dataset: pd.DataFrame,
    min_cell: int,
    *,
    earlier: Sequence[Mapping[str, Any]] = (),
    foreign: Iterable[str] = (),
    allowed: set[str] | None = None,
) -> list[str]:
    """The privacy gate over every peer output, as one release; raises PrivacyError (nothing is written then).

    Embedded images are checked as their own text (SVG) rather than as base64, where a
    random run of letters could look like an id. ``earlier`` are the clinic's earlier releases (the
    ledger), ``foreign`` the names in the input folder's file system no output may contain, ``allowed``
    every string the bundle may hold (None: not checked). Returns the disclosure-check summary, one line
    per rule.
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
    lines, refuse = dc.release_checks(
        outputs,
        [html, *(v.decode("utf-8") for v in outputs["peer_figures"].values())],
        earlier,
        foreign,
        allowed,
        min_cell,
    )
    if refuse:
        raise PrivacyError(
            "peer release refused: " + refuse[0] + (f" (and {len(refuse) - 1} more)" if refuse[1:] else "")
        )
    return lines


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


def run_report(params: Params, progress: Callable[[str], None] | None = None) -> str:
    """I/O edge: read the pipeline outputs, build all reports, gate the peer ones, write.

    ``progress`` (optional) is called with the name of each step before it runs.
    Returns a summary of what was written and how long it took.
    """
    say = progress or (lambda step: None)
    t0 = time.perf_counter()
    root = project_root()
    r = params.report
    say("reading the results and the analysis dataset (checking their lineage)")
    inp, read = load_report_inputs(params, root)
    provenance = prov.collect(params, root, read)
    say(f"building the therapist's report, the peer report and its PDF ({inp.dataset['client_id'].nunique()} clients)")
    outputs = build_outputs(inp, provenance)
    say("privacy gate over every peer output, as one release checked against the clinic's earlier ones")
    ledger = rl.ledger_dir(r.release_ledger, inp.clinic_id)
    allowed = dc.allowed_strings(
        inp.results,
        prov.analysis_params(params),
        provenance.packages,
        provenance.code_version,
        inp.clinic_id,
        fnd.GENERATED_STRINGS,
        {"min_cell": r.min_cell},
    )
    checks = check_peer(
        outputs,
        inp.dataset,
        r.min_cell,
        earlier=rl.read_ledger(ledger),
        foreign=dc.foreign_names(resolve(params.data.input, root)),
        allowed=allowed,
    )
    therapist_dir, peer_dir = resolve(r.therapist_dir, root), resolve(r.peer_dir, root)
    say("writing")
    written = write_outputs(outputs, therapist_dir, peer_dir)
    rl.record_release(ledger, dc.ledger_entry(outputs))
    took = time.perf_counter() - t0
    lines = [f"wrote {p}" for p in written]
    lines.append("disclosure check of the peer release (SACRO/ACRO rules):")
    lines += [f"  {x}" for x in checks]
    lines.append(f"reports built in {took:.1f} s")
    return "\n".join(lines)
