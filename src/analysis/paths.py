"""Project paths. One root; every other path is derived from it or passed in."""

from __future__ import annotations

import os
from pathlib import Path

from analysis.errors import InputError


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


def git_work_tree(path: Path) -> Path | None:
    """The git work tree that contains ``path`` (the folder holding ``.git``), or None."""
    for candidate in (path, *path.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def check_outside_repositories(path: Path, what: str, advice: str, root: Path | None = None) -> Path:
    """``path`` resolved, if it is outside the project and outside every git work tree; else InputError.

    For what identifies patients or undoes the pseudonyms (the key, the crosswalk): there it could be
    committed, or land in a report. ``what`` names it in the message ("the key file"), ``advice`` says
    where to put it instead.
    """
    path = Path(path).expanduser().resolve()
    root = (root or project_root()).resolve()
    if path == root or root in path.parents:
        raise InputError(f"{path}: {what} may not be inside the project folder {root}; {advice}")
    tree = git_work_tree(path)
    if tree is not None:  # another checkout, or any repository
        raise InputError(
            f"{path}: {what} may not be inside the git work tree {tree}, where it could be committed; {advice}"
        )
    return path


def check_owner_only(path: Path, what: str) -> None:
    """InputError if the secret file ``path`` can be read or written by its group or by others (POSIX).

    For keys: a key another user can read is a key anyone on the machine can use. ``what`` names it
    ("the signing key"). Raises FileNotFoundError when ``path`` does not exist (the caller says what to do).
    """
    if os.name == "posix" and Path(path).stat().st_mode & 0o077:
        raise InputError(f"{path}: {what} is readable by other users; run `chmod 600 {path}`")
