"""Tests for analysis.contract: the tables, the rules in words, the measures registry."""

from __future__ import annotations

import pytest
import yaml

from analysis.contract import (
    TABLES,
    data_dictionary_markdown,
    identifier_reason,
    load_registry,
    parse_registry,
)
from analysis.errors import InputError
from conftest import REGISTRY_PATH


def test_tables_and_keys():
    assert list(TABLES) == ["clients", "sessions", "measurements"]
    assert TABLES["clients"].column("client_id").unique
    assert TABLES["sessions"].column("client_id").references == ("clients", "client_id")
    assert TABLES["measurements"].column("session_id").references == ("sessions", "session_id")
    assert TABLES["measurements"].unique_together == ("session_id", "measure", "timing")
    for table in TABLES.values():
        assert len(set(table.column_names)) == len(table.column_names)
        assert set(table.required_columns) <= set(table.column_names)


def test_rule_text():
    c = TABLES["clients"]
    assert c.column("client_id").rule.endswith("; unique")
    assert c.column("symptom_weeks").rule == "whole number 0-1040"
    assert c.column("sitting_hours").rule == "number 0-24"
    assert c.column("clinic_id").rule.endswith("default clinic-1")
    assert "not in the future" in TABLES["sessions"].column("session_date").rule
    assert "must exist in clients.client_id" in TABLES["sessions"].column("client_id").rule
    assert TABLES["sessions"].column("techniques").rule.startswith("';'-separated subset of")


@pytest.mark.parametrize(
    "name", ["first_name", "Surname", "E-mail", "phone", "DOB", "postcode", "clinical notes", "patient", "home_address"]
)
def test_identifier_like_columns_are_flagged(name):
    assert identifier_reason(name) is not None


@pytest.mark.parametrize(
    "name",
    ["client_id", "session_date", "measure", "timing", "minutes", "knee", "therapist_id", "clinic_id", "sitting_hours"],
)
def test_contract_columns_are_not_flagged(name):
    assert identifier_reason(name) is None


def test_registry_loads(registry):
    assert registry.keys == ["hip_ir_left_deg", "hip_ir_right_deg", "knee_pain_nprs", "lefs"]
    nprs = registry["knee_pain_nprs"]
    assert (nprs.minimum, nprs.maximum, nprs.integer, nprs.lower_is_better) == (0, 10, True, True)
    assert nprs.improvement(6, 4) == 2 and registry["lefs"].improvement(40, 50) == 10
    assert "knee_pain_nprs" in registry


def _entry(**changes):
    entry = {"label": "X", "unit": "u", "min": 0, "max": 10, "integer": True, "direction": "lower_is_better"}
    entry.update(changes)
    return {"measures": {"x_score": {k: v for k, v in entry.items() if v is not None}}}


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({}, "non-empty mapping"),
        ({"measures": {}}, "non-empty mapping"),
        ({"measures": {"Bad Key": {}}}, "lower_snake_case"),
        ({"measures": {"x": "text"}}, "mapping of fields"),
        (_entry(colour="red"), "unknown field"),
        (_entry(unit=None), "missing field 'unit'"),
        (_entry(min=10, max=0), "min < max"),
        (_entry(min="0"), "min < max"),
        (_entry(direction="up"), "'direction'"),
        (_entry(integer="yes"), "'integer'"),
        (_entry(mcid={"points": -1}), "positive number"),
        (_entry(mcid={"ratio": 1}), "'mcid'"),
    ],
)
def test_registry_errors(raw, words):
    with pytest.raises(InputError, match=words):
        parse_registry(raw, "test.yaml")


def test_registry_file_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_registry(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("measures: [unclosed", encoding="utf-8")
    with pytest.raises(InputError, match="not valid YAML"):
        load_registry(bad)


def test_new_measure_needs_no_code(tmp_path, registry):
    raw = yaml.safe_load(REGISTRY_PATH.read_text(encoding="utf-8"))
    raw["measures"]["grip_kg"] = {
        "label": "Grip",
        "unit": "kg",
        "min": 0,
        "max": 100,
        "integer": False,
        "direction": "higher_is_better",
    }
    extended = parse_registry(raw)
    assert "grip_kg" in extended and "grip_kg" not in registry


def test_data_dictionary_lists_every_column(registry):
    text = data_dictionary_markdown(registry)
    for table in TABLES.values():
        assert f"`{table.filename}`" in text
        for c in table.columns:
            assert f"| {c.name} |" in text
    for key in registry.keys:
        assert f"| {key} |" in text


def test_mcid_needed_is_the_smaller_of_points_and_percent(registry):
    import math

    import pandas as pd

    pain = registry["knee_pain_nprs"]  # 2 points or 30%
    assert pain.mcid_needed(5) == pytest.approx(1.5)
    assert pain.mcid_needed(8) == pytest.approx(2.0)
    assert pain.mcid_needed(0) == pytest.approx(2.0)  # percent undefined at 0: points only
    assert math.isnan(registry["hip_ir_left_deg"].mcid_needed(30))  # no MCID
    series = pain.mcid_needed(pd.Series([5.0, 0.0], index=[7, 9]))
    assert series.index.tolist() == [7, 9] and series.tolist() == pytest.approx([1.5, 2.0])
