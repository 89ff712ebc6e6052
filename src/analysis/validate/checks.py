"""The checks (pure): every contract rule, the privacy scan and the cross-table links on the raw
tables; rejected rows with their reasons; the typed tables of the rows that pass; the summary counts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from analysis.contract import DEFAULT_CLINIC, TABLES, Registry
from analysis.errors import Problem
from analysis.load import ROW_INDEX, Inputs, release_unused_memory
from analysis.privacy import scan_values
from analysis.privacy.scan import letters_then_digits
from analysis.validate.gx_run import ExpectationOutcome, make_context, run_table
from analysis.validate.suites import arrow_text, build_suites, cross_table_expectations, cross_table_links

REJECTING = ("error", "privacy")  # severities that keep a row out of the typed tables
PARENT_REJECTED = "parent rejected"
MAX_SHOWN_VALUE = 40
WITHHELD = "[withheld: possible identifier]"

# rejects.csv: where the row came from, why, then the raw cells of every contract column
REJECT_COLUMNS = (
    ["file", "row", "table", "reasons"]
    + list(dict.fromkeys(c for t in TABLES.values() for c in t.column_names))
    + ["raw"]
)


@dataclass
class ValidationResult:
    """Everything :func:`validate_tables` found.

    Attributes
    ----------
    problems : every problem, file-level and row-level, errors and warnings, sorted.
    tables : table name -> valid typed table (see :func:`typed_tables`); empty
        when a file-level problem makes the inputs unusable.
    rejects : one row per rejected input row, columns :data:`REJECT_COLUMNS`.
    summary : counts per table (rows_received, rows_valid, rows_rejected,
        rejected_as_child, errors, warnings) and totals.
    expectations : one :class:`~analysis.validate.gx_run.ExpectationOutcome` per GX expectation run.
    notes : plain-language remarks that are neither errors nor warnings.
    """

    problems: list[Problem] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    rejects: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REJECT_COLUMNS))
    summary: dict[str, Any] = field(default_factory=dict)
    expectations: list[ExpectationOutcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity in REJECTING]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity not in REJECTING]

    @property
    def file_level(self) -> bool:
        """True when a whole file or column is unusable (then no typed tables are produced)."""
        return bool(self.summary.get("file_level_problems", True))


def _shown(value: object) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value == "":
        return None
    text = str(value)
    return text if len(text) <= MAX_SHOWN_VALUE else text[: MAX_SHOWN_VALUE - 1] + "…"


def _privacy_problems(raw: dict[str, pd.DataFrame], sources: dict[str, str]) -> list[Problem]:
    out: list[Problem] = []
    tables_with: dict[str, list[str]] = {}
    for name, frame in raw.items():
        for column in frame.columns:
            tables_with.setdefault(str(column), []).append(name)
    for column, names in tables_with.items():
        # the scan looks at each distinct value of a column once, even when the column is in two tables
        # (session_id, client_id), and only at values that are not plainly harmless (a pseudonym such as
        # S0000001): both found in Arrow, so millions of ids never become Python strings; its hits are
        # mapped back to every row holding them
        encoded = {name: pc.dictionary_encode(arrow_text(raw[name][column])) for name in names}
        pool = pc.unique(pa.chunked_array([e.dictionary for e in encoded.values()], type=pa.string()))
        pool = pool.filter(pa.array(~letters_then_digits(pool)))
        hits = scan_values(pd.DataFrame({column: np.array(pool.to_pylist(), dtype=object)}), "", max_rows_per_rule=None)
        by_rule: dict[tuple[str, str], list[int]] = {}
        for p in hits:
            by_rule.setdefault((p.rule, p.severity), []).append(int(p.row or 0))
        for (rule, severity), found in by_rule.items():
            bad = pool.take(pa.array(found, type=pa.int64()))
            for name, e in encoded.items():
                hit = np.flatnonzero(np.asarray(pc.is_in(e.dictionary, value_set=bad).to_numpy(zero_copy_only=False)))
                where = np.isin(e.indices.fill_null(-1).to_numpy(zero_copy_only=False), hit)
                out += [Problem(sources[name], int(r), column, rule, None, severity) for r in raw[name].index[where]]
    return out


def validate_tables(
    inputs: Inputs,
    registry: Registry,
    today: dt.date | None = None,
    progress: Callable[[str], None] | None = None,
) -> ValidationResult:
    """Check the raw tables against the contract and split valid rows from rejects.

    Parameters
    ----------
    inputs : raw string tables and file-level problems from :func:`analysis.load.load_inputs`.
    registry : the measures registry.
    today : latest allowed session date (default: today).
    progress : optional; called with the name of each step (the suites, each table's checks, the privacy
        scan) before it runs.

    Returns
    -------
    ValidationResult with every problem, the valid typed tables (``clients``,
    ``sessions``, ``measurements``; columns as in :func:`typed_tables`), the
    rejects (:data:`REJECT_COLUMNS`), the per-table summary and the outcome of
    every GX expectation.

    Examples
    --------
    The demo clinic (read only; nothing is written):

    >>> from analysis.contract import load_registry
    >>> from analysis.load import load_inputs
    >>> from analysis.paths import resolve
    >>> result = validate_tables(load_inputs(resolve("data/raw/demo")), load_registry(resolve("config/measures.yaml")))
    >>> result.summary["status"], result.summary["errors"], result.summary["tables"]["clients"]["rows_valid"]
    ('clean', 0, 150)
    """
    today = today or dt.date.today()
    say = progress or (lambda step: None)
    raw = inputs.tables
    problems: list[Problem] = list(inputs.problems)
    outcomes: list[ExpectationOutcome] = []
    say("preparing the contract's checks (Great Expectations suites)")
    suites = build_suites(registry, today)
    extra = cross_table_expectations(raw)
    links = cross_table_links(raw)
    context = make_context()
    for name, frame in raw.items():
        label = inputs.sources[name]
        say(f"checking {name} ({len(frame):,} rows)")
        run = run_table(context, TABLES[name], frame, list(suites[name].expectations) + extra[name], links[name])
        outcomes.extend(run)
        for o in run:
            cells = frame.loc[list(o.rows), o.column.split(", ")] if o.column else None
            for i, row in enumerate(o.rows):
                value = " / ".join(str(v) for v in cells.iloc[i]) if cells is not None else None
                problems.append(Problem(label, row, o.column or None, o.rule, _shown(value), o.severity))
        release_unused_memory()  # the staged frames of this table
    say("scanning for identifying values, splitting valid rows from rejects")
    private = _privacy_problems(raw, inputs.sources)
    release_unused_memory()
    # never echo a value the privacy scan flagged, in any other problem line either
    hidden = {(p.file, p.row, p.column) for p in private}
    problems = [
        Problem(p.file, p.row, p.column, p.rule, None, p.severity) if (p.file, p.row, p.column) in hidden else p
        for p in problems
    ] + [Problem(p.file, p.row, p.column, p.rule, None, p.severity) for p in private]
    problems = sorted(set(problems), key=_problem_order)

    rejected, child_reasons = _rejected_rows(raw, inputs.sources, problems)
    rejects = _rejects_frame(inputs, problems, rejected, child_reasons, hidden)
    file_level = any(p.row is None and p.severity in REJECTING for p in problems) or len(raw) < len(TABLES)
    valid: dict[str, pd.DataFrame] = {}
    if not file_level:
        drop = {name: rejected[name] | set(child_reasons[name]) for name in raw}
        # no copy of a table without rejects (the usual case): at network scale a copy is hundreds of MB
        keep = {
            name: frame.loc[~frame.index.isin(sorted(drop[name]))] if drop[name] else frame
            for name, frame in raw.items()
        }
        valid = typed_tables(keep)
    notes = _notes(valid)
    summary = _summary(inputs, problems, rejected, child_reasons, valid, file_level, today)
    return ValidationResult(problems, valid, rejects, summary, outcomes, notes)


def _problem_order(p: Problem) -> tuple[int, str, int, str, str, str, str]:
    order = {t.filename: i for i, t in enumerate(TABLES.values())}
    return (order.get(p.file, len(order)), p.file, p.row or 0, p.column or "", p.rule, p.value or "", p.severity)


def _rejected_rows(
    raw: dict[str, pd.DataFrame], sources: dict[str, str], problems: list[Problem]
) -> tuple[dict[str, set[int]], dict[str, dict[int, str]]]:
    """Rows with a rejecting problem, plus children of rejected (or missing) parents."""
    by_label = {sources[n]: n for n in raw}
    rejected: dict[str, set[int]] = {n: set() for n in TABLES}
    for p in problems:
        # ragged rows never reached the frame; load keeps them in Inputs.rejected_rows
        if (
            p.row is not None
            and p.severity in REJECTING
            and p.file in by_label
            and p.row in raw[by_label[p.file]].index
        ):
            rejected[by_label[p.file]].add(p.row)
    children: dict[str, dict[int, str]] = {n: {} for n in TABLES}
    for table in TABLES.values():
        if table.name not in raw:
            continue
        frame = raw[table.name]
        for c in table.columns:
            if not c.references or c.references[0] not in raw:
                continue
            parent, key = c.references
            pframe = raw[parent]
            bad_parent = pframe.loc[pframe.index.isin(sorted(rejected[parent] | set(children[parent])))]
            lines = bad_parent.groupby(key).apply(lambda g: list(g.index)) if len(bad_parent) else pd.Series()
            alive = ~frame.index.isin(sorted(rejected[table.name]))
            hit = frame.index[alive & frame[c.name].isin(set(bad_parent[key]))]
            for row in hit:
                parent_rows = ", ".join(str(r) for r in lines.loc[frame[c.name].loc[row]])
                children[table.name][int(row)] = f"{PARENT_REJECTED} ({sources[parent]} row {parent_rows})"
    return rejected, children


def _rejects_frame(
    inputs: Inputs,
    problems: list[Problem],
    rejected: dict[str, set[int]],
    children: dict[str, dict[int, str]],
    hidden: set[tuple[str, int | None, str | None]],
) -> pd.DataFrame:
    """One row per rejected input row: file, row, table, reasons, raw cells."""
    reasons: dict[tuple[str | None, int], list[str]] = {}
    for p in problems:
        if p.row is not None and p.severity in REJECTING:
            text = f"{p.column}: {p.rule}" if p.column else p.rule
            reasons.setdefault((p.file, p.row), []).append(text)
    records = []
    for name in TABLES:
        label = inputs.sources.get(name)
        frame = inputs.tables.get(name)
        if frame is not None:
            rows = sorted(rejected[name] | set(children[name]))
            for row in rows:
                rec: dict[str, object] = {
                    "file": label,
                    "row": row,
                    "table": name,
                    "reasons": "; ".join(reasons.get((label, row), []) or [children[name].get(row, "")]),
                }
                for col in frame.columns:
                    rec[col] = WITHHELD if (label, row, col) in hidden else frame.at[row, col]
                records.append(rec)
        ragged = inputs.rejected_rows.get(name)
        if ragged is not None:
            label = inputs.sources.get(name, TABLES[name].filename)
            for row, text in zip(ragged[ROW_INDEX], ragged["raw"], strict=True):
                records.append(
                    {
                        "file": label,
                        "row": int(row),
                        "table": name,
                        "reasons": "; ".join(reasons.get((label, int(row)), [])),
                        "raw": text,
                    }
                )
    out = (
        pd.DataFrame.from_records(records, columns=REJECT_COLUMNS) if records else pd.DataFrame(columns=REJECT_COLUMNS)
    )
    order = {n: i for i, n in enumerate(TABLES)}
    if len(out):
        out = out.assign(_t=out["table"].map(order)).sort_values(["_t", "row"], kind="stable").drop(columns="_t")
    return out.reset_index(drop=True).astype({"row": "int64"}) if len(out) else out


def typed_tables(raw: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Coerce valid raw string tables to the typed schema.

    Call only with rows that passed validation (coercion here assumes the
    rules hold; a value that cannot be coerced raises ValueError).

    Returns
    -------
    dict with
    - ``clients``: client_id, clinic_id (blank -> "clinic-1"), sex, age_band (str),
      symptom_weeks (int64), sitting_hours (float64, NaN = missing), activity, knee (str).
    - ``sessions``: session_id, client_id (str), session_date (datetime64[ns]),
      therapist_id (str or NA), focus (str), techniques (str or NA, ';'-separated,
      no spaces), minutes (int64).
    - ``measurements``: session_id, measure, timing (str), value (float64).
    Index is a fresh RangeIndex, rows in input order.
    """
    out = {}
    for name, frame in raw.items():
        table = TABLES[name]
        cols: dict[str, pd.Series] = {}
        for c in table.columns:
            if c.kind in TEXT_KINDS:  # the text itself, blank -> missing: no conversion, no copy of the strings
                cols[c.name] = _typed_text(frame[c.name], c.default)
                continue
            # each distinct value is converted once, then spread over its rows (a column repeats its values)
            codes, uniques = pd.factorize(frame[c.name], use_na_sentinel=False)
            cols[c.name] = _typed(c.kind, c.default, pd.Series(np.asarray(uniques, dtype=object))).take(codes)
        out[name] = pd.DataFrame({k: v.reset_index(drop=True) for k, v in cols.items()})[table.column_names]
    return out


