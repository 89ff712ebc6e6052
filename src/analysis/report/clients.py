"""The client finder's data: one compact array per client, embedded in the therapist page as JSON.

At 50,000 clients one inline SVG chart per client made a 64 MB page. Instead the page carries every
client's numbers once, rounded, in a ``<script type="application/json" id="client-data">`` block
(:func:`client_cards`), and its script (``templates/therapist.js``) draws a client's chart -- the
values by week, the MCID band, the expected-recovery band where the model gave one
(:mod:`analysis.report.recovery`), with the last score and change in words -- only when the client is
opened or shown by the finder. The worklist's trend lines (:func:`sparkline_svg`) stay as server-drawn
SVG for the active clients, so that list reads without JavaScript.

The block's layout (``fields`` in the JSON says it too), one array per client in the client table's
order (most urgent first)::

    [id, group, status, sessions, first_visit, last_visit, weeks_since_last, therapist, flags,
     mcid_target, days, values, band, expected_at_latest]

(first, latest and best are the first, last and best of ``values``: not repeated).

``group``, ``status`` and ``therapist`` index the lists ``groups``, ``statuses`` and ``therapists``;
visit dates are whole days after ``day0``; ``flags`` is 1 for active plus 2 for new on the worklist;
``days`` are each value's days since the client's first (weeks x 7); scores have one decimal (whole
numbers are written without one); ``band`` is the expected-recovery band as ``[curve, week, expected,
week, expected, ...]``: the expected line at its knots (weeks where a straight line between knots would
be more than :data:`BAND_TOLERANCE` points off are kept) and the index of its half-width curve in
``band_curves`` (``[week, half-width, ...]`` at every week, one decimal; ``low/high = expected -/+
half-width``, cut to the measure's range when drawn); ``expected_at_latest`` is
``[expected, low, high]`` at the latest value's week (as on the worklist). Trailing empty entries are
left out. Same inputs, same bytes: fixed rounding, no dict-order or float-repr surprises.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup

from analysis.contract import Measure
from analysis.report import worklist as wl
from analysis.report.render import GROUP_COLOURS

FIELDS = (
    "id",
    "group",
    "status",
    "sessions",
    "first_visit",
    "last_visit",
    "weeks_since_last",
    "therapist",
    "flags",
    "mcid_target",
    "days",
    "values",
    "band",
    "expected_at_latest",
)
#: the drawn band may be this many points off the model's band between knots (the chart is ~7 px a point)
BAND_TOLERANCE = 0.05
ACTIVE, NEW = 1, 2


@dataclass(frozen=True)
class ClientData:
    """The finder's data block: ``json`` (safe inside ``<script type="application/json">``) and ``count``."""

    json: Markup
    count: int


def _r1(a: np.ndarray) -> list[Any]:
    """One decimal, whole numbers as ints, NaN as None (JSON null): fixed text for the same numbers."""
    a = np.asarray(a, dtype=float)
    r = np.round(a * 10.0) / 10.0 + 0.0  # + 0.0: no "-0"
    out: list[Any] = r.tolist()
    for i, v in enumerate(out):
        if not math.isfinite(v):
            out[i] = None
        elif v.is_integer():
            out[i] = int(v)
    return out


def _by_client(frame: pd.DataFrame, cols: list[str]) -> dict[str, list[np.ndarray]]:
    """client_id -> its rows' ``cols`` as float arrays, in the frame's order within the client."""
    if frame is None or frame.empty:
        return {}
    ids = frame["client_id"].astype(str).to_numpy()
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    arrays = [frame[c].to_numpy(dtype=float)[order] for c in cols]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    ends = np.r_[starts[1:], len(ids)]
    return {str(ids[s]): [a[s:e] for a in arrays] for s, e in zip(starts, ends, strict=True)}


def band_knots(weeks: np.ndarray, series: np.ndarray, tol: float = BAND_TOLERANCE) -> list[int]:
    """Indices of the weeks to keep so that straight lines between them stay within ``tol`` of every
    column of ``series`` (rows = weeks); the first and last are always kept (greedy, left to right).

    Examples
    --------
    >>> band_knots(np.arange(5.0), np.array([[0.0], [1.0], [2.0], [2.0], [2.0]]))
    [0, 2, 4]
    """
    n = len(weeks)
    if n <= 2:
        return list(range(n))
    keep, a = [0], 0
    for j in range(2, n):
        t = (weeks[a + 1 : j] - weeks[a]) / (weeks[j] - weeks[a])
        line = series[a] + t[:, None] * (series[j] - series[a])
        if np.abs(series[a + 1 : j] - line).max() > tol:
            keep.append(j - 1)
            a = j - 1
    keep.append(n - 1)
    return keep


class Bands:
    """The expected-recovery bands in compact form: each client's expected line at its knots, and the
    band's half-width as one of a few shared curves (it depends on the model's variances and little on the
    client, so after rounding most clients share one)."""

    def __init__(self) -> None:
        self.curves: list[list[Any]] = []
        self._index: dict[tuple[Any, ...], int] = {}

    def client(self, rows: list[np.ndarray] | None) -> list[Any]:
        """``[curve, week, expected, week, expected, ...]`` (the expected line at its knots), or []."""
        if rows is None:
            return []
        ok = np.isfinite(rows[0]) & np.isfinite(rows[1]) & np.isfinite(rows[2])
        weeks, expected, half = (a[ok] for a in rows)
        if not len(weeks):
            return []
        curve = _r1(np.column_stack([weeks, half]).ravel())
        key = tuple(curve)
        if key not in self._index:
            self._index[key] = len(self.curves)
            self.curves.append(curve)
        keep = band_knots(weeks, expected[:, None])
        return [self._index[key], *_r1(np.column_stack([weeks[keep], expected[keep]]).ravel())]


