"""Self-check: a small simulation study that would catch a broken estimator, and its outputs."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from analysis.model.selfcheck import RUN_COLUMNS, SUMMARY_COLUMNS, clinic_seeds, run_selfcheck, simulation_study, summarise

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
EFFECT = float(PARAMS["simulate"]["hip_slope_effect"])


@pytest.fixture(scope="module")
def runs() -> pd.DataFrame:
    # 12 clinics x 80 clients per scenario: about 20 s; loose bounds, but a wrong sign, a wrong
    # scale (e.g. slope instead of week-6 change) or grossly wrong SEs would fail them.
    return pd.concat([simulation_study(12, 80, EFFECT, 5, PARAMS, scenario="effect"),
                      simulation_study(12, 80, 0.0, 6, PARAMS, scenario="null")], ignore_index=True)


def test_seeds_are_reproducible_and_distinct():
    assert clinic_seeds(7, 5) == clinic_seeds(7, 5)
    assert len(set(clinic_seeds(7, 50))) == 50


def test_one_row_per_clinic(runs):
    assert list(runs.columns) == RUN_COLUMNS
    assert runs.groupby("scenario").size().to_dict() == {"effect": 12, "null": 12}
    assert runs["truth"].tolist() == pytest.approx([6 * EFFECT] * 12 + [0.0] * 12)


def test_estimator_operating_characteristics(runs):
    s = summarise(runs).set_index("scenario")
    assert list(s.reset_index().columns) == SUMMARY_COLUMNS
    for scenario in ("effect", "null"):
        r = s.loc[scenario]
        assert r["n_failed"] <= 1                       # failures are counted; more would be a problem
        assert r["coverage"] >= 0.6
        assert abs(r["bias"]) < 3 * r["bias_mcse"] + 0.1  # rounding to whole points attenuates a little
        assert 0.5 < r["se_ratio"] < 2.5                # model SEs in the right range
    assert s.loc["null", "rejection_rate"] <= 0.25
    # the headline is the week-6 change difference, not the per-week slope difference (6x smaller)
    assert s.loc["effect", "mean_estimate"] < 3 * EFFECT < 0


def test_failed_fits_are_counted_not_dropped():
    runs = pd.DataFrame({
        "scenario": ["x"] * 3, "true_slope_difference": [0.0] * 3, "truth": [0.0] * 3,
        "truth_recorded": [0.0] * 3, "status": ["ok", "failed", "fallback"],
        "estimate": [0.1, np.nan, -0.1], "se": [0.2, np.nan, 0.2], "covered": [True, False, True],
        "covered_recorded": [True, False, True], "rejected": [False, False, False],
    })
    r = summarise(runs).iloc[0]
    assert (r["n_clinics"], r["n_fitted"], r["n_failed"], r["n_fallback"]) == (3, 2, 1, 1)
    assert r["coverage"] == 1.0 and r["mean_estimate"] == pytest.approx(0.0)


def test_run_selfcheck_writes_reproducible_outputs(tmp_path):
    params = copy.deepcopy(PARAMS)
    params["selfcheck"].update(n_clients=40, out_dir=str(tmp_path / "sc"))
    text = run_selfcheck(params, n_clinics=2, seed=3)
    assert "coverage" in text and "type-I error" in text and "power" in text
    out = tmp_path / "sc"
    summary = json.loads((out / "selfcheck.json").read_text())
    assert {r["scenario"] for r in summary["summary"]} == {"effect", "null"}
    assert len(pd.read_csv(out / "selfcheck.csv")) == 4
    first = {p: (out / p).read_bytes() for p in ("selfcheck.csv", "selfcheck.json", "selfcheck.png")}
    run_selfcheck(params, n_clinics=2, seed=3)
    assert {p: (out / p).read_bytes() for p in first} == first
    assert first["selfcheck.png"].startswith(b"\x89PNG")
