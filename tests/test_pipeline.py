"""End to end: the whole pipeline on the bundled demo clinic, through the CLI, into a temp folder."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from analysis.cli import main

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "raw" / "demo"


def _hash_tree(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Run validate -> join -> model -> report on the demo, outputs under a temp folder."""
    tmp = tmp_path_factory.mktemp("pipeline")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["input"] = str(DEMO)
    params["data"]["registry"] = str(ROOT / "config" / "measures.yaml")
    params["validate"]["out_dir"] = str(tmp / "interim")
    params["validate"]["report_dir"] = str(tmp / "reports" / "validation")
    params["join"]["out"] = str(tmp / "processed" / "analysis.parquet")
    params["join"]["flow"] = str(tmp / "processed" / "flow.csv")
    params["model"]["out_dir"] = str(tmp / "reports" / "results")
    params["report"]["therapist_dir"] = str(tmp / "reports" / "therapist")
    params["report"]["peer_dir"] = str(tmp / "reports" / "peer")
    ppath = tmp / "params.yaml"
    ppath.write_text(yaml.safe_dump(params))
    before = _hash_tree(DEMO)
    codes = {step: main(["--params", str(ppath), step]) for step in ("validate", "join", "model", "report")}
    return tmp, codes, before


def test_every_stage_succeeds(built):
    _, codes, _ = built
    assert codes == {"validate": 0, "join": 0, "model": 0, "report": 0}


def test_raw_inputs_untouched(built):
    _, _, before = built
    assert _hash_tree(DEMO) == before


def test_outputs_exist(built):
    tmp, _, _ = built
    for rel in (
        "interim/clients.parquet",
        "interim/rejects.csv",
        "reports/validation/validation.json",
        "reports/validation/validation.html",
        "processed/analysis.parquet",
        "processed/flow.csv",
        "reports/results/results.json",
        "reports/results/metrics.json",
        "reports/therapist/index.html",
        "reports/peer/report.html",
        "reports/peer/report.pdf",
        "reports/peer/findings.json",
    ):
        assert (tmp / rel).is_file(), rel


def test_primary_result_is_a_converged_estimate_near_the_truth(built):
    tmp, _, _ = built
    results = json.loads((tmp / "reports/results/results.json").read_text())
    truth = json.loads((DEMO / "truth.json").read_text())
    primary = results["primary"]
    assert primary["converged"] is True
    assert primary["status"] in {"ok", "fallback"}
    assert primary["ci_low"] < primary["estimate"] < primary["ci_high"]
    # one clinic of ~150 clients: the truth should lie within about 3 standard errors
    assert abs(primary["estimate"] - truth["true_change_difference_primary_week"]) < 3 * primary["se"]
    for name, entry in results["secondary"].items():
        assert entry["status"] in {"done", "not_estimable", "failed"}, name
        assert entry["exploratory"] is True, name
        if entry["status"] != "done":
            assert entry["reason"], name


def test_model_with_a_measure_missing_from_the_registry_is_a_clear_error(built, capsys):
    tmp, _, _ = built
    params = yaml.safe_load((tmp / "params.yaml").read_text())
    params["model"]["measure"] = "koos_pain_typo"
    params["model"]["out_dir"] = str(tmp / "reports" / "results-typo")
    ppath = tmp / "params-typo.yaml"
    ppath.write_text(yaml.safe_dump(params))
    code = main(["--params", str(ppath), "model"])
    err = capsys.readouterr().err
    assert code == 2  # an input error (the params name a measure the registry lacks)
    assert "model.measure: 'koos_pain_typo' is not in the measures registry (" in err
    assert "nprs" in err  # the known measures are listed
    assert "Traceback" not in err
    assert not (tmp / "reports" / "results-typo").exists()
