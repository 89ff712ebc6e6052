"""Reading params.yaml: every tunable number and seed, one section per stage, into the typed
:class:`~analysis.params_schema.Params` that every stage receives."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from analysis.errors import InputError
from analysis.params_schema import Params, parse_params
from analysis.paths import project_root

LOCAL_NAME = "params.local.yaml"


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``, section by section (nested mappings merged, other values replaced)."""
    out = dict(base)
    for k, v in override.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_raw_params(path: Path | None = None) -> tuple[dict[str, Any], str]:
    """params.yaml (default: the project root's) merged with its local override, as a plain mapping,
    and the name of its source(s) for messages. Only for tools that write a params file for another run
    (the pooling demo, tests); stages use :func:`load_params`."""
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
    return raw, Path(path).name + (f" + {local.name}" if local.is_file() else "")


def load_params(path: Path | None = None) -> Params:
    """Load params.yaml (default: the project root's), validated into the typed :class:`Params`.

    A git-ignored ``params.local.yaml`` beside it (or the file named by ``$OUTCOMES_PARAMS_LOCAL``) is
    merged over it, so a private input path or clinic id never lands in git diffs. A wrong type, an
    unknown key or a missing section raises :class:`InputError` with one line per problem naming the key.
    """
    raw, source = load_raw_params(path)
    params, problems = parse_params(raw, source)
    if params is None:
        raise InputError("\n".join(problems))
    return params


def with_updates(params: Params, updates: dict[str, Any]) -> Params:
    """A copy of ``params`` with ``updates`` (section -> {key: value}, nested as in params.yaml) merged in
    and validated again, e.g. ``with_updates(p, {"model": {"out_dir": "/tmp/results"}})``."""
    raw = deep_merge(params.model_dump(by_alias=True), updates)
    out, problems = parse_params(raw, "params (updated)")
    if out is None:
        raise InputError("\n".join(problems))
    return out
