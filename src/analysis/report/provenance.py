"""Provenance: what a report was built from, so anyone can rebuild and check it.

Each report ends with: SHA-256 of every input file, of ``requirements.lock``
and of the package's own source, the code version, the versions of the key
packages and the params (with their hash).

The code version is the package version plus the first 12 hex digits of the
source hash, never the git commit: a commit hash changes with every commit (so
a fresh clone's ``make report`` would rewrite ``dvc.lock``) and says nothing
of uncommitted edits, whereas the source hash is always true of the code that
ran, and any checkout can be matched to it.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

import analysis
from analysis.params_schema import Params
from analysis.paths import project_root
from analysis.store import sha256_file

KEY_PACKAGES = (
    "hip-knee-outcomes",
    "python",
    "numpy",
    "pandas",
    "scipy",
    "statsmodels",
    "matplotlib",
    "seaborn",
    "great-expectations",
    "jinja2",
    "weasyprint",
    "pyarrow",
)


@dataclass(frozen=True)
class Provenance:
    """Everything the provenance section shows; all fields are plain, sorted data."""

    code_version: str
    source_sha256: str
    lock_sha256: str | None
    inputs: list[dict[str, str]] = field(default_factory=list)  # path, sha256, bytes
    packages: dict[str, str] = field(default_factory=dict)
    params_sha256: str = ""
    params_yaml: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "code_version": self.code_version,
            "source_sha256": self.source_sha256,
            "lock_sha256": self.lock_sha256,
            "inputs": list(self.inputs),
            "packages": dict(self.packages),
            "params_sha256": self.params_sha256,
        }


# The params sections that shape the reports; generator, self-check and de-identification settings do not.
ANALYSIS_SECTIONS = ("data", "validate", "join", "model", "report")


def analysis_params(params: Params) -> dict[str, Any]:
    """The params that produced the reports (what provenance records and the params hash covers),
    with every default filled in, as params.yaml names them."""
    dumped = params.model_dump(mode="json", by_alias=True)
    # where the release ledger lives is the clinic's machine's business, not a setting of the analysis
    dumped["report"].pop("release_ledger", None)
    return {k: dumped[k] for k in ANALYSIS_SECTIONS}


def params_hash(params: dict[str, Any]) -> str:
    """SHA-256 of the params as canonical JSON (sorted keys), independent of YAML layout."""
    text = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def shown_paths(obj: Any, root: Path | None = None) -> Any:
    """``obj`` with every absolute path relative to the project, or "<outside the project>" (never a local path)."""
    if isinstance(obj, dict):
        return {k: shown_paths(v, root) for k, v in obj.items()}
    if isinstance(obj, list):
        return [shown_paths(v, root) for v in obj]
    if isinstance(obj, str) and (obj.startswith(("/", "~")) or re.match(r"^[A-Za-z]:[\\/]", obj)):
        base = (root or project_root()).resolve()
        try:
            return Path(obj).expanduser().resolve().relative_to(base).as_posix()
        except ValueError:
            return "<outside the project>"
    return obj


def params_text(params: dict[str, Any]) -> str:
    """The params as YAML with sorted keys, for the report's appendix; no local absolute paths."""
    return yaml.safe_dump(shown_paths(params), sort_keys=True, default_flow_style=None, allow_unicode=True, width=100)


def source_hash(package_dir: Path | None = None) -> str:
    """SHA-256 over the package's source files (path + content, sorted by path)."""
    root = Path(package_dir or Path(analysis.__file__).parent)
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix in {".py", ".j2", ".css", ".json", ".yaml"} and "__pycache__" not in p.parts:
            h.update(p.relative_to(root).as_posix().encode())
            h.update(b"\0")
            h.update(p.read_bytes())
    return h.hexdigest()


