"""Endpoint: one row per client with the outcome at the primary time point.

Several secondary analyses need a single value per client at the primary
week (responders, IPTW, multiple imputation, mediation, precision). The rule,
used by all of them so they describe the same clients:

    the client's observation closest to ``primary_week`` among those with
    ``primary_week - w <= week <= primary_week + w`` (``w`` = params
    ``model.endpoint_window_weeks``); on a tie the later one.

A client with no observation in that window has a *missing* endpoint (in this
clinic that mostly means the course ended earlier: dropout or recovery). For
multiple imputation each client also carries the last value observed before
the window opens (the baseline if nothing else) and its week.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from analysis.params_schema import ModelParams

ENDPOINT_COLUMNS = [
    "client_id",
    "hip",
    "baseline_y",
    "y_end",
    "week_end",
    "change",
    "observed",
    "last_y",
    "last_week",
]


def window(cfg: ModelParams) -> tuple[float, float]:
    """The endpoint window ``(low, high)`` in weeks."""
    pw, w = cfg.primary_week, cfg.endpoint_window_weeks
    return pw - w, pw + w


def client_endpoint(data: pd.DataFrame, cfg: ModelParams) -> pd.DataFrame:
    """One row per client: baseline, covariates and the outcome at the primary week.

    Parameters
    ----------
    data : :attr:`PrimaryData.data` (one row per client x session; ``week``,
        ``y``, ``baseline_y``, ``hip`` and client-level covariates).
    cfg : params ``model``; uses ``primary_week``, ``endpoint_window_weeks``.

    Returns
    -------
    DataFrame sorted by client_id with :data:`ENDPOINT_COLUMNS` (``y_end``,
    ``week_end``, ``change`` = ``y_end - baseline_y`` NaN when no observation
    in the window; ``observed`` 0/1; ``last_y``/``last_week`` the last value
    before the window opens, at least the baseline) followed by every other
    client-level column of ``data`` (covariates, ``symptom_weeks`` ...).
    """
    pw = cfg.primary_week
    low, high = window(cfg)
    d = data.sort_values(["client_id", "week"], kind="mergesort")
    per_client = [
        c for c in d.columns if c not in ("session_id", "session_number", "week", "y", "focus", "cum_hip_sessions")
    ]
    clients = d.drop_duplicates("client_id")[per_client].set_index("client_id")

    inwin = d[(d["week"] >= low) & (d["week"] <= high)].assign(dist=lambda x: (x["week"] - pw).abs())
    # closest to the primary week; ties -> the later observation (longer exposure)
    inwin = inwin.sort_values(["client_id", "dist", "week"], ascending=[True, True, False], kind="mergesort")
    end = inwin.drop_duplicates("client_id").set_index("client_id")[["y", "week"]]
    end.columns = ["y_end", "week_end"]

    before = d[d["week"] < low].drop_duplicates("client_id", keep="last").set_index("client_id")[["y", "week"]]
    before.columns = ["last_y", "last_week"]

    out = clients.join(end, how="left").join(before, how="left")
    out["last_y"] = out["last_y"].fillna(out["baseline_y"])
    out["last_week"] = out["last_week"].fillna(0.0)
    out["change"] = out["y_end"] - out["baseline_y"]
    out["observed"] = out["y_end"].notna().astype("int64")
    out = out.reset_index().sort_values("client_id", kind="mergesort").reset_index(drop=True)
    rest = [c for c in out.columns if c not in ENDPOINT_COLUMNS]
    return out[ENDPOINT_COLUMNS + rest]


def model_terms(covariates: list[str], *, drop_missing_indicators: bool = False) -> list[str]:
    """The covariate formula terms, optionally without ``*_missing`` indicators (used with imputation)."""
    return [t for t in covariates if not (drop_missing_indicators and t.endswith("_missing"))]


def raw_column(term: str) -> str:
    """Column behind a formula term: ``'C(sex)'`` -> ``'sex'``."""
    return term[2:-1] if term.startswith("C(") and term.endswith(")") else term


def collapse_sparse_levels(df: pd.DataFrame, covariates: list[str], min_n: int) -> tuple[pd.DataFrame, list[str]]:
    """Merge levels of categorical covariates seen in fewer than ``min_n`` rows into the reference level.

    Logistic models on one clinic's clients separate perfectly on a level held
    by one or two people (e.g. sex ``X``); merging them into the reference
    (most common) level keeps the model estimable at the cost of slightly
    coarser adjustment. Returns the frame and notes saying what was merged.
    """
    out = df.copy()
    notes: list[str] = []
    for term in covariates:
        col = raw_column(term)
        if not term.startswith("C(") or col not in out:
            continue
        s = out[col].astype(str)
        counts = s.value_counts()
        if counts.empty:
            continue
        levels = list(out[col].cat.categories) if isinstance(out[col].dtype, pd.CategoricalDtype) else []
        reference = levels[0] if levels and levels[0] in counts.index else str(counts.idxmax())
        sparse = sorted(str(lv) for lv, n in counts.items() if n < min_n and lv != reference)
        if sparse:
            s = s.where(~s.isin(sparse), reference)
            notes.append(
                f"{col}: level(s) {', '.join(sparse)} (< {min_n} clients) merged into {reference!r} for this model."
            )
        order = [reference] + sorted(set(s) - {reference})
        out[col] = pd.Categorical(s, categories=order)
    return out, notes


def usable_terms(df: pd.DataFrame, covariates: list[str]) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Drop unused categorical levels and covariates constant in ``df`` (a subset of clients can make them so).

    Returns
    -------
    (frame, terms, notes) : the frame with unused categories removed, the
    covariate terms that still vary, and notes on those dropped.
    """
    out = df.copy()
    keep, notes = [], []
    for term in covariates:
        col = raw_column(term)
        if col in out and isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].cat.remove_unused_categories()
        if col in out and out[col].astype(str).nunique() <= 1:
            notes.append(f"{col} is constant among these clients; not adjusted for.")
            continue
        keep.append(term)
    return out, keep, notes


