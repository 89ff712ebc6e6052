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
from analysis.model.prepare import PrimaryData
from analysis.model.primary import GROUPS, RE_FORMULA

_CATEGORICAL = re.compile(r"^C\((\w+)\)$")


def primary_design(pdata: PrimaryData) -> lmm.Design:
    """The design of the primary model (``primary_formula(pdata)``, random intercept and week slope by client).

    Raises ``ValueError`` for a covariate term that is neither ``C(name)`` nor a column name.
    """
    if RE_FORMULA != "~week":
        raise ValueError(f"primary_design builds random effects ~week, not {RE_FORMULA}")
    data = pdata.data
    week = data["week"].to_numpy(dtype=np.float64)
    hip = data["hip"].to_numpy(dtype=np.float64)
    n = len(data)
    categorical: list[tuple[str, np.ndarray]] = []
    numeric: list[tuple[str, np.ndarray]] = [("week", week), ("hip", hip), ("week:hip", week * hip)]
    for term in pdata.covariates:
        match = _CATEGORICAL.match(term)
        if match:
            col = data[match.group(1)]
            codes = col.cat.codes.to_numpy()
            for j, level in enumerate(col.cat.categories[1:], start=1):
                categorical.append((f"{term}[T.{level}]", (codes == j).astype(np.float64)))
        elif term in data.columns and term.isidentifier():
            numeric.append((term, data[term].to_numpy(dtype=np.float64)))
        else:
            raise ValueError(f"primary_design: covariate term {term!r} is neither C(name) nor a column")
    columns = [("Intercept", np.ones(n)), *categorical, *numeric]
    X = np.column_stack([v for _, v in columns])
    Z = np.column_stack([np.ones(n), week])
    return lmm.from_arrays(
        X,
        Z,
        data["y"].to_numpy(dtype=np.float64),
        data[GROUPS].to_numpy(),
        fixed_names=[name for name, _ in columns],
        re_names=["Intercept", "week"],
    )
