"""Project paths. One root; every other path is derived from it or passed in."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The project root: $OUTCOMES_ROOT, else the nearest parent of the cwd holding params.yaml.

    Falls back to the source checkout (editable install) when neither applies.
    """
    env = os.environ.get("OUTCOMES_ROOT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "params.yaml").is_file():
            return candidate
    return Path(__file__).resolve().parents[2]


def resolve(path: str | Path, root: Path | None = None) -> Path:
    """A path from params or the command line, relative paths taken from the project root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (root or project_root()) / p
