"""The engine against R: lme4 (estimates, vcov, variance components, criterion, BLUPs, isSingular),
lmerTest (Satterthwaite df) and pbkrtest (Kenward-Roger SE and df), on committed reference numbers.

The cases (tests/reference/README.md) cover balanced and unbalanced designs, a fixed-effects design
that differs from the random-effects design, ML and REML, random intercept and intercept + slope,
singular fits and a small clinic. The tolerances below sit just above the noise of R itself (how much
R's numbers move when every fixture is regenerated), so a 0.1 % error in any df, SE, variance component
or estimate fails (tests/reference/mutation.py proves it). R is not needed to run them.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.regression.mixed_linear_model import MixedLM
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from analysis.join import build_analysis_dataset
from analysis.model import lmm, specification
from analysis.model.prepare import primary_data
from analysis.params import load_params
from analysis.simulate import simulate_clinic
from reference.agreement import fit_case

# --------------------------------------------------------------------------- tolerances (relative unless said)
# "Noise" = the largest change in R's own numbers when every fixture was regenerated; "seen" = the largest
# difference between the engine and R over all cases (tests/reference/agreement.py). Each tolerance is just
# above the noise (about 3x), and at least 10x above what is seen.
#: Satterthwaite and Kenward-Roger df, of coefficients and contrasts: noise 1e-5 (seen <= 2.7e-7).
DF_REL = 3e-5
#: SEs, vcov (relative to its largest entry) and KR-adjusted SEs: noise 1e-6 (seen <= 1.6e-7).
SE_REL = 3e-6
#: Variance components (residual, random-effect variances) and theta: noise 1e-5 (seen <= 2.1e-6).
VC_REL = 3e-5
#: Floor for components that are 0 at a singular fit: theta absolute, variances x residual variance
#: (seen <= 1.8e-7; a zero component cannot carry a relative error).
ZERO_ABS = 1e-6
#: Fixed effects and contrast estimates: no noise figure, so 10x the largest seen (7.5e-7, btheb_rs_ml).
BETA_REL = 1e-5
#: ... and near zero, a fraction of the coefficient's SE (seen <= 7.5e-8 SE).
BETA_ABS_SE = 1e-6
#: Conditional modes, relative to the largest |b| of the case: they move with theta (noise 1e-5; seen 1.2e-7).
RANEF_REL = 3e-5
#: Fitted values, relative to the largest |fitted|: they move with beta and b (seen 4.1e-8).
FITTED_REL = 1e-6
#: p-values: the noise of SE (1e-6) and df (1e-5) carried through the t distribution, largest at
#: toy_saddle's intercept (|t| = 27, df = 39): 4.4e-4 relative (seen <= 3.6e-6); absolute floor 1e-12.
P_REL, P_ABS = 1e-3, 1e-12
#: REML criterion / deviance, absolute: bobyqa and nloptwrap agree to 3e-11 (seen <= 4.9e-11); an error
#: of 1e-5 in theta moves the criterion at its optimum by ~1e-10.
DEV_ABS = 1e-7

REF = Path(__file__).parent / "reference" / "lmm"
CASES = sorted(p.stem for p in REF.glob("*.json") if p.stem != "versions" and not p.stem.endswith(".design"))


def _close(a, b, rel: float, abs_=0.0) -> bool:
    """``|a - b| <= max(rel |b|, abs_)`` elementwise (``abs_`` may be an array)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return bool(np.all(np.abs(a - b) <= np.maximum(rel * np.abs(b), abs_)))


@pytest.fixture(scope="module", params=CASES)
def case(request):
    return fit_case(request.param)


def _has_kenward_roger(ref) -> bool:
    """make_reference.R computes pbkrtest's KR for REML, non-singular fits (and only those)."""
    return bool(ref["reml"]) and not ref["isSingular"]


def test_every_case_is_there():
    assert len(CASES) >= 8
    assert {"sleepstudy", "btheb_ri_ml", "btheb_rs_reml", "singular", "clinic_50", "clinic_400"} <= set(CASES)


def test_criterion_theta_and_convergence(case):
    ref, fit = case
    assert fit.converged, fit.optimum.reason
    assert fit.singular == bool(ref["isSingular"])
    # the same optimum as lme4: the criterion agrees within DEV_ABS either way. Lower would mean lme4
    # stopped early (its two optimisers, in optimizer_check, agree to 3e-11), higher that we did.
    assert fit.deviance == pytest.approx(ref["deviance"], abs=DEV_ABS)
    # theta: the optimum itself; components lme4 puts at 0 (singular fits) agree to ZERO_ABS
    assert _close(fit.theta, ref["theta"], rel=VC_REL, abs_=ZERO_ABS)


