"""Tests for analysis.validate (checks, GX suites): every contract rule, rejects, reports, CLI."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from analysis.cli import main
from analysis.contract import TABLES
from analysis.errors import ValidationFailed
from analysis.params import load_params, with_updates
from analysis.params_schema import Params
from analysis.validate import PARENT_REJECTED, REJECT_COLUMNS, WITHHELD, run_validate, validate_tables
from analysis.validate.suites import build_suites
from conftest import make_inputs, valid_text_tables, write_params, write_tables

TODAY = dt.date(2025, 6, 30)


def _check(tables, registry):
    return validate_tables(make_inputs(tables), registry, today=TODAY)


def _set(tables, table, row, column, value):
    """Change one cell (row = position in the frame, 0-based)."""
    tables[table].loc[row, column] = value
    return tables


def test_valid_tables_pass_and_are_typed(text_tables, registry):
    result = _check(text_tables, registry)
    assert result.errors == []
    assert result.warnings == []
    assert result.summary["status"] == "clean"
    assert len(result.rejects) == 0 and list(result.rejects.columns) == REJECT_COLUMNS
    c, s, m = (result.tables[n] for n in ("clients", "sessions", "measurements"))
    assert list(c.columns) == TABLES["clients"].column_names
    assert c["clinic_id"].tolist() == ["clinic-1", "clinic-1", "clinic-2"]  # blank -> default
    assert c["symptom_weeks"].dtype == "int64" and c["sitting_hours"].dtype == "float64"
    assert pd.isna(c.loc[1, "sitting_hours"])
    assert str(s["session_date"].dtype) == "datetime64[ns]"
    assert s.loc[0, "session_date"] == pd.Timestamp("2024-03-01")
    assert s["minutes"].dtype == "int64"
    assert pd.isna(s.loc[1, "techniques"]) and pd.isna(s.loc[2, "therapist_id"])
    assert m["value"].dtype == "float64" and m["value"].tolist()[:3] == [6.0, 4.0, 31.5]
    assert {r.success for r in result.expectations} == {True}


def test_suites_are_built_from_the_contract(registry):
    suites = build_suites(registry, TODAY)
    assert set(suites) == set(TABLES)
    for name, table in TABLES.items():
        columns = {e.meta["column"] for e in suites[name].expectations}
        assert set(table.column_names) <= columns | {", ".join(table.unique_together)}
    # one range rule per registry measure, applied only to that measure's rows
    ranged = [
        e for e in suites["measurements"].expectations if e.expectation_type == "expect_column_values_to_be_between"
    ]
    assert sorted(e.meta["condition"] for e in ranged) == sorted(f"measure == {k}" for k in registry.keys)


# (table, column, bad value, words expected in the rule, other cells of the row).
# Each case becomes one extra row of a shared fixture (validated once: GX costs ~1 s per run);
# the rest of the row is a valid row with its own ids, so each row breaks exactly one rule.
RULE_CASES = [
    ("clients", "client_id", "", "required value is blank", {}),
    ("clients", "client_id", "C 1", "not a valid pseudonym", {}),
    ("clients", "client_id", "C1", "appears more than once", {}),
    ("clients", "clinic_id", "clinic#1", "not a valid pseudonym", {}),
    ("clients", "sex", "female", "unknown category", {}),
    ("clients", "sex", "", "required value is blank", {}),
    ("clients", "age_band", "90+", "unknown category", {}),
    ("clients", "symptom_weeks", "abc", "not a whole number", {}),
    ("clients", "symptom_weeks", "2.5", "not a whole number", {}),
    ("clients", "symptom_weeks", "-1", "outside the allowed range", {}),
    ("clients", "symptom_weeks", "2000", "outside the allowed range", {}),
    ("clients", "sitting_hours", "7,5", "not a number", {}),
    ("clients", "sitting_hours", "1e1", "not a number", {}),
    ("clients", "sitting_hours", "25", "outside the allowed range", {}),
    ("clients", "activity", "swimming", "unknown category", {}),
    ("clients", "knee", "Right", "unknown category", {}),
    ("sessions", "session_id", "", "required value is blank", {}),
    ("sessions", "session_id", "S1", "appears more than once", {}),
    ("sessions", "client_id", "C99", "not found in clients.client_id", {}),
    ("sessions", "session_date", "01/03/2024", "not a date written YYYY-MM-DD", {}),
    ("sessions", "session_date", "2023-02-29", "not a real calendar date", {}),
    ("sessions", "session_date", "2024-13-01", "not a real calendar date", {}),
    ("sessions", "session_date", "1999-12-31", "before 2000-01-01", {}),
    ("sessions", "session_date", "2025-07-01", "in the future", {}),
    ("sessions", "therapist_id", "T 1", "not a valid pseudonym", {}),
    ("sessions", "focus", "ankle", "unknown category", {}),
    ("sessions", "techniques", "stretching;yoga", "subset of", {}),
    ("sessions", "minutes", "5", "outside the allowed range", {}),
    ("sessions", "minutes", "45.5", "not a whole number", {}),
    ("sessions", "minutes", "", "required value is blank", {}),
    ("measurements", "session_id", "S99", "not found in sessions.session_id", {}),
    ("measurements", "measure", "grip_kg", "unknown measure", {}),
    ("measurements", "timing", "during", "unknown category", {}),
    ("measurements", "value", "six", "not a number", {}),
    ("measurements", "value", "", "required value is blank", {}),
    ("measurements", "value", "11", "outside the range of knee_pain_nprs", {}),
    ("measurements", "value", "5.5", "knee_pain_nprs must be a whole number", {}),
    ("measurements", "value", "95", "outside the range of hip_ir_left_deg", {"measure": "hip_ir_left_deg"}),
    ("measurements", "value", "81", "outside the range of lefs", {"measure": "lefs"}),
    ("measurements", "value", "40.5", "lefs must be a whole number", {"measure": "lefs"}),
    ("measurements", "session_id", "S1", "appears more than once", {}),  # S1 knee_pain_nprs pre twice
]
CASE_IDS = [f"{t}.{c}={v!r}" for t, c, v, _, _ in RULE_CASES]


@pytest.fixture(scope="module")
def broken(registry):
    """The valid tables plus one broken row per RULE_CASES entry, validated once.

    Returns (result, lines): lines[i] is the spreadsheet line of case i's row.
    """
    tables = valid_text_tables()
    # spare valid sessions, one per measurement case, so each measurement row has its own key
    spare = [[f"SM{i}", "C3", f"2024-06-{i % 28 + 1:02d}", "T2", "knee", "", "30"] for i in range(len(RULE_CASES))]
    tables["sessions"] = pd.concat(
        [tables["sessions"], pd.DataFrame(spare, columns=tables["sessions"].columns)], ignore_index=True
    )
    lines = []
    for i, (table, column, value, _, other) in enumerate(RULE_CASES):
        frame = tables[table]
        row = frame.iloc[0].to_dict()
        if table == "clients":
            row["client_id"] = f"CR{i}"
        elif table == "sessions":
            row["session_id"] = f"SR{i}"
        else:
            row["session_id"] = f"SM{i}"
        row.update(other)
        row[column] = value
        tables[table] = pd.concat([frame, pd.DataFrame([row])], ignore_index=True)
        lines.append(len(tables[table]) + 1)  # header is line 1
    return validate_tables(make_inputs(tables), registry, today=TODAY), lines


@pytest.mark.parametrize("case", range(len(RULE_CASES)), ids=CASE_IDS)
def test_each_rule_reports_the_row(broken, case):
    result, lines = broken
    table, column, value, words, _ = RULE_CASES[case]
    line = lines[case]
    mine = [p for p in result.errors if p.file == f"{table}.csv" and p.row == line]
    assert [p for p in mine if words in p.rule and column in p.column], [p.line() for p in mine]
    assert all(value in (p.value or value) for p in mine)  # the shown value is the cell's
    assert line in set(result.rejects.loc[result.rejects["table"] == table, "row"])


def test_broken_rows_break_only_their_rule(broken, text_tables):
    result, lines = broken
    # every flagged line is one of the broken rows (or a valid row duplicated by one of them)
    flagged = {(p.file, p.row) for p in result.errors}
    expected = {(f"{t}.csv", line) for (t, *_), line in zip(RULE_CASES, lines, strict=True)}
    assert flagged - expected == {("clients.csv", 2), ("sessions.csv", 2), ("measurements.csv", 2)}
    assert result.summary["status"] == "rejects"
    assert len(result.tables["clients"]) < len(text_tables["clients"])


def test_valid_edge_values_pass(text_tables, registry):
    tables = _set(text_tables, "clients", 0, "symptom_weeks", "26.0")  # spreadsheet export of a whole number
    tables = _set(tables, "sessions", 0, "techniques", "stretching ; trigger_point")
    tables = _set(tables, "sessions", 0, "session_date", TODAY.isoformat())
    tables = _set(tables, "measurements", 2, "value", "90")
    result = _check(tables, registry)
    assert result.errors == [], [p.line() for p in result.errors]
    assert result.tables["sessions"].loc[0, "techniques"] == "stretching;trigger_point"


def test_every_problem_is_reported_at_once(text_tables, registry):
    tables = _set(text_tables, "clients", 0, "sex", "Q")
    tables = _set(tables, "clients", 2, "knee", "up")
    tables = _set(tables, "sessions", 3, "minutes", "999")
    tables = _set(tables, "measurements", 7, "value", "-3")
    result = _check(tables, registry)
    assert {(p.file, p.row) for p in result.errors} == {
        ("clients.csv", 2),
        ("clients.csv", 4),
        ("sessions.csv", 5),
        ("measurements.csv", 9),
    }


def test_children_of_rejected_parents_are_rejected(text_tables, registry):
    result = _check(_set(text_tables, "clients", 0, "sex", "Q"), registry)  # C1: sessions S1, S2
    rejects = result.rejects.set_index(["table", "row"])
    assert rejects.loc[("sessions", 2), "reasons"].startswith(PARENT_REJECTED)
    assert "clients.csv row 2" in rejects.loc[("sessions", 3), "reasons"]
    # measurements of S1 and S2 follow their sessions
    assert {r for t, r in rejects.index if t == "measurements"} == {2, 3, 4, 5, 6}
    assert result.summary["tables"]["sessions"]["rejected_as_child"] == 2
    assert result.tables["sessions"]["session_id"].tolist() == ["S3", "S4"]
    assert result.tables["measurements"]["session_id"].unique().tolist() == ["S3", "S4"]
    # the cascade is not a problem line of its own: the parent's problem explains it
    assert [p.file for p in result.errors] == ["clients.csv"]


def test_client_without_sessions_is_a_warning(text_tables, registry):
    tables = text_tables
    tables["clients"].loc[3] = ["C4", "", "U", "18-29", "1", "", "other", "left"]
    result = _check(tables, registry)
    assert result.errors == []
    [w] = result.warnings
    assert (w.file, w.row, w.severity) == ("clients.csv", 5, "warning") and "no sessions" in w.rule
    assert "C4" in result.tables["clients"]["client_id"].tolist()
    assert result.summary["status"] == "clean"


def test_same_date_sessions_are_allowed_with_a_note(text_tables, registry):
    result = _check(_set(text_tables, "sessions", 1, "session_date", "2024-03-01"), registry)
    assert result.errors == []
    assert any("share a date" in n for n in result.notes)


def test_privacy_values_are_withheld(text_tables, registry):
    result = _check(_set(text_tables, "sessions", 0, "therapist_id", "jane.doe@example.com"), registry)
    flagged = [p for p in result.problems if p.row == 2 and p.file == "sessions.csv"]
    assert any(p.severity == "privacy" for p in flagged)
    assert all(p.value is None for p in flagged)  # never echoed, in any line about that cell
    row = result.rejects[(result.rejects["table"] == "sessions") & (result.rejects["row"] == 2)]
    assert row["therapist_id"].tolist() == [WITHHELD]
    assert "jane.doe" not in result.rejects.to_csv()


def test_file_level_problem_means_no_tables(text_tables, registry):
    inputs = make_inputs({k: v for k, v in text_tables.items() if k != "measurements"})
    result = validate_tables(inputs, registry, today=TODAY)
    assert result.file_level and result.tables == {}
    assert result.summary["status"] == "unusable"


# --------------------------------------------------------------------------- run_validate and the CLI


def _tree_hash(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _params(input_dir: Path, tmp_path: Path) -> Params:
    """The shipped params with the input and the validate outputs in temporary folders."""
    return with_updates(
        load_params(Path(__file__).parents[1] / "params.yaml"),
        {
            "data": {"input": str(input_dir), "registry": str(Path(__file__).parents[1] / "config/measures.yaml")},
            "validate": {"out_dir": str(tmp_path / "interim"), "report_dir": str(tmp_path / "rep")},
        },
    )


def test_run_validate_writes_every_output(tmp_path, input_dir):
    params = _params(input_dir, tmp_path)
    before = _tree_hash(input_dir)
    text = run_validate(params, today=TODAY)
    assert "0 error(s)" in text
    assert _tree_hash(input_dir) == before  # raw data is immutable
    report = json.loads((tmp_path / "rep" / "validation.json").read_text(encoding="utf-8"))
    assert report["summary"]["tables"]["measurements"]["rows_received"] == 8
    assert report["problems"] == []
    assert any(r["expectation"] == "expect_compound_columns_to_be_unique" for r in report["rules"])
    assert all(r["success"] for r in report["rules"])
    page = (tmp_path / "rep" / "validation.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "All rows passed" in page and "<script" not in page
    # readable on a phone: a viewport, tables that scroll sideways, long check names that wrap at underscores
    assert "name='viewport'" in page and page.count("<div class='scroll'><table>") == 2
    assert "expect_<wbr>compound_<wbr>columns" in page
    rejects = (tmp_path / "interim" / "rejects.csv").read_text(encoding="utf-8")
    assert rejects == ",".join(REJECT_COLUMNS) + "\n"  # header only
    for name in TABLES:
        frame = pd.read_parquet(tmp_path / "interim" / f"{name}.parquet")
        assert list(frame.columns) == TABLES[name].column_names


def test_run_validate_is_deterministic(tmp_path, input_dir):
    params = _params(input_dir, tmp_path)
    run_validate(params, today=TODAY)
    first = _tree_hash(tmp_path / "rep") | _tree_hash(tmp_path / "interim")
    run_validate(params, today=TODAY)
    assert _tree_hash(tmp_path / "rep") | _tree_hash(tmp_path / "interim") == first


def test_rejects_written_before_failing(tmp_path):
    raw = write_tables(tmp_path / "raw", _set(valid_text_tables(), "clients", 2, "sex", "Q"))
    params = _params(raw, tmp_path)
    with pytest.raises(ValidationFailed) as info:
        run_validate(params, today=TODAY)
    assert [p.row for p in info.value.problems] == [4]
    rejects = pd.read_csv(tmp_path / "interim" / "rejects.csv", dtype=str, keep_default_na=False)
    assert rejects[["table", "row", "client_id"]].values.tolist() == [
        ["clients", "4", "C3"],
        ["sessions", "5", "C3"],
        ["measurements", "9", ""],
    ]
    assert "sex: unknown category" in rejects.loc[0, "reasons"]
    assert len(pd.read_parquet(tmp_path / "interim" / "clients.parquet")) == 2
    report = json.loads((tmp_path / "rep" / "validation.json").read_text(encoding="utf-8"))
    assert report["summary"]["errors"] == 1 and report["problems"][0]["value"] == "Q"
    # allow_rejects: the same problems are printed, but the step succeeds with the valid rows
    params = with_updates(params, {"validate": {"allow_rejects": True}})
    text = run_validate(params, today=TODAY)
    assert "clients.csv, row 4, column sex" in text


def test_cli_exit_codes(tmp_path, input_dir, monkeypatch, capsys):
    monkeypatch.setenv("OUTCOMES_ROOT", str(tmp_path))
    params = write_params(tmp_path, input_dir)
    assert main(["--params", str(params), "validate"]) == 0
    assert "0 error(s)" in capsys.readouterr().out

    bad = write_tables(tmp_path / "bad", _set(valid_text_tables(), "sessions", 0, "focus", "ankle"))
    assert main(["--params", str(params), "validate", "--input", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "sessions.csv, row 2, column focus: unknown category" in err and "Traceback" not in err

    assert main(["--params", str(params), "validate", "--input", str(tmp_path / "nowhere")]) == 2
    assert "input folder not found" in capsys.readouterr().err


def test_cli_file_level_problem_removes_stale_tables(tmp_path, input_dir, monkeypatch, capsys):
    monkeypatch.setenv("OUTCOMES_ROOT", str(tmp_path))
    params = write_params(tmp_path, input_dir)
    assert main(["--params", str(params), "validate"]) == 0
    assert (tmp_path / "interim" / "clients.parquet").exists()
    (input_dir / "sessions.csv").unlink()
    assert main(["--params", str(params), "validate"]) == 1
    assert "sessions.csv: file not found" in capsys.readouterr().err
    assert not (tmp_path / "interim" / "clients.parquet").exists()
    assert (tmp_path / "reports" / "validation.json").exists()


def test_gx_stays_quiet(tmp_path, input_dir, monkeypatch, capfd):
    monkeypatch.setenv("OUTCOMES_ROOT", str(tmp_path))
    params = write_params(tmp_path, input_dir)
    assert main(["--params", str(params), "validate"]) == 0
    out, err = capfd.readouterr()
    # only our own progress lines (one per step, with the elapsed time): no progress bars, no GX log lines
    lines = err.splitlines()
    assert lines and all(re.match(r"^  \[ *\d+\.\d s\] \S", line) for line in lines), err
    assert out.startswith("validated ")
