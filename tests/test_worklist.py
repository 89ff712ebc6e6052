"""The therapist's worklist: one fixture per pattern, the urgency order, and the client finder's pieces."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from analysis.contract import load_registry
from analysis.params_schema import Attention
from analysis.report import clients as cl
from analysis.report import therapist as th
from analysis.report import worklist as wl

ROOT = Path(__file__).resolve().parents[1]
CFG = Attention(min_sessions=4, min_weeks=4, active_weeks=4)


@pytest.fixture(scope="module")
def registry():
    return load_registry(ROOT / "config" / "measures.yaml")


@pytest.fixture(scope="module")
def nprs(registry):
    return registry["knee_pain_nprs"]


@pytest.mark.parametrize(
    ("values", "weeks", "expected"),
    [
        ([9, 7, 10], 6.0, "relapsed"),  # demo C0006: reached the MCID at 7, now above the start
        ([6, 4, 8], 8.0, "worse"),  # demo C0014: 2 points worse than at the start
        ([6, 6, 5, 6, 6], 5.0, "no important improvement"),  # enough care, never 2 points (or 30%) better
        ([0, 0, 1], 5.0, "low baseline"),  # from 0 no improvement is possible
        ([7, 5, 4], 3.0, "improved"),  # 3 points better and still there
        ([6, 6], 1.0, "too early"),  # 2 sessions in a week: too early to judge
        ([5, 8], 1.0, "worse"),  # worse is flagged at once, however early
    ],
)
def test_each_pattern(nprs, values, weeks, expected):
    assert wl.classify(values[0], values, len(values), weeks, nprs, CFG) == expected


def test_thresholds_come_from_params(nprs):
    values = [6, 6, 6]
    assert wl.classify(6, values, 3, 2.0, nprs, CFG) == "too early"
    assert wl.classify(6, values, 3, 2.0, nprs, Attention(min_sessions=3)) == "no important improvement"
    assert wl.classify(6, values, 3, 2.0, nprs, Attention(min_sessions=9, min_weeks=2)) == "no important improvement"


def _dataset(rows: list[tuple[str, str, list[float], str, str]]) -> pd.DataFrame:
    """(client, first date, values, baseline focus, therapist) -> a minimal long analysis dataset."""
    out = []
    for cid, start, values, focus, ther in rows:
        for k, v in enumerate(values):
            date = pd.Timestamp(start) + pd.Timedelta(days=7 * k)
            out.append(
                dict(
                    client_id=cid,
                    session_id=f"{cid}-{k}",
                    session_number=k + 1,
                    session_date=date,
                    weeks_since_first=float(k),
                    measure="knee_pain_nprs",
                    timing="pre",
                    value=float(v),
                    baseline_value=float(values[0]),
                    baseline_focus=focus,
                    therapist_id=ther,
                )
            )
    return pd.DataFrame(out)


def test_client_table_orders_by_urgency_and_marks_active(nprs):
    d = _dataset(
        [
            ("A", "2025-01-06", [6, 6, 5, 6, 6], "hip", "T1"),  # no improvement, last seen early Feb: not active
            ("B", "2025-03-03", [6, 4, 8], "knee", "T2"),  # worse, last seen 2025-03-17: active
            ("C", "2025-01-06", [6, 4, 8], "knee", "T1"),  # worse, not active
            ("D", "2025-01-27", [9, 7, 10], "hip", "T2"),  # relapsed, last seen 2025-02-10: not active
            ("E", "2025-02-03", [7, 5, 4], "knee", "T2"),  # improved: not on the worklist
        ]
    )
    group = th.assign_group(d, ("hip",), ("knee",))
    table = wl.client_table(d, nprs, "pre", group, CFG)
    work = wl.worklist(table)
    assert work["client_id"].tolist() == ["B", "C", "D", "A"]  # worse (active first), relapsed, no improvement
    assert work["active"].tolist() == [True, False, False, False]
    b = work.iloc[0]
    assert (b["first_visit"], b["last_visit"], b["sessions"], b["baseline"], b["latest"], b["best"]) == (
        "2025-03-03",
        "2025-03-17",
        3,
        6.0,
        8.0,
        4.0,
    )
    assert wl.counts_by_status(table)["improved"] == 1 and "E" not in work["client_id"].tolist()
    assert table.set_index("client_id").loc["A", "therapist_id"] == "T1"


def test_cards_have_anchors_legend_text_and_small_svg(nprs):
    d = _dataset([("A", "2025-01-06", [6, 6, 5, 6, 6], "hip", "T1"), ("B", "2025-03-03", [6, 4, 8], "knee", "T2")])
    group = th.assign_group(d, ("hip",), ("knee",))
    table = wl.client_table(d, nprs, "pre", group, CFG)
    progress = th.client_progress(d.assign(weeks_since_first=d["weeks_since_first"]), "knee_pain_nprs", "pre", group)
    cards = cl.client_cards(table, progress, nprs)
    assert [c["anchor"] for c in cards] == ["client-A", "client-B"]
    svg = cards[1]["svg"]
    assert svg.startswith("<svg") and "client B" in svg and "<polyline" in svg and len(svg) < 1200
    assert "#D55E00" in svg  # knee-focused colour, as in every other chart
    spark = cl.sparkline_svg([6, 4, 8], nprs)
    assert spark.count("<circle") == 1 and "polyline" in spark


def test_measure_summary_covers_every_measure_with_data(registry):
    d = pd.concat(
        [
            _dataset([("A", "2025-01-06", [6, 4], "hip", "T1"), ("B", "2025-01-06", [6, 7], "knee", "T1")]),
            _dataset([("A", "2025-01-06", [40, 52], "hip", "T1")]).assign(measure="lefs"),
        ],
        ignore_index=True,
    )
    group = th.assign_group(d, ("hip",), ("knee",))
    s = th.measure_summary(d, registry, group)
    assert set(s["measure"]) == {"knee_pain_nprs", "lefs"}
    lefs = s[s["measure"] == "lefs"].iloc[0]
    assert (lefs["group"], lefs["clients"], lefs["change_mean"]) == ("hip-focused", 1, 12.0)
    pain = s[(s["measure"] == "knee_pain_nprs")].set_index("group")
    assert pain.loc["hip-focused", "reached_mcid"] == 1.0 and pain.loc["knee-focused", "reached_mcid"] == 0.0


def test_therapist_breakdown_counts_usual_therapist(nprs):
    d = _dataset(
        [
            ("A", "2025-01-06", [6, 6, 5, 6, 6], "hip", "T1"),
            ("B", "2025-03-03", [7, 5, 4], "knee", "T2"),
            ("C", "2025-03-03", [6, 6, 6, 6], "knee", "T2"),
        ]
    )
    group = th.assign_group(d, ("hip",), ("knee",))
    table = wl.client_table(d, nprs, "pre", group, CFG)
    b = th.therapist_breakdown(d, table).set_index("therapist_id")
    assert b.loc["T1", "clients"] == 1 and b.loc["T2", "clients"] == 2
    assert b.loc["T2", "sessions"] == 7 and b.loc["T2", "improved"] == 1 and b.loc["T2", "needs_attention"] == 1


def test_progress_sheet_for_one_client(registry):
    from analysis.errors import InputError
    from analysis.report.render import html_to_pdf
    from analysis.report.sheet import client_sheet

    d = _dataset([("A", "2025-01-06", [6, 5, 3], "hip", "T1")]).assign(
        focus="hip", techniques=["stretching;trigger_point", None, "myofascial_release"], minutes=45
    )
    lefs = d.assign(measure="lefs", value=[40.0, 44.0, 51.0])
    html = client_sheet(pd.concat([d, lefs], ignore_index=True), registry, "A", "hip-focused", "Test clinic")
    assert "Your progress: A" in html and "stretching, trigger point" in html and "—" in html
    assert html.count("<tr>") >= 3 and "data:image/svg+xml;base64," in html
    assert html_to_pdf(html).startswith(b"%PDF")
    with pytest.raises(InputError, match="no such client"):
        client_sheet(d, registry, "ZZZ", "hip-focused", "Test clinic")
