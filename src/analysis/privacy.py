"""Privacy: find identifying values, gate peer outputs, suppress small counts.

Pure functions only; nothing here reads or writes files.

API (called by other stages)
----------------------------
:func:`scan_values` (``frame, file_label``) -> ``list[Problem]``
    Used by :mod:`analysis.validate` on every loaded contract table. Reports
    cells that look like an email address, a phone number, a postcode/ZIP code,
    a national id number or a person's name as ``Problem(severity="privacy")``
    with ``value=None``: the identifying value is never echoed.
:func:`check_peer_output` (``obj_or_text, *, forbidden_ids, min_cell``) -> ``list[str]``
    The final gate for anything meant for peers. Returns the reasons it is not
    safe (empty list = safe). :func:`assert_peer_safe` raises
    :class:`~analysis.errors.PrivacyError` with those reasons, so a report
    writer calls it just before writing and writes nothing if it raises.

    Conventions it enforces:

    * No client or session id appears anywhere, as a whole token (a token is
      a run of ``A-Z a-z 0-9 _ -``, the id charset), in text, JSON keys or
      JSON values. Reasons say where, never which id.
    * No count is below ``min_cell`` (counts of 0 are allowed: an empty cell
      identifies nobody). What is a count:

      - JSON (``dict``/``list``): the value of a key named ``n``, ``n_*``,
        ``*_n``, ``count``, ``count*`` or ``*_count`` (case-insensitive), and
        every number nested under such a key. A suppressed count is the string
        ``"<k"`` (see :func:`suppress_count`) or ``"*"`` (complementary
        suppression, see :func:`suppress_table`) and passes.
      - HTML/text (``str``): the value of every ``data-count="k"`` attribute.
        The report templates mark each count they show with it, e.g.
        ``<td data-count="12">12</td>``; a suppressed one is
        ``<td data-count="<5">&lt;5</td>`` (``data-count="&lt;5"`` and
        ``data-count="*"`` also pass).

:func:`suppress_count` and :func:`suppress_table`
    Small-cell suppression for peer tables, with complementary suppression so
    a hidden cell cannot be recovered from a row or column total.
:func:`k_anonymity`
    Size of the smallest group of clients sharing the quasi-identifiers.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis.contract import TABLES
from analysis.errors import PrivacyError, Problem

__all__ = [
    "scan_values",
    "looks_identifying",
    "check_peer_output",
    "assert_peer_safe",
    "is_count_key",
    "suppress_count",
    "suppress_table",
    "k_anonymity",
]

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

# (kind, pattern, case-insensitive, rule) - the rule says what it is and what to do, never the value.
_RULES: list[tuple[str, str, bool, str]] = [
    ("email", _EMAIL, False, "looks like an email address: remove it (contact details must not be in the tables)"),
    (
        "national_id",
        _NATIONAL_ID,
        False,
        "looks like a national id / health service number: remove it (use a pseudonym, see `outcomes deidentify`)",
    ),
    ("postcode", _POSTCODE_UK, True, "looks like a postcode: remove it (addresses must not be in the tables)"),
    (
        "postcode_tight",
        _POSTCODE_UK_TIGHT,
        False,
        "looks like a postcode: remove it (addresses must not be in the tables)",
    ),
    ("zip", _ZIP4, False, "looks like a ZIP+4 code: remove it (addresses must not be in the tables)"),
    (
        "postcode_generic",
        _POSTCODE_GENERIC,
        False,
        "looks like a postal code: remove it (addresses must not be in the tables)",
    ),
    ("phone", _PHONE, False, "looks like a phone number: remove it (contact details must not be in the tables)"),
    (
        "title",
        _TITLE,
        False,
        "looks like a person's name (title such as Mr/Dr): remove it (names must not be in the tables; "
        "use pseudonyms, see `outcomes deidentify`)",
    ),
    (
        "name",
        _NAME,
        False,
        "looks like a person's name: remove it (names must not be in the tables; "
        "use pseudonyms, see `outcomes deidentify`)",
    ),
    (
        "name_upper",
        _NAME_UPPER,
        False,
        "looks like a person's name: remove it (names must not be in the tables; "
        "use pseudonyms, see `outcomes deidentify`)",
    ),
    (
        "name_joined",
        _NAME_JOINED,
        False,
        "looks like a person's name written as an id: use a pseudonym such as C0001 (see `outcomes deidentify`)",
    ),
]
_COMPILED = {kind: re.compile(p, re.IGNORECASE if ci else 0) for kind, p, ci, _ in _RULES}
_ISO_DATE_RANGE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:\s*(?:-|to|/)\s*\d{4}-\d{2}-\d{2})?$")

# A cell made only of these characters cannot hold an email, a name or a postcode; most contract cells
# (ids, numbers, dates, lower-case categories) are skipped by one vectorised test before any other pattern.
_TRIVIAL = re.compile(r"^(?!(?:\+|0)\d{9,14}$)(?!.*(?:\d{5}-\d{4}|\d{3}-\d{2}-\d{4}))[a-z0-9_;.,:+-]*$")


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


# ----------------------------------------------------------------------------- peer-output gate

_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
_DATA_COUNT = re.compile(r"""data-count\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.IGNORECASE)
_COUNT_KEY = re.compile(r"^(?:n|n_.+|.+_n|count.*|.+_count)$", re.IGNORECASE)
_SUPPRESSED = re.compile(r"^\s*(?:(?:<|&lt;)\s*\d+|\*)\s*$")
SECONDARY_MARK = "*"  # a cell hidden only so that a small count cannot be worked out from a total