def client_cards(
    clients: pd.DataFrame,
    progress: pd.DataFrame,
    measure: Measure,
    band: pd.DataFrame | None = None,
) -> ClientData:
    """The finder's data block for every client of ``clients`` (:func:`analysis.report.worklist.client_table`
    rows, with ``reference`` in the clinic's real-date view), in that table's order.

    ``progress`` is :func:`analysis.report.therapist.client_progress` (week, value per session); ``band``
    is :func:`analysis.report.recovery.band_table` (expected, low, high by week; symmetric about expected)
    or None.
    """
    values = _by_client(progress, ["week", "value"])
    bands, compact = {}, Bands()
    if band is not None and not band.empty:
        bands = _by_client(band.assign(half=(band["high"] - band["low"]) / 2.0), ["week", "expected", "half"])
    groups = sorted({str(g) for g in clients["group"]} | set(GROUP_COLOURS))
    therapists = sorted({str(t) for t in clients["therapist_id"]})
    g_ix = {g: i for i, g in enumerate(groups)}
    t_ix = {t: i for i, t in enumerate(therapists)}
    s_ix = {s: i for i, s in enumerate(wl.STATUSES)}
    first_days = pd.to_datetime(clients["first_visit"])
    day0 = first_days.min() if len(clients) else pd.Timestamp("2000-01-01")
    first = ((first_days - day0).dt.days).to_numpy()
    last = ((pd.to_datetime(clients["last_visit"]) - day0).dt.days).to_numpy()
    target = _r1(np.array([measure.mcid_target(float(b)) for b in clients["baseline"]], dtype=float))
    at = clients[["expected", "expected_low", "expected_high"]].to_numpy(dtype=float)
    has_at = np.isfinite(at).all(axis=1)
    flags = np.where(clients["active"].to_numpy(dtype=bool), ACTIVE, 0) + np.where(
        clients["new"].to_numpy(dtype=bool), NEW, 0
    )
    cols = zip(
        clients["client_id"].astype(str),
        [g_ix[str(g)] for g in clients["group"]],
        [s_ix[str(x)] for x in clients["status"]],
        clients["sessions"].astype(int),
        first.tolist(),
        last.tolist(),
        clients["weeks_since_last"].astype(int),
        [t_ix[str(t)] for t in clients["therapist_id"]],
        flags.tolist(),
        target,
        strict=True,
    )
    rows = []
    for i, (cid, g, st, n_sessions, d0, d1, since, ther, flag, tgt) in enumerate(cols):
        wv = values.get(cid)
        # first, latest and best are the first, last and best of the values: not repeated
        row: list[Any] = [
            cid,
            g,
            st,
            int(n_sessions),
            int(d0),
            int(d1),
            int(since),
            ther,
            int(flag),
            tgt,
            np.rint(wv[0] * 7).astype(int).tolist() if wv else [],
            _r1(wv[1]) if wv else [],
            compact.client(bands.get(cid)),
            _r1(at[i]) if has_at[i] else [],
        ]
        while row and row[-1] == []:
            row.pop()
        rows.append(row)
    refs = [str(x) for x in clients["reference"]] if "reference" in clients.columns else []
    data: dict[str, Any] = {
        "fields": list(FIELDS),
        "day0": day0.date().isoformat(),
        "groups": groups,
        "colours": [GROUP_COLOURS.get(g, "#555555") for g in groups],
        "statuses": list(wl.STATUSES),
        "therapists": therapists,
        "measure": {
            "label": measure.label,
            "min": _r1(np.array([measure.minimum]))[0],
            "max": _r1(np.array([measure.maximum]))[0],
            "lower_is_better": measure.lower_is_better,
        },
        "band_curves": compact.curves,
        "clients": rows,
    }
    if any(refs):
        data["refs"] = refs
    return ClientData(json=Markup(script_json(data)), count=len(rows))


def script_json(data: Any) -> str:
    """Compact JSON that cannot end its ``<script>`` element early (``<``, ``>``, ``&`` escaped)."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def sparkline_svg(values: list[float], measure: Measure) -> str:
    """A tiny trend line for a worklist row (the last value marked)."""
    lo, hi = float(measure.minimum), float(measure.maximum)
    w, h = 80, 20
    n = len(values)
    if n == 0:
        return ""
    xs = [2 + (w - 4) * (i / max(n - 1, 1)) for i in range(n)]
    ys = [2 + (h - 4) * (1 - (v - lo) / ((hi - lo) or 1.0)) for v in values]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
    return (
        f'<svg class="sparkline" viewBox="0 0 {w} {h}" width="{w}" height="{h}" aria-hidden="true">'
        f'<polyline points="{path}" fill="none" stroke="#333" stroke-width="1.2"/>'
        f'<circle cx="{xs[-1]:.1f}" cy="{ys[-1]:.1f}" r="2" fill="#c0392b"/></svg>'
    )
