"""What identifying values look like (emails, phones, postcodes, national ids, names) and the scan of a
table's cells for them: one :class:`~analysis.errors.Problem` per hit, the value never echoed.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from analysis.contract import TABLES
from analysis.errors import Problem

# ----------------------------------------------------------------------------- what identifying values look like

_EMAIL = r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
# Candidate phone numbers: 9-15 digits with the usual separators; the digit count is checked after
# matching (see _phone_ok) because a regex cannot count digits across separators cheaply.
_PHONE = r"(?<![\w.:/])(?:\+|00)?\(?\d[\d\s().-]{7,20}\d(?![\w.])"
_POSTCODE_UK = r"\b[A-Za-z]{1,2}\d[A-Za-z\d]?\s+\d[A-Za-z]{2}\b"
# Without the space a UK postcode is only recognised in upper case and as the whole cell, so that short
# ids such as "AB12CD" in id columns are left alone (the no-space form is not checked in id columns).
_POSTCODE_UK_TIGHT = r"^[A-Z]{1,2}\d[A-Z\d]?\d[A-Z]{2}$"
_ZIP4 = r"\b\d{5}-\d{4}\b"
_POSTCODE_GENERIC = (
    r"\b[ABCEGHJ-NPRSTVXY]\d[A-Z]\s?\d[A-Z]\d\b"  # Canada
    r"|\b[1-9]\d{3}\s[A-Z]{2}\b"  # Netherlands (with space, so it is not an id)
    r"|\b(?:[A-Z]{1,2}-)\d{4,5}\b(?=\s+[A-Z][a-z])"  # "D-10115 Berlin" style
)
_NATIONAL_ID = r"\b\d{3}-\d{2}-\d{4}\b|\b\d{3}\s\d{3}\s\d{4}\b"  # US SSN, NHS number layout
_TITLE = r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sr|Sra|Herr|Frau)\.?\s+[A-Z][A-Za-z'-]+"
_NAME = r"\b[A-Z][a-z]+(?:[-'][A-Z]?[a-z]+)?\s+(?:[A-Z]\.?\s+)?(?:(?:Mc|Mac|O'|D'|de\s|van\s|von\s)?[A-Z][a-z]+)"
_NAME_UPPER = r"^[A-Z]{2,}(?:[-'][A-Z]+)?,?\s+[A-Z]{2,}(?:[-'][A-Z]+)?$"  # "SMITH, JANE" / "JANE SMITH"
# a name typed as an id: "Olivia_Whitfield", "olivia.whitfield", "Olivia-Whitfield"
_NAME_JOINED = r"^[A-Za-z][a-z]+(?:[_.][A-Za-z][a-z]+|-[A-Z][a-z]+)+$"

# Words that make up legitimate (or nearly legitimate) contract values: "Hip And Knee" is a wrong
# category, not a person, and must get the category error, not a privacy one.
_DOMAIN_WORDS = frozenset(
    w for table in TABLES.values() for col in table.columns for cat in col.categories for w in cat.split("_")
) | frozenset(
    "and or both left right hip hips knee knees pre post none other not yes no unknown female male clinic "
    "session sessions client clients therapist measure value total mean missing treatment focus "
    "joint myofascial release trigger point stretching exercise advice mobilisation mobilization "
    "team sport gym running walking cycling nprs lefs pain".split()
)

# What to do with each kind of value - the rule says what it is and what to do, never the value.
_CONTACT = "remove it (contact details must not be in the tables)"
_ADDRESS = "remove it (addresses must not be in the tables)"
_NAME_FIX = "remove it (names must not be in the tables; use pseudonyms, see `outcomes deidentify`)"
_PSEUDONYM_FIX = "use a pseudonym such as C0001 (see `outcomes deidentify`)"

# (kind, pattern, case-insensitive, rule)
_RULES: list[tuple[str, str, bool, str]] = [
    ("email", _EMAIL, False, f"looks like an email address: {_CONTACT}"),
    (
        "national_id",
        _NATIONAL_ID,
        False,
        "looks like a national id / health service number: remove it (use a pseudonym, see `outcomes deidentify`)",
    ),
    ("postcode", _POSTCODE_UK, True, f"looks like a postcode: {_ADDRESS}"),
    ("postcode_tight", _POSTCODE_UK_TIGHT, False, f"looks like a postcode: {_ADDRESS}"),
    ("zip", _ZIP4, False, f"looks like a ZIP+4 code: {_ADDRESS}"),
    ("postcode_generic", _POSTCODE_GENERIC, False, f"looks like a postal code: {_ADDRESS}"),
    ("phone", _PHONE, False, f"looks like a phone number: {_CONTACT}"),
    ("title", _TITLE, False, f"looks like a person's name (title such as Mr/Dr): {_NAME_FIX}"),
    ("name", _NAME, False, f"looks like a person's name: {_NAME_FIX}"),
    ("name_upper", _NAME_UPPER, False, f"looks like a person's name: {_NAME_FIX}"),
    ("name_joined", _NAME_JOINED, False, f"looks like a person's name written as an id: {_PSEUDONYM_FIX}"),
]
_COMPILED = {kind: re.compile(p, re.IGNORECASE if ci else 0) for kind, p, ci, _ in _RULES}
_ISO_DATE_RANGE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:\s*(?:-|to|/)\s*\d{4}-\d{2}-\d{2})?$")

# A cell made only of these characters cannot hold an email, a name or a postcode; most contract cells
# (ids, numbers, dates, lower-case categories) are skipped by one vectorised test before any other pattern.
_TRIVIAL = re.compile(r"^(?!(?:\+|0)\d{9,14}$)(?!.*(?:\d{5}-\d{4}|\d{3}-\d{2}-\d{4}))[a-z0-9_;.,:+-]*$")
# Letters then digits ("S0000001", "C00042", "T12"), the shape of the contract's pseudonyms: no rule above can
# match it. Every rule but phone needs a space, '@', '-', '_', '.', or a letter after a digit; phone needs a
# digit with no letter or digit before it, and here every digit follows one. (At least one letter: a bare
# "07700900123" is a phone number.) Tested rule by rule in tests/test_privacy.py. Checked in Arrow (C++),
# since a large clinic has millions of distinct ids.
LETTERS_THEN_DIGITS = r"^[A-Za-z]+[0-9]+$"


def _phone_ok(text: str) -> bool:
    """True if some phone-shaped match in ``text`` has 9-15 digits and is not a date."""
    for m in _COMPILED["phone"].finditer(text):
        s = m.group(0)
        digits = sum(ch.isdigit() for ch in s)
        if s.isdigit() and not s.startswith("0"):
            continue  # a bare number (e.g. a practice number) is not recognisably a phone number
        if 9 <= digits <= 15 and not _ISO_DATE_RANGE.match(s.strip()):
            return True
    return False


def _name_ok(text: str) -> bool:
    """True if some name-shaped match in ``text`` is not made only of domain words."""
    for m in _COMPILED["name"].finditer(text):
        words = re.findall(r"[A-Za-z]+", m.group(0).lower())
        if not all(w in _DOMAIN_WORDS for w in words):
            return True
    return False


def _name_upper_ok(text: str) -> bool:
    words = re.findall(r"[A-Za-z]+", text.lower())
    return not all(w in _DOMAIN_WORDS for w in words)


def _name_joined_ok(text: str) -> bool:
    """A joined name, unless every part is a word of the contract's own vocabulary (hip_and_knee)."""
    parts = [w.lower() for w in re.split(r"[_.-]", text)]
    return not all(w in _DOMAIN_WORDS for w in parts)