TEXT_KINDS = frozenset({"id", "category", "measure"})  # typed as ``str``: the cell's text, blank = missing


def _typed_text(col: pd.Series, default: str | None) -> pd.Series:
    """What :func:`_typed` gives for a text kind, on the whole column at once (the fast reader's Arrow-backed
    strings are kept as they are: millions of ids never become Python strings)."""
    text = col.astype("str")
    blank = text.isna() | (text == "")
    return text.where(~blank) if default is None else text.where(~blank, default)


def _typed(kind: str, default: str | None, text: pd.Series) -> pd.Series:
    text = text.where(text.notna() & (text != ""), None)
    if default is not None:
        text = text.fillna(default)
    if kind == "integer":
        return pd.to_numeric(text, errors="raise").astype("float64").round().astype("int64")
    if kind in ("number", "value"):
        return pd.to_numeric(text, errors="raise").astype("float64")
    if kind == "date":
        return pd.to_datetime(text, format="%Y-%m-%d", errors="raise").astype("datetime64[ns]")
    if kind == "multi_category":
        return text.map(
            lambda v: ";".join(part.strip() for part in v.split(";")) if isinstance(v, str) else None
        ).astype("str")
    return text.astype("str")


def _notes(valid: dict[str, pd.DataFrame]) -> list[str]:
    notes = []
    sessions = valid.get("sessions")
    if sessions is not None and len(sessions):
        same = sessions.duplicated(["client_id", "session_date"], keep=False)
        if same.any():
            n_clients = sessions.loc[same, "client_id"].nunique()
            notes.append(
                f"{int(same.sum())} sessions of {n_clients} client(s) share a date with another session of the "
                "same client; allowed, and ordered by session_id within the day"
            )
    if "clients" in valid and DEFAULT_CLINIC and valid["clients"]["clinic_id"].eq(DEFAULT_CLINIC).all():
        notes.append(f"every client is in clinic '{DEFAULT_CLINIC}' (blank clinic_id is read as {DEFAULT_CLINIC})")
    return notes


