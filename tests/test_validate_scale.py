"""Validate at network scale: the early refusal of inputs too large for memory, the fast CSV reader (same frame
as the exact reader), and the distinct-value checks (same problems as GX on every row)."""

from __future__ import annotations

import pandas as pd
import pytest

import analysis.load as load
import analysis.load_csv as load_csv
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
    monkeypatch.setattr(load_csv, "FAST_MIN_BYTES", 0)
    fast = load.load_inputs(folder)
    monkeypatch.setattr(load, "fast_csv", lambda *args: None)
    exact = load.load_inputs(folder)
    assert fast.problems == exact.problems
    for name, frame in exact.tables.items():
        pd.testing.assert_frame_equal(fast.tables[name].astype(object), frame)


def test_fast_reader_leaves_quoted_and_ragged_files_to_the_exact_reader(tmp_path, monkeypatch):
    monkeypatch.setattr(load_csv, "FAST_MIN_BYTES", 0)
    table = TABLES["clients"]
    assert load_csv.fast_csv(b'client_id,sex\n"C1",F\n', table, "clients.csv") is None
    header = ",".join(table.column_names).encode()
    assert load_csv.fast_csv(header + b"\nC1,clinic-1,F,40-49,1,2,gym\n", table, "clients.csv") is None


def test_id_pattern_verdict_depends_on_shape_only():
    # _id_shapes lets GX check one id per shape: sound only if the contract's id pattern treats every ASCII
    # letter and digit alike (if ID_PATTERN changes, this says whether the shortcut still holds)
    import re

    import numpy as np

    from analysis.contract import ID_PATTERN

    rng = np.random.default_rng(3)
    alphabet = list("AZaz09Sx_- .@é\n") + [chr(c) for c in range(48, 123)]
    for _ in range(5000):
        value = "".join(rng.choice(alphabet, rng.integers(0, 40)))
        shape = re.sub("[A-Za-z0-9]", "a", value)
        assert bool(re.search(ID_PATTERN, value)) == bool(re.search(ID_PATTERN, shape)), value


def test_id_shapes_group_by_shape_and_link_flag():
    import numpy as np

    from analysis.validate.gx_run import _id_shapes

    values = pd.Series(["S001", "S002", "s003", "S 04", "S005", "", "T 99"], dtype="string")
    flags = pd.Series([True, True, True, None, False, None, None], dtype=object)
    codes, reps = _id_shapes(values, {"session_id__in_sessions": flags})
    assert codes.tolist() == [0, 0, 0, 1, 2, 3, 1]
    assert np.asarray(reps).tolist() == [0, 3, 4, 5]


def test_params_max_memory_mb_is_the_limit(tmp_path, input_dir, monkeypatch, capsys):
    monkeypatch.setenv("OUTCOMES_ROOT", str(tmp_path))
    monkeypatch.setattr(load, "available_memory_mb", lambda: 1e9)  # plenty available: the setting decides
    params = write_params(tmp_path, input_dir, max_memory_mb=1)
    assert main(["--params", str(params), "validate"]) == 2
    err = capsys.readouterr().err
    assert "over the 1 MB limit (params validate.max_memory_mb)" in err and "Traceback" not in err
    assert main(["--params", str(write_params(tmp_path, input_dir, max_memory_mb=100_000)), "validate"]) == 0


def test_uniqueness_in_parts_finds_the_same_rows(tmp_path, monkeypatch, registry):
    import datetime as dt

    import analysis.validate.gx_run as gx_run
    from analysis.validate.checks import validate_tables

    tables = valid_text_tables()
    s, m = tables["sessions"], tables["measurements"]
    tables["sessions"] = pd.concat([s, s.iloc[[0, 2]], s.iloc[[1]].assign(session_id="")], ignore_index=True)
    tables["measurements"] = pd.concat([m, m.iloc[[0, 5, 5]], m.iloc[[1]].assign(session_id="")], ignore_index=True)
    folder = write_tables(tmp_path / "in", tables)
    whole = validate_tables(load.load_inputs(folder), registry, dt.date(2026, 1, 1))
    monkeypatch.setattr(gx_run, "UNIQUE_PART_ROWS", 2)  # many parts, each checked by GX on its own
    parts = validate_tables(load.load_inputs(folder), registry, dt.date(2026, 1, 1))
    assert parts.problems == whole.problems and parts.expectations == whole.expectations
    unique = [o for o in whole.expectations if "unique" in o.expectation and o.table != "clients"]
    assert len(unique) == 2 and all(o.unexpected_count >= 4 for o in unique)
