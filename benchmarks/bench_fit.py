"""Benchmark (not a test): the primary fit by the project's engine against lme4 on the same data.

Clinics of 1,000, 5,000, 20,000 and 100,000 clients with about 10 sessions each are simulated by the
project's generator (``planned_sessions_mean`` 10, ``sessions_max`` 12), joined and prepared once each;
then the primary model (``y ~ week * hip + covariates``, random intercept and slope per client, REML) is
fitted from the DataFrame by

- the engine, as the pipeline does it: :func:`analysis.model.fit.fit_mixed_with_fallback` (design,
  optimiser, Newton polish, convergence proof) plus the headline contrast with Satterthwaite df;
- lme4 (``benchmarks/bench_lme4.R``): the same prepared frame, written once to a temporary CSV, the same
  formula and factor reference levels; only ``lmer(..., REML = TRUE)`` is timed (``system.time``), with
  lme4's default control. Skipped, with the reason printed, when ``Rscript``, lme4 or jsonlite is missing.

Prints, per size, the median wall time of each over the same number of repeats, the ratio engine / lme4,
the peak traced memory of one engine fit (tracemalloc, in a separate untimed run: numpy and Python
allocations), the largest absolute difference between the two fits' fixed effects, the difference of their
REML criteria (ours - lme4: negative where lme4 stopped short of the optimum), and the engine's time
by piece (design build, L-BFGS-B, Newton polish, convergence proofs, Satterthwaite). Machine: whatever
runs it; give the figures with it (and its load: ``uptime``).

Run: ``.venv/bin/python benchmarks/bench_fit.py [--sizes 1000 5000 20000 100000] [--repeats 5 3 3 1]
[--no-lme4]``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.join import build_analysis_dataset
from analysis.model import lmm
from analysis.model.fit import fit_design, fit_mixed_with_fallback, linear_contrast
from analysis.model.prepare import primary_data
from analysis.model.primary import GROUPS, RE_FORMULA, SLOPE_TERM, primary_formula
from analysis.params import load_params
from analysis.simulate import simulate_clinic

R_SCRIPT = Path(__file__).with_name("bench_lme4.R")


def _median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """(median wall seconds over ``repeats`` calls, result of the last call)."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _peak_mb(fn: Callable[[], Any]) -> float:
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return peak


