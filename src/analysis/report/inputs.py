"""What the reports are built from: the earlier stages' outputs, read and lineage-checked, and the
embedded-figure type; :func:`analysis_dataset` gives the notebooks the same data (or a simulated clinic).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import lineage
from analysis.contract import Registry, load_registry
from analysis.deidentify.calendar import FILENAME as CALENDAR_FILE
from analysis.deidentify.calendar import read_calendar
from analysis.errors import InputError
from analysis.join import build_analysis_dataset
from analysis.params_schema import Params
from analysis.paths import project_root, resolve
from analysis.report import findings as fnd
from analysis.report.render import data_uri
from analysis.results import Results, read_results
from analysis.simulate import simulate_clinic

RESULT_TABLES = (
    "trajectories",
    "responders",
    "balance",
    "tipping",
    "chronicity",
    "km",
    "immediate",
    "hip_ir_vs_pain",
    "random_effects",
    "analysed_clients",
    "expected",
)


@dataclass
class ReportInputs:
    """Everything the reports are built from, already read from disk."""

    params: Params
    registry: Registry
    dataset: pd.DataFrame
    flow: pd.DataFrame
    results: Results
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    diagnostics: pd.DataFrame | None = None
    validation: dict[str, Any] = field(default_factory=dict)
    validation_href: str = "../validation/validation.html"
    clinic_id: str = "unknown"
    true_period: tuple[str, str] | None = None  # from deidentify_log.json when the dates were shifted
    shift_max_days: int = 0  # the largest per-client date shift (deidentify_log.json); 0 = dates as recorded
    since_last: pd.Series | None = None  # client_id -> real whole weeks since the last visit (calendar.csv)
    previous_clients: pd.DataFrame | None = None  # the previous build's clients.csv (the "new" marks)


@dataclass(frozen=True)
class Figure:
    """An embedded figure: id, caption, alt text and the SVG bytes."""

    key: str
    caption: str
    alt: str
    svg: bytes

    @property
    def shape(self) -> str:
        """CSS class: square figures are shown narrower than wide ones."""
        return "square" if self.key in {"responders", "chronicity", "hip_ir"} else "wide"

    @property
    def uri(self) -> str:
        return data_uri(self.svg)


# ----------------------------------------------------------------------------- reading


def _read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.is_file() else pd.DataFrame()


def load_report_inputs(params: Params, root: Path | None = None) -> tuple[ReportInputs, list[Path]]:
    """Read the report's inputs; returns them and the list of files read (for provenance)."""
    root = root or project_root()
    j, m, v, r, data = params.join, params.model, params.validate_, params.report, params.data
    dataset_path, flow_path = resolve(j.out, root), resolve(j.flow, root)
    results_dir = resolve(m.out_dir, root)
    results_path = results_dir / "results.json"
    for path, cmd in ((dataset_path, "join"), (flow_path, "join"), (results_path, "model")):
        if not path.is_file():
            raise InputError(f"{path}: not found; run `outcomes {cmd}` first (or `dvc repro`)")
    # the results must come from the model run on *this* dataset, and the dataset from the last join
    joined = lineage.check(dataset_path.parent, [dataset_path, flow_path], "join")
    lineage.check(results_dir, [results_path], "model")
    if not lineage.read_by(results_dir, dataset_path, joined[lineage.key(dataset_path)]):
        raise InputError(
            f"{results_path}: was made from another analysis dataset than {dataset_path} (the last "
            "`outcomes model` run failed or is older than the last join); re-run `outcomes model`"
        )
    results = read_results(results_path)
    validation_path = resolve(v.report_dir, root) / "validation.json"
    validation = json.loads(validation_path.read_text(encoding="utf-8")) if validation_path.is_file() else {}
    tables = {name: _read_csv(results_dir / f"{name}.csv") for name in RESULT_TABLES}
    diag_path = results_dir / "diagnostics.parquet"
    diagnostics = pd.read_parquet(diag_path) if diag_path.is_file() else None
    therapist_dir = resolve(r.therapist_dir, root)
    href = os.path.relpath(resolve(v.report_dir, root) / "validation.html", therapist_dir)
    registry_path = resolve(data.registry, root)
    registry = load_registry(registry_path)
    read = [
        resolve(data.input, root),
        registry_path,
        dataset_path,
        flow_path,
        results_path,
        validation_path,
        diag_path,
        *(results_dir / f"{n}.csv" for n in RESULT_TABLES),
        results_dir / "metrics.json",
    ]
    true_period = None
    shift_max = 0
    deid_log = resolve(data.input, root) / "deidentify_log.json"
    if deid_log.is_file():
        log = json.loads(deid_log.read_text(encoding="utf-8")) or {}
        tp = log.get("true_period") or {}
        if tp.get("first_month") and tp.get("last_month"):
            true_period = (str(tp["first_month"]), str(tp["last_month"]))
        shift_max = int(max((abs(int(x)) for x in log.get("date_shift_days_range") or [0]), default=0))
        read.append(deid_log)
    since_last = read_calendar(resolve(data.input, root))
    if since_last is not None:
        read.append(resolve(data.input, root) / CALENDAR_FILE)
    previous_path = None if r.history_dir is None else resolve(r.history_dir, root) / "clients.csv"
    previous = (
        pd.read_csv(previous_path, dtype=str, keep_default_na=False)
        if previous_path is not None and previous_path.is_file()
        else None
    )
    return (
        ReportInputs(
            params=params,
            registry=registry,
            dataset=pd.read_parquet(dataset_path),
            flow=pd.read_csv(flow_path),
            results=results,
            tables=tables,
            diagnostics=diagnostics,
            validation=validation,
            validation_href=Path(href).as_posix(),
            clinic_id=fnd.clinic_identity(
                params, demo=resolve(data.input, root).resolve() == (root / "data/raw/demo").resolve()
            ),
            true_period=true_period,
            shift_max_days=shift_max,
            since_last=since_last,
            previous_clients=previous,
        ),
        read,
    )


def analysis_dataset(params: Params, n_clients: int | None = None) -> tuple[pd.DataFrame, str]:
    """The analysis dataset for the notebooks: the pipeline's parquet, else a simulated clinic in memory.

    A fresh clone has no data until ``make report`` (or ``dvc repro``) ran; the
    notebooks then still work on a synthetic clinic (params ``simulate``, joined
    with :func:`analysis.join.build_analysis_dataset`), and say so.

    Returns
    -------
    (dataset, source) : the long analysis dataset (:data:`analysis.join.DATASET_COLUMNS`)
    and where it came from, in words.
    """
    path = resolve(params.join.out)
    if path.is_file():
        return pd.read_parquet(path), f"pipeline output {path}"

    sim = params.simulate
    clinic = simulate_clinic(sim, seed=int(sim["seed"]), n_clients=n_clients, primary_week=params.model.primary_week)
    dataset = build_analysis_dataset(clinic.clients, clinic.sessions, clinic.measurements)
    return dataset, f"simulated clinic in memory ({dataset['client_id'].nunique()} clients; {path} not found)"
