"""Tests for analysis.load: what a clinic's real files look like, and every file-level problem."""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest

from analysis.contract import TABLES
from analysis.errors import InputError
from analysis.load import load_inputs
from conftest import valid_text_tables, write_tables

CLIENTS_HEADER = ",".join(TABLES["clients"].column_names)


def _folder(tmp_path: Path, clients: bytes) -> Path:
    """A valid folder whose clients.csv is replaced by ``clients`` (raw bytes)."""
    folder = write_tables(tmp_path / "in", valid_text_tables())
    (folder / "clients.csv").write_bytes(clients)
    return folder


def _rules(inputs) -> list[str]:
    return [p.line() for p in inputs.problems]


def test_valid_folder_reads_every_table_as_text(input_dir):
    inputs = load_inputs(input_dir)
    assert inputs.problems == []
    assert set(inputs.tables) == set(TABLES)
    clients = inputs.tables["clients"]
    assert list(clients.columns) == TABLES["clients"].column_names
    assert clients.index.tolist() == [2, 3, 4]  # spreadsheet lines
    assert clients.loc[3, "clinic_id"] == "" and clients.loc[2, "symptom_weeks"] == "26"
    assert inputs.sources["sessions"] == "sessions.csv"
    assert sorted(p.name for p in inputs.paths) == ["clients.csv", "measurements.csv", "sessions.csv"]


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda t: ("\ufeff" + t).encode("utf-8"), id="bom"),
        pytest.param(lambda t: t.replace("\n", "\r\n").encode("utf-8"), id="crlf"),
        pytest.param(lambda t: t.replace("\n", "\r").encode("utf-8"), id="cr-only"),
        pytest.param(lambda t: (t + "\n\n").encode("utf-8"), id="trailing-blank-lines"),
    ],
)
def test_encodings_and_line_endings_are_accepted(tmp_path, encode):
    text = CLIENTS_HEADER + "\nC1,clinic-1,F,40-49,26,7.5,running,right\nC2,,M,50-59,104,,gym,left\n"
    inputs = load_inputs(_folder(tmp_path, encode(text)))
    assert _rules(inputs) == []
    clients = inputs.tables["clients"]
    assert clients["client_id"].tolist() == ["C1", "C2"]
    assert clients.index.tolist() == [2, 3]


def test_quoted_commas_and_multiline_fields_keep_line_numbers(tmp_path):
    text = (
        CLIENTS_HEADER + '\n"C1","clinic-1",F,40-49,26,"7.5",running,right\n'
        'C2,,M,"50-59",104,,"gym",left\nC3,,X,80+,0,"1,5",none,both\n'
    )
    inputs = load_inputs(_folder(tmp_path, text.encode()))
    clients = inputs.tables["clients"]
    assert clients.loc[4, "sitting_hours"] == "1,5"  # one field: validate reports the decimal comma
    assert clients.index.tolist() == [2, 3, 4]


def test_values_are_stripped(tmp_path):
    text = CLIENTS_HEADER + "\n C1 , clinic-1 ,F,40-49, 26 ,7.5,running,right\n"
    clients = load_inputs(_folder(tmp_path, text.encode())).tables["clients"]
    assert clients.loc[2, "client_id"] == "C1" and clients.loc[2, "symptom_weeks"] == "26"


@pytest.mark.parametrize(
    ("content", "words"),
    [
        pytest.param(
            CLIENTS_HEADER.replace(",", ";").encode() + b"\nC1;clinic-1;F;40-49;26;7.5;running;right\n",
            "';' as delimiter",
            id="semicolon",
        ),
        pytest.param(CLIENTS_HEADER.replace(",", "\t").encode() + b"\n", "tab as delimiter", id="tab"),
        pytest.param(
            (CLIENTS_HEADER + "\nC1,clinic-1,F,40-49,26,7.5,running,Zürich\n").encode("latin-1"),
            "not UTF-8",
            id="latin-1",
        ),
        pytest.param(b"", "file is empty", id="empty"),
        pytest.param(b"  \n\n", "file is empty", id="blank-lines"),
        pytest.param(CLIENTS_HEADER.encode() + b"\n", "header but no data rows", id="header-only"),
        pytest.param(b"PK\x03\x04rest-of-a-zip", "Excel workbook named .csv", id="xlsx-named-csv"),
        pytest.param(b"a,b\x00c\n", "NUL bytes", id="nul"),
        pytest.param((CLIENTS_HEADER + ',"unclosed\n').encode(), "not well-formed CSV", id="bad-quote"),
    ],
)
def test_unusable_files_are_reported(tmp_path, content, words):
    inputs = load_inputs(_folder(tmp_path, content))
    assert "clients" not in inputs.tables
    assert any(words in line and line.startswith("clients.csv") for line in _rules(inputs)), _rules(inputs)
    assert set(inputs.tables) == {"sessions", "measurements"}  # the other tables are still read


def test_header_problems_are_all_reported(tmp_path):
    header = "client_id,client_id,sex,age_band,,symptom_weeks,activity,knee,colour"
    inputs = load_inputs(_folder(tmp_path, (header + "\nC1,C1,F,40-49,x,26,running,right,red\n").encode()))
    lines = _rules(inputs)
    assert "clients" not in inputs.tables
    assert any("column client_id: column appears more than once" in x for x in lines)
    assert any("column colour: unknown column" in x for x in lines)
    assert any("header has an empty column name" in x for x in lines)
    # sitting_hours and clinic_id are optional, so only missing required columns are reported
    assert not any("required column is missing" in x for x in lines)


