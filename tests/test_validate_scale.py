"""Validate at network scale: the early refusal of inputs too large for memory, the fast CSV reader (same frame
as the exact reader), and the distinct-value checks (same problems as GX on every row)."""

from __future__ import annotations

import pandas as pd
import pytest

import analysis.load as load
from analysis.cli import main
from analysis.contract import TABLES
from analysis.errors import InputError
from conftest import valid_text_tables, write_params, write_tables


def test_refuses_inputs_beyond_the_memory_limit_before_reading(input_dir):
    with pytest.raises(InputError) as err:
        load.load_inputs(input_dir, memory_limit_mb=1)
    msg = str(err.value)
    # names the file, its size, the estimated need and the limit, in one line
    assert "sessions.csv" in msg or "measurements.csv" in msg or "clients.csv" in msg
    assert "MB of memory" in msg and "over the 1 MB limit" in msg and "\n" not in msg
    assert load.load_inputs(input_dir, memory_limit_mb=100_000).tables  # a roomy limit reads as usual


def test_cli_refusal_is_one_line_exit_2(tmp_path, input_dir, monkeypatch, capsys):
    monkeypatch.setenv("OUTCOMES_ROOT", str(tmp_path))
    params = write_params(tmp_path, input_dir)
    monkeypatch.setattr(load, "available_memory_mb", lambda: 1.0)
    assert main(["--params", str(params), "validate"]) == 2
    err = capsys.readouterr().err
    assert "over the 1 MB limit" in err and "Traceback" not in err


def test_progress_names_rows_read(input_dir):
    lines: list[str] = []
    load.load_inputs(input_dir, progress=lines.append)
    assert [line.split(":")[0] for line in lines] == [t.filename for t in TABLES.values()]
    assert all("rows read (" in line for line in lines)


@pytest.mark.parametrize(
    "cells",
    [
        {},
        {("clients", 0, "sex"): " F "},
        {("sessions", 1, "session_date"): "2024-03-01 00:00"},
        {("clients", 1, "symptom_weeks"): "１２"},
        {("sessions", 0, "techniques"): "stretching ; other"},
    ],
)
def test_fast_reader_gives_the_exact_readers_frame(tmp_path, monkeypatch, cells):
    tables = valid_text_tables()
    for (name, row, col), value in cells.items():
        tables[name].loc[tables[name].index[row], col] = value
    folder = write_tables(tmp_path / "in", tables)
    monkeypatch.setattr(load, "FAST_MIN_BYTES", 0)
    fast = load.load_inputs(folder)
    monkeypatch.setattr(load, "_fast_csv", lambda *args: None)
    exact = load.load_inputs(folder)
    assert fast.problems == exact.problems
    for name, frame in exact.tables.items():
        pd.testing.assert_frame_equal(fast.tables[name].astype(object), frame)


def test_fast_reader_leaves_quoted_and_ragged_files_to_the_exact_reader(tmp_path, monkeypatch):
    monkeypatch.setattr(load, "FAST_MIN_BYTES", 0)
    table = TABLES["clients"]
    assert load._fast_csv(b'client_id,sex\n"C1",F\n', table, "clients.csv") is None
    header = ",".join(table.column_names).encode()
    assert load._fast_csv(header + b"\nC1,clinic-1,F,40-49,1,2,gym\n", table, "clients.csv") is None