def lme4_missing() -> str:
    """Why lme4 cannot be run here ('' when it can)."""
    if shutil.which("Rscript") is None:
        return "Rscript is not on PATH"
    probe = subprocess.run(
        ["Rscript", "-e", "suppressMessages({library(lme4); library(jsonlite)})"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        return f"R packages lme4/jsonlite cannot be loaded: {probe.stderr.strip().splitlines()[-1:]}"
    return ""


def r_name(name: str) -> str:
    """An engine (patsy) column name as lme4 names it: ``C(sex)[T.M]`` -> ``sexM``, ``Intercept`` -> ``(Intercept)``."""
    return "(Intercept)" if name == "Intercept" else re.sub(r"C\((\w+)\)\[T\.([^\]]*)\]", r"\1\2", name)


def run_lme4(data: pd.DataFrame, formula: str, repeats: int, tmp: Path) -> dict[str, Any]:
    """lme4 on ``data`` (same formula, factor levels in the engine's order); the R script's JSON output."""
    used = [c for c in data.columns if re.search(rf"(?<![\w.]){re.escape(c)}(?![\w.])", formula) or c == GROUPS]
    frame = data[used]
    factors = {
        c: [str(v) for v in frame[c].cat.categories] for c in used if isinstance(frame[c].dtype, pd.CategoricalDtype)
    }
    csv, spec, out = tmp / "data.csv", tmp / "spec.json", tmp / "out.json"
    frame.to_csv(csv, index=False)
    r_formula = re.sub(r"C\((\w+)\)", r"\1", formula) + f" + ({RE_FORMULA.lstrip('~ ')} | {GROUPS})"
    spec.write_text(json.dumps({"formula": r_formula, "repeats": repeats, "factors": factors}))
    proc = subprocess.run(["Rscript", str(R_SCRIPT), str(csv), str(spec), str(out)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"bench_lme4.R failed: {proc.stderr.strip()}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def pieces(data: pd.DataFrame, formula: str, week: float) -> dict[str, float]:
    """Seconds of each piece of one engine fit (design, L-BFGS-B, polish, proofs, Satterthwaite)."""
    t0 = time.perf_counter()
    design = lmm.from_formula(data, formula, GROUPS, RE_FORMULA)
    t1 = time.perf_counter()
    fit = fit_design(design, formula, RE_FORMULA, reml=True)
    t2 = time.perf_counter()
    linear_contrast(fit, {SLOPE_TERM: week})
    t3 = time.perf_counter()
    opt = fit.result.optimum if fit.result is not None else None
    parts = dict(getattr(opt, "seconds", {}) or {})
    return {"design": t1 - t0, **parts, "fit (all)": t2 - t1, "satterthwaite": t3 - t2}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000, 100000])
    ap.add_argument("--repeats", type=int, nargs="+", default=[5, 3, 3, 1], help="per size, for both engines")
    ap.add_argument("--no-lme4", action="store_true", help="time the engine only")
    ap.add_argument("--seed", type=int, default=2024)
    args = ap.parse_args()
    why = "--no-lme4 given" if args.no_lme4 else lme4_missing()
    print(f"lme4: {'skipped (' + why + ')' if why else 'run via ' + str(R_SCRIPT.name)}")
    print(f"load: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs", flush=True)
    params = load_params()
    sim = {**params.simulate, "planned_sessions_mean": 10, "sessions_max": 12}
    cfg = params.model
    rows = []
    with tempfile.TemporaryDirectory() as tmpdir:
        for i, n in enumerate(args.sizes):
            reps = args.repeats[min(i, len(args.repeats) - 1)]
            clinic = simulate_clinic(sim, args.seed, n_clients=n, primary_week=cfg.primary_week)
            pdata = primary_data(build_analysis_dataset(clinic.clients, clinic.sessions, clinic.measurements), cfg)
            data, formula, week = pdata.data, primary_formula(pdata), cfg.primary_week

            def engine(data: pd.DataFrame = data, formula: str = formula, week: float = week) -> Any:
                fit = fit_mixed_with_fallback(data, formula, GROUPS, RE_FORMULA, reml=True)
                return fit, linear_contrast(fit, {SLOPE_TERM: week}) if fit.ok else {}

            ours, (fit, head) = _median_time(engine, reps)
            peak = _peak_mb(engine)
            split = pieces(data, formula, week)
            r_med = diff = d_reml = float("nan")
            note = ""
            if not why:
                r = run_lme4(data, formula, reps, Path(tmpdir))
                r_med = statistics.median(np.atleast_1d(r["seconds"]).tolist())
                ours_fe = {r_name(k): v for k, v in fit.result.fe_params.items()} if fit.ok else {}
                if set(ours_fe) == set(r["fixef"]):
                    diff = max(abs(ours_fe[k] - r["fixef"][k]) for k in ours_fe)
                if fit.ok:  # < 0: lme4's optimiser stopped short of our (polished, proven) optimum
                    d_reml = fit.result.deviance - float(r["reml"])
                else:
                    note = f"fixed-effect names differ: {sorted(set(ours_fe) ^ set(r['fixef']))}"
                if r.get("messages"):
                    note += f" lme4 says: {r['messages']}"
            rows.append((n, pdata.n_clients, len(data), reps, ours, r_med, peak, diff, d_reml, fit.status, note))
            print(
                f"  {n:>7} clients: engine {ours:.3f} s ({fit.status}, headline {head.get('estimate', np.nan):.4f}), "
                f"lme4 {r_med:.3f} s; pieces "
                + ", ".join(f"{k} {v:.3f}" for k, v in split.items())
                + (f"; {note}" if note else ""),
                flush=True,
            )
    print(
        f"\n| {'clients':>8} | {'analysed':>8} | {'obs':>8} | reps | {'engine s':>8} | {'lme4 s':>8} | "
        f"{'ratio':>6} | {'peak MB':>7} | {'max |dFE|':>9} | {'dREML':>9} | status |"
    )
    print("|" + "---:|" * 11)
    for n, na, obs, reps, em, rm, pk, df, dr, st, _ in rows:
        print(
            f"| {n:>8} | {na:>8} | {obs:>8} | {reps:>4} | {em:>8.3f} | {rm:>8.3f} | {em / rm:>6.2f} | "
            f"{pk:>7.0f} | {df:>9.1e} | {dr:>9.1e} | {st} |"
        )


if __name__ == "__main__":
    main()
