"""The pooled report: forest plot, HTML and PDF, built in memory from :func:`analysis.pool.run.pool`'s result."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from analysis.report.render import data_uri, figure_style, html_to_pdf, render, svg_bytes

HIP = "#0072B2"


def _n_text(n: int | str | None) -> str:
    return "n not shown" if n in (None, "*") else f"n = {n}"


def forest_figure(result: dict[str, Any]) -> Figure:
    """Each clinic's estimate and CI (with its n), the pooled diamond and the prediction interval."""
    clinics = result["clinics"]
    p = result["primary"]
    rows = len(clinics) + (2 if p["status"] == "pooled" else 0)
    fig = Figure(figsize=(7.4, 1.2 + 0.42 * rows))
    ax = fig.add_subplot()
    y = np.arange(len(clinics))[::-1] + (2 if p["status"] == "pooled" else 0)
    labels, ticks = [], []
    xs = []
    for yi, c in zip(y, clinics, strict=True):
        if c["ci_low"] is not None and c["ci_high"] is not None:
            ax.plot([c["ci_low"], c["ci_high"]], [yi, yi], color="#333333", lw=1.4)
            xs += [c["ci_low"], c["ci_high"]]
        ax.plot([c["estimate"]], [yi], marker="s", color="#333333", ms=5)
        labels.append(f"{c['clinic_id']} ({_n_text(c['n_clients'])})")
        ticks.append(yi)
    if p["status"] == "pooled":
        pooled, pi = p["pooled"], p["prediction"]
        m, lo, hi = pooled["estimate"], pooled["ci_low"], pooled["ci_high"]
        ax.fill([lo, m, hi, m], [0.9, 1.15, 0.9, 0.65], color=HIP, zorder=3)
        ax.plot([pi["pi_low"], pi["pi_high"]], [0.2, 0.2], color=HIP, lw=2.2, ls="-")
        for end in (pi["pi_low"], pi["pi_high"]):
            ax.plot([end, end], [0.08, 0.32], color=HIP, lw=2.2)
        labels += [
            f"Pooled ({p['k']} clinics, {p['tau2_method_used']}, {_ci_label(p['ci_method'])})",
            "Prediction interval (a new clinic)",
        ]
        ticks += [0.9, 0.2]
        xs += [lo, hi, pi["pi_low"], pi["pi_high"]]
    xs = [x for x in xs if x is not None and math.isfinite(x)] + [0.0]
    lo_x, hi_x = min(xs), max(xs)
    pad = 0.06 * (hi_x - lo_x or 1.0)
    ax.set_xlim(lo_x - pad, hi_x + pad)
    ax.axvline(0, color="#555555", lw=0.8, ls="--")
    ax.set_yticks(ticks, labels)
    ax.set_ylim(-0.3, max(ticks) + 0.7)
    week = result["compatibility"].get("primary_week")
    ax.set_xlabel(
        f"Difference in change in knee pain at week {week:g} (NPRS points)\n"
        "← favours hip-focused care          favours knee-focused care →"
    )
    ax.grid(axis="y", visible=False)
    fig.tight_layout()
    return fig


def _ci_label(method: str) -> str:
    return {"knha": "Knapp-Hartung", "knha_modified": "modified Knapp-Hartung", "z": "Wald"}.get(method, method)


def render_outputs(result: dict[str, Any]) -> dict[str, Any]:
    """``forest_svg``, ``html``, ``html_text`` (HTML without embedded images, for the privacy gate), ``pdf``."""
    with figure_style():
        svg = svg_bytes(forest_figure(result))
    last = max((c["period"]["to"] for c in result["clinics"]), default="2000-01")
    stamp = dt.datetime(int(last[:4]), int(last[5:7]), 1, tzinfo=dt.UTC)
    context = dict(
        r=result,
        p=result["primary"],
        forest_uri=data_uri(svg),
        ci_label=_ci_label,
        stamp=stamp.isoformat().replace("+00:00", "Z"),
        stamp_month=last,
    )
    html = render("pooled.html.j2", context)
    text = render("pooled.html.j2", {**context, "forest_uri": "data:"})
    return {"forest_svg": svg, "html": html, "html_text": text, "pdf": html_to_pdf(html)}
