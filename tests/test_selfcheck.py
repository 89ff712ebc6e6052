"""Self-check: a small simulation study that would catch a broken estimator, and its outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.model.selfcheck import (
    RUN_COLUMNS,
    SUMMARY_COLUMNS,
    clinic_seeds,
    interpret,
    run_selfcheck,
    simulation_study,
    summarise,
)
from analysis.params import load_params, with_updates

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load_params(ROOT / "params.yaml")
EFFECT = float(PARAMS.simulate["hip_slope_effect"])
MODERATION = float(PARAMS.simulate["chronicity_moderation"])


@pytest.fixture(scope="module")
def runs() -> pd.DataFrame:
    # 12 clinics x 80 clients per scenario: about 20 s; loose bounds, but a wrong sign, a wrong
    # scale (e.g. slope instead of week-6 change) or grossly wrong SEs would fail them.
    return pd.concat(
        [
            simulation_study(12, 80, EFFECT, 5, PARAMS, scenario="effect"),
            simulation_study(12, 80, 0.0, 6, PARAMS, scenario="no_effect", moderation=0.0),
        ],
        ignore_index=True,
    )


def test_seeds_are_reproducible_and_distinct():
    assert clinic_seeds(7, 5) == clinic_seeds(7, 5)
    assert len(set(clinic_seeds(7, 50))) == 50


def test_one_row_per_clinic_and_df_method(runs):
    assert list(runs.columns) == RUN_COLUMNS
    assert runs.groupby("scenario").size().to_dict() == {"effect": 36, "no_effect": 36}
    assert runs.groupby(["scenario", "method"]).size().eq(12).all()
    assert set(runs["method"]) == {"z", "satterthwaite", "kenward_roger"}
    assert runs["truth"].tolist() == pytest.approx([6 * EFFECT] * 36 + [0.0] * 36)
    # the null is strict: no average effect and no effect varying with symptom duration
    assert runs["chronicity_moderation"].tolist() == [MODERATION] * 36 + [0.0] * 36
    # one fit per clinic: the methods share the estimate; z has infinite df, t methods finite, KR's SE >= vcov's
    wide = runs.pivot_table(index=["scenario", "clinic"], columns="method", values=["estimate", "se", "df"])
    assert np.allclose(wide["estimate"]["z"], wide["estimate"]["satterthwaite"])
    assert np.isinf(wide["df"]["z"]).all() and np.isfinite(wide["df"]["satterthwaite"]).all()
    assert (wide["se"]["kenward_roger"] >= wide["se"]["satterthwaite"] - 1e-12).all()
    assert MODERATION != 0  # otherwise the strict-null override would not be exercised


def test_estimator_operating_characteristics(runs):
    s = summarise(runs[runs["method"] == "satterthwaite"]).set_index("scenario")
    assert list(s.reset_index().columns) == SUMMARY_COLUMNS
    for scenario in ("effect", "no_effect"):
        r = s.loc[scenario]
        assert r["n_failed"] <= 1  # failures are counted; more would be a problem
        assert r["coverage"] >= 0.6
        assert abs(r["bias"]) < 3 * r["bias_mcse"] + 0.1  # rounding to whole points attenuates a little
        assert 0.5 < r["se_ratio"] < 2.5  # model SEs in the right range
    assert s.loc["no_effect", "rejection_rate"] <= 0.25
    assert s.loc["no_effect", "rejection_meaning"] == "type-I error" and s.loc["effect", "rejection_meaning"] == "power"
    assert all(isinstance(t, str) and "coverage" in t for t in s["interpretation"])
    # the headline is the week-6 change difference, not the per-week slope difference (6x smaller)
    assert s.loc["effect", "mean_estimate"] < 3 * EFFECT < 0


def test_failed_fits_are_counted_not_dropped():
    runs = pd.DataFrame(
        {
            "scenario": ["x"] * 3,
            "true_slope_difference": [0.0] * 3,
            "truth": [0.0] * 3,
            "truth_recorded": [0.0] * 3,
            "status": ["ok", "failed", "fallback"],
            "estimate": [0.1, np.nan, -0.1],
            "se": [0.2, np.nan, 0.2],
            "covered": [True, False, True],
            "covered_recorded": [True, False, True],
            "rejected": [False, False, False],
        }
    )
    r = summarise(runs).iloc[0]
    assert (r["n_clinics"], r["n_fitted"], r["n_failed"], r["n_fallback"]) == (3, 2, 1, 1)
    assert r["coverage"] == 1.0 and r["mean_estimate"] == pytest.approx(0.0)


def _row(**kw) -> dict:
    """A summary row of 200 fitted clinics with honest operating characteristics; kw overrides."""
    row = dict(
        scenario="no_effect",
        n_clinics=200,
        n_fitted=200,
        n_failed=0,
        bias=0.01,
        bias_mcse=0.025,
        bias_recorded=0.01,
        se_ratio=1.0,
        se_ratio_mcse=1.0 / np.sqrt(2 * 199),
        coverage=0.945,
        rejection_rate=0.055,
        rejection_meaning="type-I error",
    )
    return {**row, **kw}


def test_interpretation_within_monte_carlo_error():
    text = interpret(_row())
    assert text == (
        "no detectable bias (+0.010, MCSE 0.025); model SEs match the empirical SE within MC error "
        "(ratio 1.00, MCSE 0.05); coverage 94.5% within MC error of 95%; "
        "type-I error 5.5% within MC error of 5%"
    )


def test_interpretation_flags_anticonservative_null():
    # the numbers of the first full run's (moderated) null scenario
    text = interpret(_row(se_ratio=0.86, se_ratio_mcse=0.86 / np.sqrt(2 * 199), coverage=0.915, rejection_rate=0.085))
    assert "model SEs too small by 14%" in text
    assert "coverage 91.5% below 95% beyond MC error (MCSE 1.5%)" in text
    assert "type-I error 8.5% above 5% beyond MC error" in text


def test_interpretation_of_bias_from_recording_and_failures():
    text = interpret(
        _row(
            bias=0.068, bias_recorded=-0.004, rejection_rate=0.635, rejection_meaning="power", n_failed=3, n_fitted=197
        )
    )
    assert text.startswith("bias +0.068 (2.7 MCSE), explained by recording whole points 0-10")
    assert "power 63.5% (MCSE 3.4%)" in text and "3 of 200 fits failed" in text
    assert "explained" not in interpret(_row(bias=0.1, bias_recorded=0.1))
    assert interpret(_row(n_fitted=1)).startswith("too few fitted clinics")


def test_run_selfcheck_writes_reproducible_outputs(tmp_path):
    params = with_updates(
        PARAMS, {"selfcheck": {"n_clients": 40, "n_clients_small": 30, "workers": 2, "out_dir": str(tmp_path / "sc")}}
    )
    text = run_selfcheck(params, n_clinics=2, seed=3)
    assert "coverage" in text and "type-I error" in text and "power" in text and "->" in text
    out = tmp_path / "sc"
    summary = json.loads((out / "selfcheck.json").read_text())
    scenarios = ["effect", "no_effect", "small_effect", "small_no_effect"]
    assert {r["scenario"] for r in summary["summary"]} == set(scenarios)
    assert set(summary["interpretation"]) == {
        f"{s} / {m}" for s in scenarios for m in ("z", "satterthwaite", "kenward_roger")
    }
    assert summary["settings"]["no_effect_chronicity_moderation"] == 0.0
    runs = pd.read_csv(out / "selfcheck.csv")  # pandas defaults: the scenario labels must survive
    assert runs["scenario"].tolist() == [s for s in scenarios for _ in range(6)]
    assert runs.loc[runs["scenario"].str.startswith("small"), "n_clients"].max() <= 30
    assert runs.loc[runs["scenario"] == "no_effect", "chronicity_moderation"].eq(0).all()
    table = pd.read_csv(out / "selfcheck_summary.csv")
    assert list(table.columns) == SUMMARY_COLUMNS
    assert table["interpretation"].tolist() == [
        summary["interpretation"][f"{s} / {m}"] for s, m in zip(table["scenario"], table["method"], strict=True)
    ]
    files = ("selfcheck.csv", "selfcheck_summary.csv", "selfcheck.json", "selfcheck.png")
    first = {p: (out / p).read_bytes() for p in files}
    run_selfcheck(params, n_clinics=2, seed=3)
    assert {p: (out / p).read_bytes() for p in first} == first
    assert first["selfcheck.png"].startswith(b"\x89PNG")
