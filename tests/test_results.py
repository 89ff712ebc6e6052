"""The typed hand-off model -> report: results.json is written and read through analysis.results.Results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analysis.errors import InputError
from analysis.params import load_params, with_updates
from analysis.params_schema import ModelParams, Params
from analysis.results import SCHEMA_PATH, Results, read_results, schema_text
from conftest import results_from

ROOT = Path(__file__).resolve().parents[1]


def test_committed_schema_is_generated_from_the_model():
    # `python -m analysis.results` rewrites it; a changed Results model must come with its schema
    assert SCHEMA_PATH.read_text(encoding="utf-8") == schema_text()


def test_schema_names_the_statuses_the_model_emits():
    s = json.loads(schema_text())
    defs = s["$defs"]
    assert defs["PrimaryResult"]["properties"]["status"]["enum"] == ["ok", "fallback", "failed"]
    assert defs["SecondaryResult"]["properties"]["status"]["enum"] == ["done", "not_estimable", "failed"]


def test_params_are_typed_once_with_defaults_in_one_place(tmp_path):
    p = load_params(ROOT / "params.yaml")
    assert isinstance(p, Params) and isinstance(p.model, ModelParams)
    assert p.model.primary_week == 6.0 and isinstance(p.model.primary_week, float)
    assert p.model.iptw_trim == (0.01, 0.99)
    # frozen: a stage cannot change another stage's settings in place
    with pytest.raises(Exception, match="frozen"):
        p.model.alpha = 0.1  # type: ignore[misc]
    q = with_updates(p, {"model": {"alpha": 0.1}, "report": {"min_cell": 10}})
    assert (q.model.alpha, q.report.min_cell, p.model.alpha) == (0.1, 10, 0.05)
    with pytest.raises(InputError, match=r"model\.alpha"):
        with_updates(p, {"model": {"alpha": 2}})


def test_a_results_file_that_does_not_follow_the_model_is_refused(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"schema_version": 1, "primary": {"status": "ok"}}))
    with pytest.raises(InputError) as err:
        read_results(path)
    first = str(err.value).splitlines()[0]
    assert first.startswith(str(path)) and "rerun `outcomes model`" in first
    path.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        read_results(path)


def test_results_round_trip():
    results: Results = results_from({})  # what the model wrote for the demo
    again = Results.model_validate_json(results.model_dump_json(by_alias=True))
    assert again == results
    assert results.primary.ok and results.primary.slope_difference is not None
