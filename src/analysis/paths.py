"""Project paths. One root; every other path is derived from it or passed in."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from analysis.errors import InputError

if TYPE_CHECKING:
    from analysis.params_schema import Params


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


def stage_paths(params: Params, stage: str, input_dir: Path | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """``(inputs, outputs)`` of a pipeline stage: params key (or ``--input``) -> path as given.

    Inputs are the folders a stage reads from (for a file, its folder: the stage writes its lineage
    beside what it writes, and reads it beside what it reads) and the registry file. The raw input
    folder (``data.input``) is an input of every stage: no stage may ever write into it.
    """
    v, j, m, r, data = params.validate_, params.join, params.model, params.report, params.data
    given = {"--input": str(input_dir)} if input_dir is not None else {}
    raw = {"data.input": data.input, "data.registry": data.registry}
    if stage == "validate":
        return {**raw, **given}, {"validate.out_dir": v.out_dir, "validate.report_dir": v.report_dir}
    if stage == "join":
        interim = given or {"validate.out_dir": v.out_dir}
        return {**raw, **interim, "validate.report_dir": v.report_dir}, {"join.out": j.out, "join.flow": j.flow}
    if stage == "model":
        return {**raw, "join.out's folder": str(Path(j.out).parent)}, {"model.out_dir": m.out_dir}
    if stage == "report":
        inputs = {
            **raw,
            "join.out's folder": str(Path(j.out).parent),
            "join.flow's folder": str(Path(j.flow).parent),
            "model.out_dir": m.out_dir,
            "validate.report_dir": v.report_dir,
        }
        outputs = {
            "report.therapist_dir": r.therapist_dir,
            "report.peer_dir": r.peer_dir,
            "report.sheets_dir": r.sheets_dir,
        }
        return inputs, outputs | ({"report.history_dir": r.history_dir} if r.history_dir else {})
    raise ValueError(f"unknown stage {stage!r}")


def check_outputs_outside_inputs(
    params: Params, stage: str, input_dir: Path | None = None, root: Path | None = None
) -> None:
    """Refuse, in one line naming the params key, an output of ``stage`` that is or lies inside one of its inputs.

    Inputs are never modified by this project: raw data above all, but also what a stage reads from the
    stage before (a results folder written into the analysis dataset's folder would clobber its lineage).
    Called at the top of each stage's ``run_*``, before any work.
    """
    inputs, outputs = stage_paths(params, stage, input_dir)
    root = root or project_root()
    for out_key, out_text in outputs.items():
        out = resolve(out_text, root).resolve()
        for in_key, in_text in inputs.items():
            inp = resolve(in_text, root).resolve()
            if out == inp or inp in out.parents:
                where = "is" if out == inp else f"is inside {inp},"
                raise InputError(
                    f"params.yaml {out_key}: {out} {where} an input of `outcomes {stage}` ({in_key}); "
                    "inputs are never written to, raw data above all: choose another folder"
                )
