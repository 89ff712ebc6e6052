"""Writing outputs atomically: temp file in the same folder, fsync, rename.

A run interrupted at any point leaves the previous output intact and never a
half-written file. Inputs are never written by this project.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from analysis.errors import OutputError


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _clean_stale(path: Path) -> None:
    """Remove temp files of ``path`` left by a *dead* run (killed mid-write); a running one keeps its own.

    Temp names carry the writer's process id (``.<name>.<pid>.<random>.tmp``); one whose process is gone is
    stale. Two runs at once (two ``outcomes report``) therefore never delete each other's temp files.
    """
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        parts = stale.name[len(path.name) + 2 :].split(".")
        pid = int(parts[0]) if parts and parts[0].isdigit() else None
        if pid is None or not _pid_alive(pid):
            stale.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    A folder that cannot be written gives one clear :class:`OutputError` naming it.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _clean_stale(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    except PermissionError:
        raise OutputError(
            f"{path.parent}: cannot write here (permission denied); make the folder writable or "
            "choose another output folder in params.yaml"
        ) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, path)
    except PermissionError:
        raise OutputError(f"{path}: cannot be replaced (permission denied); make it writable") from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temp file for writing; it replaces ``path`` only if the block succeeds."""
    with atomic_path(path) as tmp:
        kwargs: dict[str, Any] = {"encoding": "utf-8", "newline": "\n"} if "b" not in mode else {}
        with open(tmp, mode, **kwargs) as fh:
            yield fh


def write_text(path: Path, text: str) -> None:
    with atomic_open(path) as fh:
        fh.write(text)


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def to_json_text(obj: Any) -> str:
    """Stable JSON: sorted keys, 2-space indent, NaN written as null, trailing newline."""
    return json.dumps(_clean(obj), indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(obj, np.bool_):
        return bool(obj)
    if obj is pd.NA or obj is pd.NaT:
        return None
    if isinstance(obj, (pd.Timestamp,)):
        return obj.date().isoformat()
    return obj


def write_json(path: Path, obj: Any) -> None:
    write_text(path, to_json_text(obj))


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"


def neutralise_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """Text cells a spreadsheet would run as a formula get a leading apostrophe (OWASP CSV injection advice).

    A cell starting with ``= + - @``, a tab or a carriage return is prefixed with ``'``, so opening the
    CSV in Excel or LibreOffice shows the text instead of running ``=HYPERLINK(...)`` or ``=cmd|...``.
    Plain numbers (``-1.5``, ``+2``) are left alone: they cannot run anything, and the data stay numbers.
    """
    out = df.copy()
    for c in out.columns:
        col = out[c]
        if not (pd.api.types.is_object_dtype(col) or pd.api.types.is_string_dtype(col)):
            continue
        text = col.astype("string")
        risky = text.str.startswith(_FORMULA_START, na=False) & ~text.str.fullmatch(_PLAIN_NUMBER, na=False)
        if risky.any():
            out[c] = col.where(~risky.to_numpy(), "'" + text)
    return out


def write_csv(path: Path, df: pd.DataFrame) -> None:
    """A CSV written atomically, with formula-like text neutralised (:func:`neutralise_formulas`)."""
    with atomic_path(path) as tmp:
        neutralise_formulas(df).to_csv(tmp, index=False, lineterminator="\n")


def write_parquet(path: Path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False, engine="pyarrow", compression="zstd")
