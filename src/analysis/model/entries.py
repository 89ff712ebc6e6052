"""Entries: the common shape of every secondary result, and the guard that keeps one failure local.

Each secondary analysis returns an *entry*, a JSON-ready dict::

    {"label": ..., "exploratory": True, "status": "done" | "not_estimable" | "failed",
     "reason": str | None, "method": short text, "notes": [...], ...numbers}

An analysis that cannot be estimated on these data (too few clients, no
events, no mediator measured) raises :class:`NotEstimable`; a model that
does not give a trustworthy fit raises :class:`FitFailed`. :func:`guarded`
turns both -- and the numerical errors statsmodels and numpy are known to
raise -- into an entry with a reason, so one failed analysis never stops the
others. Anything else is a bug and propagates.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from patsy import PatsyError
from statsmodels.tools.sm_exceptions import (
    ConvergenceWarning,
    HessianInversionWarning,
    IterationLimitWarning,
    PerfectSeparationError,
    PerfectSeparationWarning,
    SingularMatrixWarning,
)

from analysis.errors import ModelError

STATUSES = ("done", "not_estimable", "failed")

# Warnings with which statsmodels says "this fit cannot be trusted". They are
# recorded around each fit (never silenced globally) and turn the fit into a failure.
FIT_WARNINGS: tuple[type[Warning], ...] = (
    ConvergenceWarning,
    HessianInversionWarning,
    IterationLimitWarning,  # e.g. GEE stopped at maxiter: not converged (not a ConvergenceWarning subclass)
    PerfectSeparationWarning,
    SingularMatrixWarning,
    RuntimeWarning,
)

# Numerical failures that are expected on small or degenerate clinics.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    np.linalg.LinAlgError,
    PerfectSeparationError,
    ModelError,
    PatsyError,
    FloatingPointError,
    ZeroDivisionError,
)


#: What a checked fit returns (a statsmodels results object, untyped).
T = TypeVar("T")


class NotEstimable(Exception):
    """The analysis cannot be estimated from these data (not a bug, not a fitting failure)."""


class FitFailed(Exception):
    """A model was fitted but is not trustworthy (did not converge, separation, singular)."""


def entry(
    label: str, method: str, *, status: str = "done", reason: str | None = None, **numbers: Any
) -> dict[str, Any]:
    """One secondary result with the fields every entry has (always labelled exploratory)."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
    out = {"label": label, "exploratory": True, "status": status, "reason": reason, "method": method, "notes": []}
    out.update(numbers)
    return out


def guarded(
    label: str, method: str, fn: Callable[[], tuple[dict[str, Any], dict[str, pd.DataFrame]]]
) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """Run one analysis; expected failures become an entry with a reason instead of an exception.

    ``fn`` returns ``(numbers, tables)``; ``numbers`` may hold ``method`` and
    ``notes`` to refine the defaults.

    Returns
    -------
    (entry, tables) ; tables is empty unless the analysis was done.
    """
    try:
        numbers, tables = fn()
    except NotEstimable as exc:
        return entry(label, method, status="not_estimable", reason=str(exc)), {}
    except FitFailed as exc:
        return entry(label, method, status="failed", reason=str(exc)), {}
    except EXPECTED_ERRORS as exc:
        return entry(label, method, status="failed", reason=f"{exc.__class__.__name__}: {exc}"), {}
    numbers = dict(numbers)
    notes = list(numbers.pop("notes", []))
    out = entry(label, numbers.pop("method", method), **numbers)
    out["notes"] = notes
    return out, tables


@contextmanager
def recording_fit_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Record (not show) the warnings that make a fit untrustworthy; yields the list of warnings caught."""
    with warnings.catch_warnings(record=True) as caught:
        for category in FIT_WARNINGS:
            warnings.simplefilter("always", category)
        yield caught


def fit_checked(what: str, fit: Callable[[], T]) -> T:
    """Call ``fit()``; raise :class:`FitFailed` naming ``what`` if it warned that it cannot be trusted."""
    with recording_fit_warnings() as caught:
        try:
            result = fit()
        except (np.linalg.LinAlgError, PerfectSeparationError, ValueError) as exc:
            # statsmodels raises ValueError for singular designs / non-finite values inside the optimiser.
            raise FitFailed(f"{what}: {exc.__class__.__name__}: {exc}") from None
    for w in caught:
        if not issubclass(w.category, FIT_WARNINGS):
            # not ours to judge: pass it on unchanged rather than swallow it
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    relevant = sorted({f"{w.category.__name__}: {w.message}" for w in caught if issubclass(w.category, FIT_WARNINGS)})
    if relevant:
        raise FitFailed(f"{what} is not trustworthy ({' | '.join(relevant)})")
    converged = _converged(result)
    if converged is False:
        raise FitFailed(f"{what} did not converge")
    return result


def _converged(result: object) -> bool | None:
    retvals = getattr(result, "mle_retvals", None)
    if isinstance(retvals, dict) and "converged" in retvals:
        return bool(retvals["converged"])
    conv = getattr(result, "converged", None)
    return None if conv is None else bool(conv)


def term_name(names: list[str] | pd.Index, *factors: str) -> str:
    """The model term made of exactly these factors, whatever order patsy wrote them in (e.g. 'week:hip')."""
    wanted = set(factors)
    for name in names:
        if set(str(name).split(":")) == wanted and len(str(name).split(":")) == len(factors):
            return str(name)
    raise ModelError(f"the model has no term {':'.join(factors)}; terms: {list(names)}")
