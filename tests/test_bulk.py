"""The self-check's bulk path equals the per-clinic pipeline, clinic by clinic, byte for byte.

Bulk: :func:`analysis.simulate.bulk.simulate_clinics` -> :func:`analysis.model.selfcheck.prepared.primary_batch`
-> :func:`analysis.model.selfcheck.design.primary_design` -> :func:`analysis.model.fit.fit_design_with_fallback`.
Per clinic: :func:`analysis.simulate.simulate_clinic` (the clinic's seed) -> ``build_analysis_dataset`` ->
``primary_data`` -> ``fit_mixed_with_fallback`` (patsy).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.join import build_analysis_dataset
from analysis.model import lmm
from analysis.model.fit import fit_design_with_fallback, fit_mixed_with_fallback, fit_options, linear_contrast
from analysis.model.prepare import primary_data
from analysis.model.primary import GROUPS, RE_FORMULA, SLOPE_TERM, primary_formula
from analysis.model.selfcheck import clinic_seeds, simulation_study
from analysis.model.selfcheck.design import primary_design
from analysis.model.selfcheck.design import primary_formula as bulk_formula
from analysis.model.selfcheck.prepared import primary_batch
from analysis.model.selfcheck.study import blas_threads, study_pool
from analysis.params import load_params
from analysis.simulate import simulate_clinic
from analysis.simulate.bulk import ClinicStreams, clinic_of, simulate_clinics

PARAMS = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
WEEK = PARAMS.model.primary_week
EFFECT = float(PARAMS.simulate["hip_slope_effect"])
NULL_CFG = {**PARAMS.simulate, "chronicity_moderation": 0.0}

# (simulate params, clients, effect): the self-check's scenarios, and a tiny clinic where fits fall back
CASES = [
    (PARAMS.simulate, 150, EFFECT),
    (NULL_CFG, 150, 0.0),
    (PARAMS.simulate, 40, EFFECT),
    (NULL_CFG, 40, 0.0),
    (PARAMS.simulate, 10, EFFECT),
]


@pytest.fixture(scope="module", params=range(len(CASES)), ids=["effect", "no_effect", "small", "small_null", "tiny"])
def case(request):
    cfg, n, effect = CASES[request.param]
    seeds = clinic_seeds(100 + request.param, 6)
    batch = simulate_clinics(cfg, seeds, n_clients=n, effect=effect, primary_week=WEEK)
    singles = [simulate_clinic(cfg, s, n_clients=n, effect=effect, primary_week=WEEK) for s in seeds]
    return batch, singles


def test_each_clinic_of_a_batch_is_simulate_clinic_with_its_seed(case):
    batch, singles = case
    assert batch.n_clinics == len(singles)
    for k, single in enumerate(singles):
        clinic = clinic_of(batch, k)
        for table in ("clients", "sessions", "measurements"):
            pd.testing.assert_frame_equal(getattr(clinic, table), getattr(single, table), check_exact=True)
        assert clinic.truth == single.truth  # every value, the seed and the moderation centre included
        recorded = single.truth["sample"]["change_difference_primary_week_recorded_scale"]
        assert batch.truth_recorded[k] == recorded
        assert batch.centres[k] == single.truth["moderation"]["centre_log_symptom_weeks"]


def test_bulk_prepare_equals_join_and_primary_data(case):
    batch, singles = case
    prepared = list(primary_batch(batch, PARAMS.model))
    assert len(prepared) == len(singles)
    for clinic, single in zip(prepared, singles, strict=True):
        got = clinic.primary_data()
        want = primary_data(build_analysis_dataset(single.clients, single.sessions, single.measurements), PARAMS.model)
        pd.testing.assert_frame_equal(got.data, want.data, check_exact=True)
        pd.testing.assert_frame_equal(got.excluded, want.excluded, check_exact=True)
        assert got.covariates == want.covariates
        assert got.levels == want.levels
        assert clinic.n_clients == got.n_clients == want.n_clients


def test_design_and_fit_equal_patsy_and_fit_mixed(case):
    batch, singles = case
    statuses = set()
    for clinic, single in zip(primary_batch(batch, PARAMS.model), singles, strict=True):
        pdata = primary_data(build_analysis_dataset(single.clients, single.sessions, single.measurements), PARAMS.model)
        formula = primary_formula(pdata)
        assert bulk_formula(clinic) == formula
        want = lmm.from_formula(pdata.data, formula, GROUPS, RE_FORMULA)  # patsy, on the per-clinic pipeline's data
        got = primary_design(clinic)
        for f in dataclasses.fields(want):
            a, b = getattr(got, f.name), getattr(want, f.name)
            if isinstance(b, np.ndarray):
                assert a.dtype == b.dtype and np.array_equal(a, b), f.name
            else:
                assert a == b, f.name
        fit_a = fit_design_with_fallback(got, formula, RE_FORMULA, reml=True, **fit_options(PARAMS.model))
        fit_b = fit_mixed_with_fallback(pdata.data, formula, GROUPS, RE_FORMULA, reml=True, **fit_options(PARAMS.model))
        assert (fit_a.status, fit_a.reason, fit_a.checks, fit_a.attempts) == (
            fit_b.status,
            fit_b.reason,
            fit_b.checks,
            fit_b.attempts,
        )
        statuses.add(fit_a.status)
        if fit_a.ok:
            for method in lmm.DF_METHODS:
                assert linear_contrast(fit_a, {SLOPE_TERM: WEEK}, 0.05, method) == linear_contrast(
                    fit_b, {SLOPE_TERM: WEEK}, 0.05, method
                )
    assert statuses <= {"ok", "fallback", "failed"}


def test_study_rows_equal_the_per_clinic_pipeline():
    # the study's row for a clinic, from the bulk path, against the per-clinic pipeline on the same seed
    runs = simulation_study(3, 40, EFFECT, 11, PARAMS, scenario="small_effect")
    for k, seed in enumerate(clinic_seeds(11, 3)):
        clinic = simulate_clinic(PARAMS.simulate, seed, n_clients=40, effect=EFFECT, primary_week=WEEK)
        pdata = primary_data(build_analysis_dataset(clinic.clients, clinic.sessions, clinic.measurements), PARAMS.model)
        fit = fit_mixed_with_fallback(
            pdata.data, primary_formula(pdata), GROUPS, RE_FORMULA, reml=True, **fit_options(PARAMS.model)
        )
        rows = runs[runs["clinic"] == k + 1].set_index("method")
        assert (rows["seed"] == seed).all() and (rows["status"] == fit.status).all()
        assert (rows["truth_recorded"] == clinic.truth["sample"]["change_difference_primary_week_recorded_scale"]).all()
        assert (rows["truth"] == WEEK * clinic.truth["true_slope_difference"]).all()
        assert (rows["n_clients"] == pdata.n_clients).all()
        for method in lmm.DF_METHODS:
            h = linear_contrast(fit, {SLOPE_TERM: WEEK}, PARAMS.model.alpha, method)
            assert rows.loc[method, "estimate"] == h["estimate"] and rows.loc[method, "se"] == h["se"]
            assert rows.loc[method, "p_value"] == h["p_value"]


def test_streams_refuse_a_draw_not_sized_by_the_batch():
    streams = ClinicStreams([1, 2], [3, 4])
    drawn = streams.random((7, 2))  # clinic 1's 3 x 2 block from seed 1, then clinic 2's 4 x 2 from seed 2
    np.testing.assert_array_equal(drawn[3:], np.random.default_rng(2).random((4, 2)))
    one, two = np.random.default_rng(1), np.random.default_rng(2)
    one.random((3, 2)), two.random((4, 2))  # each clinic's stream goes on where it stopped
    expected = np.concatenate([one.standard_normal(3), two.standard_normal(4)])
    np.testing.assert_array_equal(streams.standard_normal(7), expected)
    with pytest.raises(ValueError, match="batch's 7 clients"):
        streams.random(6)


def test_study_pool_workers_use_one_blas_thread():
    before = blas_threads()
    with study_pool(2) as pool:
        for counts in pool.map(blas_threads, [None, None]):
            assert counts == [1] * len(counts)
    assert blas_threads() == before  # this process keeps its own
