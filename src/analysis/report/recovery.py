"""The expected-recovery band on the therapist's charts, the progress sheets and the worklist.

The model step writes each analysed client's expected score and its prediction SD by week
(``expected.csv``, :mod:`analysis.model.expected`); here they become a band at the level of params
``report.attention.expected_band`` (normal quantiles: ``expected +/- z sd``), read at any week by linear
interpolation between whole weeks, and described in plain words.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from analysis.contract import Measure

BAND_COLUMNS = ["client_id", "week", "expected", "low", "high"]


class BandPoint(NamedTuple):
    """The band at one week: expected score and the band's lower and upper ends."""

    expected: float
    low: float
    high: float


def band_table(expected: pd.DataFrame | None, level: float) -> pd.DataFrame:
    """``expected.csv`` (client_id, week, expected, sd) -> the band (:data:`BAND_COLUMNS`) at ``level``.

    An absent or empty table (the primary fit failed, or an older model run) gives an empty band.

    Examples
    --------
    >>> e = pd.DataFrame({"client_id": ["A"], "week": [0.0], "expected": [5.0], "sd": [1.0]})
    >>> band_table(e, 0.8).round(2).to_dict("records")
    [{'client_id': 'A', 'week': 0.0, 'expected': 5.0, 'low': 3.72, 'high': 6.28}]
    """
    if expected is None or expected.empty or not {"client_id", "week", "expected", "sd"} <= set(expected.columns):
        return pd.DataFrame(columns=BAND_COLUMNS)
    z = float(stats.norm.ppf(0.5 + level / 2))
    e = expected.assign(client_id=expected["client_id"].astype(str))
    out = e.assign(low=e["expected"] - z * e["sd"], high=e["expected"] + z * e["sd"])
    return out.sort_values(["client_id", "week"], kind="mergesort").reset_index(drop=True)[BAND_COLUMNS]


def by_client(band: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The band split per client (client_id -> its rows in week order)."""
    return {str(cid): g.reset_index(drop=True) for cid, g in band.groupby("client_id", sort=True)}


def band_at(rows: pd.DataFrame | None, week: float) -> BandPoint | None:
    """The band of one client (rows of :func:`band_table`) at ``week``; None outside the band's weeks."""
    if rows is None or rows.empty:
        return None
    weeks = rows["week"].to_numpy(dtype=float)
    if not weeks[0] - 1e-9 <= week <= weeks[-1] + 1e-9:
        return None
    return BandPoint(
        *(float(np.interp(week, weeks, rows[c].to_numpy(dtype=float))) for c in ("expected", "low", "high"))
    )


def is_behind(value: float, point: BandPoint | None, measure: Measure) -> bool:
    """True when ``value`` lies beyond the band on the worse side (above it when lower is better)."""
    if point is None:
        return False
    return value > point.high + 1e-9 if measure.lower_is_better else value < point.low - 1e-9


def band_note(level: float, fitted: bool, has_band: bool, measure: Measure) -> str:
    """One or two plain sentences on what the band is (or why there is none)."""
    pct = f"{level * 100:.0f}%"
    if not fitted:
        return (
            "No expected-recovery band: the primary model could not be fitted trustworthily, so there is no "
            "model to say what to expect."
        )
    if not has_band:
        return "No expected-recovery band: the model results hold none (re-run `outcomes model`)."
    worse = "above" if measure.lower_is_better else "below"
    tail = f"{(1 - level) / 2 * 100:.0f} in 100"
    return (
        f"Expected recovery: the primary mixed model's prediction for a client with the same first score, group, "
        f"symptom duration, age band, sex, sitting hours and sport; the band is where {pct} of such clients' scores "
        f"fall at each week, allowing for the model's uncertainty, differences between clients and "
        f"session-to-session variation. A latest score {worse} the band (as only about {tail} would be) puts the "
        "client on the worklist as behind expected recovery: a prompt to look again, not a verdict."
    )
