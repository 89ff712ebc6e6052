"""Shaping a table's cells into the raw frame that :mod:`analysis.load` returns: the header checks and the
final touches every reader shares, and the fast reader for large, plain CSV files (pyarrow, in C).

Split from :mod:`analysis.load` (the I/O edge: folders, files, the exact CSV and XLSX readers) so that each
stays readable; :func:`fast_csv` gives the very frame the exact reader gives, only faster and in compact
Arrow-backed strings.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.csv as pacsv  # type: ignore[import-untyped]

from analysis.contract import Table, identifier_reason
from analysis.errors import Problem

ROW_INDEX = "row"
MAX_CELL_CHARS = 10_000  # no contract value is longer; a longer cell is reported with its column
MIDNIGHT = r"^(\d{4}-\d{2}-\d{2})[ T]00:00(?::00(?:\.0+)?)?$"


def header_problems(header: list[str], header_line: int, table: Table, label: str) -> list[Problem]:
    """What is wrong with a (normalised) header: wrong delimiter, empty, duplicated, unknown or missing columns."""
    problems: list[Problem] = []
    if len(header) == 1 and any(sep in header[0] for sep in (";", "\t", "|")):
        sep = next(s for s in (";", "\t", "|") if s in header[0])
        return [
            Problem(
                label,
                header_line,
                None,
                f"uses {'tab' if sep == chr(9) else repr(sep)} as delimiter; "
                "the contract needs comma-separated values (save as 'CSV UTF-8')",
            )
        ]
    seen: set[str] = set()
    for h in header:
        if h == "":
            problems.append(Problem(label, header_line, None, "header has an empty column name"))
        elif h in seen:
            problems.append(Problem(label, header_line, h, "column appears more than once in the header"))
        seen.add(h)
    for h in header:
        if h and h not in table.column_names:
            reason = identifier_reason(h)
            problems.append(
                Problem(
                    label,
                    header_line,
                    h,
                    reason or f"unknown column; allowed: {', '.join(table.column_names)}",
                    severity="privacy" if reason else "error",
                )
            )
    for name in table.required_columns:
        if name not in header:
            problems.append(Problem(label, header_line, name, "required column is missing from the header"))
    return problems


def finish_frame(
    frame: pd.DataFrame, bad: list[dict[str, Any]], problems: list[Problem], table: Table, label: str
) -> tuple[pd.DataFrame, pd.DataFrame | None, list[Problem]]:
    """Over-long cells become problems + rejects; optional columns absent from the file are added blank."""
    too_long = set()
    for name in frame.columns:
        long = frame[name].str.len() > MAX_CELL_CHARS
        for line in frame.index[long.fillna(False).to_numpy(dtype=bool)]:
            problems.append(
                Problem(
                    label,
                    int(line),
                    name,
                    f"value is {len(str(frame.at[line, name])):,} characters long, over the "
                    f"{MAX_CELL_CHARS:,} a contract value can have (a broken quote can swallow "
                    "many lines into one cell); the row is rejected",
                )
            )
            too_long.add(line)
    if too_long:  # the row goes to the rejects, its content cut to a readable length
        bad += [
            {ROW_INDEX: int(line), "raw": ",".join(frame.loc[line].astype(str))[:200] + " ..."}
            for line in sorted(too_long)
        ]
        frame = frame.drop(index=sorted(too_long))
    for c in table.columns:
        if c.name not in frame.columns:
            frame[c.name] = ""
    frame = frame[table.column_names]
    rejected = pd.DataFrame(bad) if bad else None
    return frame, rejected, problems


# --------------------------------------------------------------------------- the fast path for plain CSV files

FAST_MIN_BYTES = 1 << 20  # smaller files take the exact reader: it is quick at that size
_PLAIN = r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$|^$"  # printable ASCII, nothing to trim: NFKC/strip no-ops
_ASCII_BLANK = r"^[\t\n\x0b\x0c\r\x1c-\x1f ]*$"  # what str.strip() removes entirely, in ASCII


def _clean(values: pa.ChunkedArray) -> pd.Series:
    """One column as :func:`_to_frame` cleans it (NFKC, strip, midnight dates), Python only where it matters."""
    plain = pc.and_(pc.match_substring_regex(values, _PLAIN), pc.invert(pc.match_substring_regex(values, "[ T]00:00")))
    col = pd.Series(values, dtype=pd.StringDtype("pyarrow", na_value=np.nan))
    todo = ~np.asarray(plain.to_numpy(zero_copy_only=False), dtype=bool)
    if todo.any():  # non-ASCII, padded or datetime-looking cells: exactly the exact reader's steps
        fixed = col[todo].astype(object).str.normalize("NFKC").str.strip().str.replace(MIDNIGHT, r"\1", regex=True)
        col = col.where(~todo, fixed.reindex(col.index))
    return col


def fast_csv(
    data: bytes, table: Table, label: str
) -> tuple[pd.DataFrame | None, pd.DataFrame | None, list[Problem]] | None:
    """Read a large, plain CSV file (no quotes, no bare CR, UTF-8, one row per line, every row as wide as the
    header) with pyarrow, into ``str`` columns; None when the file is anything else (then the exact reader,
    which reports ragged rows, quotes and encodings line by line, reads it).

    Same frame as :func:`_to_frame` gives (index = spreadsheet line, blank rows skipped, cells cleaned), but
    in C and in compact Arrow-backed strings, so millions of rows fit in memory.
    """
    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    if len(body) < FAST_MIN_BYTES or b'"' in body or b"\x00" in body or body.startswith(b"sep="):
        return None
    if b"\r" in body and body.count(b"\r") != body.count(b"\r\n"):
        return None
    if not body.isascii():
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return None
    end = body.find(b"\n")
    if end < 0:
        return None
    header = [unicodedata.normalize("NFKC", h).strip() for h in body[:end].decode("utf-8").rstrip("\r").split(",")]
    if header and header[-1] == "":
        return None  # stray trailing commas: the exact reader decides whether the column is empty
    problems = header_problems(header, 1, table, label)
    if problems:
        return None, None, problems
    ragged = []

    def invalid(row: Any) -> str:
        ragged.append(row)
        return "skip"

    names = [f"f{i}" for i in range(len(header))]
    try:
        parsed = pacsv.read_csv(
            pa.BufferReader(pa.py_buffer(body)[end + 1 :]),
            read_options=pacsv.ReadOptions(column_names=names, block_size=1 << 24),
            parse_options=pacsv.ParseOptions(quote_char=False, ignore_empty_lines=False, invalid_row_handler=invalid),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=False
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None
    if ragged:
        return None
    n = parsed.num_rows
    if n == 0:
        return None
    blank = np.ones(n, dtype=bool)
    odd = np.zeros(n, dtype=bool)
    for name in names:
        blank &= np.asarray(pc.match_substring_regex(parsed[name], _ASCII_BLANK).to_numpy(zero_copy_only=False), bool)
        odd |= ~np.asarray(pc.string_is_ascii(parsed[name]).to_numpy(zero_copy_only=False), bool)
    for i in np.flatnonzero(odd):  # non-ASCII spaces: str.strip() decides, as in the exact reader
        blank[i] = not "".join(str(parsed[name][int(i)]) for name in names).strip()
    if blank.all():
        return None, None, [Problem(label, None, None, "has a header but no data rows")]
    index = pd.RangeIndex(2, n + 2, name=ROW_INDEX)  # the same numbers as the exact reader's, in no memory
    frame = pd.DataFrame({h: _clean(parsed[name]).set_axis(index) for h, name in zip(header, names, strict=True)})
    del parsed
    if blank.any():
        frame = frame.loc[~blank]
    return finish_frame(frame, [], [], table, label)
