"""Stage lineage: each stage records the hashes of what it read and wrote; the next refuses a broken chain.

A stage killed mid-write, a stage that refused (leaving an earlier run's outputs), or files copied in by
hand would otherwise let the next stage combine outputs of different runs (a flow that counts 151 clients
against 4,300 rows; a findings bundle claiming 108 clients while the flow shows 0). So:

- every stage ends by writing ``lineage.json`` in its output folder: its name, and the SHA-256 of each
  input it read and each output it wrote (written last, atomically: a run killed earlier leaves the old
  manifest, which then no longer matches the files);
- every stage starts by checking that the files it is about to read are exactly the outputs recorded by
  the stage that made them, and refuses with one line saying which stage to re-run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from analysis.errors import InputError
from analysis.store import sha256_file, write_json

MANIFEST = "lineage.json"


def key(path: Path) -> str:
    """How a file is named in a manifest: its folder and name (``processed/analysis.parquet``)."""
    return Path(path).name if Path(path).parent.name == "" else f"{Path(path).parent.name}/{Path(path).name}"


def record(folder: Path, stage: str, inputs: list[Path], outputs: list[Path]) -> None:
    """Write ``folder/lineage.json`` for ``stage`` (call after every output is written)."""
    write_json(
        Path(folder) / MANIFEST,
        {
            "stage": stage,
            "inputs": {key(p): sha256_file(p) for p in sorted(inputs, key=str) if Path(p).is_file()},
            "outputs": {key(p): sha256_file(p) for p in sorted(outputs, key=str)},
        },
    )


def _manifest(folder: Path) -> dict[str, Any]:
    return json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8")) or {}


def check(folder: Path, files: list[Path], made_by: str) -> dict[str, str]:
    """The hashes of ``files``, after checking they are the outputs ``made_by`` recorded in ``folder``.

    Raises
    ------
    InputError : no manifest, or a file missing from it or changed since; the message names the stage to
        re-run.
    """
    manifest = Path(folder) / MANIFEST
    rerun = f"re-run `outcomes {made_by}` (or `dvc repro`)"
    if not manifest.is_file():
        raise InputError(
            f"{manifest}: not found, so {folder} cannot be shown to come from one `outcomes {made_by}` run; {rerun}"
        )
    recorded = _manifest(folder).get("outputs") or {}
    hashes = {}
    for p in files:
        name = key(p)
        if not Path(p).is_file():
            raise InputError(f"{p}: not found; {rerun}")
        digest = sha256_file(p)
        if recorded.get(name) != digest:
            raise InputError(
                f"{p}: is not the file the last `outcomes {made_by}` run wrote (an interrupted or "
                f"refused run, or a file changed by hand): outputs of different runs would be mixed; "
                f"{rerun}"
            )
        hashes[name] = digest
    return hashes


def read_by(folder: Path, path: Path, digest: str) -> bool:
    """Did the run recorded in ``folder`` read ``path`` as it is now (``digest``, e.g. from :func:`check`)?

    Call after :func:`check` on ``folder``, which has shown that its manifest exists.
    """
    return (_manifest(folder).get("inputs") or {}).get(key(path)) == digest
