"""Blank templates of the three contract tables, derived from the contract.

``outcomes template`` writes ``clients.csv``, ``sessions.csv`` and
``measurements.csv`` (header row only) and ``template.xlsx``: one sheet per
table with its header row, a ``dictionary`` sheet (column, required, rule,
description, example; the same text as the README data dictionary) and a
``measures`` sheet from the measures registry. The bytes are the same on
every run: the workbook's created/modified properties are fixed and its zip
entries carry a fixed timestamp.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from pathlib import Path

import pandas as pd
from openpyxl import Workbook
from openpyxl.styles import Font

from analysis.contract import TABLES, Registry, load_registry
from analysis.params_schema import Params
from analysis.paths import resolve
from analysis.store import write_bytes, write_text

# Fixed workbook timestamp so that the template is byte-identical across runs.
FIXED_TIME = dt.datetime(2024, 1, 1, 0, 0, 0)
DICTIONARY_COLUMNS = ["table", "column", "required", "rule", "description", "example"]
MEASURE_COLUMNS = [
    "measure",
    "label",
    "unit",
    "min",
    "max",
    "integer",
    "direction",
    "mcid_points",
    "mcid_percent",
    "side",
    "reference",
]


def header_csv(table_name: str) -> str:
    """The header row of one table as CSV text (comma-separated, LF ending)."""
    return ",".join(TABLES[table_name].column_names) + "\n"


def dictionary_frame() -> pd.DataFrame:
    """The data dictionary from the contract.

    Returns
    -------
    DataFrame with columns table, column, required ("yes"/"no"), rule, description, example.
    """
    rows = [
        {
            "table": t.name,
            "column": c.name,
            "required": "yes" if c.required else "no",
            "rule": c.rule,
            "description": c.description,
            "example": c.example,
        }
        for t in TABLES.values()
        for c in t.columns
    ]
    return pd.DataFrame(rows, columns=DICTIONARY_COLUMNS)


def measures_frame(registry: Registry) -> pd.DataFrame:
    """The measures registry as a table.

    Returns
    -------
    DataFrame with columns measure, label, unit, min, max, integer, direction,
    mcid_points, mcid_percent, side, reference (one row per measure, registry order).
    """
    rows = [
        {
            "measure": m.key,
            "label": m.label,
            "unit": m.unit,
            "min": m.minimum,
            "max": m.maximum,
            "integer": "yes" if m.integer else "no",
            "direction": m.direction,
            "mcid_points": m.mcid_points,
            "mcid_percent": m.mcid_percent,
            "side": m.side or "",
            "reference": m.reference,
        }
        for m in registry.measures.values()
    ]
    return pd.DataFrame(rows, columns=MEASURE_COLUMNS)


def template_workbook(registry: Registry) -> bytes:
    """The template workbook as bytes: a sheet per table, 'dictionary' and 'measures'."""
    wb = Workbook()
    wb.remove(wb.active)
    bold = Font(bold=True)
    for table in TABLES.values():
        ws = wb.create_sheet(table.name)
        ws.append(table.column_names)
        for cell in ws[1]:
            cell.font = bold
        for i, column in enumerate(table.columns, start=1):
            dim = ws.column_dimensions[ws.cell(1, i).column_letter]
            dim.width = max(14, len(column.name) + 2)
            if column.kind == "id":
                # text format: stop Excel turning an id such as "0012" into the number 12
                dim.number_format = "@"
        ws.freeze_panes = "A2"
    for title, frame in (("dictionary", dictionary_frame()), ("measures", measures_frame(registry))):
        ws = wb.create_sheet(title)
        ws.append(list(frame.columns))
        for cell in ws[1]:
            cell.font = bold
        for record in frame.itertuples(index=False):
            ws.append([None if (isinstance(v, float) and pd.isna(v)) else v for v in record])
        ws.freeze_panes = "A2"
    wb.properties.creator = "outcomes template"
    wb.properties.created = FIXED_TIME
    wb.properties.modified = FIXED_TIME
    wb.properties.lastModifiedBy = None
    buf = io.BytesIO()
    wb.save(buf)
    return _fix_zip_times(buf.getvalue())


def _fix_zip_times(data: bytes) -> bytes:
    """Rewrite the zip with fixed entry timestamps and modified time, so the bytes do not depend on the clock."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=FIXED_TIME.timetuple()[:6])
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o644 << 16
            body = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                # openpyxl stamps the save time into dcterms:modified whatever the properties say
                stamp = FIXED_TIME.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
                body = re.sub(
                    rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)", rb"\g<1>" + stamp + rb"\g<2>", body
                )
            dst.writestr(fixed, body)
    return out.getvalue()


def run_template(out_dir: Path | str, params: Params) -> list[Path]:
    """Write the blank CSV templates and template.xlsx into ``out_dir``.

    Returns the paths written, in order: clients.csv, sessions.csv, measurements.csv, template.xlsx.
    """

    registry = load_registry(resolve(params.data.registry))
    out = resolve(out_dir)
    written = []
    for name, table in TABLES.items():
        path = out / table.filename
        write_text(path, header_csv(name))
        written.append(path)
    path = out / "template.xlsx"
    write_bytes(path, template_workbook(registry))
    written.append(path)
    return written
