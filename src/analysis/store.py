"""Writing outputs atomically: temp file in the same folder, fsync, rename.

A run interrupted at any point leaves the previous output intact and never a
half-written file. Inputs are never written by this project.

Published precision -- the one rounding rule. Every float this module writes to JSON
(:func:`to_json_text`, hence results.json, metrics.json, the findings bundle, pooled.json), every
float of a results table (the model CSVs, through :data:`FLOAT_FORMAT`) and of
``diagnostics.parquet`` (:func:`round_floats`) is rounded to :data:`SIGNIFICANT_DIGITS` = 6
significant digits (:func:`round_float`); only data written as JSON (a simulation's true parameters)
opt out with ``digits=None``. Why 6: the optimiser stops where its checks pass, and that point moves
with the CPU's BLAS kernel and the start. After the Newton polish
(:mod:`analysis.model.lmm.optimize`) the primary model's numbers agree to at least ~9 significant
digits between ``OPENBLAS_CORETYPE=Prescott``, ``Sandybridge``, the default kernel and a start moved
by 0.1% (``benchmarks/digits_certain.py``; Satterthwaite df and p-values, from finite differences,
are the least certain). Six digits leave three in hand, so the written bytes are the same on any
machine, and they are far finer than any reported number (NPRS points to 1e-6). Integers, text and
None are untouched; NaN and infinities are written as null.
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

#: significant digits of every published float (see the module docstring for why 6)
SIGNIFICANT_DIGITS = 6
#: the same rule for ``DataFrame.to_csv(float_format=...)``
FLOAT_FORMAT = f"%.{SIGNIFICANT_DIGITS}g"


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


def to_json_text(obj: Any, digits: int | None = SIGNIFICANT_DIGITS) -> str:
    """Stable JSON: sorted keys, 2-space indent, NaN as null, final newline; floats rounded to ``digits``
    significant digits (the published precision; None keeps every digit, for data such as a simulation's
    true parameters)."""
    text = json.dumps(_clean(obj, digits), indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
    return text + "\n"


def round_float(x: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """``x`` rounded to ``digits`` significant digits (the published precision); NaN and inf unchanged.

    >>> round_float(-0.9339887265338188), round_float(115.3461014), round_float(2.7781421898845646e-09)
    (-0.933989, 115.346, 2.77814e-09)
    """
    return float(f"{x:.{digits}g}") if math.isfinite(x) else x


def round_floats(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` with every float column rounded by :func:`round_float` (for Parquet outputs)."""
    cols = [c for c in df.columns if pd.api.types.is_float_dtype(df[c])]
    return df.assign(**{str(c): df[c].map(round_float) for c in cols}) if cols else df


def _clean(obj: Any, digits: int | None = SIGNIFICANT_DIGITS) -> Any:
    if isinstance(obj, dict):
        return {str(k): _clean(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v, digits) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        if not math.isfinite(f):
            return None
        return f if digits is None else round_float(f, digits)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if obj is pd.NA or obj is pd.NaT:
        return None
    if isinstance(obj, (pd.Timestamp,)):
        return obj.date().isoformat()
    return obj


def write_json(path: Path, obj: Any, digits: int | None = SIGNIFICANT_DIGITS) -> None:
    """``obj`` as stable JSON (:func:`to_json_text`), written atomically."""
    write_text(path, to_json_text(obj, digits))


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
    """A CSV written atomically, with formula-like text neutralised (:func:`neutralise_formulas`).

    Data tables (simulated, de-identified) keep every digit; results tables are written by
    :func:`analysis.model.run.write_table` with :data:`FLOAT_FORMAT`.
    """
    with atomic_path(path) as tmp:
        neutralise_formulas(df).to_csv(tmp, index=False, lineterminator="\n")


def write_parquet(path: Path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False, engine="pyarrow", compression="zstd")