def test_fixed_effects_and_vcov(case):
    ref, fit = case
    names = ref["fixed_names"]
    beta = np.array([ref["beta"][n] for n in names])
    se = np.array([ref["se"][n] for n in names])
    assert _close(fit.fe_params[names].to_numpy(), beta, rel=BETA_REL, abs_=BETA_ABS_SE * se)
    assert _close(np.sqrt(np.diag(fit.vcov)), se, rel=SE_REL)
    V = np.array(ref["vcov"])
    assert _close(fit.vcov, V, rel=0.0, abs_=SE_REL * float(np.max(np.abs(V))))


def test_variance_components(case):
    ref, fit = case
    vc = ref["varcorr"]
    assert fit.sigma2 == pytest.approx(vc["residual"], rel=VC_REL)
    for i, n in enumerate(ref["re_names"]):
        assert fit.cov_re[i, i] == pytest.approx(vc["variances"][n], rel=VC_REL, abs=ZERO_ABS * vc["residual"]), n
    if len(ref["re_names"]) > 1:
        assert fit.cov_re[0, 1] == pytest.approx(vc["covariance"], rel=VC_REL, abs=ZERO_ABS * vc["residual"])


def test_conditional_modes_and_fitted(case):
    ref, fit = case
    b = fit.random_effects
    groups = sorted(ref["ranef"])
    assert len(groups) == ref["n_groups"]
    ours = b.loc[groups].to_numpy()
    theirs = np.array([ref["ranef"][g] for g in groups])
    scale = float(np.max(np.abs(theirs))) or 1.0
    assert _close(ours, theirs, rel=0.0, abs_=RANEF_REL * scale)
    head = np.asarray(ref["fitted_head"])
    assert _close(fit.fitted[: len(head)], head, rel=0.0, abs_=FITTED_REL * float(np.max(np.abs(head))))


def test_satterthwaite_df_per_coefficient(case):
    ref, fit = case
    if ref["isSingular"]:
        pytest.skip("lmerTest's Hessian at a singular fit is rank-deficient; df there are not a reference")
    for i, n in enumerate(ref["fixed_names"]):
        c = fit.contrast(np.eye(len(ref["fixed_names"]))[i], "satterthwaite")
        assert c["df"] == pytest.approx(ref["satterthwaite"][n]["df"], rel=DF_REL), n
        assert c["p_value"] == pytest.approx(ref["satterthwaite"][n]["p"], rel=P_REL, abs=P_ABS), n


def test_kenward_roger_se_and_df_per_coefficient(case):
    ref, fit = case
    assert bool(ref.get("kenward_roger")) == _has_kenward_roger(ref), "KR reference missing or unexpected"
    if not _has_kenward_roger(ref):
        pytest.skip("no Kenward-Roger reference: make_reference.R computes it for REML, non-singular fits only")
    for i, n in enumerate(ref["fixed_names"]):
        c = fit.contrast(np.eye(len(ref["fixed_names"]))[i], "kenward_roger")
        assert c["se"] == pytest.approx(ref["kenward_roger"][n]["se_adj"], rel=SE_REL), n
        assert c["df"] == pytest.approx(ref["kenward_roger"][n]["df"], rel=DF_REL), n


def test_contrasts(case):
    ref, fit = case
    assert ref["contrasts"], "every case has at least one contrast of interest"
    for con in ref["contrasts"]:
        L, name = con["L"], con["name"]
        sat = fit.contrast(L, "satterthwaite")
        se = con["se"]
        assert sat["estimate"] == pytest.approx(con["estimate"], rel=BETA_REL, abs=BETA_ABS_SE * se), name
        assert sat["se"] == pytest.approx(se, rel=SE_REL), name
        assert ("kr_df" in con) == _has_kenward_roger(ref), f"{name}: KR reference missing or unexpected"
        if ref["isSingular"]:
            continue  # Satterthwaite df at a singular fit are not a reference (see above); estimate and SE are
        assert sat["df"] == pytest.approx(con["satterthwaite_df"], rel=DF_REL), name
        assert sat["p_value"] == pytest.approx(con["satterthwaite_p"], rel=P_REL, abs=P_ABS), name
        if _has_kenward_roger(ref):
            kr = fit.contrast(L, "kenward_roger")
            assert kr["se"] == pytest.approx(con["kr_se"], rel=SE_REL), name
            assert kr["df"] == pytest.approx(con["kr_df"], rel=DF_REL), name
            assert kr["p_value"] == pytest.approx(con["kr_p"], rel=P_REL, abs=P_ABS), name


