"""The client finder: one small chart per client with its own anchor, and a searchable, sortable table.

Charts are written as compact inline SVG text (no matplotlib: at 2,000 clients a figure library
would make one 11 MB image that Ctrl-F cannot search). Each chart carries its legend in words, its
client id as text, the MCID band, the expected-recovery band where the model gave one
(:mod:`analysis.report.recovery`: a shaded band in the group's colour around a dashed expected line),
and the axis scale; colours follow the reports' group colours.
"""

from __future__ import annotations

import html
import math
from typing import Any

import pandas as pd

from analysis.contract import Measure
from analysis.report import recovery as rc
from analysis.report.render import GROUP_COLOURS

W, H, PAD_L, PAD_R, PAD_T, PAD_B = 240, 96, 26, 8, 8, 18


def _xy(weeks: list[float], values: list[float], lo: float, hi: float, w_max: float) -> list[tuple[float, float]]:
    span = (hi - lo) or 1.0
    wx = w_max or 1.0
    return [
        (PAD_L + (W - PAD_L - PAD_R) * (wk / wx), PAD_T + (H - PAD_T - PAD_B) * (1 - (v - lo) / span))
        for wk, v in zip(weeks, values, strict=True)
    ]


def chart_svg(
    weeks: list[float],
    values: list[float],
    measure: Measure,
    group: str,
    needed: float,
    label: str,
    expected: pd.DataFrame | None = None,
) -> str:
    """A small chart of one client's values by week, with the MCID band (baseline to the needed improvement)
    and, when ``expected`` (this client's rows of :func:`analysis.report.recovery.band_table`) is given, the
    expected-recovery band over its weeks (the axis then spans at least the band's weeks)."""
    lo, hi = float(measure.minimum), float(measure.maximum)
    has_band = expected is not None and not expected.empty
    band_end = float(expected["week"].max()) if expected is not None and has_band else 0.0
    w_max = max(1.0, max(weeks) if weeks else 1.0, band_end)
    colour = GROUP_COLOURS.get(group, "#555555")
    base = values[0] if values else lo
    target = measure.mcid_target(base)
    band = sorted([min(max(base, lo), hi), min(max(target, lo), hi)]) if math.isfinite(needed) else None
    parts = [f'<svg class="spark" viewBox="0 0 {W} {H}" role="img" aria-label="{html.escape(label)}">']
    if band:
        (x0, y0), (_, y1) = _xy([0, 0], [band[1], band[0]], lo, hi, w_max)
        parts.append(
            f'<rect x="{PAD_L}" y="{y0:.0f}" width="{W - PAD_L - PAD_R}" height="{max(y1 - y0, 1):.0f}" '
            'fill="#e6e6e6"/>'
        )
    if expected is not None and has_band:
        bw = [float(x) for x in expected["week"]]
        clip = [[min(max(float(v), lo), hi) for v in expected[c]] for c in ("low", "high", "expected")]
        upper = _xy(bw, clip[1], lo, hi, w_max)
        lower = _xy(bw, clip[0], lo, hi, w_max)
        ring = " ".join(f"{x:.1f},{y:.1f}" for x, y in [*upper, *reversed(lower)])
        mid = " ".join(f"{x:.1f},{y:.1f}" for x, y in _xy(bw, clip[2], lo, hi, w_max))
        parts.append(f'<polygon class="expected-band" points="{ring}" fill="{colour}" fill-opacity="0.16"/>')
        parts.append(
            f'<polyline points="{mid}" fill="none" stroke="{colour}" stroke-width="1" stroke-dasharray="3 2" '
            'stroke-opacity="0.8"/>'
        )
    for tick in (lo, (lo + hi) / 2, hi):
        ((_, ty),) = _xy([0], [tick], lo, hi, w_max)
        parts.append(f'<text x="{PAD_L - 3}" y="{ty + 3:.0f}" text-anchor="end">{tick:g}</text>')
    parts.append(
        f'<text x="{W - PAD_R}" y="{H - 4}" text-anchor="end">week {w_max:.0f}</text>'
        f'<text x="{PAD_L}" y="{H - 4}">0</text>'
    )
    pts = _xy(weeks, values, lo, hi, w_max)
    # one path: the line and a dot at every session (a zero-length segment with a round cap)
    line = " ".join(f"{x:.0f},{y:.0f}" for x, y in pts)
    dots = "".join(f"M{x:.0f} {y:.0f}h0" for x, y in pts)
    if len(pts) > 1:
        parts.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="1.6"/>')
    parts.append(f'<path d="{dots}" stroke="{colour}" stroke-width="4" stroke-linecap="round"/>')
    parts.append("</svg>")
    return "".join(parts)


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


def client_cards(
    clients: pd.DataFrame, progress: pd.DataFrame, measure: Measure, band: pd.DataFrame | None = None
) -> list[dict[str, Any]]:
    """One card per client: id, anchor, group, status and the chart SVG (in the client table's order);
    ``band`` is the expected-recovery band (:func:`analysis.report.recovery.band_table`) or None."""
    by_client = {cid: g for cid, g in progress.groupby("client_id", sort=False)}
    bands = rc.by_client(band) if band is not None and not band.empty else {}
    cards = []
    for r in clients.sort_values("client_id", kind="mergesort").to_dict("records"):
        g = by_client.get(r["client_id"])
        weeks = [float(x) for x in g["week"]] if g is not None else []
        values = [float(x) for x in g["value"]] if g is not None else []
        label = (
            f"{measure.label} of client {r['client_id']} by week: first {r['baseline']:g}, latest {r['latest']:g}; "
            f"status {r['status']}"
        )
        if math.isfinite(float(r.get("expected", math.nan))):
            low, high = r["expected_low"], r["expected_high"]
            label += f"; expected at the latest visit {r['expected']:.1f} (band {low:.1f} to {high:.1f})"
        cards.append(
            {
                "client_id": r["client_id"],
                "anchor": f"client-{r['client_id']}",
                "group": r["group"],
                "status": r["status"],
                "svg": chart_svg(
                    weeks, values, measure, str(r["group"]), float(r["needed"]), label, bands.get(str(r["client_id"]))
                ),
            }
        )
    return cards
