"""The peer paper's structure and prose: its sections, the STROBE checklist generated from them, the
references (Vancouver style), the structured abstract and the discussion, all from the numbers.

The paper's headings live here (:data:`SECTIONS`), not in the template: the template writes each heading
with ``heading(id)``, and the STROBE checklist (:func:`strobe_rows`) names the same ids, so a checklist
entry cannot point to a section that does not exist or has another name. References live in
``references.yaml`` beside this module; they are numbered in order of first citation in the template
(:func:`citation_order`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from analysis.contract import Measure
from analysis.report.clinical import mcid_sentence
from analysis.report.summary import INCONCLUSIVE, as_float, ci_crosses_zero
from analysis.report.text import fmt_num, fmt_p_stat
from analysis.results import Results

REFERENCES_PATH = Path(__file__).with_name("references.yaml")
TEMPLATE_PATH = Path(__file__).with_name("templates") / "peer.html.j2"


@dataclass(frozen=True)
class Section:
    """A heading of the paper: its anchor id, its title and the section it belongs to ('' = top level)."""

    id: str
    title: str
    parent: str = ""
    level: int = 2


_S = Section
SECTIONS: dict[str, Section] = {
    s.id: s
    for s in (
        _S("abstract", "Abstract"),
        _S("introduction", "Introduction"),
        _S("methods", "Methods"),
        _S("design", "Design and setting", "methods", 3),
        _S("participants", "Participants", "methods", 3),
        _S("exposure", "Exposure", "methods", 3),
        _S("outcome", "Outcome, follow-up and measurement", "methods", 3),
        _S("estimands", "Estimands", "methods", 3),
        _S("bias", "Bias", "methods", 3),
        _S("study-size", "Study size", "methods", 3),
        _S("statistics", "Statistical analysis", "methods", 3),
        _S("sensitivity", "Sensitivity and exploratory analyses", "methods", 3),
        _S("software", "Software and reproducibility", "methods", 3),
        _S("privacy", "Privacy", "methods", 3),
        _S("results", "Results"),
        _S("flow", "Participants and follow-up", "results", 3),
        _S("baseline", "Baseline characteristics", "results", 3),
        _S("intervention", "Intervention delivered (TIDieR)", "results", 3),
        _S("primary", "Primary outcome", "results", 3),
        _S("sensitivity-results", "Sensitivity analyses", "results", 3),
        _S("secondary", "Secondary outcomes", "results", 3),
        _S("discussion", "Discussion"),
        _S("key-results", "Key results", "discussion", 3),
        _S("interpretation", "Interpretation", "discussion", 3),
        _S("generalisability", "Generalisability", "discussion", 3),
        _S("limitations", "Limitations", "discussion", 3),
        _S("declarations", "Declarations"),
        _S("ethics", "Ethics approval and consent", "declarations", 3),
        _S("data-availability", "Data availability", "declarations", 3),
        _S("funding", "Funding and competing interests", "declarations", 3),
        _S("references", "References"),
        _S("strobe", "Appendix A. STROBE checklist (cohort studies)"),
    )
}

#: STROBE (von Elm et al. 2007) items for cohort studies -> the sections of this paper that answer them
STROBE: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("1", "Title and abstract", ("abstract",)),
    ("2", "Background and rationale", ("introduction",)),
    ("3", "Objectives", ("introduction", "estimands")),
    ("4", "Study design", ("design",)),
    ("5", "Setting", ("design", "flow")),
    ("6", "Participants", ("participants",)),
    ("7", "Variables", ("exposure", "outcome", "estimands", "statistics")),
    ("8", "Data sources and measurement", ("outcome",)),
    ("9", "Bias", ("bias", "sensitivity")),
    ("10", "Study size", ("study-size",)),
    ("11", "Quantitative variables", ("outcome", "statistics")),
    ("12", "Statistical methods", ("statistics", "sensitivity")),
    ("13", "Participants", ("flow",)),
    ("14", "Descriptive data", ("baseline", "flow")),
    ("15", "Outcome data", ("flow", "primary")),
    ("16", "Main results", ("primary",)),
    ("17", "Other analyses", ("sensitivity-results", "secondary")),
    ("18", "Key results", ("key-results",)),
    ("19", "Limitations", ("limitations",)),
    ("20", "Interpretation", ("interpretation",)),
    ("21", "Generalisability", ("generalisability",)),
    ("22", "Funding", ("funding",)),
)


def section_path(section_id: str) -> str:
    """'Methods: Bias' for a subsection, 'Abstract' for a top-level section; KeyError for an unknown id."""
    s = SECTIONS[section_id]
    return f"{SECTIONS[s.parent].title}: {s.title}" if s.parent else s.title


def strobe_rows() -> list[dict[str, Any]]:
    """The STROBE checklist: item, topic, and where (section paths and their anchor ids), from :data:`SECTIONS`."""
    return [{"item": item, "topic": topic, "where": [(section_path(i), i) for i in ids]} for item, topic, ids in STROBE]


# --------------------------------------------------------------------------- references


@cache
def references() -> dict[str, dict[str, Any]]:
    """The bibliography (``references.yaml``): key -> entry."""
    raw = yaml.safe_load(REFERENCES_PATH.read_text(encoding="utf-8"))
    return {str(k): dict(v) for k, v in raw["references"].items()}


def citation_order(template_text: str) -> list[str]:
    """Reference keys in order of first citation (``cite('a', 'b')``) in ``template_text``."""
    order: list[str] = []
    for call in re.findall(r"cite\(([^)]*)\)", template_text):
        for key in re.findall(r"['\"]([A-Za-z0-9_]+)['\"]", call):
            if key not in order:
                order.append(key)
    return order


@cache
def peer_citation_order() -> tuple[str, ...]:
    """The citation order of the peer template."""
    return tuple(citation_order(TEMPLATE_PATH.read_text(encoding="utf-8")))


def cite(*keys: str, order: tuple[str, ...] | None = None) -> str:
    """Vancouver in-text citation, e.g. ``[3,5]``; an uncited or unknown key is an error."""
    order = peer_citation_order() if order is None else order
    nums = sorted(order.index(k) + 1 for k in keys)
    return "[" + ",".join(str(n) for n in nums) + "]"


def vancouver(ref: dict[str, Any]) -> str:
    """One reference in Vancouver style (NLM): authors (six, then 'et al'), title, journal year;vol(issue):pages."""
    authors = list(ref["authors"])
    etal = authors[-1] == "et al"
    names = [a for a in authors if a != "et al"]
    if len(names) > 6:
        names, etal = names[:6], True
    who = ", ".join(names) + (", et al" if etal else "")
    title = str(ref["title"]).rstrip(".")
    if "journal" not in ref:  # a book
        edition = f" {ref['edition']}." if ref.get("edition") else ""
        return f"{who}. {title}.{edition} {ref['place']}: {ref['publisher']}; {ref['year']}."
    where = f"{ref['year']}"
    if ref.get("volume") is not None:
        where += f";{ref['volume']}"
        if ref.get("issue") is not None:
            where += f"({ref['issue']})"
    if ref.get("pages"):
        where += f":{ref['pages']}"
    return f"{who}. {title}. {ref['journal']}. {where}."


def reference_list(order: tuple[str, ...] | None = None) -> list[str]:
    """The numbered bibliography in citation order (Vancouver)."""
    order = peer_citation_order() if order is None else order
    refs = references()
    return [vancouver(refs[k]) for k in order]


# --------------------------------------------------------------------------- abstract and discussion


def _lower(label: str) -> str:
    """'Knee pain (NPRS)' -> 'knee pain (NPRS)' (a label inside a sentence)."""
    return label[:1].lower() + label[1:]


def _ci(d: Any) -> str:
    return f"{fmt_num(d.estimate)} (95% CI {fmt_num(d.ci_low)} to {fmt_num(d.ci_high)})"


def abstract(
    results: Results,
    measure: Measure,
    *,
    short: str,
    period: tuple[str, str],
    n_text: dict[str, str],
    robustness: str,
    responders: str,
    time_trend: str,
) -> dict[str, str]:
    """The structured abstract (background, methods, results, conclusions), generated from the numbers.

    ``n_text`` holds the suppression-aware counts as shown to peers (``all``, ``hip``, ``knee``).
    """
    p = results.primary
    week = f"{p.primary_week:g}"
    background = (
        "Knee pain is usually treated at the knee; some manual therapists treat the hip instead, on the view that "
        "a stiff hip drives the knee's pain. Whether clients whose care starts hip-focused improve more in "
        "routine care is unknown."
    )
    methods = (
        f"Retrospective cohort of routinely collected session records from one manual-therapy clinic "
        f"({period[0]} to {period[1]}). Clients whose first session was hip-focused were compared with clients "
        f"whose first session was knee-focused. The primary outcome was the change in {_lower(measure.label)} from the "
        f"first session to week {week}, estimated by a linear mixed model with a random intercept and slope per "
        "client and adjusted for the recorded baseline characteristics. Sensitivity analyses addressed the "
        "shape of the time trend, the model's random-effects assumptions, measured confounding and dropout."
    )
    if not p.ok:
        result = f"The primary model could not be fitted reliably: no estimate is reported ({n_text['all']} clients)."
        conclusion = "This clinic's data do not answer the question; they can still be pooled with other clinics'."
        return {"background": background, "methods": methods, "results": result, "conclusions": conclusion}
    unadj = results.secondary.get("unadjusted")
    unadj_h = None if unadj is None else unadj.headline
    result = (
        f"{n_text['all']} clients were analysed ({n_text['hip']} hip-focused, {n_text['knee']} knee-focused). The "
        f"adjusted difference in change at week {week}, hip- minus knee-focused, was {fmt_num(p.estimate)} {short} "
        f"points (95% CI {fmt_num(p.ci_low)} to {fmt_num(p.ci_high)}; {fmt_p_stat(p.p_value)})"
        + (f"; unadjusted {_ci(unadj_h)}" if unadj_h is not None else "")
        + f", against a minimal clinically important difference of {fmt_num(measure.mcid_points, 0)} points. "
        + (responders + " " if responders else "")
        + time_trend
        + " "
        + robustness
    )
    return {
        "background": background,
        "methods": methods,
        "results": result,
        "conclusions": conclusion_text(results, measure),
    }


def conclusion_text(results: Results, measure: Measure) -> str:
    """The abstract's conclusion: direction, size against the MCID, and what the design cannot show."""
    p = results.primary
    est, lo, hi = as_float(p.estimate), as_float(p.ci_low), as_float(p.ci_high)
    mcid = measure.mcid_points or math.nan
    sign = -1.0 if measure.lower_is_better else 1.0
    favours = "hip-focused" if sign * est > 0 else "knee-focused"
    noticeable = max(abs(lo), abs(hi)) >= mcid
    if ci_crosses_zero(lo, hi):
        first = "In this clinic, clients did about as well whether their care started hip- or knee-focused"
    else:
        first = f"In this clinic, clients whose care started {favours} improved somewhat more" + (
            "" if noticeable else ", but by less than clients notice"
        )
    return (
        f"{first}. Because therapists chose the focus of care, the comparison may reflect who was offered it "
        "rather than the care itself; pooled estimates from several clinics, and a randomised trial if they "
        "point the same way, are needed before practice changes."
    )


