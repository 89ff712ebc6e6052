"""Reading params.yaml: every tunable number and seed, one section per stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from analysis.errors import InputError
from analysis.paths import project_root


def load_params(path: Path | None = None) -> dict[str, Any]:
    """Load params.yaml (default: the project root's) as a dict."""
    path = path or project_root() / "params.yaml"
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: params file not found") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: must be a mapping of sections")
    return raw


def section(params: dict[str, Any], name: str) -> dict[str, Any]:
    """One section of params, with a clear error if it is missing."""
    value = params.get(name)
    if not isinstance(value, dict):
        raise InputError(f"params.yaml: section '{name}' is missing or not a mapping")
    return value
