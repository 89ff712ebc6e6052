"""No stage writes into its inputs (raw data above all), and report.min_cell has a floor of 5.

Each refusal comes before any work, as one line naming the params key.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from analysis.cli import main
from analysis.errors import InputError
from analysis.join import run_join
from analysis.model.run import run_model
from analysis.params import load_params, with_updates
from analysis.params_schema import check_params
from analysis.paths import check_outputs_outside_inputs
from analysis.report.publish import run_report
from analysis.validate.run import run_validate

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = load_params(ROOT / "params.yaml")


def _params(tmp_path: Path, updates: dict) -> object:
    """The shipped params with every folder moved under ``tmp_path`` (raw input: tmp_path/raw), then ``updates``."""
    t = str(tmp_path)
    base = {
        "data": {"input": f"{t}/raw"},
        "validate": {"out_dir": f"{t}/interim", "report_dir": f"{t}/reports/validation"},
        "join": {"out": f"{t}/processed/analysis.parquet", "flow": f"{t}/processed/flow.csv"},
        "model": {"out_dir": f"{t}/reports/results"},
        "report": {"therapist_dir": f"{t}/reports/therapist", "peer_dir": f"{t}/reports/peer"},
    }
    merged = {k: {**v, **updates.get(k, {})} for k, v in base.items()}
    return with_updates(SHIPPED, merged)


REFUSED = [
    # (stage, updates, params key named, input named)
    ("validate", {"validate": {"out_dir": "{t}/raw"}}, "validate.out_dir", "data.input"),
    ("validate", {"validate": {"report_dir": "{t}/raw/reports"}}, "validate.report_dir", "data.input"),
    ("join", {"join": {"out": "{t}/interim/analysis.parquet"}}, "join.out", "validate.out_dir"),
    ("join", {"join": {"flow": "{t}/raw/flow.csv"}}, "join.flow", "data.input"),
    ("model", {"model": {"out_dir": "{t}/processed"}}, "model.out_dir", "join.out's folder"),
    ("model", {"model": {"out_dir": "{t}/raw/results"}}, "model.out_dir", "data.input"),
    ("report", {"report": {"therapist_dir": "{t}/reports/results"}}, "report.therapist_dir", "model.out_dir"),
    ("report", {"report": {"peer_dir": "{t}/raw"}}, "report.peer_dir", "data.input"),
]
RUN = {"validate": run_validate, "join": run_join, "model": run_model, "report": run_report}


def _fill(updates: dict, t: Path) -> dict:
    return {s: {k: v.format(t=t) for k, v in kv.items()} for s, kv in updates.items()}


@pytest.mark.parametrize(("stage", "updates", "key", "input_key"), REFUSED, ids=[f"{r[0]}-{r[2]}" for r in REFUSED])
def test_an_output_in_an_input_folder_is_refused_before_any_work(tmp_path, stage, updates, key, input_key):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "clients.csv").write_text("client_id\n")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    params = _params(tmp_path, _fill(updates, tmp_path))
    with pytest.raises(InputError) as info:
        RUN[stage](params)
    message = str(info.value)
    assert message.startswith(f"params.yaml {key}: ") and f"({input_key})" in message and "\n" not in message
    assert "choose another folder" in message
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written


def test_validate_refuses_writing_into_the_folder_given_with_input(tmp_path, capsys):
    raw = tmp_path / "export"
    raw.mkdir()
    params = _params(tmp_path, {"validate": {"out_dir": str(raw / "valid")}})
    with pytest.raises(InputError, match=r"^params.yaml validate.out_dir: .* is inside .* \(--input\)"):
        run_validate(params, input_dir=raw)
    assert [p.name for p in raw.iterdir()] == []


def test_cli_refusal_is_one_line_exit_2(tmp_path, capsys):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    raw["data"]["input"] = str(tmp_path / "raw")
    raw["validate"]["out_dir"] = str(tmp_path / "raw")
    (tmp_path / "raw").mkdir()
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    code = main(["--params", str(path), "validate"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(
        f"error: params.yaml validate.out_dir: {tmp_path / 'raw'} is an input of `outcomes validate` (data.input)"
    )
    assert list((tmp_path / "raw").iterdir()) == []


@pytest.mark.parametrize("stage", ["validate", "join", "model", "report"])
def test_the_shipped_folders_pass(stage):
    check_outputs_outside_inputs(SHIPPED, stage, root=ROOT)


@pytest.mark.parametrize("value", [0, 1, 4])
def test_min_cell_below_five_is_refused_with_a_clear_line(value):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    raw["report"]["min_cell"] = value
    expected = (
        "params.yaml: report.min_cell: must be at least 5: a smaller count shown in a peer output could single "
        f"out a client; set it to 5 or more (got {value})"
    )
    assert check_params(raw) == [expected]
    raw["report"]["min_cell"] = 5
    assert check_params(raw) == []
