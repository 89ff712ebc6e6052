"""The pooled result's cautions: each sentence follows the numbers of the fit it describes."""

from __future__ import annotations

import re

import pytest

from analysis.pool import caveats, meta

AGREE4 = ([-0.58, -0.60, -0.61, -0.62], [0.09, 0.1225, 0.16, 0.25])
K2_WIDE = ([-1.1, -0.5], [0.16, 0.09])
K2_SAME = ([-0.6, -0.6], [0.09, 0.16])
K10_HET = (
    [-1.2, -0.3, 0.4, -0.9, -1.8, 0.1, -0.6, -1.1, 0.5, -0.2],
    [0.05, 0.08, 0.12, 0.04, 0.2, 0.09, 0.06, 0.15, 0.1, 0.07],
)


def _says(y, v, ci_method=meta.CI_METHOD_DEFAULT, **kw) -> tuple[dict, list[str]]:
    r = meta.rma(y, v, ci_method=ci_method)
    return r, caveats.caveats(y, r, **kw)


def _numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+\.\d+", text)]


def test_two_wide_clinics_are_called_very_wide_with_the_interval_that_is():
    r, said = _says(*K2_WIDE)
    first = said[0]
    assert first.startswith("only 2 clinics") and "t with 1 df (critical value 12.71)" in first
    assert "is very wide, 6.5 times as wide as the standard random-effects interval" in first
    assert f"({r['pooled']['ci_low']:.2f} to {r['pooled']['ci_high']:.2f})" in first
    assert caveats.width_ratio(r) == pytest.approx(12.706 / 1.960, rel=1e-3)  # same SE, t(1) vs z


def test_two_identical_clinics_plain_knapp_hartung_is_called_zero_width_never_wide():
    r, said = _says(*K2_SAME, ci_method="knha")
    assert r["pooled"]["ci_low"] == r["pooled"]["ci_high"]
    text = " ".join(said)
    assert "has zero width, an artefact of the method and not certainty" in said[0]
    assert "wide," not in text and "very wide" not in text
    assert any("estimates are identical (-0.60)" in s and "zero width" in s for s in said)


def test_two_identical_clinics_default_interval_is_not_zero_width_and_is_described_by_its_numbers():
    r, said = _says(*K2_SAME)
    assert r["pooled"]["ci_high"] - r["pooled"]["ci_low"] > 0
    assert r["pooled"]["se"] == pytest.approx(r["wald"]["se"])  # q = 0: the standard RE SE with t(1)
    assert "is very wide" in said[0] and "(-3.65 to 2.45)" in said[0]
    assert any("identical" in s and "standard random-effects interval with t(k - 1)" in s for s in said)


def test_tau2_zero_says_that_k_clinics_cannot_tell_not_that_they_agree():
    r, said = _says(*AGREE4)
    assert r["tau2"] == 0.0
    (tau0,) = [s for s in said if "tau^2" in s]
    assert "estimated as 0" in tau0 and "does not show that the clinics agree" in tau0
    assert "only that 4 clinics" in tau0 and "prediction interval then equals the CI" in tau0
    assert said[0].startswith("only 4 clinics") and "fewer than 5 studies" in said[0]
    assert "1.6 times as wide as" in said[0] and "very wide" not in said[0] and "wide," not in said[0]


def test_plain_knapp_hartung_narrower_than_wald_is_called_narrower():
    r, said = _says(*AGREE4, ci_method="knha")
    assert caveats.width_ratio(r) < 0.1
    assert "is narrower than the standard random-effects interval (-0.96 to -0.24), 0.08 times its width" in said[0]
    assert "wide," not in said[0]


def test_many_heterogeneous_clinics_need_no_caution():
    r, said = _says(*K10_HET)
    assert r["tau2"] > 0 and said == []


def test_the_numbers_in_the_interval_sentence_are_the_fit_s():
    r = meta.rma(*K2_WIDE)
    nums = _numbers(caveats.interval_words(r))
    p, w = r["pooled"], r["wald"]
    expected = [p["ci_low"], p["ci_high"], caveats.width_ratio(r), w["ci_low"], w["ci_high"]]
    assert nums == pytest.approx([round(x, 2) if i != 2 else round(x, 1) for i, x in enumerate(expected)])


def test_a_clinic_with_few_df_is_named_and_others_are_not():
    _, said = _says(*K10_HET, ids=[f"k-{i}" for i in range(10)], df=[60.0, 12.0] + [None] * 8)
    assert len(said) == 1 and said[0].startswith("k-1's own estimate rests on 12 df (its CI uses t = 2.18")
    assert "treats its standard error as known" in said[0]
