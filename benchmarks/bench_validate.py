"""Benchmark (not a test): `outcomes validate` at network scale, wall time, peak RSS and where the time goes.

Run with ``python benchmarks/bench_validate.py [--clients 200000] [--repeats 3] [--keep DIR]``
(with ``PYTHONPATH=src`` or the package installed).

1. Generates a contract-valid clinic with vectorised numpy/pyarrow (seeded, so every run sees the same bytes):
   ``--clients`` clients x ``--sessions`` sessions each (default 200,000 x 10 = 2,000,000 session rows) and the
   demo's mix of measurements per session (about 4.2: pain before every session, hip rotation and LEFS at some),
   as CSV in a temporary folder (or ``--keep DIR``, reused when it already holds the same size).
2. Runs :func:`analysis.validate.run_validate` - the code behind `outcomes validate`, progress lines included -
   in a fresh child process per repeat, so the peak RSS (``ru_maxrss`` of the child) and the wall time include
   the start-up a user pays (importing great-expectations).
3. Prints the median wall time, the peak RSS, and the time per step, measured by wrapping the step functions
   (read+parse, staging, great-expectations, cross-table checks, privacy scan, rejects+typing, writing).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

ROOT = Path(__file__).resolve().parents[1]
TODAY = "2026-01-01"  # the validation day: every generated date is before it
# measure, timing, share of sessions that record it, kind (demo data/raw/demo: 4.2 measurements per session)
MEASUREMENTS = (
    ("knee_pain_nprs", "pre", 0.98, "nprs"),
    ("knee_pain_nprs", "post", 0.58, "nprs"),
    ("hip_ir_left_deg", "pre", 0.72, "deg"),
    ("hip_ir_left_deg", "post", 0.43, "deg"),
    ("hip_ir_right_deg", "pre", 0.72, "deg"),
    ("hip_ir_right_deg", "post", 0.43, "deg"),
    ("lefs", "pre", 0.37, "lefs"),
)


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers), pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(pa.scalar(prefix), digits, "")


def _pick(rng: np.random.Generator, choices: tuple[str, ...] | list[str], n: int) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(rng.integers(0, len(choices), n), pa.int32()), choices).cast(
        pa.string()
    )


def _write(table: pa.Table, path: Path) -> None:
    with pa.OSFile(str(path), "wb") as sink:
        sink.write((",".join(table.column_names) + "\n").encode())  # a plain header, as a spreadsheet writes it
        pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="none"))


def generate(folder: Path, n_clients: int, sessions_per_client: int = 10, seed: int = 20261123) -> dict[str, int]:
    """Write contract-valid clients.csv, sessions.csv, measurements.csv into ``folder``; returns rows per table."""
    from analysis.contract import ACTIVITIES, AGE_BANDS, FOCI, KNEES, SEXES, TECHNIQUES

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    n = n_clients
    id_width = max(4, len(str(n)))
    sitting = np.round(rng.uniform(0, 14, n) * 2) / 2
    sitting_text = pc.cast(pa.array(sitting), pa.string())
    sitting_text = pc.if_else(pa.array(rng.random(n) < 0.08), pa.scalar(""), sitting_text)  # some left blank
    clients = pa.table(
        {
            "client_id": _ids("C", np.arange(1, n + 1), id_width),
            "clinic_id": _pick(rng, [f"clinic-{i}" for i in range(1, 41)], n),
            "sex": _pick(rng, SEXES, n),
            "age_band": _pick(rng, AGE_BANDS, n),
            "symptom_weeks": pc.cast(pa.array(rng.integers(0, 520, n)), pa.string()),
            "sitting_hours": sitting_text,
            "activity": _pick(rng, ACTIVITIES, n),
            "knee": _pick(rng, KNEES, n),
        }
    )
    _write(clients, folder / "clients.csv")

    s = n * sessions_per_client
    s_width = max(5, len(str(s)))
    owner = np.repeat(np.arange(1, n + 1), sessions_per_client)
    first = rng.integers(0, 700, n)  # days after 2023-06-01 of each client's first session
    gaps = rng.integers(2, 15, s).reshape(n, sessions_per_client)
    gaps[:, 0] = 0
    days = (np.repeat(first, sessions_per_client) + gaps.cumsum(axis=1).ravel()).astype("int32")
    dates = pc.cast(
        pa.array(days + np.int32((np.datetime64("2023-06-01") - np.datetime64("1970-01-01")).astype(int)), pa.date32()),
        pa.string(),
    )
    combos = ["", *TECHNIQUES[:5], *(";".join(TECHNIQUES[i : i + k]) for k in (2, 3) for i in range(4))]
    therapist = _pick(rng, ["", *(f"T{i}" for i in range(1, 201))], s)
    sessions = pa.table(
        {
            "session_id": _ids("S", np.arange(1, s + 1), s_width),
            "client_id": _ids("C", owner, id_width),
            "session_date": dates,
            "therapist_id": therapist,
            "focus": _pick(rng, FOCI, s),
            "techniques": _pick(rng, combos, s),
            "minutes": pc.cast(pa.array(rng.integers(10, 181, s)), pa.string()),
        }
    )
    _write(sessions, folder / "sessions.csv")
    del sessions, therapist, dates

    parts = []
    for order, (measure, timing, share, kind) in enumerate(MEASUREMENTS):
        which = np.flatnonzero(rng.random(s) < share)
        if kind == "nprs":
            values = pc.cast(pa.array(rng.integers(0, 11, len(which))), pa.string())
        elif kind == "lefs":
            values = pc.cast(pa.array(rng.integers(0, 81, len(which))), pa.string())
        else:
            values = pc.cast(pa.array(np.round(rng.uniform(5, 60, len(which)) * 2) / 2), pa.string())
        parts.append((which, order, measure, timing, values))
    session_no = np.concatenate([w for w, *_ in parts])
    order_no = np.concatenate([np.full(len(w), o) for w, o, *_ in parts])
    sort = np.lexsort((order_no, session_no))  # by session, then in the demo's order of measures
    measure_col = pa.chunked_array([pa.array([m] * len(w)) for w, _, m, _, _ in parts]).combine_chunks()
    timing_col = pa.chunked_array([pa.array([t] * len(w)) for w, _, _, t, _ in parts]).combine_chunks()
    value_col = pa.chunked_array([v for *_, v in parts]).combine_chunks()
    take = pa.array(sort)
    measurements = pa.table(
        {
            "session_id": _ids("S", session_no[sort] + 1, s_width),
            "measure": measure_col.take(take),
            "timing": timing_col.take(take),
            "value": value_col.take(take),
        }
    )
    _write(measurements, folder / "measurements.csv")
    return {"clients": n, "sessions": s, "measurements": len(session_no)}


# --------------------------------------------------------------------------- the child: one timed validate run

STEPS = {  # module attribute -> step name in the breakdown
    "analysis.validate.run:load_inputs": "read+parse",
    "analysis.validate.checks:build_suites": "gx suites",
    "analysis.validate.gx_run:stage_table": "staging",
    "analysis.validate.gx_run:_distinct": "staging",
    "analysis.validate.gx_run:member": "cross-table",
    "analysis.validate.gx_run:run_suite": "great-expectations",
    "analysis.validate.checks:_privacy_problems": "privacy scan",
    "analysis.validate.checks:_rejected_rows": "rejects+typing",
    "analysis.validate.checks:_rejects_frame": "rejects+typing",
    "analysis.validate.checks:typed_tables": "rejects+typing",
    "analysis.validate.run:write_parquet": "writing",
    "analysis.validate.run:write_csv": "writing",
    "analysis.validate.run:write_json": "writing",
    "analysis.validate.run:write_text": "writing",
    "analysis.validate.run:validation_json": "writing",
    "analysis.validate.run:validation_html": "writing",
}


def _wrap_steps(spent: dict[str, float]) -> None:
    import functools
    import importlib

    for target, step in STEPS.items():
        module_name, attr = target.split(":")
        module = importlib.import_module(module_name)
        if not hasattr(module, attr):
            continue
        fn = getattr(module, attr)

        @functools.wraps(fn)
        def timed(*args: Any, _fn: Any = fn, _step: str = step, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return _fn(*args, **kwargs)
            finally:
                spent[_step] = spent.get(_step, 0.0) + time.perf_counter() - t0

        setattr(module, attr, timed)


def child(folder: Path, out: Path) -> int:
    """One validate run as `outcomes validate` does it; prints a JSON line with the timings."""
    import datetime as dt
    import resource

    t0 = time.perf_counter()
    from analysis.params import load_params, with_updates
    from analysis.validate import run_validate
    from analysis.validate.suites import import_gx

    import_gx()
    spent: dict[str, float] = {"import": time.perf_counter() - t0}
    _wrap_steps(spent)
    params = with_updates(
        load_params(ROOT / "params.yaml"),
        {"validate": {"out_dir": str(out / "interim"), "report_dir": str(out / "reports"), "max_file_mb": 4096}},
    )
    t_run = time.perf_counter()

    def say(step: str) -> None:
        print(f"  [{time.perf_counter() - t_run:6.1f} s] {step}", file=sys.stderr, flush=True)

    run_validate(params, input_dir=folder, today=dt.date.fromisoformat(TODAY), progress=say)
    spent["validate total"] = time.perf_counter() - t_run
    spent["wall"] = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    spent["peak_rss_mb"] = usage.ru_maxrss / 1024
    spent["cpu"] = usage.ru_utime + usage.ru_stime  # the machine may be shared: CPU time says what wall cannot
    print(json.dumps(spent))
    return 0


# --------------------------------------------------------------------------- the parent


def _run_child(folder: Path, out: Path, quiet: bool) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, __file__, "--child", str(folder), "--out", str(out)]
    done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL if quiet else None, text=True)
    if done.returncode != 0:
        raise SystemExit(f"validate failed (exit {done.returncode}); rerun without --quiet to see why")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--clients", type=int, default=200_000)
    ap.add_argument("--sessions", type=int, default=10, help="sessions per client")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="generate into (or reuse) this folder instead of a temporary one")
    ap.add_argument("--quiet", action="store_true", help="hide the progress lines of validate")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args.child, args.out)

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp) / "clinic"
        stamp = folder / "bench.json"
        want = {"clients": args.clients, "sessions_per_client": args.sessions}
        if stamp.exists() and json.loads(stamp.read_text())["args"] == want:
            counts = json.loads(stamp.read_text())["rows"]
            print(f"reusing {folder}")
        else:
            t0 = time.perf_counter()
            counts = generate(folder, args.clients, args.sessions)
            stamp.write_text(json.dumps({"args": want, "rows": counts}))
            print(f"generated in {time.perf_counter() - t0:.1f} s")
        sizes = {n: (folder / f"{n}.csv").stat().st_size / 2**20 for n in counts}
        print("  " + ", ".join(f"{n}.csv {counts[n]:,} rows ({sizes[n]:.0f} MB)" for n in counts))
        runs = [_run_child(folder, Path(tmp) / f"out{i}", args.quiet) for i in range(args.repeats)]

    keys = [k for k in runs[0] if k not in ("wall", "peak_rss_mb", "validate total", "cpu")]
    print(
        f"\nvalidate: {args.clients:,} clients, {counts['sessions']:,} sessions, "
        f"{counts['measurements']:,} measurements"
    )
    print(f"  wall (median of {len(runs)}): {statistics.median(r['wall'] for r in runs):7.1f} s")
    print(f"  CPU time (median):     {statistics.median(r['cpu'] for r in runs):7.1f} s")
    print(f"  peak RSS (max):        {max(r['peak_rss_mb'] for r in runs):7.0f} MB")
    print(f"  validate without import: {statistics.median(r['validate total'] for r in runs):5.1f} s, of which:")
    for k in keys:
        print(f"    {k:22} {statistics.median(r.get(k, 0.0) for r in runs):7.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
