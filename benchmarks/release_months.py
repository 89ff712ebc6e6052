"""Cumulative monthly releases of the demo: how many clients' exact scores an attacker recovers, before and after
the release policy (:mod:`analysis.privacy.release`, :mod:`analysis.privacy.summaries`).

At the end of every month the clinic would release the findings bundle of all data so far. The attacker holds
every release and, for every pair of releases and each arm, subtracts ``n_j x mean_j - n_i x mean_i`` (baseline
pain, and change at the endpoint). Where the arm grew by exactly one client, that is the client's own score.
A value counts as recovered when it is the only whole number in 0..10 (-10..10 for change) the published
numbers allow and it is the client's true score.

Before: every month is released, means at full precision. After: a month is released only when the
differencing rule passes against every earlier released month, and means are rounded to 1 decimal (and
withheld for arms the enumeration rule protects)::

    PYTHONPATH=src python benchmarks/release_months.py            # prints the two counts and the releases made
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.join import build_analysis_dataset
from analysis.model.endpoint import client_endpoint
from analysis.model.prepare import primary_data
from analysis.params import load_params
from analysis.privacy import audit, release
from analysis.privacy.summaries import MIN_ARM, rounded, summaries_shown
from analysis.validate.checks import typed_tables

ROOT = Path(__file__).resolve().parents[1]
ARMS = {1: "hip_focused", 0: "comparator"}


def monthly_states(folder: Path) -> list[tuple[str, pd.DataFrame]]:
    """Per month end: the clients' endpoint table (one row per analysed client) of all data up to then."""
    p = load_params(ROOT / "params.yaml")
    raw = {t: pd.read_csv(folder / f"{t}.csv", dtype="string") for t in ("clients", "sessions", "measurements")}
    t = typed_tables(raw)
    dates = pd.to_datetime(t["sessions"]["session_date"])
    out = []
    for month in sorted(dates.dt.strftime("%Y-%m").unique()):
        end = pd.Period(month).end_time
        s = t["sessions"][dates <= end]
        m = t["measurements"][t["measurements"]["session_id"].isin(s["session_id"])]
        c = t["clients"][t["clients"]["client_id"].isin(s["client_id"])]
        ds = build_analysis_dataset(c, s, m, tuple(p.model.exposure.hip_focused))
        out.append((month, client_endpoint(primary_data(ds, p.model).data, p.model)))
    return out


def published(ep: pd.DataFrame, policy: bool) -> dict[str, dict[str, Any]]:
    """What a month's bundle shows per arm: members (for checking only), n, means, as published."""
    out = {}
    for hip, arm in ARMS.items():
        g = ep[ep["hip"] == hip]
        e = g[g["observed"] == 1]
        base, change = g["baseline_y"].astype(float), e["change"].astype(float)
        if policy:
            mb = rounded(base.mean()) if summaries_shown(base.tolist()) else None
            mc = rounded(change.mean()) if len(change) >= MIN_ARM else None
        else:
            mb, mc = base.mean(), change.mean()
        out[arm] = {
            "base": dict(zip(g["client_id"], base, strict=True)),
            "change": dict(zip(e["client_id"], change, strict=True)),
            "n": len(g),
            "n_endpoint": len(e),
            "baseline_mean": mb,
            "change_mean": mc,
        }
    return out


def recovered(releases: list[dict[str, Any]], half_width: float) -> set[tuple[str, str]]:
    """(client, quantity) pairs whose exact score the attacker gets by subtracting two releases."""
    got = set()
    for i, a in enumerate(releases):
        for b in releases[i + 1 :]:
            for arm in ARMS.values():
                for key, n_key, mean_key, lo_hi in (
                    ("base", "n", "baseline_mean", (0, 10)),
                    ("change", "n_endpoint", "change_mean", (-10, 10)),
                ):
                    A, B = a[arm], b[arm]
                    if B[n_key] - A[n_key] != 1 or A[mean_key] is None or B[mean_key] is None:
                        continue
                    lo = B[n_key] * (B[mean_key] - half_width) - A[n_key] * (A[mean_key] + half_width)
                    hi = B[n_key] * (B[mean_key] + half_width) - A[n_key] * (A[mean_key] - half_width)
                    whole = [v for v in range(lo_hi[0], lo_hi[1] + 1) if lo - 1e-6 <= v <= hi + 1e-6]
                    new = set(B[key]) - set(A[key])
                    same = all(B[key].get(k) == v for k, v in A[key].items())
                    if len(whole) == 1 and len(new) == 1 and same:
                        (client,) = new
                        if math.isclose(B[key][client], whole[0]):
                            got.add((client, key))
    return got


def main() -> None:
    states = monthly_states(ROOT / "data" / "raw" / "demo")
    before = [published(ep, policy=False) for _, ep in states]
    after, ledger, months = [], [], []
    for (month, ep), _ in zip(states, before, strict=True):
        pub = published(ep, policy=True)
        counts = audit.shown_counts(
            {
                f"findings.json:arms.{arm}.{k}": (pub[arm][k], str(pub[arm][k]))
                for arm in ARMS.values()
                for k in ("n", "n_endpoint")
            }
            | {"findings.json:primary.n_clients": (len(ep), str(len(ep)))}
        )
        if release.differencing(counts, ledger, 5):
            continue  # refused: the clinic waits for more clients
        ledger.append(release.entry_for(counts, month))
        after.append(pub)
        months.append(month)
    n_clients = len(states[-1][1])
    rb, ra = recovered(before, 0.0), recovered(after, 0.05)
    print(f"monthly releases: {len(before)} before, {len(after)} after the policy ({', '.join(months)})")
    print(f"clients with an exact score recovered: before {len({c for c, _ in rb})} of {n_clients} ({len(rb)} scores)")
    print(f"clients with an exact score recovered: after  {len({c for c, _ in ra})} of {n_clients} ({len(ra)} scores)")


if __name__ == "__main__":
    main()
