"""Writing a simulated clinic: the tables as contract CSV text, and ``outcomes simulate``'s edge.

Files are written atomically and are byte-identical for the same parameters and seed.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.contract import (
    TABLES,
    load_registry,
)
from analysis.errors import InputError
from analysis.params_schema import Params
from analysis.paths import resolve
from analysis.simulate.config import MEASURES, Clinic
from analysis.simulate.model import simulate_clinic
from analysis.store import write_csv, write_json

# --------------------------------------------------------------------------- writing


def format_tables(clinic: Clinic) -> dict[str, pd.DataFrame]:
    """The three tables as text, ready to write as contract CSV files.

    Dates become ``YYYY-MM-DD``; whole numbers have no decimals (``6``, not
    ``6.0``); other numbers at most one decimal (``34.5``); missing optional
    values are empty.

    Returns
    -------
    dict of table name -> DataFrame of strings, columns in contract order.
    """
    c = clinic.clients.assign(sitting_hours=_number_text(clinic.clients["sitting_hours"].to_numpy()))
    s = clinic.sessions.assign(
        session_date=clinic.sessions["session_date"].to_numpy().astype("datetime64[D]").astype(str),
    )
    m = clinic.measurements.assign(value=_number_text(clinic.measurements["value"].to_numpy()))
    return {"clients": c, "sessions": s, "measurements": m}


def _number_text(values: np.ndarray) -> np.ndarray:
    """Non-negative numbers as text with at most one decimal; NaN -> empty (vectorised, no float repr)."""
    missing = np.isnan(values)
    tenths = np.rint(np.where(missing, 0, values) * 10).astype(np.int64)
    whole, frac = tenths // 10, tenths % 10
    text = np.char.add(whole.astype(str), np.where(frac == 0, "", np.char.add(".", frac.astype(str))))
    return np.where(missing, "", text).astype(object)


def run_simulate(
    out_dir: Path | str,
    params: Params,
    seed: int | None = None,
    n_clients: int | None = None,
    effect: float | None = None,
) -> str:
    """Simulate a clinic and write clients.csv, sessions.csv, measurements.csv and truth.json.

    Files are written atomically and are byte-identical for the same
    parameters and seed. Returns a one-line summary.
    """
    cfg = params.simulate
    registry = load_registry(resolve(params.data.registry))
    absent = [m for m in MEASURES if m not in registry]
    if absent:
        raise InputError(
            f"{registry.source}: the simulator records {', '.join(absent)}; add them to the measures registry"
        )
    seed = int(cfg.get("seed", 0) if seed is None else seed)
    t0 = time.perf_counter()
    clinic = simulate_clinic(cfg, seed, n_clients=n_clients, effect=effect, primary_week=params.model.primary_week)
    out = resolve(out_dir)
    for name, frame in format_tables(clinic).items():
        write_csv(out / TABLES[name].filename, frame)
    write_json(out / "truth.json", clinic.truth, digits=None)  # data, not an estimate: every digit kept
    t = clinic.truth
    return (
        f"wrote {out}: {len(clinic.clients):,} clients, {len(clinic.sessions):,} sessions, "
        f"{len(clinic.measurements):,} measurements (seed {seed}, {time.perf_counter() - t0:.1f} s); "
        f"true slope difference {t['true_slope_difference']:g} NPRS/week, "
        f"week {t['primary_week']:g} change difference {t['true_change_difference_primary_week']:g}"
    )
