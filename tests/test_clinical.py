"""The answer in clinical terms (analysis.report.clinical): sentences generated from tiny typed results."""

from __future__ import annotations

from dataclasses import replace

import pytest

from analysis.report import clinical, summary
from conftest import results_from


@pytest.fixture
def nprs(registry):
    return registry["knee_pain_nprs"]


def _primary(est: float, lo: float, hi: float) -> dict:
    return {"primary": {"status": "ok", "estimate": est, "ci_low": lo, "ci_high": hi}}


def test_headline_is_set_against_the_mcid(nprs):
    text = clinical.mcid_sentence(results_from(_primary(-0.93, -1.67, -0.2)), nprs)
    assert "about 2 NPRS points" in text and "0.9 points" in text and "less than half of that" in text
    assert "(1.7 points) stays below it" in text and "unlikely" in text
    # the registry's NPRS MDC (2 points) is what one client's change can show; the group difference is judged
    # by the MCID
    assert "smaller than about 2 points (the minimal detectable change, MDC)" in text
    no_mdc = clinical.mcid_sentence(results_from(_primary(-0.93, -1.67, -0.2)), replace(nprs, mdc_points=None))
    assert "no minimal detectable change (MDC)" in no_mdc  # none in the registry: said, not invented
    wide = clinical.mcid_sentence(results_from(_primary(-1.9, -3.5, -0.3)), nprs)
    assert "about the same as that" in wide and "reaches 3.5 points" in wide and "cannot be ruled out" in wide


def test_no_mcid_comparison_without_an_estimate(nprs):
    r = results_from({"primary": {"status": "failed", "reason": "x", "estimate": None}})
    assert clinical.mcid_sentence(r, nprs) == ""


def _responders(rd: tuple[float, float, float], nnt: dict) -> dict:
    return {
        "secondary": {
            "responders": {
                "status": "done",
                "share_hip_focused": 0.68,
                "share_comparator": 0.5625,
                "risk_difference": {"estimate": rd[0], "ci_low": rd[1], "ci_high": rd[2]},
                "nnt": nnt,
            }
        }
    }


def test_responders_without_a_meaningful_nnt():
    nnt = {"nnt": 8.45, "kind": "benefit", "ci_low": None, "ci_high": None}
    text = clinical.responder_sentence(results_from(_responders((0.118, -0.065, 0.286), nnt)), 6)
    assert text.startswith("By week 6, 68% of hip-focused and 56% of knee-focused clients")
    assert "difference 12 percentage points, 95% CI -6 to 29" in text.replace("−", "-")
    assert "no number needed to treat is given" in text and "8.4" not in text


def test_responders_with_an_nnt_and_its_ci():
    nnt = {"nnt": 4.0, "kind": "benefit", "ci_low": 2.2, "ci_high": 20.0}
    text = clinical.responder_sentence(results_from(_responders((0.25, 0.05, 0.45), nnt)), 6)
    assert "about 4 clients would need hip-focused rather than knee-focused care for one more" in text
    assert "number needed to treat 4.0, 95% CI 2.2 to 20.0" in text
    assert "withheld" in clinical.responder_sentence(results_from(_responders((0.25, 0.05, 0.45), nnt)), 6, False)


def _trend(p: float, adequate: bool) -> dict:
    return {
        "secondary": {
            "time_trend": {
                "status": "done",
                "estimate": -0.93,
                "ci_low": -1.7,
                "ci_high": -0.15,
                "knots": [6.0],
                "likelihood_ratio": {"statistic": 0.15, "df": 2, "p_value": p},
                "linear_adequate": adequate,
            }
        }
    }


def test_time_trend_sentence_says_whether_the_line_is_adequate():
    ok = clinical.time_trend_sentence(results_from(_trend(0.93, True)), 6)
    assert "bend at week 6" in ok and "-0.93 (95% CI -1.70 to -0.15)" in ok.replace("−", "-")
    assert "p = 0.930" in ok and "the straight line is adequate" in ok
    bad = clinical.time_trend_sentence(results_from(_trend(0.001, False)), 6)
    assert "not adequate" in bad
    missing = clinical.time_trend_sentence(results_from({"secondary": {}}), 6)
    assert "could not be checked" in missing
    failed = {"secondary": {"time_trend": {"status": "not_estimable", "reason": "fewer than 10 after week 6"}}}
    assert "10" not in clinical.time_trend_sentence(results_from(failed), 6)  # peers read it: no counts


def test_technical_notes_explain_iptw_smd_and_df():
    r = results_from(
        {
            "primary": {"status": "ok", "df": 34.1, "df_method": "satterthwaite"},
            "secondary": {
                "iptw": {"status": "done", "balanced": False, "max_abs_smd_weighted": 0.24, "smd_target": 0.1}
            },
        }
    )
    notes = " ".join(clinical.technical_notes(r))
    assert "IPTW (inverse probability of treatment weighting)" in notes
    assert "SMD (standardised mean difference)" in notes
    assert "here 34.1" in notes and "Satterthwaite" in notes
    assert "check failed" in notes and "inconclusive" in notes and "0.24" in notes
    assert summary.iptw_unbalanced(r)
