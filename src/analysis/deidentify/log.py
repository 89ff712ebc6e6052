"""The rows being de-identified, with the problems and the de-identification log collected so far.

Problems name file, row and column; a value is echoed only when it cannot point to a person.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.deidentify.values import showable
from analysis.errors import Problem

#: an unmapped value is echoed in a console message only when at least this many patients have it
ECHO_MIN_PATIENTS = 5


@dataclass
class Work:
    """The combined export rows being de-identified, with the problems and log collected so far."""

    df: pd.DataFrame
    problems: list[Problem]
    log: dict[str, Any]

    def report(self, mask: pd.Series, column: str, rule: str, show: bool = False) -> None:
        """One problem per flagged row; the value is shown only if ``show`` and it cannot identify anyone."""
        for i in np.flatnonzero(mask.to_numpy()):
            value = showable(self.df[column].iloc[i]) if show and self.df[column].iloc[i] else None
            self.problems.append(
                Problem(str(self.df["_file"].iloc[i]), int(self.df["_row"].iloc[i]), column, rule, value)
            )

    def report_grouped(self, mask: pd.Series, column: str, key: pd.Series, rule: str) -> None:
        """One problem per distinct value (at its first row): one missing mapping entry is one line, not 500."""
        hits = pd.DataFrame({"key": key[mask], "i": np.flatnonzero(mask.to_numpy())})
        for _, grp in hits.groupby("key", sort=True):
            rows = grp["i"].tolist()
            self.report_value(rows, column, rule, self.df[column].iloc[rows[0]])

    def report_value(self, rows: list[int], column: str, rule: str, text: Any) -> None:
        """One problem for a value found at row positions ``rows``, reported at the first of them.

        The value is shown only when it cannot point to a person: it passes the identifier checks on the
        text as exported (before any lower-casing) *and* at least :data:`ECHO_MIN_PATIENTS` patients have
        it -- a surname typed into a treatment-area column belongs to one patient and is never echoed.
        """
        ident = self.df["_identity"] if "_identity" in self.df else pd.Series("", index=self.df.index)
        patients = ident.iloc[rows].nunique()
        shown = showable(text) if patients >= ECHO_MIN_PATIENTS else None
        more = f" (and {len(rows) - 1} more row(s) with this value)" if len(rows) > 1 else ""
        hidden = "" if shown else f" (value not shown: {patients} patient(s) have it, so it could identify someone)"
        i = rows[0]
        self.problems.append(
            Problem(str(self.df["_file"].iloc[i]), int(self.df["_row"].iloc[i]), column, rule + more + hidden, shown)
        )