def is_count_key(key: object) -> bool:
    """True if a JSON key names a count: ``n``, ``n_*``, ``*_n``, ``count*``, ``*_count``."""
    return isinstance(key, str) and bool(_COUNT_KEY.match(key))


def _small(value: Any, min_cell: int) -> bool:
    """True if ``value`` is a count (number) in 1..min_cell-1."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    v = float(value)
    return not math.isnan(v) and 0 < v < min_cell


# An absolute local path: /home/..., /Users/..., /root/..., /tmp/..., /mnt/..., C:\..., \\server\...
_LOCAL_PATH = re.compile(
    r"(?<![\w/.:-])(?:/(?:home|Users|root|tmp|mnt|media|srv|var|opt|private|data|work)/[^\s\"'<>]+"
    r"|[A-Za-z]:\\[^\s\"'<>]+|\\\\[^\s\"'<>]+)"
)


def check_peer_output(obj_or_text: Any, *, forbidden_ids: Iterable[str], min_cell: int) -> list[str]:
    """Reasons why an output meant for peers is not safe; an empty list means safe.

    Parameters
    ----------
    obj_or_text
        Peer HTML/text (``str``) or a JSON-like object (``dict``/``list``, e.g. findings.json).
    forbidden_ids
        Client and session ids (and any other pseudonym) that must not appear, as whole tokens.
    min_cell
        Smallest count that may be shown (params ``report.min_cell``); counts of 0 may be shown.

    Returns
    -------
    list of str
        One reason per problem kind and place; reasons never contain the forbidden id.
    """
    forbidden = {str(i) for i in forbidden_ids if str(i)}
    reasons: list[str] = []
    if isinstance(obj_or_text, (bytes, bytearray)):
        obj_or_text = obj_or_text.decode("utf-8", errors="replace")
    if isinstance(obj_or_text, str):
        text = obj_or_text
        n_ids = sum(1 for tok in _TOKEN.findall(text) if tok in forbidden)
        if n_ids:
            reasons.append(f"text contains a client or session id {n_ids} time(s); show aggregates only")
        n_paths = len(_LOCAL_PATH.findall(text))
        if n_paths:
            reasons.append(
                f"text contains {n_paths} local file path(s) (a folder name can hold a user's or "
                "clinic's name); show paths relative to the project, or not at all"
            )
        for m in _DATA_COUNT.finditer(text):
            raw = next(g for g in m.groups() if g is not None).strip()
            line = text.count("\n", 0, m.start()) + 1
            if _SUPPRESSED.match(raw):
                continue
            try:
                value = float(raw)
            except ValueError:
                reasons.append(
                    f"line {line}: data-count is not a number or '<{min_cell}'; mark counts as data-count=\"k\""
                )
                continue
            if _small(value, min_cell):
                reasons.append(
                    f"line {line}: count {value:g} is below {min_cell}; show it as '<{min_cell}' "
                    "(suppress_count) with complementary suppression (suppress_table)"
                )
        return reasons
    _walk(obj_or_text, "$", False, forbidden, min_cell, reasons)
    n_paths = len(_LOCAL_PATH.findall(json.dumps(obj_or_text, default=str)))
    if n_paths:
        reasons.append(f"contains {n_paths} local file path(s); show paths relative to the project, or not at all")
    return reasons


def _walk(obj: Any, path: str, in_count: bool, forbidden: set[str], min_cell: int, reasons: list[str]) -> None:
    if isinstance(obj, dict):
        for key, value in obj.items():
            sub = f"{path}.{key}"
            if isinstance(key, str) and any(tok in forbidden for tok in _TOKEN.findall(key)):
                reasons.append(f"{path}: a key is a client or session id; show aggregates only")
                sub = f"{path}.<key>"
            _walk(value, sub, in_count or is_count_key(key), forbidden, min_cell, reasons)
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _walk(value, f"{path}[{i}]", in_count, forbidden, min_cell, reasons)
    elif isinstance(obj, pd.DataFrame):
        _walk(obj.to_dict(orient="list"), path, in_count, forbidden, min_cell, reasons)
    elif isinstance(obj, str):
        if any(tok in forbidden for tok in _TOKEN.findall(obj)):
            reasons.append(f"{path}: contains a client or session id; show aggregates only")
    elif in_count and _small(obj, min_cell):
        reasons.append(
            f"{path}: count {float(obj):g} is below {min_cell}; "
            f"write '<{min_cell}' (suppress_count) with complementary suppression"
        )


def assert_peer_safe(
    obj_or_text: Any, *, forbidden_ids: Iterable[str], min_cell: int, label: str = "peer output"
) -> None:
    """Raise :class:`PrivacyError` listing every reason ``obj_or_text`` is not safe for peers.

    Call it just before writing a peer output; if it raises, write nothing.
    """
    reasons = check_peer_output(obj_or_text, forbidden_ids=forbidden_ids, min_cell=min_cell)
    if reasons:
        shown = reasons[:10]
        more = f"; and {len(reasons) - 10} more" if len(reasons) > 10 else ""
        raise PrivacyError(f"{label} not written: " + "; ".join(shown) + more)


# ----------------------------------------------------------------------------- small-cell suppression


def suppress_count(n: Any, min_cell: int) -> str:
    """A count as shown to peers: ``"<5"`` for 1..min_cell-1, else the number; blank for missing.

    >>> suppress_count(3, 5), suppress_count(0, 5), suppress_count(12, 5)
    ('<5', '0', '12')
    """
    if n is None or n is pd.NA or (isinstance(n, float) and math.isnan(n)):
        return ""
    v = float(n)
    if 0 < v < min_cell:
        return f"<{min_cell}"
    return f"{int(v)}" if v.is_integer() else f"{v:g}"


def suppress_table(df: pd.DataFrame, count_cols: Sequence[str], min_cell: int) -> pd.DataFrame:
    """Suppress small counts, plus complementary cells so none can be recovered by subtraction.

    Primary suppression hides every count in 1..min_cell-1. A hidden cell
    could still be worked out from a row total (the sum over ``count_cols``)
    or a column total (the sum over rows) if it were the only hidden cell in
    its row or column. So, until nothing changes: any row or column holding
    exactly one hidden cell also hides its smallest other visible count (a
    total column, if listed in ``count_cols``, is a candidate like any other).
    Rows and columns with a single count cell have nothing to pair with and
    are left as they are. Primary cells show ``"<min_cell"``; complementary
    ones show ``"*"`` (not ``"<5"``, which would be false for them); a report
    footnote should say "* hidden so that a small count cannot be worked out".

    Parameters
    ----------
    df
        Table with count columns (numbers; NaN = not applicable).
    count_cols
        The count columns, including any total column.
    min_cell
        Smallest count that may be shown.

    Returns
    -------
    pandas.DataFrame
        Same shape and columns; ``count_cols`` become strings (``"<5"`` for a
        small count, ``"*"`` for a complementary cell, the count otherwise,
        ``""`` for missing); other columns unchanged.
    """
    cols = list(count_cols)
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise KeyError(f"count columns not in the table: {missing}")
    values = df[cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    present = ~np.isnan(values)
    primary = present & (values > 0) & (values < min_cell)
    hidden = primary.copy()

    def fix(lines_values: np.ndarray, lines_hidden: np.ndarray, lines_present: np.ndarray) -> bool:
        changed = False
        for i in range(lines_values.shape[0]):
            if lines_hidden[i].sum() == 1:
                candidates = np.where(lines_present[i] & ~lines_hidden[i])[0]
                if len(candidates):
                    j = candidates[np.argmin(lines_values[i, candidates])]
                    lines_hidden[i, j] = True
                    changed = True
        return changed

    changed = True
    while changed:
        # Transposes are views of the same arrays, so marks made column-wise land in `hidden`.
        changed = fix(values, hidden, present) | fix(values.T, hidden.T, present.T)

    out = df.copy()
    for j, c in enumerate(cols):
        shown = [
            f"<{min_cell}" if primary[i, j] else SECONDARY_MARK if hidden[i, j] else suppress_count(values[i, j], 1)
            for i in range(len(df))
        ]
        out[c] = pd.Series(shown, index=df.index, dtype="string")
    return out


def k_anonymity(
    df: pd.DataFrame, quasi: Sequence[str] = ("clinic_id", "sex", "age_band", "knee"), threshold: int = 5
) -> dict[str, int]:
    """k-anonymity of a client table over the quasi-identifiers.

    Parameters
    ----------
    df
        One row per client (e.g. the clients table).
    quasi
        Quasi-identifier columns; missing values form their own class.
    threshold
        Classes smaller than this are counted in ``n_below_threshold``
        (params ``privacy.k_threshold``).

    Returns
    -------
    dict
        ``k`` (size of the smallest class; 0 for an empty table), ``n_classes``,
        ``n_below_threshold`` (classes smaller than ``threshold``) and
        ``n_records_below_threshold`` (rows in those classes).
    """
    quasi = list(quasi)
    missing = [c for c in quasi if c not in df.columns]
    if missing:
        raise KeyError(f"quasi-identifier columns not in the table: {missing}")
    if df.empty:
        return {"k": 0, "n_classes": 0, "n_below_threshold": 0, "n_records_below_threshold": 0}
    sizes = df.groupby(quasi, dropna=False, sort=True, observed=True).size()
    small = sizes[sizes < threshold]
    return {
        "k": int(sizes.min()),
        "n_classes": int(len(sizes)),
        "n_below_threshold": int(len(small)),
        "n_records_below_threshold": int(small.sum()),
    }


def responder_cells_small(entry: dict[str, Any] | None, min_cell: int) -> bool:
    """True if any cell of the responders' 2 x 2 table (responded or not, by group) is in 1..min_cell-1.

    Then proportions, risk differences, odds ratios and their CIs must be withheld from peers: with the
    group sizes they give the small cell back (e.g. RD 0.40 with CI -0.23 to 0.77 allows only 3/3 vs 3/5).
    """
    if not isinstance(entry, dict) or entry.get("status") != "done":
        return False
    n1, r1 = entry.get("n_hip_focused"), entry.get("responders_hip_focused")
    n0, r0 = entry.get("n_comparator"), entry.get("responders_comparator")
    if n1 is None or r1 is None or n0 is None or r0 is None:
        return True
    cells = (r1, n1 - r1, r0, n0 - r0)
    return any(0 < c < min_cell for c in cells)


def km_for_peers(km: pd.DataFrame | None, min_cell: int) -> pd.DataFrame | None:
    """A Kaplan-Meier table safe for peers: each group only while at least ``min_cell`` are at risk.

    Each step of a curve is a person; below ``min_cell`` at risk a step identifies someone's timing.
    Groups that never have ``min_cell`` at risk are dropped entirely.
    """
    if km is None or km.empty or "at_risk" not in km.columns:
        return km
    keep = pd.to_numeric(km["at_risk"], errors="coerce").fillna(0) >= min_cell
    return km[keep].reset_index(drop=True)


def pinned_cells(
    counts: np.ndarray, hidden: np.ndarray, min_cell: int, small: np.ndarray | None = None
) -> list[tuple[int, int]]:
    """Hidden cells of a two-way table that the shown numbers still pin to one value (a linear-programming audit).

    ``counts`` is the full table with its totals in the last row and the last column; ``hidden`` marks the
    cells shown as "<min_cell" or "*"; ``small`` (default: hidden cells whose count is 1..min_cell-1) marks
    those shown as "<min_cell". Every hidden cell is an unknown: one shown as "<min_cell" lies in
    1..min_cell-1, one shown as "*" in 0..(its row total); shown cells are fixed; every row and column
    must add up to its total. For each hidden cell the smallest and largest value consistent with all that
    is found by linear programming (scipy's HiGHS); if they are less than 1 apart the cell is pinned: a peer
    could work it out (the demo's "both groups <5 against a total of 8, so each is 4").

    Returns
    -------
    list of (row, column) of pinned hidden cells; empty when the table is safe.
    """
    from scipy.optimize import linprog

    counts = np.asarray(counts, dtype=float)
    R, C = counts.shape
    cells = [(i, j) for i in range(R) for j in range(C) if hidden[i, j]]
    if not cells:
        return []
    index = {cell: k for k, cell in enumerate(cells)}
    if small is None:
        small = hidden & (counts > 0) & (counts < min_cell)
    bounds = []
    for i, j in cells:
        cap = float(counts[i, -1] if j < C - 1 else counts[-1, j])
        bounds.append((1.0, min_cell - 1.0) if small[i, j] else (0.0, cap))
    rows_eq, rhs = [], []
    # row i: sum of the group cells = the total cell; column j: sum of the level cells = the totals row
    for lines in (
        [[(i, j) for j in range(C - 1)] + [(i, C - 1)] for i in range(R)],
        [[(i, j) for i in range(R - 1)] + [(R - 1, j)] for j in range(C)],
    ):
        for line in lines:
            parts, total = line[:-1], line[-1]
            a, b = np.zeros(len(cells)), 0.0  # row of A_eq, and its right-hand side
            for cell in parts:
                if cell in index:
                    a[index[cell]] += 1.0
                else:
                    b -= float(counts[cell])
            if total in index:
                a[index[total]] -= 1.0
            else:
                b += float(counts[total])
            if a.any():
                rows_eq.append(a)
                rhs.append(b)
    pinned = []
    for k, cell in enumerate(cells):
        c = np.zeros(len(cells))
        c[k] = 1.0
        lo = linprog(c, A_eq=np.array(rows_eq), b_eq=np.array(rhs), bounds=bounds, method="highs")
        hi = linprog(-c, A_eq=np.array(rows_eq), b_eq=np.array(rhs), bounds=bounds, method="highs")
        solved = lo.status == 0 and hi.status == 0
        if solved and lo.fun is not None and hi.fun is not None and (-hi.fun) - lo.fun < 1.0 - 1e-9:
            pinned.append(cell)
    return pinned