def test_missing_required_column(tmp_path):
    header = "client_id,sex,age_band,symptom_weeks,activity"
    inputs = load_inputs(_folder(tmp_path, (header + "\nC1,F,40-49,26,running\n").encode()))
    assert [p.column for p in inputs.problems] == ["knee"]


def test_missing_optional_columns_are_added_blank(tmp_path):
    header = "client_id,sex,age_band,symptom_weeks,activity,knee"
    inputs = load_inputs(_folder(tmp_path, (header + "\nC1,F,40-49,26,running,right\n").encode()))
    clients = inputs.tables["clients"]
    assert list(clients.columns) == TABLES["clients"].column_names
    assert clients.loc[2, "clinic_id"] == "" and clients.loc[2, "sitting_hours"] == ""


def test_identifier_column_is_refused_without_echoing_values(tmp_path):
    text = CLIENTS_HEADER + ",email\nC1,clinic-1,F,40-49,26,7.5,running,right,jane@example.com\n"
    inputs = load_inputs(_folder(tmp_path, text.encode()))
    [problem] = inputs.problems
    assert problem.severity == "privacy" and problem.column == "email" and problem.value is None
    assert "jane" not in problem.line()


def test_ragged_rows_are_rejected_and_kept(tmp_path):
    text = CLIENTS_HEADER + "\nC1,clinic-1,F,40-49,26,7.5,running,right\nC2,,M,50-59,104,7,5,gym,left\n"
    inputs = load_inputs(_folder(tmp_path, text.encode()))
    [problem] = inputs.problems
    assert (problem.row, problem.file) == (3, "clients.csv") and "9 fields" in problem.rule
    assert inputs.tables["clients"].index.tolist() == [2]
    assert inputs.rejected_rows["clients"]["row"].tolist() == [3]


def test_missing_file_and_directory_in_its_place(tmp_path):
    folder = write_tables(tmp_path / "in", valid_text_tables())
    (folder / "sessions.csv").unlink()
    (folder / "measurements.csv").unlink()
    (folder / "measurements.csv").mkdir()
    inputs = load_inputs(folder)
    lines = _rules(inputs)
    assert any(x.startswith("sessions.csv: file not found") for x in lines)
    assert any(x.startswith("measurements.csv: is a folder") for x in lines)
    assert set(inputs.tables) == {"clients"}


def test_folder_errors_raise(tmp_path):
    with pytest.raises(InputError, match="input folder not found"):
        load_inputs(tmp_path / "missing")
    (tmp_path / "file.csv").write_text("x")
    with pytest.raises(InputError, match="is a file, not a folder"):
        load_inputs(tmp_path / "file.csv")


def test_file_over_size_limit(tmp_path, input_dir):
    inputs = load_inputs(input_dir, max_mb=1e-6)
    assert len(inputs.problems) == 3 and all("over the" in p.rule for p in inputs.problems)


def _workbook(path: Path, sheets: dict[str, list[list[object]]]) -> None:
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name, rows in sheets.items():
        ws = wb.create_sheet(name)
        for r in rows:
            ws.append(r)
    wb.save(path)


def test_workbook_with_three_sheets(tmp_path):
    import datetime as dt

    tables = valid_text_tables()
    sheets = {name: [list(f.columns)] + f.values.tolist() for name, f in tables.items()}
    # what Excel does to values: numbers become numbers, dates become datetimes, blanks become None
    sheets["clients"][1][4] = 26
    sheets["clients"][1][5] = 7.5
    sheets["sessions"][1][2] = dt.datetime(2024, 3, 1)
    sheets["sessions"][2][5] = None
    sheets["notes"] = [["anything"]]
    folder = tmp_path / "book"
    folder.mkdir()
    _workbook(folder / "clinic.xlsx", sheets)
    inputs = load_inputs(folder)
    assert inputs.problems == []
    assert inputs.sources["sessions"] == "clinic.xlsx[sessions]"
    assert inputs.tables["clients"].loc[2, "symptom_weeks"] == "26"
    assert inputs.tables["clients"].loc[2, "sitting_hours"] == "7.5"
    assert inputs.tables["sessions"].loc[2, "session_date"] == "2024-03-01"
    assert inputs.tables["sessions"].loc[3, "techniques"] == ""
    assert len(inputs.tables["measurements"]) == len(tables["measurements"])


def test_single_table_xlsx_and_broken_workbook(tmp_path):
    folder = write_tables(tmp_path / "in", valid_text_tables())
    (folder / "clients.csv").unlink()
    f = valid_text_tables()["clients"]
    _workbook(folder / "clients.xlsx", {"Sheet1": [list(f.columns)] + f.values.tolist()})
    inputs = load_inputs(folder)
    assert inputs.problems == [] and inputs.sources["clients"] == "clients.xlsx"
    (folder / "clients.xlsx").write_bytes(b"PK\x03\x04 not really a zip")
    inputs = load_inputs(folder)
    assert any("cannot be opened as a workbook" in x for x in _rules(inputs))


def test_inputs_are_not_modified(input_dir):
    before = {p.name: p.read_bytes() for p in input_dir.iterdir()}
    load_inputs(input_dir)
    assert {p.name: p.read_bytes() for p in input_dir.iterdir()} == before
