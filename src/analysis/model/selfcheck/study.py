"""The simulation study: many simulated clinics, each joined, prepared and fitted as the pipeline
does; one row per clinic and df method (optionally on several processes).
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from analysis.join import build_analysis_dataset
from analysis.model.fit import fit_mixed_with_fallback, fit_options, linear_contrast
from analysis.model.lmm import DF_METHODS
from analysis.model.prepare import primary_data
from analysis.model.primary import GROUPS, RE_FORMULA, SLOPE_TERM, primary_formula
from analysis.params_schema import ModelParams, Params
from analysis.simulate import simulate_clinic

RUN_COLUMNS = [
    "scenario",
    "method",
    "clinic",
    "seed",
    "true_slope_difference",
    "chronicity_moderation",
    "truth",
    "truth_recorded",
    "status",
    "estimate",
    "se",
    "df",
    "ci_low",
    "ci_high",
    "p_value",
    "slope_estimate",
    "slope_se",
    "covered",
    "covered_recorded",
    "rejected",
    "n_clients",
    "seconds",
]


def clinic_seeds(seed: int, n_clinics: int) -> list[int]:
    """Independent, reproducible seeds for the simulated clinics."""
    return [int(s) for s in np.random.default_rng(seed).integers(0, 2**31 - 1, size=n_clinics)]


def simulation_study(
    n_clinics: int,
    n_clients: int,
    effect: float,
    seed: int,
    params: Params,
    *,
    scenario: str = "effect",
    moderation: float | None = None,
    progress: Callable[[], None] | None = None,
    workers: int = 1,
) -> pd.DataFrame:
    """Simulate ``n_clinics`` clinics with a true slope difference ``effect`` and analyse each one.

    Parameters
    ----------
    n_clinics, n_clients : number of clinics, clients per clinic.
    effect : true difference in NPRS slope per week, hip- minus knee-focused.
    seed : master seed; clinic ``k`` uses the ``k``-th of :func:`clinic_seeds`.
    params : the typed params (sections ``simulate`` and ``model`` are used).
    scenario : label written in the ``scenario`` column.
    moderation : overrides ``simulate.chronicity_moderation`` (None = as in
        params); 0 with ``effect=0`` gives a strict null.
    progress : called once per clinic (for a progress bar).
    workers : processes (1 = in this process).

    Returns
    -------
    DataFrame with :data:`RUN_COLUMNS`, one row per clinic and df method (``method``:
    ``z``, ``satterthwaite``, ``kenward_roger``): ``truth`` (the
    declared estimand: change difference at the primary week),
    ``chronicity_moderation`` (as simulated),
    ``truth_recorded`` (expected on the recorded 0-10 scale), the fit's
    ``status``, headline ``estimate``/``se``/``ci_low``/``ci_high``/``p_value``
    (NaN when the fit failed), ``slope_estimate``/``slope_se``, ``covered``,
    ``covered_recorded``, ``rejected`` (p < alpha), ``n_clients`` analysed and
    ``seconds`` (prepare + fit).
    """
    sim_cfg, model_cfg = params.simulate, params.model
    if moderation is not None:
        sim_cfg = {**sim_cfg, "chronicity_moderation": float(moderation)}
    jobs = [
        (k, clinic_seed, sim_cfg, model_cfg, n_clients, effect, scenario)
        for k, clinic_seed in enumerate(clinic_seeds(seed, n_clinics))
    ]
    rows: list[dict[str, Any]] = []
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork")) as pool:
            for clinic_rows in pool.map(_one_clinic, jobs, chunksize=max(1, len(jobs) // (8 * workers))):
                rows.extend(clinic_rows)
                if progress is not None:
                    progress()
    else:
        for job in jobs:
            rows.extend(_one_clinic(job))
            if progress is not None:
                progress()
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


#: one clinic of the study: (index, seed, simulate params, model params, clients, true effect, scenario)
Job = tuple[int, int, dict[str, Any], ModelParams, int, float, str]


def _one_clinic(job: Job) -> list[dict[str, Any]]:
    """Simulate, join, prepare and fit one clinic; one row per df method (see :func:`simulation_study`)."""
    k, clinic_seed, sim_cfg, model_cfg, n_clients, effect, scenario = job
    alpha = model_cfg.alpha
    week = model_cfg.primary_week
    clinic = simulate_clinic(sim_cfg, clinic_seed, n_clients=n_clients, effect=effect, primary_week=week)
    dataset = build_analysis_dataset(clinic.clients, clinic.sessions, clinic.measurements)
    t0 = time.perf_counter()
    pdata = primary_data(dataset, model_cfg)
    fit = fit_mixed_with_fallback(
        pdata.data, primary_formula(pdata), GROUPS, RE_FORMULA, reml=True, **fit_options(model_cfg)
    )
    truth = week * float(clinic.truth["true_slope_difference"])
    recorded = clinic.truth["sample"]["change_difference_primary_week_recorded_scale"]
    recorded = float("nan") if recorded is None else float(recorded)
    rows = []
    for method in DF_METHODS:
        nan = float("nan")
        h = sd = {"estimate": nan, "se": nan, "df": nan, "ci_low": nan, "ci_high": nan, "p_value": nan}
        if fit.ok:
            h = linear_contrast(fit, {SLOPE_TERM: week}, alpha, df_method=method)
            sd = linear_contrast(fit, {SLOPE_TERM: 1.0}, alpha, df_method=method)
        fitted = fit.ok and np.isfinite(h["se"])
        rows.append(
            dict(
                scenario=scenario,
                method=method,
                clinic=k + 1,
                seed=clinic_seed,
                true_slope_difference=float(effect),
                chronicity_moderation=float(sim_cfg["chronicity_moderation"]),
                truth=truth,
                truth_recorded=recorded,
                status=fit.status,
                estimate=h["estimate"],
                se=h["se"],
                df=float("inf") if h["df"] is None else h["df"],
                ci_low=h["ci_low"],
                ci_high=h["ci_high"],
                p_value=h["p_value"],
                slope_estimate=sd["estimate"],
                slope_se=sd["se"],
                covered=bool(fitted and h["ci_low"] <= truth <= h["ci_high"]),
                covered_recorded=bool(fitted and h["ci_low"] <= recorded <= h["ci_high"]),
                rejected=bool(fitted and h["p_value"] < alpha),
                n_clients=pdata.n_clients,
                seconds=time.perf_counter() - t0,
            )
        )
    return rows
