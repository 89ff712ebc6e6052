"""The pooled report: forest plot, HTML and PDF, built in memory from :func:`analysis.pool.run.pool`'s result."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import blended_transform_factory

from analysis.report.render import data_uri, figure_style, html_to_pdf, render, svg_bytes

HIP = "#0072B2"


def _n_text(n: int | str | None) -> str:
    return "n not shown" if n in (None, "*") else f"n = {n}"


def _num(x: float) -> str:
    """Two decimals with a true minus sign, as in the report's tables."""
    return f"{x:.2f}".replace("-", "\u2212")


def _est_ci(est: float, lo: float | None, hi: float | None) -> str:
    if lo is None or hi is None:
        return f"{_num(est)} [CI not shown]"
    return f"{_num(est)} [{_num(lo)}, {_num(hi)}]"


def forest_figure(result: dict[str, Any]) -> Figure:
    """Forest plot in the layout of metafor's ``forest()``.

    One row per clinic (its own estimate and 95% CI, which use the clinic's own df) with a square whose
    AREA is proportional to the clinic's weight in the pooled estimate; below a rule, the pooled
    random-effects estimate as a diamond spanning its CI and, under it, the prediction interval as a line
    with end bars; a solid vertical line at 0. Text columns: clinic and n on the left, weight (%) and
    estimate [95% CI] on the right. Not pooled: the clinics only, without weights.
    """
    clinics = result["clinics"]
    p = result["primary"]
    pooled = p["status"] == "pooled"
    weight_of = dict(zip(p["clinic_ids"], p["weights"], strict=True)) if pooled else {}
    k = len(clinics)
    extra = 2.3 if pooled else 0.0
    top = k + extra  # clinics at y = top ... extra + 1 (first clinic at the top), header above them
    ax_in, bottom_in = (
        0.27 * (top + 1.6 + (0.5 if pooled else 0.0)),
        0.7,
    )  # 0.27 inch per row; room for the x label below
    height = bottom_in + ax_in + 0.1
    fig = Figure(figsize=(9.0, height))
    left, right = 0.30, 0.66
    ax = fig.add_axes((left, bottom_in / height, right - left, ax_in / height))
    text = blended_transform_factory(fig.transFigure, ax.transData)
    cols = {"label": 0.01, "weight": 0.755, "estimate": 0.99}

    def row_text(y: float, label: str, weight: str, estimate: str, **kw: Any) -> None:
        ax.text(cols["label"], y, label, transform=text, ha="left", va="center", **kw)
        ax.text(cols["weight"], y, weight, transform=text, ha="right", va="center", **kw)
        ax.text(cols["estimate"], y, estimate, transform=text, ha="right", va="center", **kw)

    row_text(top + 1, "Clinic", "Weight" if pooled else "", "Estimate [95% CI]", fontweight="bold")
    xs: list[float] = [0.0]
    w_max = max(weight_of.values(), default=1.0)
    for i, c in enumerate(clinics):
        yi = top - i
        lo, hi = c["ci_low"], c["ci_high"]
        if lo is not None and hi is not None:
            ax.plot([lo, hi], [yi, yi], color="#222222", lw=1.0, solid_capstyle="butt")
            ax.plot([lo, lo], [yi - 0.12, yi + 0.12], color="#222222", lw=1.0)
            ax.plot([hi, hi], [yi - 0.12, yi + 0.12], color="#222222", lw=1.0)
            xs += [lo, hi]
        xs.append(c["estimate"])
        w = weight_of.get(c["clinic_id"])
        # marker area (points^2) proportional to the weight: 130 pt^2 for the heaviest clinic
        area = 130.0 * w / w_max if w is not None else 30.0
        ax.scatter([c["estimate"]], [yi], s=area, marker="s", color="#222222", linewidths=0, zorder=3)
        row_text(
            yi,
            f"{c['clinic_id']} ({_n_text(c['n_clients'])})",
            f"{w:.1f}%" if w is not None else "",
            _est_ci(c["estimate"], lo, hi),
        )
    if pooled:
        est, pi = p["pooled"], p["prediction"]
        m, lo, hi = est["estimate"], est["ci_low"], est["ci_high"]
        y_d, y_pi = 1.3, 0.5
        ax.plot([0.01, 0.99], [extra, extra], transform=text, color="#222222", lw=0.8, clip_on=False)
        ax.fill([lo, m, hi, m], [y_d, y_d + 0.28, y_d, y_d - 0.28], color=HIP, lw=0, zorder=3)
        ax.plot([pi["pi_low"], pi["pi_high"]], [y_pi, y_pi], color=HIP, lw=1.4, solid_capstyle="butt")
        for end in (pi["pi_low"], pi["pi_high"]):
            ax.plot([end, end], [y_pi - 0.15, y_pi + 0.15], color=HIP, lw=1.4)
        row_text(
            y_d,
            f"Pooled, {p['k']} clinics",
            "100%",
            _est_ci(m, lo, hi),
            fontweight="bold",
        )
        row_text(y_pi, "Prediction interval (a new clinic)", "", f"[{_num(pi['pi_low'])}, {_num(pi['pi_high'])}]")
        xs += [lo, hi, pi["pi_low"], pi["pi_high"]]
        crit = f"t, {est['df']:g} df" if est["df"] is not None else "z"
        ax.text(
            cols["label"],
            -0.25,
            f"Random effects: \u03c4\u00b2 by {p['tau2_method_used']} = {p['tau2']:.3f}, "
            f"I\u00b2 = {p['i2']:.0f}%; CI by {_ci_label(p['ci_method'])} ({crit})",
            transform=text,
            ha="left",
            va="center",
            fontsize=7,
            color="#555555",
        )
    finite = [x for x in xs if x is not None and math.isfinite(x)]
    lo_x, hi_x = min(finite), max(finite)
    pad = 0.05 * (hi_x - lo_x or 1.0)
    ax.set_xlim(lo_x - pad, hi_x + pad)
    ax.set_ylim(-0.5 if pooled else 0.0, top + 1.6)
    ax.plot([0.0, 0.0], [0.2 if pooled else top - k + 0.5, top + 0.5], color="#555555", lw=0.8, zorder=1)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
    ax.set_yticks([])
    ax.grid(False)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    week = result["compatibility"].get("primary_week")
    ax.set_xlabel(
        f"Difference in change in knee pain at week {week:g} (NPRS points)\n"
        "\u2190 favours hip-focused care      favours knee-focused care \u2192"
    )
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