def _summary(
    inputs: Inputs,
    problems: list[Problem],
    rejected: dict[str, set[int]],
    children: dict[str, dict[int, str]],
    valid: dict[str, pd.DataFrame],
    file_level: bool,
    today: dt.date,
) -> dict[str, Any]:
    tables = {}
    for name in TABLES:
        label = inputs.sources.get(name, TABLES[name].filename)
        ragged = inputs.rejected_rows.get(name)
        n_ragged = 0 if ragged is None else len(ragged)
        n_read = len(inputs.tables[name]) if name in inputs.tables else 0
        mine = [p for p in problems if p.file == label]
        tables[name] = {
            "file": label,
            "rows_received": n_read + n_ragged,
            "rows_valid": len(valid[name]) if name in valid else 0,
            "rows_rejected": len(rejected[name]) + len(children[name]) + n_ragged,
            "rejected_as_child": len(children[name]),
            "errors": sum(p.severity in REJECTING for p in mine),
            "warnings": sum(p.severity not in REJECTING for p in mine),
        }
    n_err = sum(p.severity in REJECTING for p in problems)
    return {
        "tables": tables,
        "errors": n_err,
        "warnings": len(problems) - n_err,
        "file_level_problems": file_level,
        "status": "unusable" if file_level else ("rejects" if n_err else "clean"),
    }
