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
import errno
import glob
import hashlib
import json
import math
import os
import re
import secrets
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


#: what to do about the usual reasons a write fails, by errno
_WRITE_ADVICE = {
    errno.ENOSPC: "no space left on the device; free some space or choose another output folder, then run again",
    errno.EDQUOT: "the disk quota is used up; free some space or choose another output folder, then run again",
    errno.EROFS: "the folder is read-only; choose a writable output folder (params.yaml), then run again",
    errno.EACCES: "permission denied; make the folder writable or choose another output folder (params.yaml)",
    errno.EPERM: "permission denied; make the folder writable or choose another output folder (params.yaml)",
}


def oserror_advice(exc: OSError) -> str:
    """The reason for ``exc`` in plain words and what to do (no file name, no traceback).

    Some libraries (pyarrow) raise OSError without ``errno`` but with ``[Errno 28]`` in the message.
    """
    code = exc.errno
    if code is None:
        found = re.search(r"\[Errno (\d+)\]", str(exc))
        code = int(found.group(1)) if found else None
    advice = _WRITE_ADVICE.get(code) if code is not None else None
    if advice is None:
        reason = exc.strerror or str(exc) or exc.__class__.__name__
        advice = f"{reason}; check the folder and the disk, then run again"
    return advice


def write_failure(path: Path, exc: OSError) -> OutputError:
    """One line for an OSError while writing ``path``: the file, the reason in plain words, what to do."""
    return OutputError(f"{path}: cannot be written ({oserror_advice(exc)}); the previous version, if any, is unchanged")


def make_dirs(folder: Path, private: bool) -> None:
    """Create ``folder`` and any missing parents; private ones owner-only (0700) from the start."""
    if not private:
        folder.mkdir(parents=True, exist_ok=True)
        return
    missing = [d for d in (folder, *folder.parents) if not d.exists()]
    for d in reversed(missing):
        d.mkdir(mode=0o700, exist_ok=True)
        os.chmod(d, 0o700)  # mkdir's mode is masked by the umask


def private_dir(folder: Path) -> Path:
    """``folder`` owner-only (0700): created so (missing parents too), or tightened if it exists."""
    folder = Path(folder).expanduser()
    try:
        make_dirs(folder, private=True)
        os.chmod(folder, 0o700)
    except OSError as exc:
        raise write_failure(folder, exc) from None
    return folder


def _new_temp(path: Path, mode: int) -> Path:
    """An empty temp file beside ``path``, created with ``mode`` (O_EXCL: never an existing file)."""
    while True:
        tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:  # pragma: no cover - 32 random bits clashed
            continue
        os.close(fd)
        return tmp


@contextlib.contextmanager
def atomic_path(path: Path, private: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    ``private`` outputs (the crosswalk, the de-identification state) are owner-only: the temp file is
    created 0600 (its folder, when created, 0700), so no other user can read it at any moment; other
    outputs are 0644. Any OSError (full disk, read-only folder, permission denied) becomes one
    :class:`OutputError` naming the file and what to do; the temp file is removed and the previous
    output, if any, stays intact.
    """
    path = Path(path)
    mode = 0o600 if private else 0o644
    tmp_path: Path | None = None
    try:
        make_dirs(path.parent, private)
        _clean_stale(path)
        tmp_path = _new_temp(path, mode)
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, mode)  # umask-proof, and in case the writer made the file anew
        os.replace(tmp_path, path)
    except OSError as exc:
        raise write_failure(path, exc) from None
    finally:
        if tmp_path is not None:
            with contextlib.suppress(OSError):
                tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "w", private: bool = False) -> Iterator[IO[Any]]:
    """Open a temp file for writing; it replaces ``path`` only if the block succeeds."""
    with atomic_path(path, private) as tmp:
        kwargs: dict[str, Any] = {"encoding": "utf-8", "newline": "\n"} if "b" not in mode else {}
        with open(tmp, mode, **kwargs) as fh:
            yield fh


def write_text(path: Path, text: str, private: bool = False) -> None:
    with atomic_open(path, private=private) as fh:
        fh.write(text)


def write_bytes(path: Path, data: bytes, private: bool = False) -> None:
    with atomic_open(path, "wb", private=private) as fh:
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


def write_csv(path: Path, df: pd.DataFrame, private: bool = False) -> None:
    """A CSV written atomically, with formula-like text neutralised (:func:`neutralise_formulas`).

    Data tables (simulated, de-identified) keep every digit; results tables are written by
    :func:`analysis.model.run.write_table` with :data:`FLOAT_FORMAT`.
    """
    with atomic_path(path, private) as tmp:
        neutralise_formulas(df).to_csv(tmp, index=False, lineterminator="\n")


def write_parquet(path: Path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False, engine="pyarrow", compression="zstd")
