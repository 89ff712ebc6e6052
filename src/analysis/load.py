"""Load: read the three contract tables from an input folder, as raw text.

This is the I/O edge for inputs. It reads CSV (UTF-8, with or without BOM,
any line endings, quoted fields) or XLSX (a ``<table>.xlsx`` file, or one
workbook holding a sheet per table) and returns every cell as a stripped
string, indexed by the line number a person sees in a spreadsheet (header =
line 1). Nothing is coerced or dropped here: typing and rules belong to
:mod:`analysis.validate`. File-level problems (missing, empty, not UTF-8, wrong
delimiter, missing/extra/duplicated columns, ragged rows) are returned as
:class:`~analysis.errors.Problem` records, all at once, never raised.

Input files are opened read-only and never modified.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import re
import time
import unicodedata
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openpyxl
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]

from analysis.contract import TABLES, Table
from analysis.errors import InputError, Problem
from analysis.load_csv import MIDNIGHT, fast_csv, finish_frame, header_problems
from analysis.load_csv import ROW_INDEX as ROW_INDEX  # the index name of every raw frame, imported from here

XLSX_MAGIC = b"PK\x03\x04"
DEFAULT_MAX_MB = 512
#: bounds for spreadsheets: a tiny .xlsx can declare a used range of 16,384 x 1,048,576 cells
MAX_XLSX_COLUMNS = 64  # contract tables have a handful of columns; cells beyond are not read
MAX_ROWS = 2_000_000  # data rows per table
MAX_UNCOMPRESSED_MB = 1024  # an .xlsx is a zip: its unpacked size is checked before it is opened


@dataclass
class Inputs:
    """The raw tables as read, with where they came from and what went wrong.

    ``tables`` maps table name -> DataFrame of ``str`` (index ``row`` = the
    spreadsheet line number); a table whose file could not be read is absent.
    ``sources`` maps table name -> the file label used in messages (e.g.
    ``clients.csv`` or ``clinic.xlsx[sessions]``). ``paths`` lists every file
    read, for provenance hashes.
    """

    folder: Path
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    rejected_rows: dict[str, pd.DataFrame] = field(default_factory=dict)


def load_inputs(
    folder: Path,
    max_mb: float = DEFAULT_MAX_MB,
    progress: Callable[[str], None] | None = None,
    memory_limit_mb: float | None = None,
) -> Inputs:
    """Read the contract tables from ``folder``.

    Raises :class:`InputError` only when the folder itself is unusable, or before anything is read when the
    tables would need more memory than ``memory_limit_mb`` (default: the memory available now; see
    :func:`check_memory`); every other problem is collected in ``Inputs.problems``. ``progress`` (optional)
    is called with one line per table read (rows, seconds).
    """
    folder = Path(folder)
    if not folder.exists():
        raise InputError(
            f"{folder}: input folder not found; pass --input DIR with clients.csv, sessions.csv, "
            "measurements.csv (or an .xlsx workbook with those sheets)"
        )
    if not folder.is_dir():
        raise InputError(f"{folder}: is a file, not a folder; pass the folder that holds the three tables")
    out = Inputs(folder=folder)
    workbooks = sorted(p for p in folder.glob("*.xlsx") if p.stem not in TABLES and not p.name.startswith("~$"))
    files = [folder / t.filename for t in TABLES.values()] + [folder / f"{t}.xlsx" for t in TABLES] + workbooks
    check_memory([f for f in files if f.is_file()], memory_limit_mb)
    for table in TABLES.values():
        t0 = time.perf_counter()
        csv_path = folder / table.filename
        xlsx_path = folder / f"{table.name}.xlsx"
        if csv_path.exists():
            _read_one(out, table, csv_path, table.filename, max_mb, kind="csv")
        elif xlsx_path.exists():
            _read_one(out, table, xlsx_path, xlsx_path.name, max_mb, kind="xlsx", sheet=None)
        else:
            # sheet names match whatever their case ("Clients" is the clients sheet)
            book = next((b for b in workbooks if table.name in {n.casefold() for n in _sheet_names(b)}), None)
            if book is not None:
                _read_one(out, table, book, f"{book.name}[{table.name}]", max_mb, kind="xlsx", sheet=table.name)
            else:
                out.problems.append(
                    Problem(
                        table.filename,
                        None,
                        None,
                        f"file not found in {folder}; add {table.filename} (see `outcomes template`)",
                    )
                )
        release_unused_memory()  # the file's bytes and the parser's buffers
        if progress and table.name in out.tables:
            rows = len(out.tables[table.name])
            progress(f"{out.sources[table.name]}: {rows:,} rows read ({time.perf_counter() - t0:.1f} s)")
    return out


#: memory a validation needs per byte of input tables, and on top of that (start-up, great-expectations);
#: measured with benchmarks/bench_validate.py: peak RSS 723 MB for 95 MB of CSV (50,000 clients) and 1,804 MB
#: for 397 MB (200,000 clients), i.e. about 380 MB + 3.6 x the input; set 25% above that slope, a
#: margin for inputs unlike the generated ones (longer cells, more distinct values)
MEMORY_PER_INPUT_BYTE = 4.5
MEMORY_BASE_MB = 450.0


def release_unused_memory() -> None:
    """Hand memory freed by the last step back to the system (Arrow's pool; with the system allocator, that is
    ``malloc_trim``, which also returns what numpy and Python freed). Called between the steps of a validation:
    the peak is what the machine must have, and a freed but retained buffer counts in it."""
    pa.default_memory_pool().release_unused()


def available_memory_mb() -> float:
    """Memory available to a new process (Linux MemAvailable; elsewhere the free physical memory)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20


