"""Shared tiny fixtures: small valid contract tables as text, and helpers to write them.

Helpers (import them as ``from conftest import ...``):

- :func:`valid_text_tables` — three small string frames that pass every contract rule.
- :func:`write_tables` — write such frames as CSV files into a folder.
- :func:`make_inputs` — the same frames as :class:`analysis.load.Inputs` in memory
  (index = spreadsheet row, 2, 3, ...), without touching the disk.
- :func:`write_params` — a params.yaml whose paths all point into a temporary folder.
- :func:`deidentify_argv` — ``outcomes deidentify`` on the bundled example export and mapping.
- :func:`deidentify_example` — the same through the Python API, into ``folder/out``.
- :func:`results_from` — a typed :class:`analysis.results.Results`: the real model's results for the demo
  (``fixtures/results_demo.json``, written by ``outcomes model``) with a test's own values merged in.

Fixtures: ``registry`` (the project's measures registry), ``text_tables`` (a fresh
copy of the valid tables per test), ``input_dir`` (those tables written as CSV).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from analysis.contract import TABLES, Registry, load_registry
from analysis.deidentify import run_deidentify
from analysis.deidentify.keys import write_key_file
from analysis.load import ROW_INDEX, Inputs
from analysis.params import load_params
from analysis.results import Results, parse_results

PROJECT_ROOT = Path(__file__).resolve().parents[1]
REGISTRY_PATH = PROJECT_ROOT / "config" / "measures.yaml"
EXAMPLES = PROJECT_ROOT / "data" / "examples"


def deidentify_argv(out: Path, *options: str) -> list[str]:
    """The command line that de-identifies the bundled example export into ``out``, plus ``options``."""
    export, mapping = EXAMPLES / "practice_export.csv", EXAMPLES / "mapping.yaml"
    return ["deidentify", str(export), "--mapping", str(mapping), "--out", str(out), *options]


def write_key(path: Path, key: bytes) -> Path:
    """``key`` written to the new file ``path`` as `outcomes keygen` writes one (its format, mode 0600)."""
    write_key_file(path, key)
    return path


def deidentify_example(folder: Path, key: bytes, **options: Any) -> tuple[Path, str]:
    """De-identify the bundled example export into ``folder/out`` with ``key`` (written to ``folder/key``).

    Returns the output folder and the run's message; ``options`` go to :func:`run_deidentify`.
    """
    key_file = write_key(folder / "key", key)
    out = folder / "out"
    msg = run_deidentify(
        [EXAMPLES / "practice_export.csv"],
        EXAMPLES / "mapping.yaml",
        out,
        key_file=key_file,
        params=load_params(PROJECT_ROOT / "params.yaml"),
        **options,
    )
    return out, msg


def results_from(partial: dict[str, Any]) -> Results:
    """The demo's real results (``tests/fixtures/results_demo.json``) with ``partial`` merged in, validated.

    A test states only the numbers it is about; everything else is what the model wrote for the demo.
    Regenerate the fixture with ``make report`` and a copy of ``reports/results/results.json``.
    """
    base = json.loads((Path(__file__).parent / "fixtures" / "results_demo.json").read_text(encoding="utf-8"))
    base["primary"] = {**base["primary"], **partial.get("primary", {})}  # the keys given replace the demo's
    if "secondary" in partial:  # exactly the analyses the test lists, each filled in from the demo's
        shared = {"label": "", "exploratory": True, "reason": None, "method": "", "notes": []}
        base["secondary"] = {k: {**base["secondary"].get(k, shared), **v} for k, v in partial["secondary"].items()}
    return parse_results(base, "results_from")


def valid_text_tables() -> dict[str, pd.DataFrame]:
    """Three clients, four sessions, eight measurements: every contract rule holds.

    Client C3 has one session; C1 has two sessions on different dates.
    """
    clients = pd.DataFrame(
        [
            ["C1", "clinic-1", "F", "40-49", "26", "7.5", "running", "right"],
            ["C2", "", "M", "50-59", "104", "", "gym", "left"],
            ["C3", "clinic-2", "X", "80+", "0", "12", "none", "both"],
        ],
        columns=TABLES["clients"].column_names,
    )
    sessions = pd.DataFrame(
        [
            ["S1", "C1", "2024-03-01", "T1", "hip", "myofascial_release;stretching", "45"],
            ["S2", "C1", "2024-03-08", "T1", "knee", "", "30"],
            ["S3", "C2", "2024-04-02", "", "hip_and_knee", "exercise_advice", "60"],
            ["S4", "C3", "2024-05-20", "T2", "other", "trigger_point", "180"],
        ],
        columns=TABLES["sessions"].column_names,
    )
    measurements = pd.DataFrame(
        [
            ["S1", "knee_pain_nprs", "pre", "6"],
            ["S1", "knee_pain_nprs", "post", "4"],
            ["S1", "hip_ir_left_deg", "pre", "31.5"],
            ["S2", "knee_pain_nprs", "pre", "5"],
            ["S2", "lefs", "pre", "40"],
            ["S3", "knee_pain_nprs", "pre", "8"],
            ["S3", "hip_ir_right_deg", "post", "0"],
            ["S4", "knee_pain_nprs", "pre", "10"],
        ],
        columns=TABLES["measurements"].column_names,
    )
    return {"clients": clients, "sessions": sessions, "measurements": measurements}


def write_tables(folder: Path, tables: dict[str, pd.DataFrame]) -> Path:
    """Write string frames as contract CSV files (UTF-8, LF, header row) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.to_csv(folder / TABLES[name].filename, index=False, lineterminator="\n")
    return folder


