"""Mixed-model fitting: reproduces lme4/lmerTest on sleepstudy, and never passes off a failed fit as a result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.errors import ModelError
from analysis.model.fit import fit_mixed, fit_mixed_with_fallback, linear_contrast, mixed_summary

SLEEP = Path(__file__).parent / "fixtures" / "sleepstudy.csv"


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
    # lme4: lmer(Reaction ~ Days + (Days | Subject), sleepstudy, REML = TRUE)
    assert sleep_fit.status == "ok" and sleep_fit.converged and sleep_fit.result is not None
    s = mixed_summary(sleep_fit)
    fe = s["fixed_effects"]
    assert _rel(fe["Intercept"]["estimate"], 251.405) < 1e-3
    assert _rel(fe["Days"]["estimate"], 10.467) < 1e-3
    assert _rel(fe["Intercept"]["se"], 6.825) < 1e-3
    assert _rel(fe["Days"]["se"], 1.546) < 1e-3
    re = s["random_effects"]
    assert _rel(re["variances"]["Intercept"], 612.10) < 1e-3
    assert _rel(re["variances"]["Days"], 35.07) < 1e-3
    assert _rel(re["covariance"]["cov(Intercept, Days)"], 9.60) < 2e-3  # published to 3 significant digits
    assert _rel(re["residual_variance"], 654.94) < 1e-3
    assert re["correlation"]["corr(Intercept, Days)"] == pytest.approx(0.066, abs=1e-3)
    checks = s["checks"]
    assert checks["converged"] and not checks["singular"] and checks["boundary_ok"]
    assert checks["gradient_max"] < 1e-4 and checks["hessian_min_eig"] > 0
    assert checks["deviance"] == pytest.approx(1743.6283, abs=1e-3)  # lme4 REMLcrit
    assert (sleep_fit.n_groups, sleep_fit.n_obs) == (18, 180)


def test_sleepstudy_random_intercept_matches_lme4(sleep):
    # lme4: lmer(Reaction ~ Days + (1 | Subject), sleepstudy): variances 1378.2 and 960.5, SEs 9.747 and 0.804
    fit = fit_mixed(sleep, "Reaction ~ Days", "Subject", None)
    s = mixed_summary(fit)
    assert fit.status == "ok"
    assert _rel(s["random_effects"]["variances"]["Intercept"], 1378.2) < 1e-3
    assert _rel(s["random_effects"]["residual_variance"], 960.5) < 1e-3
    assert _rel(s["fixed_effects"]["Intercept"]["se"], 9.747) < 1e-3
    assert _rel(s["fixed_effects"]["Days"]["se"], 0.8042) < 1e-3


def test_summary_t_interval_with_satterthwaite_df(sleep_fit):
    # lmerTest: summary(lmer(...)) gives df = 17 for Days (18 subjects, balanced)
    d = mixed_summary(sleep_fit, alpha=0.05)["fixed_effects"]["Days"]
    assert d["df_method"] == "satterthwaite" and d["df"] == pytest.approx(17.0, rel=1e-4)
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
    assert both["estimate"] == pytest.approx(251.405 + 6 * 10.467, rel=1e-4)


def test_linear_contrast_rejects_unknown_terms(sleep_fit):
    with pytest.raises(ModelError, match="not fixed effects"):
        linear_contrast(sleep_fit, {"Weeks": 1.0})


def _no_slope_variance(seed: int = 11, n_groups: int = 40) -> pd.DataFrame:
    """Random intercepts only: every group has exactly the same slope."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), 6)
    t = np.tile(np.arange(6, dtype=float), n_groups)
    y = 5 + rng.normal(0, 1.0, n_groups)[g] - 0.3 * t + rng.normal(0, 0.5, len(g))
    return pd.DataFrame({"g": [f"g{i:02d}" for i in g], "t": t, "y": y})


def test_zero_slope_variance_is_singular_then_falls_back_loudly():
    # lme4 on these data: theta = (1.930032, -0.01121186, 0), isSingular TRUE, REMLcrit 442.1144
    data = _no_slope_variance()
    fit = fit_mixed(data, "y ~ t", "g", "~t")
    assert fit.status == "failed" and fit.result is None and fit.converged and fit.checks["singular"]
    assert "singular" in fit.reason and "correlation" in fit.reason
    assert fit.checks["theta"] == pytest.approx([1.930032, -0.01121186, 0.0], abs=2e-6)
    assert fit.checks["deviance"] == pytest.approx(442.1144, abs=1e-4)
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
    # can stop there. lme4 (bobyqa) on these data: theta = (2.171218, -0.07082155, 0.06808069), not singular.
    fit = fit_mixed(_no_slope_variance(seed=13), "y ~ t", "g", "~t")
    assert fit.status == "ok" and not fit.checks["singular"]
    assert fit.checks["theta"] == pytest.approx([2.171218, -0.07082155, 0.06808069], abs=2e-6)
    assert fit.checks["deviance"] == pytest.approx(518.0185, abs=1e-4)


def test_aliased_terms_are_dropped_and_said_as_lme4_does():
    data = _no_slope_variance().assign(t2=lambda d: 2 * d["t"])
    fit = fit_mixed(data, "y ~ t + t2", "g", None)
    assert fit.status == "ok" and fit.dropped == ["t2"] and fit.checks["dropped_terms"] == ["t2"]
    assert list(fit.result.fe_params.index) == ["Intercept", "t"]
    # the same as the model without the aliased term
    plain = fit_mixed(data, "y ~ t", "g", None)
    assert fit.result.fe_params["t"] == pytest.approx(plain.result.fe_params["t"], rel=1e-10)
    with pytest.raises(ModelError, match="not fixed effects"):
        linear_contrast(fit, {"t2": 1.0})


def test_missing_values_are_an_error_not_dropped():
    data = _no_slope_variance()
    data.loc[3, "y"] = np.nan
    with pytest.raises(ModelError, match="cannot be built"):
        fit_mixed(data, "y ~ t", "g", None)


def test_unknown_column_is_a_clear_error():
    with pytest.raises(ModelError, match="cannot be built"):
        fit_mixed(_no_slope_variance(), "y ~ t + nonexistent", "g", None)
