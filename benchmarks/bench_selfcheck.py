"""Benchmark (not a test): ``outcomes selfcheck`` at its default size, wall time and peak memory.

Runs :func:`analysis.model.selfcheck.run_selfcheck` (all four scenarios, params ``selfcheck``:
``n_clinics`` clinics each, ``workers`` processes) ``--repeats`` times into a temporary output
folder and prints the median wall time, every run's time, the load average before and after, and
the peak resident memory (``resource.getrusage``: the largest of this process and of its worker
processes, in MB) and the CPU seconds used (this process and its workers, user + system): CPU seconds
/ cores is what the run takes on otherwise idle cores, the figure to compare across machine loads. Set
``--clinics`` for a quicker, smaller run. Machine: whatever runs it; give the
figures with the load average it printed (other work on the machine slows it).

Run: ``.venv/bin/python benchmarks/bench_selfcheck.py [--repeats 3] [--clinics 1000] [--workers 0]``
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time

from analysis.model.selfcheck import run_selfcheck
from analysis.params import load_params, with_updates


def _peak_mb() -> tuple[float, float]:
    """Peak resident set size (MB) of this process and of its largest finished child (Linux: KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--clinics", type=int, default=None, help="clinics per scenario (default: params)")
    ap.add_argument("--workers", type=int, default=None, help="processes (default: params; 0 = one per core)")
    args = ap.parse_args()
    params = load_params()
    times, cpus = [], []
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; cores: {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        sc: dict[str, object] = {"out_dir": tmp}
        if args.workers is not None:
            sc["workers"] = args.workers
        p = with_updates(params, {"selfcheck": sc})
        n = p.selfcheck.n_clinics if args.clinics is None else args.clinics
        for i in range(args.repeats):
            t0, c0 = time.perf_counter(), _cpu_seconds()
            summary = run_selfcheck(p, n_clinics=n)
            times.append(time.perf_counter() - t0)
            cpus.append(_cpu_seconds() - c0)
            print(f"run {i + 1}: {times[-1]:.1f} s, {cpus[-1]:.1f} CPU s (load {os.getloadavg()[0]:.2f})", flush=True)
            if i == 0:
                print(summary, file=sys.stderr)
    own, children = _peak_mb()
    print(
        f"selfcheck, {n} clinics x 4 scenarios, {p.selfcheck.workers or os.cpu_count()} workers: "
        f"median {statistics.median(times):.1f} s over {len(times)} runs ({', '.join(f'{t:.1f}' for t in times)}); "
        f"median {statistics.median(cpus):.1f} CPU s; "
        f"peak RSS {own:.0f} MB (main), {children:.0f} MB (largest worker); "
        f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


if __name__ == "__main__":
    main()
