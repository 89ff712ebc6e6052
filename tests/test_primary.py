"""Primary analysis: data preparation (nobody dropped silently), the estimands, and recovery of a known truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.join import build_analysis_dataset
from analysis.model.prepare import primary_data, reference_order
from analysis.model.primary import fit_diagnostics, primary_analysis, primary_formula
from analysis.model.run import metrics, sort_table, summary_line
from analysis.params import load_params
from analysis.simulate import simulate_clinic

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load_params(ROOT / "params.yaml")
CFG = PARAMS.model


def make_dataset(n: int = 160, slope_diff: float = -0.15, seed: int = 1, sessions: int = 7) -> pd.DataFrame:
    """A small analysis-dataset-shaped frame (primary measure only) from a known linear mixed model."""
    rng = np.random.default_rng(seed)
    rows = []
    foci = np.array(["hip", "knee", "hip_and_knee", "knee"])
    for i in range(n):
        focus = foci[i % 4]
        hip = focus in ("hip", "hip_and_knee")
        sw = int(rng.integers(2, 200))
        sitting = float(rng.choice([4.0, 6.0, 8.0, 10.0]))
        sex = str(rng.choice(["F", "F", "M"]))
        age = str(rng.choice(["30-39", "40-49", "40-49", "50-59"]))
        activity = str(rng.choice(["running", "gym"]))
        u0, u1 = rng.normal(0, 1.2), rng.normal(0, 0.1)
        level = 6 + 0.1 * sitting + u0
        slope = -0.3 + slope_diff * hip + u1
        base = None
        for k in range(sessions):
            week = 1.2 * k
            y = level + slope * week + rng.normal(0, 0.8)
            base = y if k == 0 else base
            rows.append(
                dict(
                    client_id=f"C{i:04d}",
                    clinic_id="clinic-1",
                    sex=sex,
                    age_band=age,
                    symptom_weeks=sw,
                    log_symptom_weeks=np.log(sw + 1.0),
                    sitting_hours=sitting,
                    activity=activity,
                    knee="left",
                    session_id=f"S{i:04d}{k:02d}",
                    session_number=k + 1,
                    n_sessions=sessions,
                    days_since_first=int(round(week * 7)),
                    weeks_since_first=round(week * 7) / 7.0,
                    focus=focus,
                    baseline_focus=focus,
                    cum_hip_sessions=(k + 1) * hip,
                    measure="knee_pain_nprs",
                    timing="pre",
                    value=y,
                    baseline_value=base,
                )
            )
    return pd.DataFrame(rows).assign(change_from_baseline=lambda d: d["value"] - d["baseline_value"])


@pytest.fixture(scope="module")
def dataset() -> pd.DataFrame:
    return make_dataset()


@pytest.fixture(scope="module")
def analysed(dataset):
    pdata = primary_data(dataset, CFG)
    return pdata, *primary_analysis(pdata, CFG)


# --------------------------------------------------------------------------- preparation


def test_reference_level_is_most_common_then_alphabetical():
    assert reference_order(pd.Series(["b", "a", "b", "c", "c"])) == ["b", "a", "c"]
    assert reference_order(pd.Series(["z", "y", None])) == ["y", "z"]


def test_every_excluded_client_is_listed_with_its_reason(dataset):
    d = dataset.copy()
    d.loc[d["client_id"] == "C0000", ["baseline_focus"]] = "other"  # outside both groups
    d = d[~((d["client_id"] == "C0001") & (d["session_number"] == 1))]  # no baseline
    d = d[~((d["client_id"] == "C0002") & (d["session_number"] > 1))]  # no follow-up
    d.loc[(d["client_id"] == "C0003") & (d["session_number"] > 2), "weeks_since_first"] = 20.0  # partly outside
    pdata = primary_data(d, CFG)
    reasons = dict(zip(pdata.excluded["client_id"], pdata.excluded["reason"], strict=True))
    assert reasons == {
        "C0000": "baseline focus other",
        "C0001": "no baseline measurement",
        "C0002": "no follow-up within 12 weeks",
    }
    assert pdata.n_clients + len(pdata.excluded) == d["client_id"].nunique()
    assert (pdata.data.loc[pdata.data["client_id"] == "C0003", "week"] <= 12).all()
    assert len(pdata.data[pdata.data["client_id"] == "C0003"]) == 2
    assert any("excluded clients" in n for n in pdata.notes)


def test_data_columns_and_exposure(analysed):
    pdata, *_ = analysed
    data = pdata.data
    assert data.groupby(["client_id", "session_id"]).size().max() == 1
    assert set(data["hip"].unique()) == {0, 1}
    per_client = data.drop_duplicates("client_id")
    assert (per_client["hip"] == per_client["baseline_focus"].isin(["hip", "hip_and_knee"])).all()
    assert (data.loc[data["session_number"] == 1, "week"] == 0).all()
    assert data["y"].notna().all() and data["baseline_y"].notna().all()
    assert pdata.n_clients_by_group() == {"hip_focused": 80, "comparator": 80}


def test_constant_covariates_are_dropped_and_said(analysed):
    pdata, *_ = analysed
    # one clinic, so no clinic term; every covariate varies here
    assert pdata.covariates == ["C(age_band)", "C(sex)", "log_symptom_weeks", "sitting_hours", "C(activity)"]
    assert pdata.levels["sex"][0] == "F" and pdata.levels["age_band"][0] == "40-49"
    d = make_dataset(n=40).assign(sex="F")
    p2 = primary_data(d, CFG)
    assert "C(sex)" not in p2.covariates
    assert any("sex has one level" in n for n in p2.notes)


def test_second_clinic_adds_clinic_term():
    d = make_dataset(n=40)
    d.loc[d["client_id"] < "C0020", "clinic_id"] = "clinic-2"
    assert "C(clinic_id)" in primary_data(d, CFG).covariates


def test_missing_sitting_hours_keeps_clients_with_indicator():
    d = make_dataset(n=40)
    d.loc[d["client_id"].isin(["C0005", "C0006"]), "sitting_hours"] = np.nan
    pdata = primary_data(d, CFG)
    assert pdata.n_clients == 40 and pdata.excluded.empty
    assert "sitting_hours_missing" in pdata.covariates
    per = pdata.data.drop_duplicates("client_id").set_index("client_id")
    assert per.loc[["C0005", "C0006"], "sitting_hours_missing"].tolist() == [1, 1]
    assert per["sitting_hours"].notna().all()
    assert per.loc["C0005", "sitting_hours"] == pytest.approx(per.drop(["C0005", "C0006"])["sitting_hours"].mean())
    assert any("missing-indicator" in n for n in pdata.notes)


# --------------------------------------------------------------------------- the model and estimands


def test_entry_has_the_promised_fields(analysed):
    pdata, entry, tables, fit = analysed
    for key in (
        "estimand",
        "formula",
        "re_formula",
        "estimate",
        "se",
        "ci_low",
        "ci_high",
        "p_value",
        "slope_difference",
        "n_clients",
        "n_clients_by_group",
        "n_observations",
        "converged",
        "optimizer",
        "status",
        "reason",
        "checks",
        "fixed_effects",
        "random_effects",
        "notes",
    ):
        assert key in entry, key
    assert entry["status"] == "ok" and entry["converged"] and entry["re_formula"] == "~week"
    assert entry["formula"] == primary_formula(pdata)
    assert entry["formula"].startswith("y ~ week * hip + ")
    assert entry["n_clients"] == 160 and entry["n_observations"] == len(pdata.data)
    assert set(entry["random_effects"]["variances"]) == {"Intercept", "week"}


def test_headline_is_primary_week_times_slope_difference(analysed):
    _, entry, _, _ = analysed
    sd = entry["slope_difference"]
    assert entry["estimate"] == pytest.approx(6 * sd["estimate"])
    assert entry["se"] == pytest.approx(6 * sd["se"])
    assert entry["p_value"] == pytest.approx(sd["p_value"])
    assert sd["estimate"] == pytest.approx(entry["fixed_effects"]["week:hip"]["estimate"])
    assert entry["ci_low"] < entry["estimate"] < entry["ci_high"]
    by = entry["change_by_group"]
    assert by["hip_focused"]["estimate"] - by["comparator"]["estimate"] == pytest.approx(entry["estimate"])


def test_estimate_recovers_the_generating_effect(analysed):
    _, entry, _, _ = analysed
    truth = 6 * -0.15
    assert abs(entry["estimate"] - truth) < 3 * entry["se"]


def test_trajectories_follow_the_model(analysed):
    _, entry, tables, _ = analysed
    t = tables["trajectories"]
    assert list(t.columns) == ["group", "week", "mean", "ci_low", "ci_high"]
    assert len(t) == 2 * 13 and set(t["group"]) == {"hip-focused", "knee-focused"}
    wide = t.pivot(index="week", columns="group", values="mean")
    change = wide.loc[6.0] - wide.loc[0.0]
    assert change["hip-focused"] - change["knee-focused"] == pytest.approx(entry["estimate"])
    assert (t["ci_low"] < t["mean"]).all() and (t["mean"] < t["ci_high"]).all()


def test_diagnostics_tables(analysed):
    pdata, _, _, fit = analysed
    diag, re = fit_diagnostics(fit, pdata)
    assert list(diag.columns) == ["client_id", "week", "y", "fitted", "residual"]
    assert len(diag) == len(pdata.data)
    np.testing.assert_allclose(diag["y"] - diag["fitted"], diag["residual"])
    assert list(re.columns) == ["client_id", "intercept", "slope"] and len(re) == 160
    assert re["client_id"].is_monotonic_increasing


def test_failed_fit_reports_no_estimate(dataset):
    cfg = CFG.model_copy(
        update={"singular_tol": 1e9}
    )  # every fit "singular": the planned model and its fallback must both fail
    pdata = primary_data(dataset, cfg)
    entry, tables, fit = primary_analysis(pdata, cfg)
    assert entry["status"] == "failed" and fit.result is None
    assert entry["estimate"] is None and entry["slope_difference"] is None
    assert "singular" in entry["reason"] and "random-intercept refit failed too" in entry["reason"]
    assert tables["trajectories"].empty
    assert "FAILED" in summary_line(entry, Path("out"), 0)
    assert metrics(entry)["primary"]["fitted"] is False


def test_sort_table_is_stable_and_ignores_floats():
    df = pd.DataFrame({"group": ["b", "a", "b", "a"], "week": [0.0, 1.0, 1.0, 0.0], "mean": [1.0, 2.0, 3.0, 4.0]})
    out = sort_table(df)
    assert out["group"].tolist() == ["a", "a", "b", "b"]
    assert out["week"].tolist() == [1.0, 0.0, 0.0, 1.0]  # float column not a key: input order kept


# --------------------------------------------------------------------------- recovery through simulate + join


def test_recovery_on_a_simulated_clinic():
    clinic = simulate_clinic(PARAMS.simulate, seed=101, n_clients=600, primary_week=CFG.primary_week)
    ds = build_analysis_dataset(clinic.clients, clinic.sessions, clinic.measurements)
    pdata = primary_data(ds, CFG)
    entry, _, _ = primary_analysis(pdata, CFG)
    truth = clinic.truth
    assert entry["status"] == "ok"
    assert abs(entry["estimate"] - truth["true_change_difference_primary_week"]) < 3 * entry["se"]
    sd = entry["slope_difference"]
    assert abs(sd["estimate"] - truth["true_slope_difference"]) < 3 * sd["se"]
    assert entry["n_clients"] <= truth["counts"]["clients_hip_focused"] + truth["counts"]["clients_knee_focused"]
