"""How many significant digits of the primary model's numbers are certain (evidence for store.SIGNIFICANT_DIGITS).

The optimiser stops where its checks pass (:mod:`analysis.model.lmm.optimize`), not at the exact optimum:
another BLAS kernel (``OPENBLAS_CORETYPE=Prescott``) or another start moves the stopping point. This fits
the primary model on a built project's analysis dataset and writes every float of the result at full
precision; ``--compare`` then prints, per quantity, how many significant digits all runs share::

    python benchmarks/digits_certain.py run a.json                      # default start
    python benchmarks/digits_certain.py run b.json --perturb 1e-3       # start theta * (1 + 1e-3)
    OPENBLAS_CORETYPE=Prescott python benchmarks/digits_certain.py run c.json
    python benchmarks/digits_certain.py compare a.json b.json c.json

Run from a project whose ``data/processed/analysis.parquet`` exists (after ``outcomes join``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.model import primary
from analysis.model.lmm import optimize
from analysis.model.prepare import primary_data
from analysis.params import load_params
from analysis.paths import resolve


def flatten(obj: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    """(dotted key, value) for every float in nested dicts and lists."""
    if isinstance(obj, dict):
        for k, v in sorted(obj.items()):
            yield from flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from flatten(v, f"{prefix}[{i}]")
    elif isinstance(obj, (float, np.floating)) and math.isfinite(float(obj)):
        yield prefix, float(obj)


def shared_digits(values: Sequence[float]) -> float:
    """Significant digits on which all ``values`` agree: -log10(max relative spread); 17 when identical."""
    ref = max(abs(v) for v in values)
    spread = max(values) - min(values)
    if spread == 0 or ref == 0:
        return 17.0
    return -math.log10(spread / ref)


def run(out: Path, perturb: float) -> None:
    params = load_params()
    cfg = params.model
    dataset = pd.read_parquet(resolve(params.join.out))
    if perturb:
        original = optimize.moment_start

        def moved(d: Any) -> np.ndarray | None:
            start = original(d)
            return None if start is None else start * (1.0 + perturb)

        optimize.moment_start = moved  # type: ignore[assignment]
    entry, tables, _ = primary.primary_analysis(primary_data(dataset, cfg), cfg)
    keep = {k: entry[k] for k in ("estimate", "se", "df", "ci_low", "ci_high", "p_value", "slope_difference")}
    keep |= {"fixed_effects": entry["fixed_effects"], "random_effects": entry["random_effects"]}
    keep |= {"trajectories": tables["trajectories"].select_dtypes("number").to_numpy().tolist()}
    out.write_text(json.dumps(dict(flatten(keep)), indent=1), encoding="utf-8")


def compare(paths: Sequence[Path]) -> None:
    runs = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    keys = sorted(set.intersection(*(set(r) for r in runs)))
    rows = [(k, shared_digits([r[k] for r in runs]), runs[0][k]) for k in keys]
    digits = np.array([d for _, d, _ in rows])
    print(f"{len(rows)} quantities, runs: {', '.join(p.name for p in paths)}")
    print("| shared significant digits | quantities |")
    print("|---|---|")
    for lo, hi in ((0, 6), (6, 7), (7, 8), (8, 9), (9, 10), (10, 11), (11, 12), (12, 17), (17, 18)):
        n = int(((digits >= lo) & (digits < hi)).sum())
        print(f"| {lo}-{hi} | {n} |" if hi < 18 else f"| identical | {n} |")
    print("\nfewest shared digits:")
    for k, d, v in sorted(rows, key=lambda r: r[1])[:8]:
        print(f"  {d:5.1f}  {k} = {v!r}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("out", type=Path)
    r.add_argument("--perturb", type=float, default=0.0)
    c = sub.add_parser("compare")
    c.add_argument("files", type=Path, nargs="+")
    args = ap.parse_args(argv)
    if args.cmd == "run":
        run(args.out, args.perturb)
    else:
        compare(args.files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
