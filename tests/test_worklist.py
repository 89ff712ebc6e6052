"""The therapist's worklist: one fixture per pattern, the urgency order, and the client finder's pieces."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from analysis.contract import load_registry
from analysis.params_schema import Attention
from analysis.report import clients as cl
from analysis.report import recovery as rc
from analysis.report import sheet as sh
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


def _card_data(table, progress, nprs, band=None) -> dict:
    data = json.loads(str(cl.client_cards(table, progress, nprs, band).json))
    return {row[0]: dict(zip(data["fields"], row, strict=False)) for row in data["clients"]} | {"": data}


def test_card_data_has_one_compact_row_per_client(nprs):
    d = _dataset([("A", "2025-01-06", [6, 6, 5, 6, 6], "hip", "T1"), ("B", "2025-03-03", [6, 4, 8], "knee", "T2")])
    group = th.assign_group(d, ("hip",), ("knee",))
    table = wl.client_table(d, nprs, "pre", group, CFG)
    progress = th.client_progress(d, "knee_pain_nprs", "pre", group)
    cards = _card_data(table, progress, nprs)
    data = cards.pop("")
    assert list(cards) == table["client_id"].tolist()  # the client table's order (most urgent first)
    b = cards["B"]
    assert data["groups"][b["group"]] == "knee-focused" and data["statuses"][b["status"]] == "worse"
    assert data["colours"][b["group"]] == "#D55E00"  # knee-focused colour, as in every other chart
    assert b["days"] == [0, 7, 14] and b["values"] == [6, 4, 8] and b["mcid_target"] == 4.2  # 6 - 30%
    assert data["day0"] == "2025-01-06" and b["first_visit"] == 56  # 2025-03-03
    assert "band" not in b  # no band: the trailing empty entries are left out
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


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([3, 4], "too early"),  # 1 point up from 3: above 30% of the start but within the NPRS's measurement error
        ([3, 4, 4, 4, 4], "no important improvement"),  # the same, with enough care: not "worse"
        ([3, 5], "worse"),  # 2 points: the MCID and the minimal detectable change
        ([8, 9], "too early"),  # 1 point from a high start
    ],
)
def test_worse_needs_the_minimal_detectable_change_as_well(nprs, values, expected):
    assert nprs.mdc_points == 2
    assert wl.classify(values[0], values, len(values), float(len(values) - 1), nprs, CFG) == expected


def test_mdc_points_in_the_registry_is_checked():
    from analysis.contract import parse_registry
    from analysis.errors import InputError

    entry = dict(label="x", unit="u", min=0, max=10, integer=True, direction="lower_is_better")
    assert parse_registry({"measures": {"x": entry}}).measures["x"].mdc_points is None
    assert parse_registry({"measures": {"x": dict(entry, mdc_points=1.5)}}).measures["x"].mdc_points == 1.5
    with pytest.raises(InputError, match="mdc_points"):
        parse_registry({"measures": {"x": dict(entry, mdc_points=-1)}})


def test_active_comes_from_the_real_calendar_when_given(nprs):
    # shifted dates put A last (so "active" on the dataset's dates); the real calendar says B was seen this week
    d = _dataset([("A", "2025-03-03", [6, 6, 5, 6, 6], "hip", "T1"), ("B", "2024-10-07", [6, 4, 8], "knee", "T2")])
    group = th.assign_group(d, ("hip",), ("knee",))
    own = wl.client_table(d, nprs, "pre", group, CFG).set_index("client_id")
    assert own.loc["A", "active"] and not own.loc["B", "active"] and own.loc["B", "weeks_since_last"] == 23
    real = wl.client_table(d, nprs, "pre", group, CFG, since_last=pd.Series({"A": 9, "B": 0}))
    assert real["client_id"].tolist()[0] == "B"  # active first
    assert real.set_index("client_id")["active"].to_dict() == {"A": False, "B": True}
    assert real.set_index("client_id")["weeks_since_last"].to_dict() == {"A": 9, "B": 0}


def test_sessions_count_every_session_attended(nprs):
    d = _dataset([("A", "2025-01-06", [6, 5, 4], "hip", "T1")])
    unscored = d.iloc[[0]].assign(session_id="A-9", session_number=4, value=float("nan"))
    d = pd.concat([d, unscored], ignore_index=True)
    table = wl.client_table(d, nprs, "pre", th.assign_group(d, ("hip",), ("knee",)), CFG)
    assert table.loc[0, "sessions"] == 4  # the progress sheet lists 4 sessions too


def test_new_since_the_last_report(nprs):
    d = _dataset(
        [
            ("A", "2025-01-06", [6, 6, 5, 6, 6], "hip", "T1"),  # no important improvement, as before
            ("B", "2025-03-03", [6, 4, 8], "knee", "T2"),  # worse now, relapsed before
            ("C", "2025-01-06", [6, 4, 8], "knee", "T1"),  # worse, not in the previous build
            ("E", "2025-02-03", [7, 5, 4], "knee", "T2"),  # improved: never new
        ]
    )
    table = wl.client_table(d, nprs, "pre", th.assign_group(d, ("hip",), ("knee",)), CFG)
    assert not wl.mark_new(table, None)["new"].any()
    previous = wl.clients_csv(table).astype(str)
    previous = previous[previous["pseudonym"] != "C"]
    previous.loc[previous["pseudonym"] == "B", "status"] = "relapsed"
    marked = wl.mark_new(table, previous).set_index("client_id")["new"].to_dict()
    assert marked == {"A": False, "B": True, "C": True, "E": False}


def test_clients_csv_is_the_page_table_as_data(nprs):
    d = _dataset([("A", "2025-01-06", [6, 6, 5, 6, 6], "hip", "T1"), ("B", "2025-03-03", [6, 4, 8], "knee", "T2")])
    table = wl.client_table(d, nprs, "pre", th.assign_group(d, ("hip",), ("knee",)), CFG)
    out = wl.clients_csv(table)
    assert list(out.columns) == list(wl.CSV_COLUMNS.values())
    assert out["pseudonym"].tolist() == table["client_id"].tolist()  # the page's order
    b = out.set_index("pseudonym").loc["B"]
    assert (b["sessions"], b["first_score"], b["latest_score"], b["best_score"], b["status"], b["active"]) == (
        3,
        6.0,
        8.0,
        4.0,
        "worse",
        True,
    )


def test_dates_note_says_what_the_dates_are():
    assert th.dates_note("2025-01-01", "2025-06-30")["mode"] == "recorded"
    shifted = th.dates_note("2024-08-01", "2025-12-30", 180, True, ("2025-01", "2025-06"))
    assert shifted["mode"] == "shifted" and shifted["period"] == "2025-01 to 2025-06 (real months)"
    assert "±180 days" in shifted["note"] and "clinic-view" in shifted["note"]
    assert th.dates_note("a", "b", 180, False, None)["mode"] == "shifted-unknown"
    assert th.dates_note("2025-01-01", "2025-06-30", 180, True, None, real_view=True)["mode"] == "real"


def test_sheet_counts_the_same_sessions_as_the_table(registry):
    from analysis.errors import InputError
    from analysis.report.sheet import client_sheet

    d = _dataset([("A", "2025-01-06", [6, 5, 3], "hip", "T1")]).assign(focus="hip", techniques=None, minutes=45)
    table = wl.client_table(d, registry["knee_pain_nprs"], "pre", th.assign_group(d, ("hip",), ()), CFG)
    html = client_sheet(
        d, registry, "A", "hip-focused", "Test", n_sessions=int(table.loc[0, "sessions"]), reference="P1"
    )
    assert "3 sessions from" in html and "(P1)" in html
    with pytest.raises(InputError, match="the client table 2"):
        client_sheet(d, registry, "A", "hip-focused", "Test", n_sessions=2)


def _band(expected: dict[str, list[float]], sd: float = 0.5) -> pd.DataFrame:
    """client -> expected score at weeks 0, 1, ... -> an expected.csv-like table (constant prediction SD)."""
    rows = [
        {"client_id": cid, "week": float(w), "expected": float(e), "sd": sd}
        for cid, values in expected.items()
        for w, e in enumerate(values)
    ]
    return pd.DataFrame(rows)


def test_behind_expected_recovery_when_the_latest_score_is_above_the_band(nprs):
    # F: 6, 5, 5 -- one point better, too early by the MCID rule, but clients like F are expected at 3 by week 2
    # G: the same scores, with an expected course they keep up with; H: improved by the MCID yet behind
    d = _dataset(
        [
            ("F", "2025-03-03", [6, 5, 5], "hip", "T1"),
            ("G", "2025-03-03", [6, 5, 5], "knee", "T1"),
            ("H", "2025-03-03", [9, 8, 6], "hip", "T1"),
        ]
    )
    band = rc.band_table(_band({"F": [6, 4.5, 3], "G": [6, 5.5, 5], "H": [9, 6, 3]}), 0.8)
    group = th.assign_group(d, ("hip",), ("knee",))
    table = wl.client_table(d, nprs, "pre", group, CFG, band=band).set_index("client_id")
    assert table.loc["F", "status"] == "behind expected recovery"  # 5 > 3 + 1.28 * 0.5
    assert table.loc["G", "status"] == "too early"  # 5 within 5 +/- 0.64
    assert table.loc["H", "status"] == "behind expected recovery"  # reached the MCID, but far behind
    assert table.loc["F", "on_worklist"] and not table.loc["G", "on_worklist"]
    assert (table.loc["F", "expected"], table.loc["F", "expected_low"], table.loc["F", "expected_high"]) == (
        3.0,
        2.36,
        3.64,
    )
    # without a band nobody is judged against one, and the expected columns are empty
    plain = wl.client_table(d, nprs, "pre", group, CFG).set_index("client_id")
    assert plain.loc["F", "status"] == "too early" and plain.loc["H", "status"] == "improved"
    assert plain["expected"].isna().all()
    # the band's order among the statuses: worse and relapsed come first
    assert wl.classify(6, [6, 8], 2, 1.0, nprs, CFG, behind=True) == "worse"
    assert wl.classify(9, [9, 6, 10], 3, 2.0, nprs, CFG, behind=True) == "relapsed"


def test_behind_follows_the_measure_direction(registry):
    lefs = registry["lefs"]  # higher is better: behind = below the band
    point = rc.BandPoint(expected=50.0, low=45.0, high=55.0)
    assert rc.is_behind(40.0, point, lefs) and not rc.is_behind(60.0, point, lefs)
    nprs = registry["knee_pain_nprs"]
    assert rc.is_behind(6.0, rc.BandPoint(3.0, 2.0, 4.0), nprs) and not rc.is_behind(
        1.0, rc.BandPoint(3.0, 2.0, 4.0), nprs
    )
    assert rc.band_at(rc.band_table(_band({"A": [6, 4]}), 0.8), 1.5) is None  # no extrapolation past the band


def test_card_data_carries_the_expected_band(nprs):
    d = _dataset([("F", "2025-03-03", [6, 5, 5], "hip", "T1")])
    group = th.assign_group(d, ("hip",), ("knee",))
    band = rc.band_table(_band({"F": [6, 4.5, 3]}), 0.8)
    table = wl.client_table(d, nprs, "pre", group, CFG, band=band)
    progress = th.client_progress(d, "knee_pain_nprs", "pre", group)
    cards = _card_data(table, progress, nprs, band)
    f, data = cards["F"], cards[""]
    # a straight expected line: two knots; the half-width curve (1.28 x sd 0.5) is shared
    assert f["band"] == [0, 0, 6, 2, 3] and data["band_curves"] == [[0, 0.6, 1, 0.6, 2, 0.6]]
    assert f["expected_at_latest"] == [3, 2.4, 3.6]  # as the worklist says it
    assert _card_data(table, progress, nprs)["F"]["band"] == []  # no band given: none drawn


def test_progress_sheet_draws_and_explains_the_band_only_when_there_is_one(registry):
    d = _dataset([("F", "2025-03-03", [6, 5, 5], "hip", "T1")]).assign(focus="hip", techniques="stretching", minutes=45)
    band = rc.by_client(rc.band_table(_band({"F": [6, 4.5, 3]}), 0.8))["F"]
    with_band = sh.client_sheet(d, registry, "F", "hip-focused", "Test clinic", expected=band, band_level=0.8)
    assert "where 80% of clients who started like you" in with_band
    without = sh.client_sheet(d, registry, "F", "hip-focused", "Test clinic")
    assert "clients who started like you" not in without
    pain_chart = [page.split('src="')[1].split('"')[0] for page in (with_band, without)]
    assert pain_chart[0] != pain_chart[1]  # the band is drawn on the pain chart
