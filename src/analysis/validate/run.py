"""The I/O edge of ``outcomes validate``: read, check, write the typed tables, rejects and reports
atomically, record lineage; refuse (non-zero exit) when rows are rejected unless allowed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa  # type: ignore[import-untyped]

from analysis import lineage
from analysis.contract import TABLES, load_registry
from analysis.errors import ValidationFailed
from analysis.load import load_inputs, release_unused_memory
from analysis.params_schema import Params
from analysis.paths import check_outputs_outside_inputs, resolve
from analysis.store import write_csv, write_json, write_parquet, write_text
from analysis.validate.checks import validate_tables
from analysis.validate.report import summary_text, validation_html, validation_json


def run_validate(
    params: Params,
    input_dir: Path | None = None,
    today: dt.date | None = None,
    progress: Callable[[str], None] | None = None,
    memory_limit_mb: float | None = None,
) -> str:
    """I/O edge of ``outcomes validate``: read, check, write reports, rejects and valid tables.

    Always writes ``<report_dir>/validation.json``, ``validation.html`` and
    ``<out_dir>/rejects.csv``; writes ``<out_dir>/{clients,sessions,measurements}.parquet``
    unless a file-level problem makes the inputs unusable.

    Returns the summary text. Raises :class:`ValidationFailed` (exit 1) when
    there are errors, unless params ``validate.allow_rejects`` is true and the
    problems are all row-level. ``progress`` (optional) is called with the name of each step before it
    runs (loading, each table's checks, writing) and with each table's rows read. Raises
    :class:`~analysis.errors.InputError` before reading when the tables would need more memory than
    ``memory_limit_mb`` (default: params ``validate.max_memory_mb``, else the memory available; see
    :func:`analysis.load.check_memory`).
    """

    check_outputs_outside_inputs(params, "validate", input_dir)  # raw inputs are never written to
    # Arrow's buffers from the system allocator: what a step frees then goes back to the system between steps
    # (analysis.load.release_unused_memory), so the peak is the largest step, not the sum of what was retained
    pa.set_memory_pool(pa.system_memory_pool())
    data, v = params.data, params.validate_
    folder = resolve(input_dir) if input_dir else resolve(data.input)
    say = progress or (lambda step: None)
    say(f"loading {folder}")
    registry = load_registry(resolve(data.registry))
    inputs = load_inputs(
        folder,
        max_mb=v.max_file_mb,
        progress=say,
        memory_limit_mb=v.max_memory_mb if memory_limit_mb is None else memory_limit_mb,
    )
    result = validate_tables(inputs, registry, today, progress=say)
    inputs.tables.clear()  # the raw text is in the result where needed (rejects); free it before writing
    release_unused_memory()
    say("writing the validation report, rejects and valid tables")
    shown = str(input_dir) if input_dir else data.input
    report = validation_json(result, shown)
    report_dir, out_dir = resolve(v.report_dir), resolve(v.out_dir)
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
    if result.errors and not v.allow_rejects:
        raise ValidationFailed(result.problems)
    text = summary_text(result, shown)
    return text + "\n" + "\n".join(f"wrote {p}" for p in written)