def check_memory(paths: list[Path], limit_mb: float | None = None) -> None:
    """Refuse, before reading anything, tables that would need more memory than ``limit_mb``.

    The need is estimated from the file sizes (:data:`MEMORY_PER_INPUT_BYTE`, :data:`MEMORY_BASE_MB`);
    the limit defaults to the memory available now. Raises :class:`InputError` naming the largest file,
    its size, the estimated need and the limit.
    """
    if not paths:
        return
    sizes = {p: p.stat().st_size for p in paths}
    need = MEMORY_BASE_MB + MEMORY_PER_INPUT_BYTE * sum(sizes.values()) / 2**20
    limit = available_memory_mb() if limit_mb is None else limit_mb
    source = "memory available" if limit_mb is None else "params validate.max_memory_mb"
    if need > limit:
        big = max(sizes, key=lambda p: sizes[p])
        raise InputError(
            f"{big}: {sizes[big] / 2**20:,.0f} MB ({sum(sizes.values()) / 2**20:,.0f} MB of tables in all) needs "
            f"about {need:,.0f} MB of memory to validate, over the {limit:,.0f} MB limit ({source}); "
            "nothing was read: split the export (by clinic or by year) or use a machine with more memory"
        )


def _sheet_names(path: Path) -> list[str]:
    try:
        wb = openpyxl.load_workbook(path, read_only=True)
        try:
            return list(wb.sheetnames)
        finally:
            wb.close()
    except Exception:  # an unreadable workbook simply offers no sheets here
        return []