def discussion(results: Results, measure: Measure, short: str, forest_status: list[str]) -> dict[str, str]:
    """Interpretive discussion paragraphs (key results, interpretation, generalisability), from the numbers."""
    p = results.primary
    if not p.ok:
        return {
            "key_results": "The primary model could not be fitted reliably, so this clinic's data give no estimate.",
            "interpretation": "No interpretation is offered without an estimate.",
            "generalisability": "Pooling with other clinics may still give an answer.",
        }
    key = (
        conclusion_text(results, measure).split(". Because")[0]
        + ". "
        + mcid_sentence(results, measure, short).replace("How large is that? ", "")
    )
    ev = results.secondary.get("e_value")
    ev_text = ""
    if ev is not None and ev.done and ev.numbers.get("e_value") is not None:
        ev_text = (
            f" An unrecorded confounder associated with both the focus of care and the outcome by a risk ratio of "
            f"about {fmt_num(ev.numbers['e_value'], 1)} each (E-value; {fmt_num(ev.numbers.get('e_value_ci'), 1)} for "
            "the confidence limit) could explain the estimate away; confounding by indication of that strength is "
            "plausible in routine care, where therapists choose the hip for particular presentations."
        )
    weak = (
        " The weighted analysis could not balance the groups on the recorded characteristics, which itself says "
        "the groups differed at the start in ways the model has to extrapolate across."
        if INCONCLUSIVE in forest_status
        else ""
    )
    interpretation = (
        "The estimate is an association in routine care, not the effect of choosing the hip. Its size is what a "
        "therapist should weigh, more than its p-value: the "
        "difference between the groups is measured against the change a client notices, and the share of "
        "clients who reached that change is shown beside it." + ev_text + weak
    )
    general = (
        "One clinic, its therapists and its clients: the estimate mixes the approach with the way it is "
        "delivered there, and other clinics may choose the focus for other reasons. The same analysis, run "
        "unchanged in every participating clinic, yields a findings bundle for a random-effects meta-analysis, "
        "which is where a generalisable answer can come from."
    )
    return {"key_results": key, "interpretation": interpretation, "generalisability": general}
