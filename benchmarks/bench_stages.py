"""Benchmark (not a test): the whole pipeline on a generated clinic, stage by stage, as `dvc repro` runs it.

A clinic of N clients (default 50,000; about 10 sessions each) is simulated by the project's generator
into a temporary folder; each stage then runs as its own `outcomes` process (validate, join, model,
report) with a params file whose every path points into that folder (as the demo network does). Prints
per stage the wall time, the CPU time and the peak RSS of the stage's process (``os.wait4``), and the
totals; with the machine's load average, since a shared 2-core machine's wall times depend on it.

Run: ``.venv/bin/python benchmarks/bench_stages.py [--clients 50000]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("validate", "join", "model", "report")


def run_stage(argv: list[str]) -> tuple[float, float, float, int]:
    """(wall s, CPU s, peak RSS MB, exit code) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode() if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        print(err[-2000:], file=sys.stderr)
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, code


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50_000)
    args = ap.parse_args(argv)

    from analysis.params import load_params, with_updates
    from analysis.pool.demo import clinic_params
    from analysis.simulate import run_simulate

    params = load_params(ROOT / "params.yaml")
    outcomes = str(ROOT / ".venv" / "bin" / "outcomes")
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as tmp:
        folder = Path(tmp) / "clinic"
        p = with_updates(
            clinic_params(params, folder, "clinic-bench"),
            {"simulate": {"planned_sessions_mean": 10, "sessions_max": 12}, "report": {"signing_key": None}},
        )
        t0 = time.perf_counter()
        run_simulate(folder / "data", p, n_clients=args.clients)
        print(f"simulated {args.clients:,} clients in {time.perf_counter() - t0:.1f} s (not counted)")
        params_file = Path(tmp) / "params.yaml"
        params_file.write_text(yaml.safe_dump(p.model_dump(by_alias=True, exclude_none=True), sort_keys=False))
        rows, ok = [], True
        for stage in STAGES:
            load = os.getloadavg()[0]
            wall, cpu, rss, code = run_stage([outcomes, "--params", str(params_file), stage])
            rows.append((stage, wall, cpu, rss, load, code))
            ok &= code == 0
    print(f"| stage ({args.clients:,} clients) | wall (s) | CPU (s) | peak RSS (MB) | load avg at start | exit |")
    print("|---|---|---|---|---|---|")
    for stage, wall, cpu, rss, load, code in rows:
        print(f"| {stage} | {wall:.1f} | {cpu:.1f} | {rss:,.0f} | {load:.1f} | {code} |")
    print(
        f"| **total** | {sum(r[1] for r in rows):.1f} | {sum(r[2] for r in rows):.1f} | "
        f"{max(r[3] for r in rows):,.0f} (largest stage) | | |"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