def _read_one(
    out: Inputs, table: Table, path: Path, label: str, max_mb: float, kind: str, sheet: str | None = None
) -> None:
    if path.is_dir():
        out.problems.append(Problem(label, None, None, "is a folder, not a file; put the table's file here"))
        return
    size = path.stat().st_size
    if size > max_mb * 1024 * 1024:
        out.problems.append(
            Problem(
                label,
                None,
                None,
                f"file is {size / 1024 / 1024:.0f} MB, over the {max_mb:g} MB limit "
                "(params validate.max_file_mb); split it or raise the limit",
            )
        )
        return
    try:
        with open(path, "rb") as fh:  # read-only: inputs are never modified
            data = fh.read()
    except OSError as exc:
        out.problems.append(Problem(label, None, None, f"cannot be read ({exc.strerror})"))
        return
    out.paths.append(path)
    if kind == "csv":
        if data.startswith(XLSX_MAGIC):
            out.problems.append(
                Problem(
                    label,
                    None,
                    None,
                    f"is an Excel workbook named .csv; save it as 'CSV UTF-8' or rename it to {table.name}.xlsx",
                )
            )
            return
        fast = fast_csv(data, table, label)
        if fast is not None:  # the common, plain file: read in C, same result as the exact reader below
            frame, rejected, problems = fast
            out.problems.extend(problems)
            if frame is not None:
                out.tables[table.name], out.sources[table.name] = frame, label
            return
        rows, problems = _parse_csv(data, label)
    else:
        rows, problems = _parse_xlsx(data, label, sheet)
    out.problems.extend(problems)
    if rows is None:
        return
    frame, rejected, header_problems = _to_frame(rows, table, label)
    out.problems.extend(header_problems)
    if frame is not None:
        out.tables[table.name] = frame
        out.sources[table.name] = label
        if rejected is not None and len(rejected):
            out.rejected_rows[table.name] = rejected


def _parse_csv(data: bytes, label: str) -> tuple[list[tuple[int, list[str]]] | None, list[Problem]]:
    """Decode and split a CSV file into (line number, fields) rows."""
    if not data.strip():
        return None, [Problem(label, None, None, "file is empty; it needs a header row and data rows")]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return None, [
            Problem(label, line, None, f"is not UTF-8 text (byte 0x{data[exc.start]:02x}); save it as 'CSV UTF-8'")
        ]
    if "\x00" in text:
        return None, [Problem(label, None, None, "contains NUL bytes: not a text CSV file; export it as CSV UTF-8")]
    sep_hint = re.match(r"sep=,\s*\r?\n", text[:10])
    try:
        rows = csv_rows(text)
        if sep_hint:  # Excel's "sep=," first line: a hint, not the header
            rows = rows[1:]
    except CsvSyntaxError as exc:
        return None, [
            Problem(
                label, exc.line, None, f"is not well-formed CSV ({exc.message}); check quotes around values with commas"
            )
        ]
    return rows, []


class CsvSyntaxError(ValueError):
    """CSV text that cannot be split into rows; ``line`` is where the broken row starts."""

    def __init__(self, line: int, message: str):
        super().__init__(f"line {line}: {message}")
        self.line, self.message = line, message


