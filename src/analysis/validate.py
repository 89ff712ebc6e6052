"""Validate: check the raw tables against the contract, type them, keep the valid rows.

Every rule comes from :mod:`analysis.contract` and the measures registry,
turned into great-expectations suites by :mod:`analysis.gx_suites`; the
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
"""

from __future__ import annotations

import datetime as dt
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import lineage
from analysis.contract import DEFAULT_CLINIC, TABLES, Registry, load_registry
from analysis.errors import Problem, ValidationFailed
from analysis.gx_suites import (
    ExpectationOutcome,
    build_suites,
    cross_table_expectations,
    cross_table_links,
    make_context,
    run_suite,
    stage_table,
)
from analysis.load import ROW_INDEX, Inputs, load_inputs

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
    expectations : one :class:`~analysis.gx_suites.ExpectationOutcome` per GX expectation run.
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
    from analysis.privacy import scan_values

    out: list[Problem] = []
    for name, frame in raw.items():
        out.extend(scan_values(frame, sources[name], max_rows_per_rule=None))
    return out


def validate_tables(inputs: Inputs, registry: Registry, today: dt.date | None = None) -> ValidationResult:
    """Check the raw tables against the contract and split valid rows from rejects.

    Parameters
    ----------
    inputs : raw string tables and file-level problems from :func:`analysis.load.load_inputs`.
    registry : the measures registry.
    today : latest allowed session date (default: today).

    Returns
    -------
    ValidationResult with every problem, the valid typed tables (``clients``,
    ``sessions``, ``measurements``; columns as in :func:`typed_tables`), the
    rejects (:data:`REJECT_COLUMNS`), the per-table summary and the outcome of
    every GX expectation.

    Examples
    --------
    >>> from analysis.load import load_inputs
    >>> from analysis.contract import load_registry
    >>> result = validate_tables(load_inputs(Path("data/raw/demo")), load_registry(Path("config/measures.yaml")))
    >>> result.summary["errors"]  # doctest: +SKIP
    0
    """
    today = today or dt.date.today()
    raw = inputs.tables
    problems: list[Problem] = list(inputs.problems)
    outcomes: list[ExpectationOutcome] = []
    suites = build_suites(registry, today)
    extra = cross_table_expectations(raw)
    links = cross_table_links(raw)
    context = make_context()
    for name, frame in raw.items():
        label = inputs.sources[name]
        staged = stage_table(TABLES[name], frame, links[name])
        run = run_suite(context, name, staged, list(suites[name].expectations) + extra[name])
        outcomes.extend(run)
        for o in run:
            for row in o.rows:
                value = " / ".join(str(frame.at[row, c]) for c in o.column.split(", ")) if o.column else None
                problems.append(Problem(label, row, o.column or None, o.rule, _shown(value), o.severity))
    private = _privacy_problems(raw, inputs.sources)
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
        keep = {
            name: frame.loc[~frame.index.isin(sorted(rejected[name] | set(child_reasons[name])))]
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
            text = frame[c.name].astype(object)
            text = text.where(text.notna() & (text != ""), None)
            if c.default is not None:
                text = text.fillna(c.default)
            if c.kind == "integer":
                cols[c.name] = pd.to_numeric(text, errors="raise").astype("float64").round().astype("int64")
            elif c.kind in ("number", "value"):
                cols[c.name] = pd.to_numeric(text, errors="raise").astype("float64")
            elif c.kind == "date":
                cols[c.name] = pd.to_datetime(text, format="%Y-%m-%d", errors="raise").astype("datetime64[ns]")
            elif c.kind == "multi_category":
                cols[c.name] = text.map(
                    lambda v: ";".join(part.strip() for part in v.split(";")) if isinstance(v, str) else None
                ).astype("str")
            else:
                cols[c.name] = text.astype("str")
        out[name] = pd.DataFrame(cols).reset_index(drop=True)[table.column_names]
    return out


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


# --------------------------------------------------------------------------- reports


def validation_json(result: ValidationResult, input_dir: str) -> dict[str, Any]:
    """The machine-readable report: summary, every problem, every rule checked."""
    return {
        "input": input_dir,
        "summary": result.summary,
        "notes": result.notes,
        "problems": [p.as_dict() for p in result.problems],
        "rules": [o.as_dict() for o in result.expectations]
        + [
            {
                "table": t,
                "expectation": "analysis.privacy.scan_values",
                "column": "(text columns)",
                "rule": "no e-mail addresses, phone numbers, postcodes or names in values",
                "severity": "privacy",
                "row_condition": None,
                "checked": result.summary["tables"][t]["rows_received"],
                "failed": sum(
                    p.severity == "privacy" and p.row is not None and p.file == result.summary["tables"][t]["file"]
                    for p in result.problems
                ),
                "success": not any(
                    p.severity == "privacy" and p.row is not None and p.file == result.summary["tables"][t]["file"]
                    for p in result.problems
                ),
            }
            for t in TABLES
        ],
    }


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}
table{border-collapse:collapse;margin:1em 0;width:100%}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}td code{overflow-wrap:anywhere}
th{background:#f3f3f3}.ok{color:#1a7f37}.bad{color:#b42318;font-weight:bold}.warn{color:#9a6700}
.status{font-size:1.2em}code{background:#f6f6f6;padding:0 .2em}"""


def validation_html(report: dict[str, Any]) -> str:
    """A self-contained page with the same content as validation.json."""
    e = html.escape
    s = report["summary"]
    status = {
        "clean": ("ok", "All rows passed."),
        "rejects": ("bad", f"{s['errors']} error(s): the rows listed below are rejected."),
        "unusable": ("bad", "A file or column is unusable: fix the file-level problems first."),
    }[s["status"]]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Validation report</title>",
        f"<style>{_CSS}</style></head><body><h1>Validation report</h1>",
        f"<p>Input folder: <code>{e(report['input'])}</code>. "
        "Session dates must not be after the day of validation.</p>",
        f"<p class='status {status[0]}'>{e(status[1])} {s['warnings']} warning(s).</p>",
        "<h2>Tables</h2><table><tr><th>table</th><th>file</th><th>rows received</th><th>valid</th>"
        "<th>rejected</th><th>of which parent rejected</th><th>errors</th><th>warnings</th></tr>",
    ]
    for name, t in s["tables"].items():
        parts.append(
            f"<tr><td>{e(name)}</td><td>{e(t['file'])}</td><td>{t['rows_received']}</td>"
            f"<td>{t['rows_valid']}</td><td>{t['rows_rejected']}</td><td>{t['rejected_as_child']}</td>"
            f"<td>{t['errors']}</td><td>{t['warnings']}</td></tr>"
        )
    parts.append("</table>")
    if report["notes"]:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in report["notes"]) + "</ul>")
    parts.append(f"<h2>Problems ({len(report['problems'])})</h2>")
    if report["problems"]:
        parts.append(
            "<table><tr><th>severity</th><th>file</th><th>row</th><th>column</th><th>rule</th><th>value</th></tr>"
        )
        for p in report["problems"]:
            cls = "bad" if p["severity"] in REJECTING else "warn"
            parts.append(
                f"<tr><td class='{cls}'>{e(p['severity'])}</td><td>{e(p['file'])}</td>"
                f"<td>{'' if p['row'] is None else p['row']}</td><td>{e(p['column'] or '')}</td>"
                f"<td>{e(p['rule'])}</td><td>{e(p['value'] or '')}</td></tr>"
            )
        parts.append("</table>")
    else:
        parts.append("<p class='ok'>None.</p>")
    parts.append(
        "<h2>Rules checked</h2><table><tr><th>table</th><th>column</th><th>rule</th><th>check</th>"
        "<th>rows checked</th><th>failed</th><th>result</th></tr>"
    )
    for r in report["rules"]:
        cls, word = (
            ("ok", "passed")
            if r["success"]
            else (("warn", "warning") if r["severity"] == "warning" else ("bad", "failed"))
        )
        check = r["expectation"] + (f" where {r['row_condition']}" if r["row_condition"] else "")
        parts.append(
            f"<tr><td>{e(r['table'])}</td><td>{e(r['column'])}</td><td>{e(r['rule'])}</td>"
            f"<td><code>{e(check)}</code></td><td>{r['checked']}</td><td>{r['failed']}</td>"
            f"<td class='{cls}'>{word}</td></tr>"
        )
    parts.append("</table></body></html>\n")
    return "\n".join(parts)