def rhs(*parts: str | list[str]) -> str:
    """Join formula terms with ' + ' (lists flattened, blanks skipped)."""
    terms: list[str] = []
    for p in parts:
        terms.extend(p if isinstance(p, list) else [p])
    return " + ".join(t for t in terms if t) or "1"


def arm_summaries(data: pd.DataFrame, cfg: ModelParams) -> dict[str, dict[str, Any]]:
    """Per-arm descriptive summaries of the analysed clients, for the findings bundle and pooling.

    Returns
    -------
    dict ``{"hip_focused": {...}, "comparator": {...}}``, each with ``n`` (clients analysed),
    ``baseline_mean``, ``baseline_sd`` (outcome at the first session), ``n_endpoint`` (clients with
    an observation in the endpoint window), ``change_mean``, ``change_sd`` (endpoint minus baseline
    among them). SDs use ddof = 1 and are None below 2 clients.
    """
    ep = client_endpoint(data, cfg)
    out = {}
    for hip, arm in ((1, "hip_focused"), (0, "comparator")):
        g = ep[ep["hip"] == hip]
        e = g[g["observed"] == 1]
        out[arm] = {
            "n": int(len(g)),
            "baseline_mean": _stat(g["baseline_y"], "mean"),
            "baseline_sd": _stat(g["baseline_y"], "std"),
            "n_endpoint": int(len(e)),
            "change_mean": _stat(e["change"], "mean"),
            "change_sd": _stat(e["change"], "std"),
        }
    return out


def _stat(values: pd.Series, how: str) -> float | None:
    v = values.astype(float).dropna()
    if len(v) < (2 if how == "std" else 1):
        return None
    return float(v.std(ddof=1) if how == "std" else v.mean())
