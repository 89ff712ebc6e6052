"""The peer paper (analysis.report.paper, paper_tables, docx_export): the STROBE mapping, the references, the
abstract from the numbers, Table 1's SMDs and suppression, the follow-up table, and the Word copy's bytes."""

from __future__ import annotations

import datetime as dt
import io
import math
import re
import zipfile

import numpy as np
import pandas as pd
import pytest

from analysis.params import load_params
from analysis.report import docx_export, paper, paper_tables
from conftest import results_from

TEMPLATE = paper.TEMPLATE_PATH.read_text(encoding="utf-8")


# --------------------------------------------------------------------------- STROBE from the paper's headings


def test_every_section_is_a_heading_of_the_template_exactly_once():
    used = re.findall(r"heading\('([a-z-]+)'\)", TEMPLATE)
    assert sorted(used) == sorted(paper.SECTIONS)  # no heading outside SECTIONS, none missing, none twice


def test_strobe_points_only_to_sections_that_exist():
    rows = paper.strobe_rows()
    assert [r["item"] for r in rows] == [str(i) for i in range(1, 23)]
    for r in rows:
        for label, sid in r["where"]:
            assert sid in paper.SECTIONS and label == paper.section_path(sid)


def test_strobe_items_of_issue_20_point_to_the_right_sections():
    where = {r["item"]: [sid for _, sid in r["where"]] for r in paper.strobe_rows()}
    assert where["10"] == ["study-size"]  # study size: a methods section, not a table of precision
    assert "sensitivity-results" in where["17"]  # other analyses: the results, not the model table
    assert where["19"] == ["limitations"]  # limitations: the limitations, not the discussion
    assert paper.section_path("limitations") == "Discussion: Limitations"
    assert paper.section_path("study-size") == "Methods: Study size"


def test_unknown_section_is_an_error():
    with pytest.raises(KeyError):
        paper.section_path("nowhere")


# --------------------------------------------------------------------------- references


def test_every_reference_is_cited_and_numbered_by_first_citation():
    order = paper.peer_citation_order()
    assert sorted(order) == sorted(paper.references())  # every entry cited, every citation known
    assert order[0] == "lack2015" and paper.cite("lack2015", "khayambashi2012") == "[1,2]"
    assert len(paper.reference_list()) == len(order)


def test_citation_order_follows_first_appearance():
    assert paper.citation_order("x {{ cite('b') }} y {{ cite('a', 'b') }} {{ cite('c') }}") == ["b", "a", "c"]
    assert paper.cite("c", "b", order=("b", "a", "c")) == "[1,3]"


def test_vancouver_style():
    refs = paper.references()
    assert paper.vancouver(refs["farrar2001"]) == (
        "Farrar JT, Young JP Jr, LaMoreaux L, Werth JL, Poole RM. Clinical importance of changes in chronic pain "
        "intensity measured on an 11-point numerical pain rating scale. Pain. 2001;94(2):149-58."
    )
    assert paper.vancouver(refs["rubin1987"]) == (
        "Rubin DB. Multiple imputation for nonresponse in surveys. New York: Wiley; 1987."
    )
    many = {"authors": list("ABCDEFGH"), "title": "T", "journal": "J", "year": 2000, "volume": 1, "pages": "1-2"}
    assert paper.vancouver(many) == "A, B, C, D, E, F, et al. T. J. 2000;1:1-2."


# --------------------------------------------------------------------------- abstract