def code_version(root: Path | None = None) -> str:
    """The version of the code that built the outputs, from the code itself: package version + source hash.

    Not the git commit: a report that embeds the commit changes with every commit, so a fresh clone's
    ``make report`` would change ``dvc.lock`` and never leave git clean; and a commit hash can be stale
    (uncommitted edits). The source SHA-256 is always true, and any checkout can be matched to it.
    ``root`` is accepted for compatibility and not used.
    """
    return f"v{analysis.__version__}+src.{source_hash()[:12]}"


def package_versions(names: Iterable[str] = KEY_PACKAGES) -> dict[str, str]:
    """Installed versions of the key packages ('not installed' where absent)."""
    out: dict[str, str] = {}
    for name in names:
        if name == "python":
            out[name] = platform.python_version()
            continue
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return dict(sorted(out.items()))


# what a peer may read in place of a file's name: the contract's tables and the files the pipeline names itself
PEER_TABLES = ("clients", "sessions", "measurements")


def table_name(path: Path, input_dir: Path | None, registry: Path | None) -> str | None:
    """The name a peer sees for an input file: a contract table (``clients``...), ``registry``, the
    de-identification log, or the file name of a pipeline output; None for any other file in the input
    folder (a name there is the clinic's own, e.g. a referral letter's, and never leaves the clinic)."""
    path = Path(path).resolve()
    if registry is not None and path == Path(registry).resolve():
        return "registry"
    if input_dir is not None and Path(input_dir).resolve() in path.parents:
        stem = path.name.split(".", 1)[0].lower()
        if path.name == "deidentify_log.json":
            return "de-identification log"
        return stem if stem in PEER_TABLES and path.parent == Path(input_dir).resolve() else None
    return path.name


def for_peers(p: Provenance) -> Provenance:
    """Provenance as peers see it: inputs named by table (:func:`table_name`), never by file name or path;
    params with the input folder's path replaced by a placeholder."""
    rows = [{"path": str(r["table"]), "sha256": r["sha256"], "bytes": r["bytes"]} for r in p.inputs if r.get("table")]
    text = p.params_yaml
    for r in p.inputs:  # the params name the input folder: show the role, not the folder's name
        if r.get("input_dir"):
            text = text.replace(str(r["input_dir"]), "<input folder>")
    return replace(p, inputs=sorted(rows, key=lambda r: r["path"]), params_yaml=text)


def input_files(
    paths: Iterable[Path], root: Path, input_dir: Path | None = None, registry: Path | None = None
) -> list[dict[str, str]]:
    """Hash each existing file (folders expand to their files), paths shown relative to ``root``; each row
    also names its ``table`` for peers (:func:`table_name`; "" when peers must not see it)."""
    files: set[Path] = set()
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files.update(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
        elif p.is_file():
            files.add(p)
    rows = []
    for f in sorted(files):
        try:
            shown = f.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            shown = f.name
        row = {"path": shown, "sha256": sha256_file(f), "bytes": str(f.stat().st_size)}
        row["table"] = table_name(f, input_dir, registry) or ""
        if input_dir is not None and Path(input_dir).resolve() in f.resolve().parents:
            row["input_dir"] = shown_input_dir(Path(input_dir), root)
        rows.append(row)
    return sorted(rows, key=lambda r: r["path"])


def shown_input_dir(input_dir: Path, root: Path) -> str:
    """The input folder as the params text shows it (relative to the project when inside it)."""
    shown = shown_paths(str(Path(input_dir).resolve()), root)
    return str(shown)


def collect(params: Params, root: Path, inputs: Iterable[Path]) -> Provenance:
    """Provenance of a build from ``inputs`` (files or folders) under project ``root``."""
    from analysis.paths import resolve

    lock = root / "requirements.lock"
    return Provenance(
        code_version=code_version(root),
        source_sha256=source_hash(),
        lock_sha256=sha256_file(lock) if lock.is_file() else None,
        inputs=input_files(inputs, root, resolve(params.data.input, root), resolve(params.data.registry, root)),
        packages=package_versions(),
        params_sha256=params_hash(analysis_params(params)),
        params_yaml=params_text(analysis_params(params)),
    )
