"""Benchmark: time of the primary analysis (prepare + fit) as the clinic grows. Not a test.

Clinics of 1,000, 5,000 and 20,000 clients are simulated with about 10
sessions per client (``simulate.planned_sessions_mean`` = 10,
``sessions_max`` = 12) and joined once each; only ``primary_data`` +
``primary_analysis`` are timed. Prints the median over the repeats and the
ratio to the smallest size (linear scaling: ratios 5 and 20).

Run: ``.venv/bin/python benchmarks/bench_fit.py [--sizes 1000 5000 20000] [--repeats 5 3 1]``
"""

from __future__ import annotations

import argparse
import statistics
import time

from analysis.join import build_analysis_dataset
from analysis.model.prepare import primary_data
from analysis.model.primary import primary_analysis
from analysis.params import load_params
from analysis.simulate import simulate_clinic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000])
    ap.add_argument("--repeats", type=int, nargs="+", default=[5, 3, 1])
    ap.add_argument("--seed", type=int, default=2024)
    args = ap.parse_args()
    params = load_params()
    sim = {**params["simulate"], "planned_sessions_mean": 10, "sessions_max": 12}
    cfg = params["model"]
    rows = []
    for n, reps in zip(args.sizes, args.repeats + [args.repeats[-1]] * len(args.sizes)):
        clinic = simulate_clinic(sim, args.seed, n_clients=n)
        dataset = build_analysis_dataset(clinic.clients, clinic.sessions, clinic.measurements)
        times, entry = [], None
        for _ in range(reps):
            t0 = time.perf_counter()
            entry, _, _ = primary_analysis(primary_data(dataset, cfg), cfg)
            times.append(time.perf_counter() - t0)
        rows.append((n, entry["n_clients"], entry["n_observations"], reps, statistics.median(times),
                     entry["status"], entry["optimizer"]))
        print(f"  {n:>6} clients done: median {statistics.median(times):.2f} s", flush=True)
    base = rows[0][4]
    print(f"\n{'clients':>8} {'analysed':>9} {'obs':>8} {'reps':>5} {'median s':>9} {'ratio':>6}  status/optimiser")
    for n, na, obs, reps, med, status, opt in rows:
        print(f"{n:>8} {na:>9} {obs:>8} {reps:>5} {med:>9.2f} {med / base:>6.1f}  {status}/{opt}")


if __name__ == "__main__":
    main()
