"""Reading params.yaml: every tunable number and seed, one section per stage."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from analysis.errors import InputError
from analysis.params_schema import check_params
from analysis.paths import project_root

LOCAL_NAME = "params.local.yaml"


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``, section by section (nested mappings merged, other values replaced)."""
    out = dict(base)
    for k, v in override.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_params(path: Path | None = None, *, check: bool = True) -> dict[str, Any]:
    """Load params.yaml (default: the project root's) as a dict, checked against the typed schema.

    A git-ignored ``params.local.yaml`` beside it (or the file named by ``$OUTCOMES_PARAMS_LOCAL``) is
    merged over it, so a private input path or clinic id never lands in git diffs. A wrong type, an
    unknown key or a missing section raises :class:`InputError` with one line per problem naming the key.
    """
    path = path or project_root() / "params.yaml"
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: params file not found") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: must be a mapping of sections")
    local = Path(os.environ.get("OUTCOMES_PARAMS_LOCAL") or Path(path).with_name(LOCAL_NAME))
    if local.is_file():
        try:
            extra = yaml.safe_load(local.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise InputError(f"{local}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(extra, dict):
            raise InputError(f"{local}: must be a mapping of sections, like params.yaml")
        raw = deep_merge(raw, extra)
    if check:
        problems = check_params(raw, Path(path).name + (f" + {local.name}" if local.is_file() else ""))
        if problems:
            raise InputError("\n".join(problems))
    params: dict[str, Any] = raw
    return params


def section(params: dict[str, Any], name: str) -> dict[str, Any]:
    """One section of params, with a clear error if it is missing."""
    value = params.get(name)
    if not isinstance(value, dict):
        raise InputError(f"params.yaml: section '{name}' is missing or not a mapping")
    return value
