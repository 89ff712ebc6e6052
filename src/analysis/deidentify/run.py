"""The edge of ``outcomes deidentify``: check where things go, read, de-identify, gate, write atomically."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from analysis import contract, store
from analysis.crosswalk import check_private_dir, write_crosswalk
from analysis.deidentify.calendar import write_calendar
from analysis.deidentify.draft import unanswered
from analysis.deidentify.export import read_export
from analysis.deidentify.keys import load_key
from analysis.deidentify.mapping import load_mapping_yaml, parse_mapping
from analysis.deidentify.pseudonyms import key_fingerprint
from analysis.deidentify.state import (
    build_state,
    compare,
    merge_crosswalk,
    previous_shifts,
    read_state,
    write_state,
)
from analysis.deidentify.tables import deidentify_frames
from analysis.errors import InputError, PrivacyError, Problem, ValidationFailed
from analysis.load import Inputs
from analysis.params import load_params
from analysis.params_schema import Params
from analysis.paths import project_root, resolve
from analysis.privacy import k_anonymity, scan_values
from analysis.validate import validate_tables


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_against_contract(tables: dict[str, pd.DataFrame], registry: contract.Registry) -> list[Problem]:
    """The de-identified tables checked by the same contract as ``outcomes validate``, before anything is written.

    Ranges catch a phone or NHS number mapped into a numeric field (7,467,706,428 symptom weeks). The
    values are never shown: a value that breaks the contract here may well be an identifier. Rows are
    those of the de-identified table (header = row 1).
    """
    inputs = Inputs(folder=Path("."))
    for name, table in tables.items():
        inputs.tables[name] = table.set_axis(pd.RangeIndex(2, len(table) + 2, name="row")).astype(object)
        inputs.sources[name] = f"de-identified {name}.csv"
    errors = validate_tables(inputs, registry).errors
    return [
        replace(
            p,
            value=None,
            rule=p.rule + " (check which source column the mapping feeds into this field; nothing was written)",
        )
        for p in errors
    ]


def run_deidentify(
    export_paths: Sequence[Path],
    mapping_path: Path,
    out_dir: Path,
    key_file: Path | None = None,
    params: Params | None = None,
    crosswalk_dir: Path | None = None,
    coarsen: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> str:
    """Read the export(s) and mapping, de-identify, write the three tables and the log atomically.

    ``progress`` is told each step as it starts (the CLI prints it on stderr with the elapsed time).
    """
    say = progress or (lambda _step: None)
    params = params or load_params()
    priv = params.privacy
    if not export_paths:
        raise InputError("no export given; pass the practice-software export file(s)")
    out = resolve(out_dir).resolve()
    demo = resolve("data/raw/demo").resolve()
    if _inside(out, demo):
        raise InputError(f"{out}: is the demo data folder; choose another --out, e.g. data/raw/clinic")
    root, raw = project_root().resolve(), resolve("data/raw").resolve()
    if _inside(out, root) and not (raw in out.parents and out.parent == raw):
        raise InputError(
            f"{out}: de-identified tables are personal data; inside the project they may only go to "
            f"a git-ignored folder data/raw/<name>/ (e.g. {raw / 'clinic'}), or outside the project"
        )
    exports = [resolve(p).resolve() for p in export_paths]
    for p in exports:
        if out == p.parent:
            raise InputError(
                f"{out}: is the folder of the export {p.name}; write the de-identified tables to a separate folder"
            )
        if _inside(p, out):
            raise InputError(f"{out}: contains the export {p.name}; choose an empty folder for --out")
    if crosswalk_dir is not None:
        check_private_dir(crosswalk_dir)  # refuse before any work is done
    key = load_key(key_file)
    previous = read_state(crosswalk_dir, key_fingerprint(key)) if crosswalk_dir is not None else None
    mapping_path = resolve(mapping_path)
    say(f"reading the mapping {mapping_path.name}")
    try:
        raw = load_mapping_yaml(mapping_path)
    except FileNotFoundError:
        raise InputError(f"{mapping_path}: mapping file not found (see data/examples/mapping.yaml)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{mapping_path}: cannot read the mapping ({exc.__class__.__name__})") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{mapping_path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    registry = contract.load_registry(resolve(params.data.registry))
    open_questions = unanswered(raw)
    if open_questions:
        raise InputError(
            f"{mapping_path.name}: the draft still asks {len(open_questions)} question(s) marked ??? "
            f"({', '.join(open_questions[:5])}{', ...' if len(open_questions) > 5 else ''}); "
            "answer each with one of the values its comment lists"
        )
    mapping = parse_mapping(raw, mapping_path.name, registry)
    frames = []
    read_info = []
    for p in exports:
        say(f"reading the export {p.name}")
        label, frame, info = read_export(p, mapping)
        frames.append((label, frame))
        read_info.append(info)
    say(f"de-identifying {sum(len(f) for _, f in frames)} row(s): pseudonyms, date shifts, categories, measures")
    result = deidentify_frames(
        frames,
        mapping,
        key,
        pseudonym_chars=priv.pseudonym_chars,
        therapist_chars=priv.therapist_pseudonym_chars,
        shift_max_days=priv.date_shift_max_days,
        coarsen=coarsen,
        conflict_rule=priv.conflict_rule,
        previous_shifts=previous_shifts(previous),
    )
    if result.problems:
        raise ValidationFailed(result.problems)
    say("checking the tables against the contract and scanning them for identifiers")
    contract_problems = check_against_contract(result.tables, registry)
    if contract_problems:
        raise ValidationFailed(contract_problems)
    leaks = [p for name, t in result.tables.items() for p in scan_values(t, f"{name}.csv")]
    if leaks:
        raise PrivacyError(
            "de-identified tables still look identifying: "
            + "; ".join(p.line() for p in leaks[:5])
            + "; check the mapping (which source column feeds which field); nothing was written"
        )
    for f, info in zip(result.log["files"], read_info, strict=True):
        f.update(info)
    # the output is a row-level export: say how well its clients hide among each other
    k_threshold = priv.k_threshold
    kanon = k_anonymity(result.tables["clients"], threshold=k_threshold)
    result.log["k_anonymity"] = dict(
        kanon, quasi_identifiers=["clinic_id", "sex", "age_band", "knee"], threshold=k_threshold
    )
    assert result.shifts is not None  # set whenever tables are
    if crosswalk_dir is not None:
        result.log["since_previous"] = compare(previous, result.tables, result.shifts)
    else:
        result.log["since_previous"] = {"tracked": False, "why": "no --crosswalk folder, so no state is kept"}
    say(f"writing the tables and the log to {out}")
    for name, table in result.tables.items():
        store.write_csv(out / f"{name}.csv", table)
    store.write_json(out / "deidentify_log.json", result.log)
    if result.calendar is not None:
        write_calendar(out, result.calendar)  # private: real weeks since each last visit (see .calendar)
    walk = ""
    if crosswalk_dir is not None and result.crosswalk is not None:
        store.private_dir(check_private_dir(crosswalk_dir))
        old_walk = crosswalk_dir.expanduser() / "crosswalk.csv"
        earlier = pd.read_csv(old_walk, dtype=str, keep_default_na=False) if old_walk.is_file() else None
        merged = merge_crosswalk(earlier, result.crosswalk)
        walk = f" Crosswalk (key holder only): {write_crosswalk(crosswalk_dir, merged)}."
        state = build_state(result.tables, result.shifts, key_fingerprint(key), previous)
        write_state(crosswalk_dir, state)
        walk += since_line(result.log["since_previous"])
    lg = result.log
    small = (
        (
            f" ({kanon['n_records_below_threshold']} client(s) in classes smaller than {k_threshold}: "
            "keep these tables inside the clinic)"
        )
        if kanon["n_below_threshold"]
        else ""
    )
    return (
        f"de-identified {lg['rows_in']} row(s) from {len(exports)} file(s): {lg['clients']} clients, "
        f"{lg['sessions']} sessions, {lg['measurements']} measurements -> {out} "
        f"({len(lg['columns_dropped'])} source column(s) dropped; see deidentify_log.json). "
        f"k-anonymity over clinic, sex, age band and knee: k = {kanon['k']}{small}. "
        f"Next: outcomes validate --input {out}.{walk}" + conflict_lines(lg["conflicts"])
    )


def since_line(since: dict[str, Any]) -> str:
    """One console line on what is new since the previous run (from the log's ``since_previous``)."""
    if since.get("first_run"):
        return " First run in this crosswalk folder: the next export will be compared with this one."
    shifted = since["date_shift_changed"]
    warn = (
        f" {len(shifted)} returning client(s) needed a new date shift (a new visit would land after today): "
        "their earlier visits' shifted dates changed; replace earlier tables with these."
        if shifted
        else ""
    )
    return (
        f" Since the previous run: {since['new_clients']} new client(s), {since['new_visits']} new visit(s), "
        f"{len(since['changed_values'])} changed value(s), {since['visits_with_changed_date']} visit(s) with a "
        f"changed date; {since['clients_not_in_this_export']} earlier client(s) not in this export.{warn}"
    )


#: conflicts listed on the console (all of them are in the log)
CONSOLE_CONFLICTS = 40


def conflict_lines(conflicts: dict[str, Any]) -> str:
    """The console's warning lines: one per client and field whose value differed across visits."""
    items = conflicts["list"]
    head = f"\n{len(items)} warning(s)"
    if not items:
        return head + "."
    head += (
        f": {conflicts['clients']} client(s) have a value that differs across visits; "
        f"privacy.conflict_rule = {conflicts['rule']} chose one (conflicts in deidentify_log.json):"
    )
    lines = [f"  {c['client_id']} {c['field']}: {', '.join(c['values'])} -> {c['chosen']} ({c['rule']})" for c in items]
    more = [f"  ... and {len(items) - CONSOLE_CONFLICTS} more in the log"] if len(items) > CONSOLE_CONFLICTS else []
    return "\n".join([head, *lines[:CONSOLE_CONFLICTS], *more])
