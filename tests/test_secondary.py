"""Secondary analyses: shapes, known-effect recovery, hand examples and failure paths (never an exception)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from analysis.contract import Measure, Registry
from analysis.model.entries import FitFailed, fit_checked, guarded
from analysis.model.fit import MixedFit, fit_mixed
from analysis.model.imputation import impute, mi_analysis, rubin, tipping_analysis
from analysis.model.mechanism import mediation_analysis
from analysis.model.prepare import PrimaryData, primary_data
from analysis.model.responders import is_responder, nnt, responder_analysis
from analysis.model.secondary import LABELS, run_secondary
from analysis.model.sensitivity import (
    e_value_analysis,
    e_value_difference,
    e_value_rr,
    gee_analysis,
    iptw_analysis,
    smd,
)
from analysis.model.survival import time_to_improvement_analysis
from analysis.params_schema import ModelParams

NPRS = Measure(
    key="knee_pain_nprs",
    label="Knee pain",
    unit="points",
    minimum=0,
    maximum=10,
    integer=True,
    direction="lower_is_better",
    mcid_points=2,
    mcid_percent=30,
)
REGISTRY = Registry({"knee_pain_nprs": NPRS})

CFG = ModelParams.model_validate(
    {
        "measure": "knee_pain_nprs",
        "timing": "pre",
        "followup_weeks": 12,
        "primary_week": 6,
        "exposure": {"hip_focused": ["hip", "hip_and_knee"], "comparator": ["knee"], "excluded": ["other"]},
        "covariates": ["age_band", "sex", "log_symptom_weeks", "sitting_hours", "activity"],
        "df_method": "satterthwaite",
        "singular_tol": 1e-4,
        "alpha": 0.05,
        "seed": 11,
        "n_imputations": 5,
        "iptw_trim": [0.01, 0.99],
        "smd_target": 0.1,
        "chronicity_weeks": [4, 26, 104],
        "mediation_boot": 100,
        "tipping_deltas": [0.0, 1.0, 2.0, 3.0],
        "power": 0.8,
        "target_difference": 1.0,
        "endpoint_window_weeks": 2,
        "min_level_n": 5,
        "mi_pmm_donors": 5,
        "mi_iterations": 3,
        "chronicity_grid": {"from": 1, "to": 520, "points": 12},
        "out_dir": "unused",
        "mediator": "hip_ir_gain",
    }
)


def make_dataset(
    n: int = 120, effect: float = -0.2, seed: int = 1, confounded: bool = True, dropout: float = 0.25
) -> pd.DataFrame:
    """A long analysis dataset (HELPERS.md schema, the columns the model step uses) with a known effect.

    Pain y = 6 + 0.15 * (sitting - 7) + u_i - (0.25 + slope_i) * week + e, with slope_i = -effect for
    hip-focused clients: the difference in change at week 6 is 6 * effect. Sessions weekly (weeks 0-10);
    a share ``dropout`` of clients stop after week 3 (completely at random). With ``confounded``,
    sitting hours raise the chance of a hip-focused first session.
    """
    rng = np.random.default_rng(seed)
    sitting = np.round(rng.normal(7, 2.5, n).clip(0, 14) * 2) / 2
    p_hip = 1 / (1 + np.exp(-(0.45 * (sitting - 7) if confounded else 0.0)))
    hip = rng.random(n) < p_hip
    sw = rng.integers(1, 300, n)
    rows = []
    for i in range(n):
        cid = f"C{i:03d}"
        u, s_i = rng.normal(0, 1.2), rng.normal(0, 0.05)
        weeks = np.arange(0, 4 if rng.random() < dropout else 11)
        ir0, gain = rng.normal(35, 4), (0.6 if hip[i] else 0.1) + rng.normal(0, 0.2)
        for k, w in enumerate(weeks):
            focus = ("hip" if hip[i] else "knee") if k == 0 or rng.random() > 0.1 else "hip_and_knee"
            pre = 6 + 0.15 * (sitting[i] - 7) + u - (0.25 - effect * hip[i] + s_i) * w + rng.normal(0, 0.7)
            post = pre - (1.1 if focus != "knee" else 0.8) + rng.normal(0, 0.5)
            ir = ir0 + gain * w
            for measure, timing, value in (
                ("knee_pain_nprs", "pre", pre),
                ("knee_pain_nprs", "post", post),
                ("hip_ir_left_deg", "pre", ir + rng.normal(0, 1)),
                ("hip_ir_right_deg", "pre", ir + rng.normal(0, 1)),
            ):
                rows.append(
                    {
                        "client_id": cid,
                        "session_id": f"{cid}S{k:02d}",
                        "session_number": k + 1,
                        "weeks_since_first": float(w) + 0.1 * rng.random() * (k > 0),
                        "focus": focus,
                        "measure": measure,
                        "timing": timing,
                        "value": float(np.clip(np.round(value), 0, 10))
                        if measure == "knee_pain_nprs"
                        else float(value),
                    }
                )
    d = pd.DataFrame(rows)
    clients = pd.DataFrame(
        {
            "client_id": [f"C{i:03d}" for i in range(n)],
            "clinic_id": "clinic-1",
            "sex": rng.choice(["F", "M"], n),
            "age_band": rng.choice(["30-39", "40-49", "50-59"], n),
            "symptom_weeks": sw,
            "log_symptom_weeks": np.log(sw + 1.0),
            "sitting_hours": np.where(rng.random(n) < 0.05, np.nan, sitting),
            "activity": rng.choice(["running", "walking", "gym"], n),
        }
    )
    d = d.sort_values(["client_id", "session_number"], kind="mergesort")
    d["is_hip"] = d["focus"].isin(["hip", "hip_and_knee"]) & (d["measure"] == "knee_pain_nprs") & (d["timing"] == "pre")
    d["cum_hip_sessions"] = d.groupby("client_id")["is_hip"].cumsum().astype("int64")
    d["baseline_focus"] = d.groupby("client_id")["focus"].transform("first")
    base = d[(d["session_number"] == 1) & (d["timing"] == "pre")][["client_id", "measure", "value"]]
    d = d.merge(base.rename(columns={"value": "baseline_value"}), on=["client_id", "measure"], how="left")
    d["change_from_baseline"] = d["value"] - d["baseline_value"]
    return d.drop(columns="is_hip").merge(clients, on="client_id", how="left")


def primary_fit(pdata: PrimaryData) -> MixedFit:
    formula = " + ".join(["y ~ week * hip", *pdata.covariates])
    return fit_mixed(pdata.data, formula, "client_id", "~week")


@pytest.fixture(scope="module")
def clinic():
    dataset = make_dataset()
    pdata = primary_data(dataset, CFG)
    return dataset, pdata, primary_fit(pdata)


@pytest.fixture(scope="module")
def results(clinic):
    dataset, pdata, fit = clinic
    return run_secondary(pdata, dataset, fit, CFG, REGISTRY)


# --------------------------------------------------------------------------- shape of the whole run


def test_every_analysis_has_an_exploratory_entry(results):
    entries, _ = results
    assert list(entries) == list(LABELS)
    for name, e in entries.items():
        assert e["exploratory"] is True, name
        assert e["status"] == "done", (name, e["reason"])
        assert e["reason"] is None and e["label"] and e["method"]


def test_tables_have_documented_columns_and_no_client_ids(results):
    _, tables = results
    expected = {
        "responders": ["group", "n", "responders", "share"],
        "balance": ["covariate", "level", "smd_unweighted", "smd_weighted"],
        "tipping": ["delta", "estimate", "ci_low", "ci_high", "p_value"],
        "chronicity": ["symptom_weeks", "effect", "ci_low", "ci_high", "within_data"],
        "hip_ir_vs_pain": ["group", "ir_gain", "pain_change"],
        "km": ["group", "week", "survival", "ci_low", "ci_high", "at_risk"],
        "immediate": ["focus", "n", "mean_change", "ci_low", "ci_high"],
    }
    assert set(tables) == set(expected)
    for name, cols in expected.items():
        assert list(tables[name].columns) == cols, name
        assert "client_id" not in tables[name].columns
    assert len(tables["chronicity"]) == CFG.chronicity_grid.points
    assert len(tables["tipping"]) == len(CFG.tipping_deltas)
    assert set(tables["responders"]["group"]) == {"hip_focused", "comparator"}


def test_estimates_point_the_known_way(results):
    entries, tables = results
    truth = 6 * -0.2
    for name in ("gee", "iptw", "multiple_imputation", "time_trend"):
        e = entries[name]
        assert e["ci_low"] < truth < e["ci_high"], name
    # the generator's trend is a straight line: the piecewise trend does not fit better
    assert entries["time_trend"]["linear_adequate"] is True
    assert entries["unadjusted"]["status"] == "done" and entries["unadjusted"]["formula"] == "y ~ week * hip"
    # hip-focused clients gained ~0.5 deg/week more IR; the a path is positive
    assert entries["mediation"]["a_path"]["estimate"] > 1
    # within-session drop: 1.1 (hip) vs 0.8 (knee) points
    assert entries["immediate_effect"]["hip_vs_knee"]["estimate"] == pytest.approx(-0.3, abs=0.15)
    assert entries["responders"]["share_hip_focused"] > entries["responders"]["share_comparator"]
    assert entries["precision"]["minimum_detectable_difference"] > 0
    assert entries["e_value"]["e_value"] > entries["e_value"]["e_value_ci"] >= 1
    # the tipping curve moves towards "hip worse" as the imputed hip endpoints get worse
    assert tables["tipping"]["estimate"].is_monotonic_increasing


def test_seeded_analyses_are_reproducible(clinic):
    dataset, pdata, _ = clinic
    cfg = CFG.model_copy(update={"mediation_boot": 20})
    assert mi_analysis(impute(pdata, cfg), cfg, NPRS) == mi_analysis(impute(pdata, cfg), cfg, NPRS)
    first, second = mediation_analysis(pdata, dataset, cfg), mediation_analysis(pdata, dataset, cfg)
    assert first[0] == second[0]
    pd.testing.assert_frame_equal(first[1]["hip_ir_vs_pain"], second[1]["hip_ir_vs_pain"])


# --------------------------------------------------------------------------- known answers


def test_gee_recovers_effect_without_confounding():
    pdata = primary_data(make_dataset(n=200, effect=-0.25, seed=5, confounded=False, dropout=0.0), CFG)
    numbers, _ = gee_analysis(pdata, CFG)
    assert numbers["estimate"] == pytest.approx(-1.5, abs=0.35)
    assert numbers["ci_low"] < -1.5 < numbers["ci_high"]


def test_iptw_improves_balance_of_the_confounder():
    pdata = primary_data(make_dataset(n=200, seed=2, confounded=True), CFG)
    numbers, tables = iptw_analysis(pdata, CFG)
    sitting = tables["balance"].set_index("covariate").loc["sitting_hours"]
    assert abs(sitting["smd_unweighted"]) > 0.5
    assert abs(sitting["smd_weighted"]) < abs(sitting["smd_unweighted"]) / 3
    assert numbers["max_abs_smd_weighted"] < numbers["max_abs_smd_unweighted"]


def test_smd_by_hand():
    x = pd.Series([1.0, 2.0, 3.0, 2.0, 3.0, 4.0])
    t = pd.Series([0, 0, 0, 1, 1, 1])
    # means 2 and 3, variances 1 and 1 -> SMD 1
    assert smd(x, t) == pytest.approx(1.0)


def test_rubin_hand_example():
    r = rubin([1.0, 2.0, 3.0], [1.0, 1.0, 1.0])
    assert r["estimate"] == 2.0
    assert r["within"] == 1.0 and r["between"] == 1.0
    assert r["total_variance"] == pytest.approx(1 + 4 / 3)
    assert r["riv"] == pytest.approx(4 / 3)
    assert r["lambda"] == pytest.approx(4 / 7)
    assert r["df_classic"] == pytest.approx(6.125)  # (m - 1) (1 + 1/r)^2
    # Barnard-Rubin with 10 complete-data df: df_obs = 11/13 * 10 * 3/7
    br = rubin([1.0, 2.0, 3.0], [1.0, 1.0, 1.0], df_complete=10)
    df_obs = 11 / 13 * 10 * 3 / 7
    assert br["df"] == pytest.approx(6.125 * df_obs / (6.125 + df_obs))
    assert br["fmi"] == pytest.approx((4 / 3 + 2 / (br["df"] + 3)) / (1 + 4 / 3))


def test_rubin_without_between_variance_is_the_complete_data_answer():
    r = rubin([2.0, 2.0], [0.25, 0.25], df_complete=30)
    assert r["se"] == pytest.approx(0.5) and r["between"] == 0 and r["lambda"] == 0


def test_e_value_published_example():
    # VanderWeele & Ding 2017: RR 3.9 -> E-value 7.26
    assert e_value_rr(3.9) == pytest.approx(7.26, abs=0.005)
    assert e_value_rr(1 / 3.9) == pytest.approx(7.26, abs=0.005)
    assert e_value_rr(1.0) == 1.0


def test_e_value_of_a_difference():
    out = e_value_difference(-1.0, -1.5, -0.5, sd=2.0)
    rr = np.exp(0.91 * -0.5)
    assert out["e_value"] == pytest.approx(1 / rr + np.sqrt(1 / rr * (1 / rr - 1)))
    assert out["e_value_ci"] == pytest.approx(e_value_rr(np.exp(0.91 * -0.25)))
    assert e_value_difference(-1.0, -2.0, 0.1, sd=2.0)["e_value_ci"] == 1.0


def test_nnt_inversion():
    benefit = nnt(0.2, 0.1, 0.3)
    assert benefit["nnt"] == pytest.approx(5) and benefit["kind"] == "benefit"
    assert (benefit["ci_low"], benefit["ci_high"]) == pytest.approx((1 / 0.3, 10))
    harm = nnt(-0.2, -0.3, -0.1)
    assert harm["kind"] == "harm" and (harm["ci_low"], harm["ci_high"]) == pytest.approx((1 / 0.3, 10))
    crossing = nnt(0.1, -0.05, 0.25)
    assert crossing["ci_low"] is None and crossing["ci_high"] is None
    assert crossing["nnt_benefit_limit"] == pytest.approx(4) and crossing["nnt_harm_limit"] == pytest.approx(20)
    assert "infinity" in crossing["text"]


def test_responder_definition_points_or_percent():
    base = pd.Series([10.0, 3.0, 5.0, 0.0, 6.0])
    value = pd.Series([8.0, 2.0, 4.0, 0.0, 7.0])
    # 2 points; 1 point = 33%; 1 point = 20%; no room; worse
    assert is_responder(base, value, NPRS).tolist() == [1, 1, 0, 0, 0]
    lefs = Measure(
        key="lefs",
        label="LEFS",
        unit="points",
        minimum=0,
        maximum=80,
        integer=True,
        direction="higher_is_better",
        mcid_points=9,
    )
    assert is_responder(pd.Series([40.0, 40.0]), pd.Series([49.0, 31.0]), lefs).tolist() == [1, 0]


def _km_pdata() -> PrimaryData:
    """Hip group: improvements (>= 2 points) first seen at weeks 1, 2, 3, 4; one client censored at 5.
    Comparator: nobody improves."""
    rows = []
    for i, (event_week, last) in enumerate([(1, 5), (2, 5), (3, 5), (4, 5), (None, 5)]):
        for w in range(last + 1):
            y = 6.0 - (3.0 if event_week is not None and w >= event_week else 0.0)
            rows.append({"client_id": f"H{i}", "week": float(w), "y": y, "baseline_y": 6.0, "hip": 1})
    for i in range(3):
        rows += [{"client_id": f"K{i}", "week": float(w), "y": 6.0, "baseline_y": 6.0, "hip": 0} for w in range(4)]
    return PrimaryData(data=pd.DataFrame(rows), excluded=pd.DataFrame(columns=["client_id", "reason"]), covariates=[])


def test_km_median_hand_example():
    numbers, tables = time_to_improvement_analysis(_km_pdata(), CFG, NPRS)
    hip = numbers["by_group"]["hip_focused"]
    # S(1) = 0.8, S(2) = 0.6, S(3) = 0.4 -> median 3 weeks
    assert hip["median_weeks"] == 3.0 and hip["events"] == 4
    assert numbers["by_group"]["comparator"]["median_weeks"] is None
    km = tables["km"]
    assert km.loc[km["group"] == "hip_focused", "survival"].round(6).tolist() == [1.0, 0.8, 0.6, 0.4, 0.2]
    assert km.loc[km["group"] == "hip_focused", "at_risk"].tolist() == [5, 5, 4, 3, 2]


# --------------------------------------------------------------------------- failure paths


def test_failures_become_entries_not_exceptions():
    def converges_badly():
        warnings.warn("did not converge", ConvergenceWarning, stacklevel=1)
        return object()

    e, tables = guarded("x", "m", lambda: (fit_checked("test model", converges_badly), {}))
    assert e["status"] == "failed" and "did not converge" in e["reason"] and tables == {}
    e, _ = guarded("x", "m", lambda: (_ for _ in ()).throw(np.linalg.LinAlgError("Singular matrix")))
    assert e["status"] == "failed" and "Singular" in e["reason"] and e["exploratory"] is True


def test_fit_checked_raises_fitfailed_on_warning():
    with pytest.raises(FitFailed, match="ConvergenceWarning"):
        fit_checked("m", lambda: warnings.warn("x", ConvergenceWarning, stacklevel=1))


def _failed_fit(reason: str, n_groups: int) -> MixedFit:
    """A primary fit that was not accepted, with ``reason``."""
    return MixedFit.failed(reason, formula="y ~ week * hip", re_formula="~week", n_groups=n_groups, n_obs=1)


def test_tiny_clinic_never_crashes():
    dataset = make_dataset(n=8, seed=3)
    pdata = primary_data(dataset, CFG)
    fit = _failed_fit("test: not fitted", n_groups=8)
    entries, tables = run_secondary(pdata, dataset, fit, CFG, REGISTRY)
    assert list(entries) == list(LABELS)
    for name, e in entries.items():
        assert e["status"] in ("done", "not_estimable", "failed"), name
        if e["status"] != "done":
            assert e["reason"], name
    assert entries["e_value"]["status"] == "not_estimable"
    assert "primary model" in entries["e_value"]["reason"]


def test_no_mcid_and_no_mediator_are_not_estimable(clinic):
    dataset, pdata, _ = clinic
    no_mcid = Measure(
        key="knee_pain_nprs", label="p", unit="u", minimum=0, maximum=10, integer=True, direction="lower_is_better"
    )
    e, tables = guarded("r", "m", lambda: responder_analysis(pdata, CFG, no_mcid))
    assert e["status"] == "not_estimable" and "MCID" in e["reason"] and tables == {}
    e, _ = guarded("t", "m", lambda: time_to_improvement_analysis(pdata, CFG, no_mcid))
    assert e["status"] == "not_estimable"
    no_ir = dataset[~dataset["measure"].str.startswith("hip_ir")]
    e, tables = guarded("m", "m", lambda: mediation_analysis(pdata, no_ir, CFG))
    assert e["status"] == "not_estimable" and "hip IR" in e["reason"] and tables == {}


def test_separation_loses_only_the_adjusted_numbers():
    pdata = primary_data(make_dataset(n=60, effect=-0.6, seed=4, confounded=False, dropout=0.0), CFG)
    # make responding coincide with the group: every hip client improves by 5, no comparator improves
    d = pdata.data.copy()
    d["y"] = np.where(d["week"] > 0, np.where(d["hip"] == 1, d["baseline_y"] - 5, d["baseline_y"]), d["y"])
    numbers, tables = responder_analysis(PrimaryData(d, pdata.excluded, pdata.covariates), CFG, NPRS)
    assert numbers["odds_ratio"] is None and numbers["adjusted_status"] == "failed"
    assert numbers["risk_difference"]["estimate"] == pytest.approx(1.0)
    assert numbers["nnt"]["nnt"] == pytest.approx(1.0)


def test_tipping_point_reported_when_not_reached(clinic):
    _, pdata, _ = clinic
    imp = impute(pdata, CFG)
    numbers, tables = tipping_analysis(imp, CFG.model_copy(update={"tipping_deltas": [0.0, 0.01]}), NPRS)
    if numbers["tipping_delta"] is None:
        assert "not reached" in numbers["conclusion"] or "already" in numbers["conclusion"]
    assert list(tables["tipping"]["delta"]) == [0.0, 0.01]


def test_e_value_needs_a_primary_fit(clinic):
    _, pdata, _ = clinic
    failed = _failed_fit("no optimiser", n_groups=1)
    e, _ = guarded("e", "m", lambda: e_value_analysis(pdata, failed, CFG))
    assert e["status"] == "not_estimable" and "no optimiser" in e["reason"]


def test_unrelated_warnings_are_passed_on_not_swallowed():
    def warns_otherwise():
        warnings.warn("just so you know", UserWarning, stacklevel=1)
        return 1

    with pytest.warns(UserWarning, match="just so you know"):
        assert fit_checked("m", warns_otherwise) == 1


def test_a_fit_stopped_at_its_iteration_limit_is_not_trusted():
    # statsmodels' GEE warns IterationLimitWarning (not a ConvergenceWarning) when it stops at maxiter:
    # found when the report tests first ran on the real model's output, where GEE was reported "done"
    import warnings

    from statsmodels.tools.sm_exceptions import IterationLimitWarning

    from analysis.model.entries import FitFailed, fit_checked

    def stops_early() -> object:
        warnings.warn("Iteration limit reached prior to convergence", IterationLimitWarning, stacklevel=1)
        return object()

    with pytest.raises(FitFailed, match="GEE is not trustworthy.*IterationLimitWarning"):
        fit_checked("GEE", stops_early)
