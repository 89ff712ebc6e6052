"""The engine against R: lme4 (estimates, vcov, variance components, criterion, BLUPs, isSingular),
lmerTest (Satterthwaite df) and pbkrtest (Kenward-Roger SE and df), on committed reference numbers.

The cases (tests/reference/README.md) cover balanced and unbalanced designs, a fixed-effects design
that differs from the random-effects design, ML and REML, random intercept and intercept + slope,
singular fits and a small clinic. Tolerances are the project's: fixed effects and SEs 1e-4 relative
(1e-6 absolute near zero), variance components 1e-3, df 1e-2 relative. R is not needed to run them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.model import lmm
from reference.agreement import fit_case

REF = Path(__file__).parent / "reference" / "lmm"
CASES = sorted(p.stem for p in REF.glob("*.json") if p.stem != "versions" and not p.stem.endswith(".design"))


def _close(a, b, rel: float, abs_: float = 0.0) -> bool:
    return bool(
        np.all(
            np.abs(np.asarray(a, float) - np.asarray(b, float)) <= np.maximum(rel * np.abs(np.asarray(b, float)), abs_)
        )
    )


@pytest.fixture(scope="module", params=CASES)
def case(request):
    return fit_case(request.param)


def test_every_case_is_there():
    assert len(CASES) >= 8
    assert {"sleepstudy", "btheb_ri_ml", "btheb_rs_reml", "singular", "clinic_50", "clinic_400"} <= set(CASES)


def test_criterion_theta_and_convergence(case):
    ref, fit = case
    assert fit.converged, fit.optimum.reason
    assert fit.singular == bool(ref["isSingular"])
    # the criterion at the optimum: ours may only be lower (a better optimum), never higher
    assert fit.deviance == pytest.approx(ref["deviance"], abs=1e-5)
    # theta: the optimum itself; where lme4 is singular its zero components agree to its own precision
    assert _close(fit.theta, ref["theta"], rel=1e-3, abs_=1e-4)


def test_fixed_effects_and_vcov(case):
    ref, fit = case
    names = ref["fixed_names"]
    beta = np.array([ref["beta"][n] for n in names])
    se = np.array([ref["se"][n] for n in names])
    assert _close(fit.fe_params[names].to_numpy(), beta, rel=1e-4, abs_=1e-6)
    assert _close(np.sqrt(np.diag(fit.vcov)), se, rel=1e-4, abs_=1e-6)
    assert _close(fit.vcov, np.array(ref["vcov"]), rel=1e-4, abs_=1e-6 * float(np.max(np.abs(ref["vcov"]))))


def test_variance_components(case):
    ref, fit = case
    vc = ref["varcorr"]
    assert fit.sigma2 == pytest.approx(vc["residual"], rel=1e-3)
    for i, n in enumerate(ref["re_names"]):
        assert fit.cov_re[i, i] == pytest.approx(vc["variances"][n], rel=1e-3, abs=1e-6 * vc["residual"])


def test_conditional_modes_and_fitted(case):
    ref, fit = case
    b = fit.random_effects
    groups = sorted(ref["ranef"])
    ours = b.loc[groups].to_numpy()
    theirs = np.array([ref["ranef"][g] for g in groups])
    scale = float(np.max(np.abs(theirs))) or 1.0
    assert _close(ours, theirs, rel=1e-3, abs_=1e-4 * scale)
    head = np.asarray(ref["fitted_head"])
    assert _close(fit.fitted[: len(head)], head, rel=1e-5, abs_=1e-6 * float(np.max(np.abs(head))))


def test_satterthwaite_df_per_coefficient(case):
    ref, fit = case
    if ref["isSingular"]:
        pytest.skip("lmerTest's Hessian at a singular fit is rank-deficient; df there are not a reference")
    for i, n in enumerate(ref["fixed_names"]):
        c = fit.contrast(np.eye(len(ref["fixed_names"]))[i], "satterthwaite")
        assert c["df"] == pytest.approx(ref["satterthwaite"][n]["df"], rel=1e-2), n
        assert c["p_value"] == pytest.approx(ref["satterthwaite"][n]["p"], rel=1e-2, abs=1e-10), n


def test_kenward_roger_se_and_df_per_coefficient(case):
    ref, fit = case
    if not ref.get("kenward_roger"):
        pytest.skip("no Kenward-Roger reference: lmerTest gives KR for REML, non-singular fits only")
    for i, n in enumerate(ref["fixed_names"]):
        c = fit.contrast(np.eye(len(ref["fixed_names"]))[i], "kenward_roger")
        assert c["se"] == pytest.approx(ref["kenward_roger"][n]["se_adj"], rel=1e-4), n
        assert c["df"] == pytest.approx(ref["kenward_roger"][n]["df"], rel=1e-2), n


def test_contrasts(case):
    ref, fit = case
    for con in ref["contrasts"]:
        L = con["L"]
        sat = fit.contrast(L, "satterthwaite")
        assert sat["estimate"] == pytest.approx(con["estimate"], rel=1e-4, abs=1e-6), con["name"]
        assert sat["se"] == pytest.approx(con["se"], rel=1e-4), con["name"]
        if ref["isSingular"]:
            continue
        assert sat["df"] == pytest.approx(con["satterthwaite_df"], rel=1e-2), con["name"]
        if con.get("kr_df") is not None:
            kr = fit.contrast(L, "kenward_roger")
            assert kr["se"] == pytest.approx(con["kr_se"], rel=1e-4), con["name"]
            assert kr["df"] == pytest.approx(con["kr_df"], rel=1e-2), con["name"]


def test_statsmodels_cross_check_on_btheb():
    """An independent implementation agrees on the estimates (statsmodels' MixedLM, REML, random intercept).

    Its SEs are not compared: statsmodels inverts the joint (beta, theta) Hessian, lme4 and the engine use
    sigma^2 (X'V^-1 X)^-1.
    """
    import warnings

    from statsmodels.regression.mixed_linear_model import MixedLM
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

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