def make_inputs(tables: dict[str, pd.DataFrame], folder: Path = Path("in-memory")) -> Inputs:
    """The frames as :class:`Inputs` (object dtype, index = spreadsheet row starting at 2)."""
    out = Inputs(folder=folder)
    for name, frame in tables.items():
        f = frame.astype(object).copy()
        f.index = pd.Index(range(2, len(f) + 2), name=ROW_INDEX)
        out.tables[name] = f
        out.sources[name] = TABLES[name].filename
    return out


def write_params(root: Path, input_dir: Path, **validate: object) -> Path:
    """A complete params.yaml in ``root`` (the shipped one) whose data/validate paths point into ``root``."""
    params = yaml.safe_load((REGISTRY_PATH.parents[1] / "params.yaml").read_text(encoding="utf-8"))
    params["data"] = {"input": str(input_dir), "registry": str(REGISTRY_PATH)}
    params["validate"] = {
        "out_dir": str(root / "interim"),
        "report_dir": str(root / "reports"),
        "allow_rejects": False,
        "max_file_mb": 512,
        **validate,
    }
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def registry() -> Registry:
    return load_registry(REGISTRY_PATH)


@pytest.fixture
def text_tables() -> dict[str, pd.DataFrame]:
    return valid_text_tables()


@pytest.fixture
def input_dir(tmp_path: Path) -> Path:
    return write_tables(tmp_path / "raw", valid_text_tables())


#: Where the pipeline writes inside the project: tests write into temporary folders, never here.
PROJECT_OUTPUTS = ("reports", "data/interim", "data/processed", "data/raw")


def _listing(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size)
        for folder in PROJECT_OUTPUTS
        if (root / folder).is_dir()
        for p in sorted((root / folder).rglob("*"))
        if p.is_file()
    }


@pytest.fixture(autouse=True, scope="session")
def _project_outputs_untouched():
    """Fail the run if a test wrote into the project's reports or data folders (a test that runs a stage
    with the shipped params.yaml would overwrite the user's own reports)."""
    before = _listing(PROJECT_ROOT)
    yield
    after = _listing(PROJECT_ROOT)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"tests wrote into the project folder: {changed[:10]}"


@pytest.fixture(autouse=True, scope="session")
def _session_release_ledger(tmp_path_factory):
    """Peer releases built in tests are recorded in a temporary ledger, never ~/.config/hip-knee-outcomes."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HIPKNEE_RELEASE_LEDGER", str(tmp_path_factory.mktemp("release-ledger")))
        yield


@pytest.fixture(autouse=True)
def _release_ledger(tmp_path_factory, monkeypatch):
    """Each test starts with an empty release ledger (no earlier release of its clinic)."""
    monkeypatch.setenv("HIPKNEE_RELEASE_LEDGER", str(tmp_path_factory.mktemp("ledger")))


@pytest.fixture(autouse=True, scope="session")
def _clinic_id():
    """Bundles built in tests get a fixed clinic id instead of creating ~/.config/hip-knee-outcomes/clinic_id."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HIPKNEE_CLINIC_ID", "KTESTCLINIC01")
        yield