def csv_rows(text: str, delimiter: str = ",") -> list[tuple[int, list[str]]]:
    """Split CSV text into (line number where the row starts, fields); quoted newlines are kept in a field."""
    # the field-size limit is the file's length, so an oversized cell is reported with its column by
    # _to_frame (MAX_CELL_CHARS) rather than as a CSV syntax error
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for fields in reader:
            rows.append((start, fields))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise CsvSyntaxError(start, str(exc)) from None
    return rows


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time(0) else value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _parse_xlsx(data: bytes, label: str, sheet: str | None) -> tuple[list[tuple[int, list[str]]] | None, list[Problem]]:
    if not data.startswith(XLSX_MAGIC):
        return None, [Problem(label, None, None, "is not an .xlsx workbook; save it as Excel Workbook or CSV")]
    try:
        unpacked = sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(data)).infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        return None, [Problem(label, None, None, f"cannot be opened as a workbook ({exc.__class__.__name__})")]
    if unpacked > MAX_UNCOMPRESSED_MB * 1024 * 1024:
        return None, [
            Problem(
                label,
                None,
                None,
                f"unpacks to {unpacked / 2**20:.0f} MB, over the "
                f"{MAX_UNCOMPRESSED_MB} MB limit for a workbook; save the table as CSV UTF-8",
            )
        ]
    try:
        with warnings.catch_warnings():
            # openpyxl warns about unsupported styling/extensions, which do not affect values
            warnings.simplefilter("ignore", UserWarning)
            wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, OSError, KeyError, ValueError) as exc:
        return None, [Problem(label, None, None, f"cannot be opened as a workbook ({exc.__class__.__name__})")]
    rows: list[tuple[int, list[str]]] = []
    try:
        names = {n.casefold(): n for n in wb.sheetnames}
        ws = wb[names.get(sheet.casefold(), sheet)] if sheet else wb.worksheets[0]
        # Read only the cells that exist: the declared used range can be the whole sheet (one formatted
        # cell at XFD1048576), so dimensions are recomputed, columns bounded and empty rows skipped as read.
        ws.reset_dimensions()
        for i, r in enumerate(ws.iter_rows(max_col=MAX_XLSX_COLUMNS, values_only=True), start=1):
            if all(v is None or (isinstance(v, str) and not v.strip()) for v in r):
                continue
            if len(rows) > MAX_ROWS:
                return None, [Problem(label, i, None, f"has more than {MAX_ROWS:,} rows; split the table")]
            rows.append((i, [_cell_text(v) for v in r]))
    finally:
        wb.close()
    if not rows:
        return None, [Problem(label, None, None, "sheet is empty; it needs a header row and data rows")]
    width = max((j + 1 for _, r in rows for j, c in enumerate(r) if c.strip()), default=0)
    return [(i, r[:width] + [""] * (width - len(r))) for i, r in rows], []


def _to_frame(
    rows: list[tuple[int, list[str]]], table: Table, label: str
) -> tuple[pd.DataFrame | None, pd.DataFrame | None, list[Problem]]:
    """Check the header and build the string frame; ragged rows become problems + rejects."""
    problems: list[Problem] = []
    header_line, header = rows[0]
    header = [unicodedata.normalize("NFKC", h).strip().lstrip("\ufeff") for h in header]
    # trailing empty columns (a spreadsheet's stray commas) carry nothing: drop them if every value is blank
    while (
        header and header[-1] == "" and all(len(r) < len(header) or not r[len(header) - 1].strip() for _, r in rows[1:])
    ):
        header = header[:-1]
        rows = [(i, r[: len(header)] if len(r) > len(header) else r) for i, r in rows]
    # "".join(...).strip(): one C call per row, so 800k-row files stay fast
    data_rows = [(i, r) for i, r in rows[1:] if "".join(r).strip()]
    problems += header_problems(header, header_line, table, label)
    if problems:
        return None, None, problems
    if not data_rows:
        return None, None, [Problem(label, None, None, "has a header but no data rows")]
    good: list[list[str]] = []
    good_idx: list[int] = []
    bad: list[dict[str, Any]] = []
    for line, fields in data_rows:
        if len(fields) != len(header):
            problems.append(
                Problem(
                    label,
                    line,
                    None,
                    f"has {len(fields)} fields but the header has {len(header)}; quote values that contain commas",
                )
            )
            bad.append({ROW_INDEX: line, "raw": ",".join(fields)})
            continue
        good.append(fields)
        good_idx.append(line)
    frame = pd.DataFrame(good, columns=header, index=pd.Index(good_idx, name=ROW_INDEX), dtype=object)
    # per column (vectorised): Unicode compatibility forms to their plain form (full-width digits and letters,
    # as some keyboards type them, become ASCII: the same rule for validation and conversion), spaces
    # trimmed, and a date with a midnight time (a spreadsheet's datetime) reduced to the date
    if len(frame):
        frame = frame.apply(
            lambda col: col.str.normalize("NFKC").str.strip().str.replace(MIDNIGHT, r"\1", regex=True)
        ).astype(object)
    return finish_frame(frame, bad, problems, table, label)
