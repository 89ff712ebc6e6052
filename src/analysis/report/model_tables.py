"""The primary model's fixed effects and variance components as table rows, with readable term names."""

from __future__ import annotations

import math
import re
from typing import Any

from analysis.results import PrimaryResult


def pretty_term(term: str, reference: dict[str, str] | None = None) -> str:
    """A model term in words: ``C(age_band)[T.18-29]`` -> ``age band 18-29 (vs 40-49)``, ``week:hip`` ->
    ``week × hip-focused``."""
    m = re.fullmatch(r"C\((\w+)\)\[T\.(.+)\]", term)
    if m:
        var, level = m.groups()
        ref = (reference or {}).get(var)
        return f"{var.replace('_', ' ')} {level.replace('_', ' ')}" + (f" (vs {ref.replace('_', ' ')})" if ref else "")
    words = {
        "Intercept": "intercept",
        "week": "week",
        "hip": "hip-focused",
        "log_symptom_weeks": "ln(symptom weeks + 1)",
        "sitting_hours": "sitting hours",
        "sitting_hours_missing": "sitting hours missing",
    }
    return " × ".join(words.get(part, part.replace("_", " ")) for part in term.split(":"))


def model_tables(primary: PrimaryResult) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The primary model's fixed effects (term in words, estimate, SE, df, CI, p) and variance components."""
    ref = primary.reference_levels
    first = ["Intercept", "week", "hip", "week:hip"]  # the terms of the question, then the covariates
    items = sorted(
        primary.fixed_effects.items(),
        key=lambda kv: (first.index(kv[0]) if kv[0] in first else len(first), kv[0]),
    )
    fixed = [
        dict(term=pretty_term(t, ref), **v.model_dump(include={"estimate", "se", "df", "ci_low", "ci_high", "p_value"}))
        for t, v in items
    ]
    re_ = primary.random_effects
    if re_ is None:
        return fixed, []
    var: list[dict[str, Any]] = [
        dict(component=f"between clients: {pretty_term(k)}", variance=v, sd=math.sqrt(v) if v >= 0 else math.nan)
        for k, v in re_.variances.items()
    ]
    for k, r in re_.correlation.items():
        var.append(dict(component=f"correlation of intercept and slope ({k})", variance=None, sd=None, corr=r))
    if re_.residual_variance is not None:
        v = re_.residual_variance
        var.append(dict(component="within client (residual)", variance=v, sd=math.sqrt(v)))
    return fixed, var
