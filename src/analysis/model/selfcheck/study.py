"""The simulation study: many simulated clinics, each joined, prepared and fitted as the pipeline
does; one row per clinic and df method (optionally on several processes).

Clinics are handled in chunks: a chunk of clinics is simulated in one pass
(:func:`analysis.simulate.bulk.simulate_clinics`, each clinic on its own seed's stream, so clinic ``k``
is ``simulate_clinic(cfg, seeds[k])``), joined and prepared in one pass
(:func:`analysis.model.selfcheck.prepared.primary_batch`, equal to ``build_analysis_dataset`` +
``primary_data`` clinic by clinic) and then each clinic's primary model is built
(:func:`analysis.model.selfcheck.design.primary_design`, equal to patsy's) and fitted
(:func:`analysis.model.fit.fit_design_with_fallback`, :func:`~analysis.model.fit.fit_mixed_with_fallback`'s
verdict). Worker processes (forked, as before) use one BLAS thread each (:func:`blas_threads`).
"""

from __future__ import annotations

import ctypes
import math
import multiprocessing as mp
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.model.fit import MixedFit, fit_design_with_fallback, fit_options, linear_contrast
from analysis.model.lmm import DF_METHODS
from analysis.model.primary import RE_FORMULA, SLOPE_TERM
from analysis.model.selfcheck.design import primary_design, primary_formula
from analysis.model.selfcheck.prepared import primary_batch
from analysis.params_schema import ModelParams, Params
from analysis.simulate.bulk import simulate_clinics

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


#: clinics simulated and prepared in one pass (larger chunks: less overhead, coarser progress)
MAX_CHUNK = 50
#: OpenBLAS's thread-count setters and getters, as exported by the numpy and scipy wheels and by a system OpenBLAS
_OPENBLAS = (
    ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
    ("openblas_set_num_threads", "openblas_get_num_threads"),
)


def _openblas_libraries() -> list[ctypes.CDLL]:
    """The OpenBLAS libraries loaded in this process (Linux: from /proc/self/maps; elsewhere none)."""
    try:
        maps = Path("/proc/self/maps").read_text(encoding="utf-8")
    except OSError:
        return []
    paths = sorted({f[5] for f in (line.split(maxsplit=5) for line in maps.splitlines()) if len(f) == 6})
    libraries = []
    for path in paths:
        if "openblas" in Path(path).name.lower():
            try:
                libraries.append(ctypes.CDLL(path))
            except OSError:
                continue
    return libraries


def blas_threads(n: int | None = None) -> list[int]:
    """Threads of each OpenBLAS loaded in this process, after setting them to ``n`` (None: unchanged).

    The self-check's workers call it with 1 (:func:`study_pool`): the engine's matrices are small, and two
    BLAS threads per process on shared cores made each fit two to three times slower. Results do not depend
    on it (it only changes speed); where no OpenBLAS is found it does nothing.
    """
    counts = []
    for lib in _openblas_libraries():
        for setter, getter in _OPENBLAS:
            if hasattr(lib, setter) and hasattr(lib, getter):
                if n is not None:
                    getattr(lib, setter)(ctypes.c_int(n))
                counts.append(int(getattr(lib, getter)()))
                break
    return counts


def _one_blas_thread() -> None:
    blas_threads(1)


@contextmanager
def study_pool(workers: int) -> Iterator[Executor]:
    """Worker processes for :func:`simulation_study`, shareable between scenarios; each uses one BLAS thread."""
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=mp.get_context("fork"), initializer=_one_blas_thread
    ) as pool:
        yield pool


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
    pool: Executor | None = None,
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
    progress : called once per clinic (for a progress bar; per chunk of clinics, as each chunk ends).
    workers : processes (1 = in this process), unless ``pool`` is given.
    pool : worker processes to use (from :func:`study_pool`); results do not depend on it.

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
    ``seconds`` (the clinic's share of its chunk's simulation and preparation, plus its fit).
    """
    sim_cfg, model_cfg = params.simulate, params.model
    if moderation is not None:
        sim_cfg = {**sim_cfg, "chronicity_moderation": float(moderation)}
    seeds = clinic_seeds(seed, n_clinics)
    n_procs = 1 if pool is None and workers <= 1 else max(workers, 2)
    size = max(1, min(MAX_CHUNK, math.ceil(n_clinics / (4 * n_procs))))
    jobs = [
        (start, tuple(seeds[start : start + size]), sim_cfg, model_cfg, n_clients, effect, scenario)
        for start in range(0, n_clinics, size)
    ]
    rows: list[dict[str, Any]] = []

    def collect(chunk_rows: list[dict[str, Any]]) -> None:
        rows.extend(chunk_rows)
        if progress is not None:
            for _ in range(len(chunk_rows) // len(DF_METHODS)):
                progress()

    if pool is not None:
        for chunk_rows in pool.map(_chunk, jobs):
            collect(chunk_rows)
    elif workers > 1 and len(jobs) > 1:
        with study_pool(workers) as own:
            for chunk_rows in own.map(_chunk, jobs):
                collect(chunk_rows)
    else:
        for job in jobs:
            collect(_chunk(job))
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


#: clinics of the study: (index of the first, their seeds, simulate params, model params, clients, effect, scenario)
Job = tuple[int, tuple[int, ...], dict[str, Any], ModelParams, int, float, str]


def _chunk(job: Job) -> list[dict[str, Any]]:
    """Simulate, join and prepare a chunk of clinics at once, then fit each; one row per clinic and df method."""
    first, seeds, sim_cfg, model_cfg, n_clients, effect, scenario = job
    week = model_cfg.primary_week
    t0 = time.perf_counter()
    batch = simulate_clinics(sim_cfg, seeds, n_clients=n_clients, effect=effect, primary_week=week)
    prepared = list(primary_batch(batch, model_cfg))
    shared = (time.perf_counter() - t0) / len(seeds)
    rows: list[dict[str, Any]] = []
    for k, clinic_data in enumerate(prepared):
        t1 = time.perf_counter()
        fit = fit_design_with_fallback(
            primary_design(clinic_data), primary_formula(clinic_data), RE_FORMULA, reml=True, **fit_options(model_cfg)
        )
        clinic = dict(
            scenario=scenario,
            clinic=first + k + 1,
            seed=seeds[k],
            true_slope_difference=float(effect),
            chronicity_moderation=float(sim_cfg["chronicity_moderation"]),
            truth=week * float(batch.p["hip_slope_effect"]),
            truth_recorded=float(batch.truth_recorded[k]),
            n_clients=clinic_data.n_clients,
        )
        rows.extend(clinic_rows(fit, clinic, model_cfg, t1 - shared))
    return rows


def clinic_rows(fit: MixedFit, clinic: dict[str, Any], model_cfg: ModelParams, t0: float) -> list[dict[str, Any]]:
    """One clinic's rows of :data:`RUN_COLUMNS`, one per df method, from its fit and its truth.

    ``clinic`` holds ``scenario``, ``clinic``, ``seed``, ``true_slope_difference``, ``chronicity_moderation``,
    ``truth``, ``truth_recorded`` and ``n_clients``; ``seconds`` is ``time.perf_counter() - t0`` at the end.
    """
    alpha, week = model_cfg.alpha, model_cfg.primary_week
    truth, recorded = clinic["truth"], clinic["truth_recorded"]
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
                method=method,
                **clinic,
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
                seconds=time.perf_counter() - t0,
            )
        )
    return rows
