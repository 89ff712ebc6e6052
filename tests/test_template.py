"""Tests for analysis.template: blank templates derived from the contract, byte-identical on rerun."""

from __future__ import annotations

import hashlib

import openpyxl

from analysis.contract import TABLES
from analysis.load import load_inputs
from analysis.params import load_params
from analysis.template import DICTIONARY_COLUMNS, dictionary_frame, measures_frame, run_template
from conftest import REGISTRY_PATH

PARAMS = load_params(REGISTRY_PATH.parents[1] / "params.yaml")


def test_templates_are_written(tmp_path):
    paths = run_template(tmp_path / "tpl", PARAMS)
    assert [p.name for p in paths] == ["clients.csv", "sessions.csv", "measurements.csv", "template.xlsx"]
    for table in TABLES.values():
        assert (tmp_path / "tpl" / table.filename).read_bytes() == (",".join(table.column_names) + "\n").encode()
    wb = openpyxl.load_workbook(tmp_path / "tpl" / "template.xlsx")
    assert wb.sheetnames == ["clients", "sessions", "measurements", "dictionary", "measures"]
    for name, table in TABLES.items():
        rows = list(wb[name].iter_rows(values_only=True))
        assert rows == [tuple(table.column_names)]
    dictionary = list(wb["dictionary"].iter_rows(values_only=True))
    assert dictionary[0] == tuple(DICTIONARY_COLUMNS)
    assert len(dictionary) - 1 == sum(len(t.columns) for t in TABLES.values())
    assert dictionary[1 + len(TABLES["clients"].columns) + 2][:3] == ("sessions", "session_date", "yes")
    measures = list(wb["measures"].iter_rows(values_only=True))
    assert [r[0] for r in measures[1:]] == ["knee_pain_nprs", "hip_ir_left_deg", "hip_ir_right_deg", "lefs"]
    assert wb.properties.created.year == 2024 and wb.properties.modified.year == 2024


def test_dictionary_matches_contract(registry):
    d = dictionary_frame()
    assert d["rule"].tolist() == [c.rule for t in TABLES.values() for c in t.columns]
    m = measures_frame(registry)
    assert m.set_index("measure").loc["lefs", "mcid_points"] == 9


def test_templates_are_byte_identical(tmp_path):
    def digest(folder):
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}

    run_template(tmp_path / "a", PARAMS)
    run_template(tmp_path / "b", PARAMS)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")


def test_blank_templates_load_as_header_only(tmp_path):
    run_template(tmp_path / "tpl", PARAMS)
    inputs = load_inputs(tmp_path / "tpl")
    # the CSVs are read first; each is a valid header with no data rows yet
    assert [p.rule for p in inputs.problems] == ["has a header but no data rows"] * 3


def test_committed_templates_are_current(tmp_path):
    """data/templates/ (committed for users to copy) is exactly what `outcomes template` writes today."""
    from pathlib import Path

    committed = Path(__file__).resolve().parents[1] / "data" / "templates"
    for path in run_template(tmp_path / "now", PARAMS):
        assert (committed / path.name).read_bytes() == path.read_bytes(), (
            f"data/templates/{path.name} is stale: run `outcomes template --out data/templates`"
        )
