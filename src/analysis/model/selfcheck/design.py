"""The primary model's design matrices straight from the primary data, without patsy.

patsy spends ~20 ms per clinic evaluating the primary formula, as long as the engine takes to fit it;
for the self-check's thousands of clinics the matrices are built here instead. The primary formula has
one shape, ``y ~ week * hip + <covariate terms>``, each covariate term either ``C(name)`` (a
Categorical, treatment-coded against its first category) or a numeric column; patsy orders its
columns as: the intercept, the categorical terms in formula order (one column per non-reference
level, ``C(name)[T.level]``), then the numeric terms in formula order (``week``, ``hip``,
``week:hip``, the numeric covariates). tests/test_bulk.py checks that the result equals
:func:`analysis.model.lmm.from_formula` exactly, names and values.
"""

from __future__ import annotations

import re

import numpy as np

from analysis.model import lmm
from analysis.model.primary import GROUPS, RE_FORMULA
from analysis.model.selfcheck.prepared import ClinicData

_CATEGORICAL = re.compile(r"^C\((\w+)\)$")


def primary_formula(clinic: ClinicData) -> str:
    """:func:`analysis.model.primary.primary_formula` of the clinic (the fit's label)."""
    return " + ".join(["y ~ week * hip", *clinic.covariates])


def primary_design(clinic: ClinicData) -> lmm.Design:
    """The design of the primary model (``primary_formula``, random intercept and week slope by client).

    Raises ``ValueError`` for a covariate term that is neither ``C(name)`` nor a column name.
    """
    if RE_FORMULA != "~week":
        raise ValueError(f"primary_design builds random effects ~week, not {RE_FORMULA}")
    data = clinic.columns
    week = data["week"].astype(np.float64)
    hip = data["hip"].astype(np.float64)
    n = len(week)
    categorical: list[tuple[str, np.ndarray]] = []
    numeric: list[tuple[str, np.ndarray]] = [("week", week), ("hip", hip), ("week:hip", week * hip)]
    for term in clinic.covariates:
        match = _CATEGORICAL.match(term)
        if match and match.group(1) in clinic.levels:
            col = data[match.group(1)]
            for level in clinic.levels[match.group(1)][1:]:
                categorical.append((f"{term}[T.{level}]", (col == level).astype(np.float64)))
        elif term in data and term.isidentifier():
            numeric.append((term, data[term].astype(np.float64)))
        else:
            raise ValueError(f"primary_design: covariate term {term!r} is neither C(name) nor a column")
    columns = [("Intercept", np.ones(n)), *categorical, *numeric]
    return lmm.from_arrays(
        np.column_stack([v for _, v in columns]),
        np.column_stack([np.ones(n), week]),
        data["y"].astype(np.float64),
        data[GROUPS],
        fixed_names=[name for name, _ in columns],
        re_names=["Intercept", "week"],
    )