def summary_text(result: ValidationResult, input_dir: str) -> str:
    """The terminal summary: counts per table, warnings and notes, one line each."""
    lines = [f"validated {input_dir}:"]
    for name, t in result.summary["tables"].items():
        lines.append(
            f"  {name}: {t['rows_received']} rows received, {t['rows_valid']} valid, {t['rows_rejected']} rejected"
        )
    lines.append(f"{result.summary['errors']} error(s), {result.summary['warnings']} warning(s)")
    lines += [p.line() for p in result.problems]
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines)


def run_validate(params: dict[str, Any], input_dir: Path | None = None, today: dt.date | None = None) -> str:
    """I/O edge of ``outcomes validate``: read, check, write reports, rejects and valid tables.

    Always writes ``<report_dir>/validation.json``, ``validation.html`` and
    ``<out_dir>/rejects.csv``; writes ``<out_dir>/{clients,sessions,measurements}.parquet``
    unless a file-level problem makes the inputs unusable.

    Returns the summary text. Raises :class:`ValidationFailed` (exit 1) when
    there are errors, unless params ``validate.allow_rejects`` is true and the
    problems are all row-level.
    """
    from analysis.params import section
    from analysis.paths import resolve
    from analysis.store import write_csv, write_json, write_parquet, write_text

    data = section(params, "data")
    v = section(params, "validate")
    folder = resolve(input_dir) if input_dir else resolve(data["input"])
    registry = load_registry(resolve(data["registry"]))
    inputs = load_inputs(folder, max_mb=float(v.get("max_file_mb", 512)))
    result = validate_tables(inputs, registry, today)
    shown = str(input_dir) if input_dir else str(data["input"])
    report = validation_json(result, shown)
    report_dir, out_dir = resolve(v["report_dir"]), resolve(v["out_dir"])
    write_json(report_dir / "validation.json", report)
    write_text(report_dir / "validation.html", validation_html(report))
    write_csv(out_dir / "rejects.csv", result.rejects)
    written = [report_dir / "validation.json", report_dir / "validation.html", out_dir / "rejects.csv"]
    if result.file_level:
        for name in TABLES:
            # a stale valid table from an earlier run must not be picked up by `outcomes join`
            (out_dir / f"{name}.parquet").unlink(missing_ok=True)
        raise ValidationFailed(result.problems)
    for name, frame in result.tables.items():
        write_parquet(out_dir / f"{name}.parquet", frame)
        written.append(out_dir / f"{name}.parquet")
    lineage.record(out_dir, "validate", inputs.paths, written)
    if result.errors and not v.get("allow_rejects", False):
        raise ValidationFailed(result.problems)
    text = summary_text(result, shown)
    return text + "\n" + "\n".join(f"wrote {p}" for p in written)


__all__ = ["ValidationResult", "build_suites", "run_validate", "typed_tables", "validate_tables"]
