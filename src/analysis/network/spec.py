"""What the network fits and what a clinic may answer: the analysis specification and the disclosure rules.

The specification is sent to every clinic in every request (JSON): the fixed-effect terms of the
primary model without the intercept (each clinic absorbs its own, :mod:`.pieces`), the harmonised
levels of every categorical covariate (the data contract's categories, so no clinic has to reveal which
levels it has), the random-effects formula and grouping, and, after round 0, the common columns kept.

Disclosure rules follow DataSHIELD's published filters (``nfilter.subset`` = 3 smallest subset,
``nfilter.tab`` = 3 smallest table cell, ``nfilter.glm`` = 0.33 largest ratio of parameters to
observations; Gaye et al. 2014, Wilson et al. 2017) raised to this project's ``min_cell``; see
:class:`Rules` and the README's threat model for what each protects and when it is applied.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from analysis.contract import ACTIVITIES, AGE_BANDS, SEXES
from analysis.model.primary import SLOPE_TERM

#: the categorical covariates and their harmonised levels (the contract's categories, in its order)
LEVELS: dict[str, list[str]] = {"age_band": list(AGE_BANDS), "sex": list(SEXES), "activity": list(ACTIVITIES)}
GROUPS = "client_id"
RE_FORMULA = "~week"
#: random-effect parameters: theta = (T11, T21, T22) for a random intercept and week slope
N_THETA = 3


@dataclass(frozen=True)
class Rules:
    """What a clinic answers and what the lead accepts.

    Attributes
    ----------
    min_clients : a clinic with fewer analysable clients refuses every request (DataSHIELD
        ``nfilter.subset`` 3, raised to ``min_cell``).
    min_level_clients : the network (summed over clinics) must have at least this many clients on
        each side of every categorical level it estimates (``nfilter.tab``, raised to ``min_cell``);
        the lead drops a level below it into the reference and says so.
    max_parameter_ratio : the lead fits no model with more fixed effects than this fraction of the
        network's clients (``nfilter.glm``).
    max_rounds : a clinic answers at most this many rounds of one fit.
    max_thetas : a clinic evaluates at most this many thetas in one round.
    """

    min_clients: int = 5
    min_level_clients: int = 5
    max_parameter_ratio: float = 0.33
    max_rounds: int = 60
    max_thetas: int = 8

    @classmethod
    def from_min_cell(cls, min_cell: int) -> Rules:
        return cls(min_clients=max(3, min_cell), min_level_clients=max(3, min_cell))


@dataclass(frozen=True)
class Spec:
    """The network analysis: terms, harmonised levels, the columns kept, the headline's week."""

    terms: list[str]
    levels: dict[str, list[str]]
    primary_week: float
    alpha: float
    columns: list[str] | None = None
    groups: str = GROUPS
    re_formula: str = RE_FORMULA

    def formula(self) -> str:
        """The clinic's fixed-effects formula (patsy puts its own intercept first)."""
        return "y ~ " + " + ".join(self.terms)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Spec:
        return cls(**doc)

    def with_columns(self, columns: list[str]) -> Spec:
        return Spec(**{**asdict(self), "columns": list(columns)})

    def key(self) -> str:
        """A canonical text of the spec without the kept columns (a clinic refuses a spec that changes)."""
        doc = {k: v for k, v in asdict(self).items() if k != "columns"}
        return json.dumps(doc, sort_keys=True)


def primary_spec(covariates: list[str], primary_week: float, alpha: float) -> Spec:
    """The primary model's terms for the network: ``week * hip`` plus the covariates (missing-indicator for
    ``sitting_hours``, as :func:`analysis.model.prepare.primary_data` builds them)."""
    terms = ["week * hip"]
    for name in covariates:
        if name in LEVELS:
            terms.append(f"C({name})")
        else:
            terms.append(name)
            if name == "sitting_hours":
                terms.append("sitting_hours_missing")
    return Spec(
        terms=terms,
        levels={k: v for k, v in LEVELS.items() if k in covariates},
        primary_week=float(primary_week),
        alpha=float(alpha),
    )


def headline_weights(columns: list[str], week: float) -> dict[str, np.ndarray]:
    """Contrast weights over the common columns: the headline (difference in change at ``week``),
    the slope difference, and each group's change."""

    def w(**terms: float) -> np.ndarray:
        v = np.zeros(len(columns))
        for name, value in terms.items():
            v[columns.index(name.replace("__", ":"))] = value
        return v

    slope = SLOPE_TERM.replace(":", "__")
    return {
        "headline": w(**{slope: week}),
        "slope_difference": w(**{slope: 1.0}),
        "comparator_change": w(week=week),
        "hip_focused_change": w(**{"week": week, slope: week}),
    }
