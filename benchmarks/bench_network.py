"""Benchmark (not a test): the one-stage network fit's rounds, wall time and bytes for 6 and 50 clinics.

Clinics are simulated by the project's generator (sizes cycling through the demo network's, solo
practices included), each becomes a node, and the network model is fitted over a transport:
``in-process`` (the arithmetic alone) or ``flower`` (a server and one Flower node per clinic as real
processes on 127.0.0.1, SecAgg+). Prints rounds, the median wall time over the repeats, the numbers
each clinic sent, the bytes exchanged (the answers as float64 for in-process; as Flower counts them for
flower), the headline and peak memory of the lead's process.

Run: ``.venv/bin/python benchmarks/bench_network.py [--clinics 6 50] [--repeats 3] [--transport in-process]``
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

from analysis.network.pooled import simulate_datasets
from analysis.network.protocol import InProcess
from analysis.network.run import fit_network, fit_network_flower
from analysis.params import load_params

SIZES = (12, 40, 70, 18, 110, 160, 24, 240, 30, 380)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clinics", type=int, nargs="+", default=[6, 50])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--transport", choices=["in-process", "flower"], default="in-process")
    args = ap.parse_args(argv)
    params = load_params()
    print(
        "| clinics | clients | rounds | wall median (s) | numbers sent per clinic | bytes exchanged | estimate |",
        end="",
    )
    print(" peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|---|")
    for k in args.clinics:
        sizes = [SIZES[i % len(SIZES)] for i in range(k)]
        data = simulate_datasets(params, [5000 + i for i in range(k)], sizes)
        folders = []
        if args.transport == "flower":
            tmp = Path(tempfile.mkdtemp(prefix="bench-network-"))
            for label, ds in data:
                (tmp / label).mkdir()
                ds.to_parquet(tmp / label / "analysis.parquet")
                folders.append(tmp / label)
        times, res = [], None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            if args.transport == "flower":
                res = fit_network_flower(folders, None, say=lambda _: None)
            else:
                res = fit_network(data, params, make_transport=InProcess, say=lambda _: None)
            times.append(time.perf_counter() - t0)
        assert res is not None
        ex = res["exchange"]
        sent = ex["values_per_clinic"]
        nbytes = ex["bytes"] or sent * 8 * k
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"| {k} | {res['network']['clients']:,} | {ex['rounds']} | {statistics.median(times):.2f} | {sent:,} | "
            f"{nbytes:,} | {res['estimate']:.3f} | {peak:.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
