"""The way back from a pseudonym to the practice's own patient record -- for the key holder only.

``outcomes deidentify ... --crosswalk DIR`` writes ``DIR/crosswalk.csv``: one row per client with the
pseudonym (``client_id``), the practice's own identity values as exported (the mapping's ``identity``
columns, e.g. the patient number, or name and date of birth), the real first and last visit dates and
the date shift applied, so a shifted date in a report can be turned back into the real one.
``outcomes lookup TEXT --crosswalk DIR`` finds a row by pseudonym or by any of its values.

The crosswalk identifies patients. It is refused anywhere inside the project or inside any git work
tree (so it can never be committed, and never lands in reports or peer outputs), written with
owner-only permissions, and never read by any pipeline stage.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.errors import InputError
from analysis.paths import check_outside_repositories
from analysis.store import private_dir, write_csv

FILENAME = "crosswalk.csv"


def check_private_dir(folder: Path, root: Path | None = None) -> Path:
    """The resolved folder, if it is outside the project and outside every git work tree; else InputError."""
    return check_outside_repositories(
        folder,
        "the crosswalk identifies patients and",
        "choose a folder only the key holder can read, outside any repository, e.g. ~/clinic-private",
        root,
    )


def crosswalk_frame(rows: pd.DataFrame, identity_cols: list[str], offsets: pd.Series) -> pd.DataFrame:
    """One row per client: client_id, the identity values, real first/last visit, date shift (days).

    ``rows`` has one row per export row with ``client_id``, ``_date`` (real visit date) and the identity
    columns; ``offsets`` maps client_id -> days added to that client's dates.
    """
    g = rows.groupby("client_id", sort=True)
    out = g[identity_cols].first()
    out["first_visit_real"] = g["_date"].min().dt.strftime("%Y-%m-%d")
    out["last_visit_real"] = g["_date"].max().dt.strftime("%Y-%m-%d")
    out["date_shift_days"] = offsets.reindex(out.index).astype("Int64")
    return out.reset_index()


def write_crosswalk(folder: Path, frame: pd.DataFrame, root: Path | None = None) -> Path:
    """Write ``crosswalk.csv`` into a private folder (checked; owner-only, 0700), owner read/write only (0600)."""
    folder = private_dir(check_private_dir(folder, root))  # 0700 before anything is written into it
    path = folder / FILENAME
    write_csv(path, frame, private=True)  # 0600 from the first byte: the temp file too
    return path


def lookup(folder: Path, text: str) -> pd.DataFrame:
    """Rows of the crosswalk whose pseudonym or any identity value equals ``text`` (case-insensitive)."""
    path = Path(folder).expanduser() / FILENAME
    if not path.is_file():
        raise InputError(f"{path}: no crosswalk here; it is written by `outcomes deidentify ... --crosswalk DIR`")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    needle = text.strip().casefold()
    hit = table.apply(lambda col: col.str.strip().str.casefold() == needle).any(axis=1)
    rows: pd.DataFrame = table[hit]
    return rows