_POST_FILTERS = {"phone": _phone_ok, "name": _name_ok, "name_upper": _name_upper_ok, "name_joined": _name_joined_ok}
_ID_COLUMNS = {c.name for t in TABLES.values() for c in t.columns if c.kind == "id"}


def _classify(values: pd.Series, column: str) -> dict[str, pd.Series]:
    """For unique cell values, a boolean Series per rule kind (index = values' index)."""
    out: dict[str, pd.Series] = {}
    for kind, pattern, ci, _ in _RULES:
        if kind == "postcode_tight" and column in _ID_COLUMNS:
            continue
        hit = values.str.contains(pattern, regex=True, case=not ci, na=False)
        post = _POST_FILTERS.get(kind)
        if post is not None and hit.any():
            idx = hit[hit].index
            hit.loc[idx] = np.array([post(v) for v in values.loc[idx]], dtype=bool)
        out[kind] = hit
    return out


def scan_values(frame: pd.DataFrame, file_label: str, *, max_rows_per_rule: int | None = 20) -> list[Problem]:
    """Report cells that look like direct identifiers (emails, phones, postcodes, names).

    Works on the raw string frame from :func:`analysis.load.load_inputs` (index =
    spreadsheet row number). Every column is scanned. Legitimate contract values
    (ids such as ``C0001``, lower-case categories, ISO dates, numbers, ``;``-lists of
    techniques) never match. The work is vectorised over the *distinct* values
    of each column, so an 800k-row measurements table costs a few distinct
    values per column, not 800k regex calls.

    Parameters
    ----------
    frame
        A contract table as loaded (strings; index = row number).
    file_label
        File name used in the problems (e.g. ``clients.csv``).
    max_rows_per_rule
        At most this many rows are reported per column and rule, then one
        summary problem (row None) with the number of further rows; None reports
        every row.

    Returns
    -------
    list of Problem
        ``severity="privacy"``, ``value=None`` (the identifying value is never
        shown), sorted by row then column.

    Examples
    --------
    >>> df = pd.DataFrame({"client_id": ["C0001", "jane@example.com"]}, index=[2, 3])
    >>> [p.line() for p in scan_values(df, "clients.csv")]  # doctest: +ELLIPSIS
    ['clients.csv, row 3, column client_id: looks like an email address: remove it ...']
    """
    rules = {kind: rule for kind, _, _, rule in _RULES}
    problems: list[Problem] = []
    for column in frame.columns:
        col = frame[column]
        if col.dtype.kind in "biufcmM":  # numbers and datetimes cannot hold text identifiers
            continue
        # Distinct values first: a long table repeats the same few categories and numbers.
        uniques = pd.Series(pd.unique(col.to_numpy()), dtype="string").dropna()
        text = pa.array(uniques.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
        uniques = uniques[~letters_then_digits(text)].reset_index(drop=True)
        trivial = uniques.str.fullmatch(_TRIVIAL.pattern, na=True)
        if column in _ID_COLUMNS:  # an id of lower-case words ("olivia_whitfield") is not trivial
            trivial &= ~uniques.str.fullmatch(r"[a-z]{2,}(?:[_.-][a-z]{2,})+", na=False)
        uniques = uniques[~trivial].reset_index(drop=True)
        if uniques.empty:
            continue
        text = col.astype("string")
        flags = _classify(uniques, str(column))
        # One problem per cell, for the first matching rule (an email also contains name-like parts).
        taken = pd.Series(False, index=uniques.index)
        for kind, hit in flags.items():
            hit = hit & ~taken
            taken |= hit
            if not hit.any():
                continue
            bad_values = set(uniques[hit])
            rows = text.index[text.isin(bad_values).to_numpy()]
            rule = rules[kind]
            shown = rows if max_rows_per_rule is None else rows[:max_rows_per_rule]
            problems.extend(Problem(file_label, _row(r), str(column), rule, None, "privacy") for r in shown)
            if len(rows) > len(shown):
                problems.append(
                    Problem(
                        file_label,
                        None,
                        str(column),
                        f"{len(rows) - len(shown)} more row(s) in this column: {rule}",
                        None,
                        "privacy",
                    )
                )
    problems.sort(key=lambda p: (p.row is None, p.row or 0, p.column or "", p.rule))
    return problems


def letters_then_digits(text: pa.Array) -> np.ndarray:
    """True where a value has the harmless shape :data:`LETTERS_THEN_DIGITS` (null: False), vectorised in Arrow."""
    found = pc.match_substring_regex(text, LETTERS_THEN_DIGITS).fill_null(False)
    return np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool)


def _row(r: Any) -> int | None:
    try:
        return int(r)
    except (TypeError, ValueError):
        return None


def looks_identifying(value: object) -> bool:
    """True if one value looks like an email, phone, postcode, id number or name.

    For deciding whether a value may be echoed in an error message.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    s = pd.Series([str(value)], dtype="string")
    return any(bool(hit.iloc[0]) for hit in _classify(s, "").values())