def test_statsmodels_cross_check_on_btheb():
    """An independent implementation agrees on the estimates (statsmodels' MixedLM, REML, random intercept).

    Its SEs are not compared: statsmodels inverts the joint (beta, theta) Hessian, lme4 and the engine use
    sigma^2 (X'V^-1 X)^-1. It is a cross-check, not a reference: its optimiser is not run to lme4's
    precision, so the tolerances here are the project's original 1e-4 (estimates) and 1e-3 (variances).
    """
    ref = json.loads((REF / "btheb_ri_reml.json").read_text())
    data = pd.read_csv(REF / "btheb_ri_reml.csv", dtype={"group": str})
    X = data[ref["fixed_names"]].to_numpy()
    with warnings.catch_warnings():
        # statsmodels may warn that its own optimiser's convergence is uncertain; its estimates are judged below
        warnings.simplefilter("ignore", ConvergenceWarning)
        sm = MixedLM(data["y"].to_numpy(), X, groups=data["group"].to_numpy()).fit(reml=True, method=["lbfgs"])
    ours = lmm.fit(lmm.from_arrays(X, np.ones((len(X), 1)), data["y"].to_numpy(), data["group"].to_numpy()), reml=True)
    assert _close(sm.fe_params, ours.fe_params.to_numpy(), rel=1e-4, abs_=1e-6)
    assert float(np.asarray(sm.cov_re)[0, 0]) == pytest.approx(ours.cov_re[0, 0], rel=1e-3)
    assert float(sm.scale) == pytest.approx(ours.sigma2, rel=1e-3)


# --------------------------------------------------------------------------- the time-trend sensitivity analysis


def _ref(name: str) -> dict:
    return json.loads((REF / f"{name}.json").read_text())


def test_piecewise_fixture_has_the_projects_basis():
    """R fitted the hinge column the project computes (analysis.model.specification.piecewise_basis)."""
    data = pd.read_csv(REF / "clinic_50_piecewise.csv", dtype={"group": str})
    basis = specification.piecewise_basis(data["x_week"], [6.0])
    assert np.array_equal(data["x_week_after1"].to_numpy(), basis["week_after1"].to_numpy())
    assert np.array_equal(data["x_week_after1_hip"].to_numpy(), (basis["week_after1"] * data["x_hip"]).to_numpy())


def test_time_trend_analysis_agrees_with_lme4():
    """The analysis itself, on the clinic R fitted: the estimate at week 6 (lme4 + lmerTest) and the
    likelihood-ratio test of the linear against the piecewise trend (ML deviances of lme4)."""
    params = load_params()
    cfg = params.model
    clinic = simulate_clinic(params.simulate, 3, n_clients=62, primary_week=cfg.primary_week)
    pdata = primary_data(build_analysis_dataset(clinic.clients, clinic.sessions, clinic.measurements), cfg)
    out, _ = specification.time_trend_analysis(pdata, cfg)
    ref = _ref("clinic_50_piecewise")
    con = next(c for c in ref["contrasts"] if c["name"].startswith("headline"))
    assert out["estimate"] == pytest.approx(con["estimate"], rel=BETA_REL, abs=BETA_ABS_SE * con["se"])
    assert out["se"] == pytest.approx(con["se"], rel=SE_REL)
    assert out["df"] == pytest.approx(con["satterthwaite_df"], rel=DF_REL)
    assert out["p_value"] == pytest.approx(con["satterthwaite_p"], rel=P_REL, abs=P_ABS)
    knot = next(c for c in ref["contrasts"] if c["name"] == "slope change at the knot")
    mine = out["slope_change"]["week_after1:hip"]
    assert mine["estimate"] == pytest.approx(knot["estimate"], rel=BETA_REL, abs=BETA_ABS_SE * knot["se"])
    assert mine["df"] == pytest.approx(knot["satterthwaite_df"], rel=DF_REL)
    d0, d1 = _ref("clinic_50_ml")["deviance"], _ref("clinic_50_piecewise_ml")["deviance"]
    lrt = out["likelihood_ratio"]
    assert lrt["deviance_linear"] == pytest.approx(d0, abs=DEV_ABS)
    assert lrt["deviance_piecewise"] == pytest.approx(d1, abs=DEV_ABS)
    assert lrt["df"] == 2
    assert lrt["p_value"] == pytest.approx(stats.chi2.sf(d0 - d1, 2), rel=P_REL)
    assert out["linear_adequate"] is True  # the generator's trend is linear


def test_difference_weights_past_the_knot_match_the_reference_contrast():
    ref = _ref("clinic_50_piecewise")
    con = next(c for c in ref["contrasts"] if c["name"] == "difference in change at week 9")
    mapped = {ref["term_map"][k]: v for k, v in con["L"].items()}
    assert specification.difference_weights([6.0], 9.0) == pytest.approx(mapped)
