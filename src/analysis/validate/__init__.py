"""Validate: check the raw tables against the contract, type them, keep the valid rows.

Every rule comes from :mod:`analysis.contract` and the measures registry,
turned into great-expectations suites by :mod:`analysis.validate.suites`; the
foreign keys and "every client has a session" are GX expectations too. Every
problem is reported at once, one line each (file, spreadsheet row, column,
rule, value). A row that breaks a rule is *rejected*: it is kept, with its
reasons, in ``rejects.csv`` and left out of the typed tables, and so are the
sessions and measurements of a rejected client or session ("parent
rejected"). Nothing is dropped silently: the summary counts every row.

Clients without sessions are warnings (they are counted in the exclusion
flow, not rejected). Sessions of one client on the same date are allowed:
they are ordered by ``session_id`` downstream, and the summary notes how many.

Pure functions: :func:`validate_tables`, :func:`typed_tables`. I/O:
:func:`run_validate`.

Layout: ``suites`` (GX expectations from the contract), ``gx_run`` (staging and running them),
``checks`` (the pure checks and typing), ``report`` (validation.json, validation.html, console
summary), ``run`` (the I/O edge).
"""

from __future__ import annotations

from analysis.validate.checks import (
    PARENT_REJECTED,
    REJECT_COLUMNS,
    WITHHELD,
    ValidationResult,
    typed_tables,
    validate_tables,
)
from analysis.validate.report import summary_text, validation_html, validation_json
from analysis.validate.run import run_validate

__all__ = [
    "PARENT_REJECTED",
    "REJECT_COLUMNS",
    "WITHHELD",
    "ValidationResult",
    "run_validate",
    "summary_text",
    "typed_tables",
    "validate_tables",
    "validation_html",
    "validation_json",
]
