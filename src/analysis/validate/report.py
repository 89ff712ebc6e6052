"""What validation tells the user: ``validation.json`` (machine-readable), ``validation.html`` (one line
per problem, readable in a browser) and the console summary.
"""

from __future__ import annotations

import html
from typing import Any

from analysis.contract import TABLES
from analysis.validate.checks import REJECTING, ValidationResult

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


_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em auto;padding:0 1em;max-width:70em;color:#222}
.scroll{overflow-x:auto}table{border-collapse:collapse;margin:1em 0;width:100%}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}.ok{color:#1a7f37}.bad{color:#b42318;font-weight:bold}.warn{color:#9a6700}
.status{font-size:1.2em}code{background:#f6f6f6;padding:0 .2em}"""


def _breakable(text: str) -> str:
    """Escaped ``text`` that may wrap after each underscore (long expectation names), not mid-word."""
    return html.escape(text).replace("_", "_<wbr>")


def _table(header: list[str], rows: list[str]) -> str:
    """A table that scrolls sideways on a narrow screen instead of widening the page."""
    head = "".join(f"<th>{h}</th>" for h in header)
    return f"<div class='scroll'><table><tr>{head}</tr>\n" + "\n".join(rows) + "\n</table></div>"


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
        (
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'><title>Validation report</title>"
        ),
        f"<style>{_CSS}</style></head><body><h1>Validation report</h1>",
        (
            f"<p>Input folder: <code>{e(report['input'])}</code>. "
            "Session dates must not be after the day of validation.</p>"
        ),
        f"<p class='status {status[0]}'>{e(status[1])} {s['warnings']} warning(s).</p>",
        "<h2>Tables</h2>",
    ]
    table_rows = [
        f"<tr><td>{e(name)}</td><td>{e(t['file'])}</td><td>{t['rows_received']}</td>"
        f"<td>{t['rows_valid']}</td><td>{t['rows_rejected']}</td><td>{t['rejected_as_child']}</td>"
        f"<td>{t['errors']}</td><td>{t['warnings']}</td></tr>"
        for name, t in s["tables"].items()
    ]
    header = ["table", "file", "rows received", "valid", "rejected", "of which parent rejected", "errors", "warnings"]
    parts.append(_table(header, table_rows))
    if report["notes"]:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in report["notes"]) + "</ul>")
    parts.append(f"<h2>Problems ({len(report['problems'])})</h2>")
    if report["problems"]:
        problem_rows = []
        for p in report["problems"]:
            cls = "bad" if p["severity"] in REJECTING else "warn"
            problem_rows.append(
                f"<tr><td class='{cls}'>{e(p['severity'])}</td><td>{e(p['file'])}</td>"
                f"<td>{'' if p['row'] is None else p['row']}</td><td>{e(p['column'] or '')}</td>"
                f"<td>{e(p['rule'])}</td><td>{e(p['value'] or '')}</td></tr>"
            )
        parts.append(_table(["severity", "file", "row", "column", "rule", "value"], problem_rows))
    else:
        parts.append("<p class='ok'>None.</p>")
    parts.append("<h2>Rules checked</h2>")
    rule_rows = []
    for r in report["rules"]:
        cls, word = (
            ("ok", "passed")
            if r["success"]
            else (("warn", "warning") if r["severity"] == "warning" else ("bad", "failed"))
        )
        check = r["expectation"] + (f" where {r['row_condition']}" if r["row_condition"] else "")
        rule_rows.append(
            f"<tr><td>{e(r['table'])}</td><td>{e(r['column'])}</td><td>{e(r['rule'])}</td>"
            f"<td><code>{_breakable(check)}</code></td><td>{r['checked']}</td><td>{r['failed']}</td>"
            f"<td class='{cls}'>{word}</td></tr>"
        )
    parts.append(_table(["table", "column", "rule", "check", "rows checked", "failed", "result"], rule_rows))
    parts.append("</body></html>\n")
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