def test_abstract_is_generated_from_the_numbers(registry):
    r = results_from(
        {
            "primary": {"status": "ok", "estimate": -0.93, "ci_low": -1.67, "ci_high": -0.2, "p_value": 0.014},
            "secondary": {"unadjusted": {"status": "done", "estimate": -0.94, "ci_low": -1.68, "ci_high": -0.2}},
        }
    )
    a = paper.abstract(
        r,
        registry["knee_pain_nprs"],
        short="NPRS",
        period=("2024-01", "2025-09"),
        n_text={"all": "136", "hip": "60", "knee": "76"},
        robustness="ROBUST.",
        responders="RESP.",
        time_trend="TREND.",
    )
    assert set(a) == {"background", "methods", "results", "conclusions"}
    res = a["results"].replace("−", "-")
    assert res.startswith("136 clients were analysed (60 hip-focused, 76 knee-focused)")
    assert "-0.93 NPRS points (95% CI -1.67 to -0.20; p = 0.014)" in res
    assert "unadjusted -0.94 (95% CI -1.68 to -0.20)" in res and "difference of 2 points" in res
    assert "RESP." in res and "TREND." in res and "ROBUST." in res
    assert "change in knee pain (NPRS)" in a["methods"] and "2024-01 to 2025-09" in a["methods"]
    assert "by less than clients notice" in a["conclusions"]
    unclear = results_from({"primary": {"status": "ok", "estimate": -0.5, "ci_low": -2.5, "ci_high": 1.5}})
    assert paper.conclusion_text(unclear, registry["knee_pain_nprs"]).startswith("In this clinic, clients did about as")


# --------------------------------------------------------------------------- Table 1, follow-up, estimates


def test_smd_matches_the_textbook_formulas():
    x1, x0 = pd.Series([1.0, 2.0, 3.0, 4.0]), pd.Series([2.0, 3.0, 4.0, 5.0, 6.0])
    expected = (2.5 - 4.0) / math.sqrt((x1.var() + x0.var()) / 2)
    assert paper_tables.smd_continuous(x1, x0) == pytest.approx(expected)
    # two levels: the usual (p1 - p0) / sqrt((p1 q1 + p0 q0) / 2)
    a, b = pd.Series(["F"] * 6 + ["M"] * 4), pd.Series(["F"] * 3 + ["M"] * 7)
    p1, p0 = 0.4, 0.7
    assert paper_tables.smd_categorical(a, b) == pytest.approx(abs(p1 - p0) / math.sqrt((p1 * 0.6 + p0 * 0.3) / 2))
    # three levels: Yang & Dalton's Mahalanobis form, by hand
    c, d = pd.Series(list("aaabbbbccc")), pd.Series(list("aabbbbbbcc"))
    t, u = np.array([0.4, 0.3]), np.array([0.6, 0.2])
    s = (np.diag(t) - np.outer(t, t) + np.diag(u) - np.outer(u, u)) / 2
    assert paper_tables.smd_categorical(c, d) == pytest.approx(math.sqrt((t - u) @ np.linalg.inv(s) @ (t - u)))


