"""Figures: data in, matplotlib Figure out. No I/O, no global state left behind.

Every function takes tidy DataFrames (columns named in its docstring) and
returns a :class:`matplotlib.figure.Figure`; :mod:`analysis.report.render`
turns it into deterministic SVG. Call them inside
:func:`analysis.report.render.figure_style` so fonts and sizes are the pinned ones.
Groups are coloured the same everywhere (:data:`render.GROUP_COLOURS`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from scipy import stats

from analysis.groups import group_label
from analysis.report.render import GROUP_COLOURS

WIDE = (7.2, 3.6)
SQUARE = (4.8, 3.6)
#: above this many marks or lines a layer is drawn as an image inside the SVG, to keep pages small
RASTER_ABOVE = 300


def _colour(group: object) -> str:
    return GROUP_COLOURS.get(group_label(group), GROUP_COLOURS["other"])


def _empty(message: str, size: tuple[float, float] = SQUARE) -> Figure:
    fig = Figure(figsize=size)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, color="#555555")
    return fig


def trajectories(
    traj: pd.DataFrame,
    individual: pd.DataFrame | None = None,
    *,
    ylabel: str,
    primary_week: float | None = None,
    ylim: tuple[float, float] | None = None,
    thin_from: float | None = None,
) -> Figure:
    """Adjusted mean trajectories with CI bands, optionally over faint individual lines.

    Parameters
    ----------
    traj : columns group, week, mean, ci_low, ci_high.
    individual : columns client_id, group, week, value (therapist report only), or None.
    ylabel : axis label (measure and unit).
    primary_week : marks the week of the primary estimand with a dotted line.
    ylim : the measure's scale (e.g. 0-10): bands are clipped to it and the axis shows all of it.
    thin_from : week from which fewer than a quarter of clients are still followed: the model lines are
        dashed and the region shaded there (the estimate leans on few clients and on the linear model).
    """
    if traj.empty:
        return _empty("No model trajectories available", WIDE)
    fig = Figure(figsize=WIDE)
    ax = fig.add_subplot()
    if individual is not None and not individual.empty:
        n_lines = individual["client_id"].nunique()
        ordered = individual.sort_values(["group", "client_id", "week"], kind="mergesort")
        for group, d in ordered.groupby("group", sort=True):
            # one collection per group (one artist, not one per client); many faint lines are drawn as an
            # image inside the SVG (a 2,000-client clinic would otherwise make a megabyte of vector paths)
            starts = np.flatnonzero(d["client_id"].to_numpy()[1:] != d["client_id"].to_numpy()[:-1]) + 1
            points = np.column_stack([d["week"].to_numpy(float), d["value"].to_numpy(float)])
            lines = LineCollection(
                np.split(points, starts), colors=_colour(str(group)), alpha=0.12, linewidths=0.6, zorder=1
            )
            lines.set_rasterized(n_lines > RASTER_ABOVE)
            ax.add_collection(lines)
        ax.autoscale_view()
    lo_y, hi_y = ylim if ylim is not None else (-np.inf, np.inf)
    for group, d in traj.sort_values(["group", "week"]).groupby("group", sort=True):
        c = _colour(group)
        ax.fill_between(
            d["week"], d["ci_low"].clip(lo_y, hi_y), d["ci_high"].clip(lo_y, hi_y), color=c, alpha=0.22, lw=0, zorder=2
        )
        solid = d if thin_from is None else d[d["week"] <= thin_from]
        ax.plot(solid["week"], solid["mean"].clip(lo_y, hi_y), color=c, lw=2.2, label=group_label(group), zorder=3)
        if thin_from is not None:
            rest = d[d["week"] >= thin_from]
            ax.plot(rest["week"], rest["mean"].clip(lo_y, hi_y), color=c, lw=1.6, ls="--", zorder=3)
    if thin_from is not None and thin_from < traj["week"].max():
        ax.axvspan(thin_from, traj["week"].max(), color="#f2f2f2", zorder=0, lw=0)
        ax.annotate(
            "fewer than 1 in 4 clients\nstill followed",
            (thin_from, 0.62),
            xycoords=("data", "axes fraction"),
            xytext=(4, 0),
            textcoords="offset points",
            fontsize=7,
            color="#555555",
        )
    if ylim is not None:
        ax.set_ylim(*ylim)
    if primary_week is not None:
        ax.axvline(primary_week, color="#444444", ls=":", lw=1)
        ax.annotate(
            f"week {primary_week:g}",
            (primary_week, 1),
            xycoords=("data", "axes fraction"),
            xytext=(3, -10),
            textcoords="offset points",
            fontsize=7,
            color="#444444",
        )
    ax.set_xlabel("Weeks since first session")
    ax.set_ylabel(ylabel)
    ax.legend(frameon=False, loc="upper right")
    fig.tight_layout()
    return fig


def forest(rows: pd.DataFrame, *, xlabel: str) -> Figure:
    """Forest plot: the primary estimate beside each sensitivity analysis.

    Parameters
    ----------
    rows : columns label, estimate, ci_low, ci_high, primary (bool), in display order
        (top to bottom). Rows without an estimate are drawn as text "not available".
    xlabel : what the estimate measures (negative = favours hip-focused, for pain).
    """
    if rows.empty:
        return _empty("No estimates available", WIDE)
    n = len(rows)
    fig = Figure(figsize=(7.2, 0.9 + 0.42 * n))
    ax = fig.add_subplot()
    y = np.arange(n)[::-1]
    finite = rows[["estimate", "ci_low", "ci_high"]].apply(pd.to_numeric, errors="coerce")
    span = finite.to_numpy(dtype=float)
    lo = np.nanmin(span) if np.isfinite(span).any() else -1.0
    hi = np.nanmax(span) if np.isfinite(span).any() else 1.0
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    pad = 0.08 * (hi - lo or 1.0)
    for yi, (_, r), (_, f) in zip(y, rows.iterrows(), finite.iterrows(), strict=True):
        primary = bool(r.get("primary", False))
        colour = "#000000" if primary else "#0072B2"
        if math.isfinite(f["estimate"]):
            if math.isfinite(f["ci_low"]) and math.isfinite(f["ci_high"]):
                ax.plot([f["ci_low"], f["ci_high"]], [yi, yi], color=colour, lw=2.4 if primary else 1.6)
            ax.plot(
                [f["estimate"]], [yi], marker="D" if primary else "o", ms=7 if primary else 5, color=colour, zorder=3
            )
        else:
            note = (
                "no tipping point: nothing to tip"
                if str(r.get("status", "")).endswith("no tipping point")
                else "not available"
            )
            ax.text(lo, yi, f"  {note}", va="center", fontsize=7, color="#777777")
    ax.axvline(0, color="#555555", lw=0.8, ls="--")
    ax.set_yticks(y, [str(v) for v in rows["label"]])
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_xlabel(xlabel)
    ax.grid(axis="y", visible=False)
    fig.tight_layout()
    return fig


def proportions(df: pd.DataFrame, *, ylabel: str) -> Figure:
    """Bar chart of a proportion per group with its CI (responders by group).

    Parameters
    ----------
    df : columns group, proportion, ci_low, ci_high (proportions 0-1).
    """
    if df.empty:
        return _empty("Not available")
    fig = Figure(figsize=SQUARE)
    ax = fig.add_subplot()
    d = df.sort_values("group").reset_index(drop=True)
    x = np.arange(len(d))
    colours = [_colour(g) for g in d["group"]]
    p = d["proportion"].astype(float).to_numpy() * 100
    ax.bar(x, p, color=colours, width=0.6, alpha=0.85)
    lo = d["ci_low"].astype(float).to_numpy() * 100
    hi = d["ci_high"].astype(float).to_numpy() * 100
    ax.errorbar(
        x, p, yerr=[np.clip(p - lo, 0, None), np.clip(hi - p, 0, None)], fmt="none", ecolor="#222222", capsize=4, lw=1
    )
    ax.set_xticks(x, [group_label(g) for g in d["group"]])
    ax.set_ylim(0, 100)
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    return fig


def kaplan_meier(km: pd.DataFrame, *, event: str) -> Figure:
    """Kaplan–Meier curves of time to improvement, with CI bands.

    Parameters
    ----------
    km : columns group, week, survival, ci_low, ci_high (and at_risk, not drawn).
    event : what the event is, for the axis label.
    """
    if km.empty:
        return _empty("Not available", WIDE)
    fig = Figure(figsize=WIDE)
    ax = fig.add_subplot()
    for group, d in km.sort_values(["group", "week"]).groupby("group", sort=True):
        c = _colour(group)
        ax.step(d["week"], 1 - d["survival"], where="post", color=c, lw=2, label=group_label(group))
        if {"ci_low", "ci_high"} <= set(d.columns):
            ax.fill_between(d["week"], 1 - d["ci_high"], 1 - d["ci_low"], step="post", color=c, alpha=0.18, lw=0)
    ax.set_ylim(0, 1)
    ax.set_xlabel("Weeks since first session")
    ax.set_ylabel(f"Share with {event}")
    ax.legend(frameon=False, loc="lower right")
    fig.tight_layout()
    return fig


def effect_curve(
    df: pd.DataFrame, *, x: str, xlabel: str, ylabel: str, log_x: bool = False, favours: tuple[str, str] | None = None
) -> Figure:
    """An estimated effect against a moderator (e.g. chronicity: symptom weeks), with its CI.

    Parameters
    ----------
    df : columns ``x``, estimate, ci_low, ci_high (and ``within_data``: durations outside the observed
        range are shaded as extrapolation).
    favours : labels for the bottom and top of the y axis (which side favours which care).
    """
    if df.empty:
        return _empty("Not available")
    d = df.sort_values(x)
    fig = Figure(figsize=SQUARE)
    ax = fig.add_subplot()
    ax.fill_between(d[x], d["ci_low"], d["ci_high"], color="#0072B2", alpha=0.2, lw=0)
    ax.plot(d[x], d["estimate"], color="#0072B2", lw=2, marker="o" if len(d) <= 12 else None, ms=4)
    ax.axhline(0, color="#555555", lw=0.8, ls="--")
    if log_x:
        if float(d[x].min()) > 0:
            ax.set_xscale("log")
        else:
            ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(float(d[x].min()), float(d[x].max()))
        # plain numbers (1, 10, 100 weeks), not 10^0 notation
        ticks = [t for t in (1, 4, 10, 26, 52, 104, 260, 520) if d[x].min() <= t <= d[x].max()]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
    if "within_data" in d.columns and not d["within_data"].all():
        outside = d[~d["within_data"].astype(bool)]
        for lo_x, hi_x in (
            (d[x].min(), outside[x][outside[x] < d.loc[d["within_data"].astype(bool), x].min()].max()),
            (outside[x][outside[x] > d.loc[d["within_data"].astype(bool), x].max()].min(), d[x].max()),
        ):
            if pd.notna(lo_x) and pd.notna(hi_x) and hi_x > lo_x:
                ax.axvspan(lo_x, hi_x, color="#f2f2f2", lw=0, zorder=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if favours:
        ax.annotate(favours[0], (0.02, 0.03), xycoords="axes fraction", fontsize=7, color="#555555")
        ax.annotate(favours[1], (0.02, 0.93), xycoords="axes fraction", fontsize=7, color="#555555")
    fig.tight_layout()
    return fig


def scatter_fit(df: pd.DataFrame, *, x: str, y: str, xlabel: str, ylabel: str, seed: int) -> Figure:
    """Per-client scatter with a linear fit and bootstrap CI band, coloured by group (therapist only).

    Parameters
    ----------
    df : columns ``x``, ``y``, group.
    seed : seeds seaborn's bootstrap of the fit's CI band.
    """
    d = df.dropna(subset=[x, y])
    if d.empty:
        return _empty("Not available")
    fig = Figure(figsize=SQUARE)
    ax = fig.add_subplot()
    for group, g in d.sort_values(["group", x, y]).groupby("group", sort=True):
        ax.scatter(
            g[x],
            g[y],
            s=14,
            alpha=0.7,
            color=_colour(group),
            label=group_label(group),
            lw=0,
            rasterized=len(d) > RASTER_ABOVE,
        )
    sns.regplot(
        data=d.sort_values([x, y]),
        x=x,
        y=y,
        ax=ax,
        scatter=False,
        seed=seed,
        n_boot=200,
        color="#333333",
        line_kws={"lw": 1.2},
    )
    ax.axhline(0, color="#999999", lw=0.6)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return fig


def residual_panels(diag: pd.DataFrame) -> Figure:
    """Residuals against fitted values and a normal QQ plot of the residuals.

    Parameters
    ----------
    diag : columns fitted, residual.
    """
    d = diag.dropna(subset=["fitted", "residual"])
    if d.empty:
        return _empty("No diagnostics available", WIDE)
    fig = Figure(figsize=WIDE)
    a1, a2 = fig.subplots(1, 2)
    a1.scatter(d["fitted"], d["residual"], s=5, alpha=0.35, color="#0072B2", lw=0, rasterized=len(d) > RASTER_ABOVE)
    a1.axhline(0, color="#555555", lw=0.8)
    a1.set_xlabel("Fitted value")
    a1.set_ylabel("Residual")
    a1.set_title("Residuals vs fitted")
    _qq(a2, d["residual"].to_numpy(dtype=float))
    a2.set_title("Normal QQ plot of residuals")
    fig.tight_layout()
    return fig


def random_effect_qq(re: pd.DataFrame) -> Figure:
    """Normal QQ plot of each random effect (one panel per numeric column).

    Parameters
    ----------
    re : one row per client; every numeric column is a random effect.
    """
    cols = [c for c in re.columns if pd.api.types.is_numeric_dtype(re[c])]
    if not cols:
        return _empty("No random effects available", WIDE)
    fig = Figure(figsize=(3.6 * min(len(cols), 2), 3.2 * math.ceil(len(cols) / 2)))
    axes = fig.subplots(math.ceil(len(cols) / 2), min(len(cols), 2), squeeze=False)
    for ax, col in zip(axes.flat, cols, strict=False):
        _qq(ax, re[col].dropna().to_numpy(dtype=float))
        ax.set_title(f"Random effect: {col}")
    for ax in list(axes.flat)[len(cols) :]:
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def _qq(ax: Axes, values: np.ndarray) -> None:
    values = np.sort(values[np.isfinite(values)])
    n = len(values)
    if n < 3:
        ax.text(0.5, 0.5, "too few values", ha="center", transform=ax.transAxes)
        return
    theo = stats.norm.ppf((np.arange(1, n + 1) - 0.375) / (n + 0.25))
    ax.scatter(theo, values, s=6, alpha=0.5, color="#0072B2", lw=0, rasterized=len(values) > RASTER_ABOVE)
    q1, q3 = map(float, np.atleast_1d(np.percentile(values, [25, 75])))
    t1, t3 = map(float, np.atleast_1d(stats.norm.ppf([0.25, 0.75])))
    slope = (q3 - q1) / (t3 - t1) if t3 != t1 else 1.0
    ax.plot(theo, q1 + slope * (theo - t1), color="#D55E00", lw=1)
    ax.set_xlabel("Normal quantile")
    ax.set_ylabel("Observed")


def bars(df: pd.DataFrame, *, x: str, y: str, xlabel: str, ylabel: str) -> Figure:
    """Horizontal bars of ``y`` per ``x`` category (e.g. techniques used, share of sessions)."""
    if df.empty:
        return _empty("Not available")
    d = df.reset_index(drop=True)
    fig = Figure(figsize=(6.0, 0.6 + 0.36 * len(d)))
    ax = fig.add_subplot()
    yy = np.arange(len(d))[::-1]
    ax.barh(yy, d[y].astype(float), color="#0072B2", alpha=0.85)
    ax.set_yticks(yy, [str(v) for v in d[x]])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", visible=False)
    fig.tight_layout()
    return fig
