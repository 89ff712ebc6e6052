"""Mixed-model fitting: reproduces lme4/lmerTest on sleepstudy, and never passes off a failed fit as a result.

R's numbers are the committed fixtures in tests/reference/lmm/ (made by make_reference.R), not numbers
copied into this file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.errors import ModelError
from analysis.model.fit import fit_mixed, fit_mixed_with_fallback, linear_contrast, mixed_summary
from reference.make_reference_data import TOY_CASES, no_slope_variance

# --------------------------------------------------------------------------- tolerances (relative unless said)
# The same as tests/test_lmm_reference.py, which says where each number comes from (just above the noise
# of R's own numbers between regenerations): the formula interface must agree with R as the engine does.
DF_REL = 3e-5  # Satterthwaite df (noise 1e-5)
SE_REL = 3e-6  # SEs (noise 1e-6)
VC_REL = 3e-5  # variance components, covariance and theta (noise 1e-5)
ZERO_ABS = 1e-6  # theta components lme4 puts at 0, absolute
BETA_REL = 1e-5  # fixed effects: 10x the largest difference seen (7.5e-7)
DEV_ABS = 1e-7  # REML criterion, absolute

SLEEP = Path(__file__).parent / "fixtures" / "sleepstudy.csv"
LMM_REF = Path(__file__).parent / "reference" / "lmm"


def _ref(case: str) -> dict[str, Any]:
    """R's numbers for one case of tests/reference/lmm/, keyed by the project's term names."""
    ref: dict[str, Any] = json.loads((LMM_REF / f"{case}.json").read_text())
    term = ref["term_map"]
    ref["beta_t"] = {term[x]: v for x, v in ref["beta"].items()}
    ref["se_t"] = {term[x]: v for x, v in ref["se"].items()}
    ref["var_t"] = {term[x]: v for x, v in ref["varcorr"]["variances"].items()}
    ref["satt_t"] = {term[x]: v for x, v in ref["satterthwaite"].items()}
    return ref


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    return pd.read_csv(SLEEP, dtype={"Subject": str})


@pytest.fixture(scope="module")
def sleep_fit(sleep):
    return fit_mixed(sleep, "Reaction ~ Days", "Subject", "~Days", reml=True)


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def test_sleepstudy_fixture_is_the_lme4_data(sleep):
    assert sleep.shape == (180, 3)
    assert sleep["Subject"].nunique() == 18
    assert sorted(sleep["Days"].unique()) == list(range(10))
    assert sleep["Reaction"].sum() == pytest.approx(53731.4205, abs=1e-6)


def test_sleepstudy_random_slope_matches_lme4(sleep_fit):
    ref = _ref("sleepstudy")  # lmer(Reaction ~ Days + (Days | Subject), sleepstudy, REML = TRUE)
    assert sleep_fit.status == "ok" and sleep_fit.converged and sleep_fit.result is not None
    s = mixed_summary(sleep_fit)
    fe = s["fixed_effects"]
    for term in ("Intercept", "Days"):
        assert fe[term]["estimate"] == pytest.approx(ref["beta_t"][term], rel=BETA_REL), term
        assert fe[term]["se"] == pytest.approx(ref["se_t"][term], rel=SE_REL), term
    re = s["random_effects"]
    vc = ref["varcorr"]
    assert re["variances"]["Intercept"] == pytest.approx(ref["var_t"]["Intercept"], rel=VC_REL)
    assert re["variances"]["Days"] == pytest.approx(ref["var_t"]["Days"], rel=VC_REL)
    assert re["covariance"]["cov(Intercept, Days)"] == pytest.approx(vc["covariance"], rel=VC_REL)
    assert re["residual_variance"] == pytest.approx(vc["residual"], rel=VC_REL)
    assert re["correlation"]["corr(Intercept, Days)"] == pytest.approx(vc["correlation"], rel=VC_REL)
    checks = s["checks"]
    assert checks["converged"] and not checks["singular"] and checks["boundary_ok"]
    assert checks["gradient_max"] < 1e-4 and checks["hessian_min_eig"] > 0
    assert checks["deviance"] == pytest.approx(ref["deviance"], abs=DEV_ABS)  # lme4 REMLcrit
    assert (sleep_fit.n_groups, sleep_fit.n_obs) == (18, 180)


def test_sleepstudy_random_intercept_matches_lme4(sleep):
    ref = _ref("sleepstudy_ri")  # lmer(Reaction ~ Days + (1 | Subject), sleepstudy, REML = TRUE)
    fit = fit_mixed(sleep, "Reaction ~ Days", "Subject", None)
    s = mixed_summary(fit)
    assert fit.status == "ok"
    assert s["random_effects"]["variances"]["Intercept"] == pytest.approx(ref["var_t"]["Intercept"], rel=VC_REL)
    assert s["random_effects"]["residual_variance"] == pytest.approx(ref["varcorr"]["residual"], rel=VC_REL)
    for term in ("Intercept", "Days"):
        assert s["fixed_effects"][term]["estimate"] == pytest.approx(ref["beta_t"][term], rel=BETA_REL), term
        assert s["fixed_effects"][term]["se"] == pytest.approx(ref["se_t"][term], rel=SE_REL), term
        assert s["fixed_effects"][term]["df"] == pytest.approx(ref["satt_t"][term]["df"], rel=DF_REL), term


def test_summary_t_interval_with_satterthwaite_df(sleep_fit):
    # lmerTest's df for Days: 17 (18 subjects, balanced), to R's precision
    d = mixed_summary(sleep_fit, alpha=0.05)["fixed_effects"]["Days"]
    assert d["df_method"] == "satterthwaite"
    assert d["df"] == pytest.approx(_ref("sleepstudy")["satt_t"]["Days"]["df"], rel=DF_REL)
    crit = stats.t.ppf(0.975, d["df"])
    assert d["ci_low"] == pytest.approx(d["estimate"] - crit * d["se"], rel=1e-6)
    assert d["ci_high"] == pytest.approx(d["estimate"] + crit * d["se"], rel=1e-6)
    assert d["p_value"] == pytest.approx(2 * stats.t.sf(d["estimate"] / d["se"], d["df"]), rel=1e-6)


def test_z_method_gives_wald_interval(sleep):
    fit = fit_mixed(sleep, "Reaction ~ Days", "Subject", "~Days", df_method="z")
    d = linear_contrast(fit, {"Days": 1.0})
    assert d["df"] is None and d["df_method"] == "z"
    assert d["ci_low"] == pytest.approx(d["estimate"] - 1.959964 * d["se"], rel=1e-6)


def test_linear_contrast_scales_a_coefficient(sleep_fit):
    one = linear_contrast(sleep_fit, {"Days": 1.0})
    six = linear_contrast(sleep_fit, {"Days": 6.0})
    assert six["estimate"] == pytest.approx(6 * one["estimate"])
    assert six["se"] == pytest.approx(6 * one["se"])
    assert six["p_value"] == pytest.approx(one["p_value"])
    both = linear_contrast(sleep_fit, {"Intercept": 1.0, "Days": 6.0})
    # Intercept + 6 * Days: the mean reaction time on day 6
    beta = _ref("sleepstudy")["beta_t"]
    assert both["estimate"] == pytest.approx(beta["Intercept"] + 6 * beta["Days"], rel=BETA_REL)


def test_linear_contrast_rejects_unknown_terms(sleep_fit):
    with pytest.raises(ModelError, match="not fixed effects"):
        linear_contrast(sleep_fit, {"Weeks": 1.0})


def test_toy_fixtures_hold_the_data_the_tests_fit():
    for case, seed in TOY_CASES.items():
        data, fixture = no_slope_variance(seed), pd.read_csv(LMM_REF / f"{case}.csv", dtype={"group": str})
        assert fixture["group"].tolist() == data["g"].tolist(), case
        np.testing.assert_array_equal(fixture["x_t"], data["t"], err_msg=case)
        np.testing.assert_array_equal(fixture["y"], data["y"], err_msg=case)


def test_zero_slope_variance_is_singular_then_falls_back_loudly():
    ref = _ref("toy_singular")  # lme4: the slope component of theta at 0, isSingular TRUE
    assert ref["isSingular"]
    data = no_slope_variance(TOY_CASES["toy_singular"])
    fit = fit_mixed(data, "y ~ t", "g", "~t")
    assert fit.status == "failed" and fit.result is None and fit.converged and fit.checks["singular"]
    assert "singular" in fit.reason and "correlation" in fit.reason
    assert fit.checks["theta"] == pytest.approx(ref["theta"], rel=VC_REL, abs=ZERO_ABS)
    assert fit.checks["deviance"] == pytest.approx(ref["deviance"], abs=DEV_ABS)
    assert len(fit.attempts) == 1 and not fit.attempts[0]["ok"]
    with pytest.raises(ModelError, match="trustworthy"):
        linear_contrast(fit, {"t": 1.0})
    assert mixed_summary(fit)["fixed_effects"] == {}

    fb = fit_mixed_with_fallback(data, "y ~ t", "g", "~t")
    assert fb.status == "fallback" and fb.result is not None and fb.re_formula is None
    assert "random intercept only" in fb.reason and "~t" in fb.reason
    assert linear_contrast(fb, {"t": 1.0})["estimate"] == pytest.approx(-0.3, abs=0.05)


def test_saddle_at_the_bound_is_escaped_not_called_singular():
    # The gradient of a diagonal theta is exactly 0 when its column of T is 0, so a gradient optimiser
    # can stop there. lme4 on these data: an interior optimum (every theta component non-zero), not singular.
    ref = _ref("toy_saddle")
    assert not ref["isSingular"]
    fit = fit_mixed(no_slope_variance(TOY_CASES["toy_saddle"]), "y ~ t", "g", "~t")
    assert fit.status == "ok" and not fit.checks["singular"]
    assert fit.checks["theta"] == pytest.approx(ref["theta"], rel=VC_REL, abs=ZERO_ABS)
    assert fit.checks["deviance"] == pytest.approx(ref["deviance"], abs=DEV_ABS)


def test_aliased_terms_are_dropped_and_said_as_lme4_does():
    data = no_slope_variance().assign(t2=lambda d: 2 * d["t"])
    fit = fit_mixed(data, "y ~ t + t2", "g", None)
    assert fit.status == "ok" and fit.dropped == ["t2"] and fit.checks["dropped_terms"] == ["t2"]
    assert list(fit.result.fe_params.index) == ["Intercept", "t"]
    # the same as the model without the aliased term
    plain = fit_mixed(data, "y ~ t", "g", None)
    assert fit.result.fe_params["t"] == pytest.approx(plain.result.fe_params["t"], rel=1e-10)
    with pytest.raises(ModelError, match="not fixed effects"):
        linear_contrast(fit, {"t2": 1.0})


def test_missing_values_are_an_error_not_dropped():
    data = no_slope_variance()
    data.loc[3, "y"] = np.nan
    with pytest.raises(ModelError, match="cannot be built"):
        fit_mixed(data, "y ~ t", "g", None)


def test_unknown_column_is_a_clear_error():
    with pytest.raises(ModelError, match="cannot be built"):
        fit_mixed(no_slope_variance(), "y ~ t + nonexistent", "g", None)