def _clients(n_hip: int, n_knee: int, small_level: bool) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = n_hip + n_knee
    sex = np.array(["F", "M"] * (n // 2) + ["F"] * (n % 2))
    if small_level:
        sex[:2] = "X"  # two hip-focused clients of another level: a small cell
    return pd.DataFrame(
        {
            "client_id": [f"C{i:03d}" for i in range(n)],
            "group": ["hip-focused"] * n_hip + ["knee-focused"] * n_knee,
            "sex": sex,
            "age_band": "40-49",
            "activity": "none",
            "knee": np.where(np.arange(n) % 3 == 0, "left", "right"),
            "baseline_pain": rng.integers(3, 9, n).astype(float),
            "symptom_weeks": rng.integers(2, 60, n).astype(float),
            "sitting_hours": rng.uniform(2, 10, n),
        }
    )


def test_table1_shows_percentages_and_smd_only_where_no_count_is_hidden():
    t = paper_tables.table1(_clients(20, 24, small_level=True), min_cell=5)
    sex = [r for r in t["categorical"] if r["variable"] == "sex"]
    assert sex[0]["smd"] == "—"  # a hidden cell in the block: no SMD
    for r in sex:
        for g in t["groups"]:
            count = r[g].split(" ")[0]
            assert ("%" in r[g]) == count.isdigit()  # a percentage only beside a shown count
    knee = [r for r in t["categorical"] if r["variable"] == "knee"]
    assert knee[0]["smd"] not in ("", "—") and "(" in knee[0]["hip-focused"]
    assert all(re.fullmatch(r"\d+\.\d \(\d+\.\d\)", r["hip-focused"]) for r in t["continuous"])


def test_followup_summary_hides_counts_that_give_a_small_one_back():
    rows = []
    for i in range(12):
        last = 8.0 if i < 10 else 3.0  # 10 followed to week 6, 2 not: "10 (83%)" would give the 2 back
        for w in (0.0, last):
            rows.append(
                dict(
                    client_id=f"C{i}",
                    group="hip-focused",
                    measure="knee_pain_nprs",
                    timing="pre",
                    value=5.0,
                    weeks_since_first=w,
                    session_id=f"S{i}-{w}",
                )
            )
    out = paper_tables.followup_summary(pd.DataFrame(rows), "knee_pain_nprs", "pre", 6.0, min_cell=5)
    assert out == [{"group": "hip-focused", "weeks": "8.0 (8.0–8.0)", "sessions": "2 (2–2)", "reached": "*"}]


def test_estimate_rows_put_unadjusted_beside_adjusted():
    r = results_from(
        {
            "primary": {"status": "ok", "estimate": -0.93, "ci_low": -1.67, "ci_high": -0.2, "p_value": 0.014},
            "secondary": {
                "unadjusted": {"status": "done", "estimate": -0.94, "ci_low": -1.68, "ci_high": -0.2, "p_value": 0.013},
                "time_trend": {"status": "failed", "reason": "x"},
            },
        }
    )
    rows = {x["label"]: x for x in paper_tables.estimate_rows(r)}
    assert rows["Unadjusted"]["estimate"].replace("−", "-") == "-0.94"
    assert rows["Adjusted (primary)"]["p"] == "0.014"
    assert rows["Adjusted, piecewise-linear time trend"]["ci"] == "not estimable"


def test_method_specs_say_how_gee_and_km_differ_from_r():
    cfg = load_params().model
    text = " ".join(s["text"] for s in paper_tables.method_specs(results_from({}), cfg, {"statsmodels": "9"}))
    assert "statsmodels 9 GEE" in text and "moment estimator" in text and "geepack" in text and "0.6 %" in text
    assert "log-log" in text and "R's survfit uses the log scale" in text
    assert "max(week − k, 0) at k = 6 weeks" in text


# --------------------------------------------------------------------------- the Word copy


HTML = """<html><body><main><h1>Title</h1><section><h2 id="abstract">Abstract</h2>
<p><strong>Results.</strong> The difference was −0.93 (95% CI −1.67 to −0.20).</p>
<table><caption>Table 1. X</caption><tr><th>A</th><th>B</th></tr><tr><td colspan="2">both</td></tr></table>
<figure><svg></svg><figcaption>Figure 2. Forest.</figcaption></figure><ol><li>Ref one.</li></ol>
</section></main></body></html>"""


def test_docx_is_byte_identical_and_holds_the_text():
    when = dt.datetime(2025, 9, 1)
    a = docx_export.html_to_docx(HTML, title="T", created=when)
    b = docx_export.html_to_docx(HTML, title="T", created=when)
    assert a == b
    text = docx_export.docx_text(a)
    assert "Results. The difference was −0.93 (95% CI −1.67 to −0.20)." in text
    assert "Table 1. X" in text and "both" in text and "Ref one." in text and "Figure 2. Forest." in text
    with zipfile.ZipFile(io.BytesIO(a)) as z:
        assert {i.date_time for i in z.infolist()} == {docx_export.ZIP_TIME}
        core = z.read("docProps/core.xml").decode()
    assert "2025-09-01T00:00:00Z" in core and "hip-knee-outcomes" in core
