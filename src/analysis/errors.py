"""Domain errors. A user sees one clear line per problem, never a traceback.

Every error the CLI expects derives from :class:`OutcomesError`; the CLI
prints ``str(error)`` (or each :class:`Problem` line) and exits non-zero.
Anything else is a bug and is shown with its traceback only under ``--debug``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


class OutcomesError(Exception):
    """A problem the user can fix; its message says what to do."""

    exit_code = 2


class InputError(OutcomesError):
    """An input file or folder cannot be used at all (missing, unreadable, wrong shape)."""


class OutputError(OutcomesError):
    """An output cannot be written (a read-only folder); nothing half-written is left."""


class PrivacyError(OutcomesError):
    """Output or input would reveal something identifying; nothing was written."""


class ModelError(OutcomesError):
    """A model could not be fitted trustworthily."""


@dataclass(frozen=True, order=True)
class Problem:
    """One contract violation: file, row (spreadsheet line number), column, value, rule.

    ``row`` is the line a person sees in a spreadsheet (header = line 1), or
    None for a problem with the whole file or column. ``value`` is None where
    showing it would not be safe (privacy problems).
    """

    file: str
    row: int | None
    column: str | None
    rule: str
    value: str | None = None
    severity: str = "error"

    def line(self) -> str:
        where = self.file
        if self.row is not None:
            where += f", row {self.row}"
        if self.column:
            where += f", column {self.column}"
        shown = "" if self.value is None else f" (value {self.value!r})"
        return f"{where}: {self.rule}{shown}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ValidationFailed(OutcomesError):
    """Raised when the inputs break the contract; carries every problem at once."""

    exit_code = 1

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.file, p.row or 0, p.column or "", p.rule))
        super().__init__(f"{len(self.problems)} problem(s) found")
