"""Benchmark (not a test): the mixed-model engine against statsmodels' MixedLM on the same data.

Clinics of 1,000, 5,000, 20,000 and 100,000 clients with about 10 sessions
each are simulated by the project's generator (``planned_sessions_mean`` 10,
``sessions_max`` 12), joined and prepared once each; then the primary model
(``y ~ week * hip + covariates``, random intercept and slope per client, REML)
is fitted from the DataFrame by

- the engine: :func:`analysis.model.fit.fit_mixed` (design, optimiser,
  convergence proof) plus the headline contrast with Satterthwaite df;
- statsmodels: ``MixedLM.from_formula(...).fit(reml=True, method='lbfgs')``
  (its own default check-free fit; no df).

Prints, per size, the median wall time over the repeats, the ratio
statsmodels / engine, the peak traced memory of one fit (tracemalloc: numpy
and Python allocations) and the two headline estimates (they should agree
when both converge). Machine: whatever runs it; give the figures with it.

Run: ``.venv/bin/python benchmarks/bench_fit.py [--sizes 1000 5000 20000 100000] [--repeats 5 3 3 1]
[--sm-repeats 3 1 1 1] [--sm-max 100000]``
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
import warnings

from analysis.join import build_analysis_dataset
from analysis.model.fit import fit_mixed, linear_contrast
from analysis.model.prepare import primary_data
from analysis.model.primary import GROUPS, RE_FORMULA, SLOPE_TERM, primary_formula
from analysis.params import load_params
from analysis.simulate import simulate_clinic


def _timed(fn, repeats: int) -> tuple[float, float, object]:
    """(median seconds, peak MB of the first run, result of the last run)."""
    times, peak, out = [], 0.0, None
    for i in range(repeats):
        if i == 0:
            tracemalloc.start()
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        if i == 0:
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
    return statistics.median(times), peak, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000, 100000])
    ap.add_argument("--repeats", type=int, nargs="+", default=[5, 3, 3, 1])
    ap.add_argument("--sm-repeats", type=int, nargs="+", default=[3, 1, 1, 1])
    ap.add_argument("--sm-max", type=int, default=100000, help="largest size statsmodels is run at")
    ap.add_argument("--seed", type=int, default=2024)
    args = ap.parse_args()
    params = load_params()
    sim = {**params.simulate, "planned_sessions_mean": 10, "sessions_max": 12}
    cfg = params.model
    rows = []
    for i, n in enumerate(args.sizes):
        reps = args.repeats[min(i, len(args.repeats) - 1)]
        sm_reps = args.sm_repeats[min(i, len(args.sm_repeats) - 1)]
        clinic = simulate_clinic(sim, args.seed, n_clients=n, primary_week=cfg.primary_week)
        pdata = primary_data(build_analysis_dataset(clinic.clients, clinic.sessions, clinic.measurements), cfg)
        formula, week = primary_formula(pdata), cfg.primary_week

        def engine(pdata=pdata, formula=formula, week=week):
            fit = fit_mixed(pdata.data, formula, GROUPS, RE_FORMULA, reml=True)
            return fit.status, linear_contrast(fit, {SLOPE_TERM: week}) if fit.ok else {}

        e_med, e_peak, (e_status, e_head) = _timed(engine, reps)
        s_med = s_peak = s_est = float("nan")
        if n <= args.sm_max:
            from statsmodels.regression.mixed_linear_model import MixedLM

            def sm(pdata=pdata, formula=formula):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # its convergence warnings are not the subject here
                    m = MixedLM.from_formula(formula, pdata.data, groups=pdata.data[GROUPS], re_formula=RE_FORMULA)
                    return m.fit(reml=True, method=["lbfgs"])

            s_med, s_peak, res = _timed(sm, sm_reps)
            s_est = float(week * res.fe_params[SLOPE_TERM])
        rows.append(
            (
                n,
                pdata.n_clients,
                len(pdata.data),
                reps,
                e_med,
                e_peak,
                sm_reps,
                s_med,
                s_peak,
                e_status,
                e_head.get("estimate", float("nan")),
                s_est,
            )
        )
        print(f"  {n:>7} clients: engine {e_med:.2f} s, statsmodels {s_med:.2f} s", flush=True)
    print(
        f"\n{'clients':>8} {'analysed':>9} {'obs':>8} | {'engine s':>9} {'peak MB':>8} (reps) | "
        f"{'statsm. s':>9} {'peak MB':>8} (reps) | {'ratio':>6} | status | headline engine / statsmodels"
    )
    for n, na, obs, reps, em, ep, sreps, sm_, sp, st, ee, se in rows:
        print(
            f"{n:>8} {na:>9} {obs:>8} | {em:>9.2f} {ep:>8.0f} ({reps}) | {sm_:>9.2f} {sp:>8.0f} ({sreps}) | "
            f"{sm_ / em:>6.1f} | {st} | {ee:.4f} / {se:.4f}"
        )


if __name__ == "__main__":
    main()
