"""Reading practice-software exports (CSV or XLSX): only the mapped columns, strings as typed."""

from __future__ import annotations

import datetime as dt
import io
import warnings
import zipfile
from pathlib import Path
from typing import Any

import openpyxl
import pandas as pd

from analysis.deidentify.mapping import Mapping
from analysis.errors import InputError
from analysis.load import CsvSyntaxError, csv_rows


def read_export(path: Path, mapping: Mapping) -> tuple[str, pd.DataFrame, dict[str, Any]]:
    """Read one export as strings; index = spreadsheet line (header = 1).

    Returns (label, frame, info) where info records the encoding and delimiter used.
    """
    path = Path(path)
    label = path.name
    if not path.exists():
        raise InputError(f"{path}: export not found")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; pass the export file(s)")
    data = path.read_bytes()
    if data.startswith(b"PK\x03\x04"):
        return label, _read_xlsx(data, label, mapping.sheet), {"format": "xlsx"}
    if not data.strip():
        raise InputError(f"{label}: file is empty")
    encodings = [mapping.encoding] if mapping.encoding else ["utf-8-sig", "cp1252"]
    text = None
    for enc in encodings:
        try:
            text = data.decode(enc)
            break
        except (UnicodeDecodeError, LookupError):
            continue
    if text is None:
        raise InputError(f"{label}: cannot be decoded as {' or '.join(encodings)}; set source.encoding in the mapping")
    first = text.splitlines()[0]
    delimiter = mapping.delimiter or max((",", ";", "\t", "|"), key=first.count)
    try:
        rows = csv_rows(text, delimiter)
    except CsvSyntaxError as exc:
        raise InputError(f"{label}, row {exc.line}: not well-formed CSV ({exc.message})") from None
    return label, _frame(rows, label), {"format": "csv", "encoding": enc, "delimiter": delimiter}


def _read_xlsx(data: bytes, label: str, sheet: str | None) -> pd.DataFrame:
    try:
        with warnings.catch_warnings():
            # openpyxl warns about styles/extensions it ignores; they do not affect cell values
            warnings.simplefilter("ignore", UserWarning)
            wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, OSError, KeyError, ValueError) as exc:
        raise InputError(f"{label}: cannot be opened as a workbook ({exc.__class__.__name__})") from None
    try:
        if sheet and sheet not in wb.sheetnames:
            raise InputError(f"{label}: no sheet '{sheet}' (sheets: {', '.join(wb.sheetnames)})")
        ws = wb[sheet] if sheet else wb.worksheets[0]
        rows = []
        for i, r in enumerate(ws.iter_rows(values_only=True), start=1):
            cells = []
            for v in r:
                if v is None:
                    cells.append("")
                elif isinstance(v, dt.datetime):
                    cells.append(v.date().isoformat())
                elif isinstance(v, dt.date):
                    cells.append(v.isoformat())
                elif isinstance(v, float) and v.is_integer():
                    cells.append(str(int(v)))
                else:
                    cells.append(str(v))
            rows.append((i, cells))
    finally:
        wb.close()
    return _frame(rows, label)


def _frame(rows: list[tuple[int, list[str]]], label: str) -> pd.DataFrame:
    rows = [(i, r) for i, r in rows if any(str(c).strip() for c in r)]
    if not rows:
        raise InputError(f"{label}: has no header row")
    header = [h.strip().lstrip("\ufeff") for h in rows[0][1]]
    dupes = sorted({h for h in header if h and header.count(h) > 1})
    if dupes:
        raise InputError(
            f"{label}, row {rows[0][0]}: column(s) {dupes} appear more than once in the header; rename one"
        )
    width = len(header)
    body = [(i, (r + [""] * width)[:width]) for i, r in rows[1:]]
    if not body:
        raise InputError(f"{label}: has a header but no data rows")
    frame = pd.DataFrame(
        [r for _, r in body], columns=header, index=pd.Index([i for i, _ in body], name="row"), dtype="string"
    )
    return frame.loc[:, [h for h in header if h]]
