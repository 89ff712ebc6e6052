"""A drafted mapping: read an export's headers and values, write the mapping file ``deidentify`` reads.

``outcomes draft-mapping EXPORT [--out FILE]`` writes a commented YAML draft: which columns identify a
patient, which are dates (with the format guessed from the values), measures, treatment area,
techniques, and every distinct spelling of a category listed with its best guess. Where no guess is
safe the draft says ``"???"`` with a comment ``# ??? choose one of: ...``; answering those is the only
editing a therapist has to do. :func:`draft_mapping` is pure; :func:`run_draft_mapping` is the edge.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.deidentify.guess import (
    IDENTIFYING_ROLES,
    contract_values,
    guess_category,
    guess_date_formats,
    guess_measure,
    guess_role,
    words,
)
from analysis.deidentify.mapping import CATEGORY_FIELDS, REQUIRED_FIELDS, Mapping, norm_text
from analysis.errors import InputError

ASK = "???"
#: contract fields read from one column each, in the order the draft lists them
FIELDS = (
    "session_date",
    "date_of_birth",
    "age",
    "therapist",
    "focus",
    "techniques",
    "minutes",
    "sex",
    "knee",
    "activity",
    "sitting_hours",
    "symptom_weeks",
)
_DROP_REASONS = {
    "patient_no": "practice patient number (medical record number)",
    "name": "name",
    "email": "contact details",
    "phone": "contact details",
    "address": "address",
    "notes": "free text (may name people)",
    "date_of_birth": "date of birth (turned into the age band)",
}
_DEFAULT_MISSING = ("", "n/a", "na", "-", "--", "?", "none recorded")
_SEPARATORS = Mapping((), {}, {}).technique_separators
MAX_SPELLINGS = 80


def q(text: str) -> str:
    """A YAML scalar for any text (a JSON string is a valid YAML double-quoted scalar)."""
    return json.dumps(str(text), ensure_ascii=False)


@dataclass(frozen=True)
class Draft:
    """A drafted mapping: the YAML text and how many ``???`` questions it asks."""

    text: str
    questions: int


def _spellings(values: pd.Series, split: bool) -> list[tuple[str, int]]:
    """Distinct spellings (as exported, first seen) with their counts; spellings equal after normalising are one."""
    counts: dict[str, list[Any]] = {}
    for cell in values.fillna("").astype(str):
        items = re.split(_SEPARATORS, cell, flags=re.IGNORECASE) if split else [cell]
        for item in items:
            item = item.strip()
            key = norm_text(item)
            counts.setdefault(key, [item, 0])[1] += 1
    return [(v[0], int(v[1])) for v in counts.values()]


def _roles(frame: pd.DataFrame) -> dict[str, str | None]:
    return {c: guess_role(c, frame[c].dropna().astype(str).head(200).tolist()) for c in frame.columns}


def _patients_without_value(frame: pd.DataFrame, col: str, identity: list[str]) -> int:
    """How many patients (by the identity columns, normalised) have no value in ``col`` on any row."""
    if not identity:
        return 1
    who = frame[identity].fillna("").astype(str).map(norm_text).agg("\x1f".join, axis=1)
    filled = frame[col].fillna("").astype(str).map(norm_text).ne("")
    return int((~filled.groupby(who).any()).sum())


def _value_block(field: str, frame: pd.DataFrame, col: str, identity: list[str], lines: list[str]) -> int:
    """The ``values:`` entries of one category field; returns the number of questions asked."""
    asked = 0
    choices = ", ".join(contract_values(field))
    spellings = _spellings(frame[col], split=field == "techniques")
    lines.append(f"  {field}:   # column {q(col)}; contract values: {choices}")
    for text, n in sorted(spellings, key=lambda s: (-s[1], norm_text(s[0])))[:MAX_SPELLINGS]:
        if not norm_text(text):
            if field == "techniques":
                continue
            blank = {"sex": "U", "activity": "none"}.get(field)
            if field != "focus" and _patients_without_value(frame, col, identity) == 0:
                lines.append(
                    f"    # blank cells ({n} rows): every patient has a value on another visit; no entry needed"
                )
            elif blank is None:
                asked += 1
                lines.append(f'    "": "{ASK}"   # ??? blank cells ({n} rows): choose one of: {choices}')
            else:
                lines.append(f'    "": {blank}   # blank cells ({n} rows); guessed {blank}, change it if wrong')
            continue
        guess = guess_category(field, text)
        if guess is None:
            asked += 1
            lines.append(f'    {q(text)}: "{ASK}"   # ??? {n} row(s): choose one of: {choices}')
        else:
            note = "already a contract value" if norm_text(text) == guess.casefold() else "guessed"
            lines.append(f"    {q(text)}: {guess}   # {n} row(s), {note}")
    if len(spellings) > MAX_SPELLINGS:
        lines.append(f"    # ... {len(spellings) - MAX_SPELLINGS} rarer spellings not listed: is this free text?")
    return asked


def draft_mapping(frame: pd.DataFrame, label: str, measures: Sequence[str], clinic_id: str = "clinic-1") -> Draft:
    """Draft the mapping for one export (pure): every guess commented, ``"???"`` where none is safe.

    Parameters
    ----------
    frame
        The export as read by :func:`~analysis.deidentify.export.read_export` (string cells).
    label
        The export's file name, for the header comment.
    measures
        The measures registry's keys (``config/measures.yaml``).
    clinic_id
        The clinic id to write.

    Returns
    -------
    Draft
        ``text``: YAML in the format :func:`~analysis.deidentify.mapping.parse_mapping` reads;
        ``questions``: the number of ``???`` left to answer.
    """
    roles = _roles(frame)
    asked = 0
    chosen: dict[str, str] = {}
    for col, role in roles.items():
        if role in FIELDS and role not in chosen:
            chosen[role] = col
    if "date_of_birth" in chosen:
        chosen.pop("age", None)
    meas_cols = [c for c, r in roles.items() if r == "measure"]
    ids = [c for c, r in roles.items() if r == "patient_no"]
    identity = ids[:1] or [c for c, r in roles.items() if r == "name"] + (
        [chosen["date_of_birth"]] if "date_of_birth" in chosen else []
    )
    date_values = pd.concat(
        [frame[chosen[f]] for f in ("session_date", "date_of_birth") if f in chosen] or [frame.iloc[:0, 0]]
    )
    dates = guess_date_formats(date_values.dropna().astype(str))

    lines = [
        f"# Draft mapping for {label}, written by `outcomes draft-mapping`. Check every guess and answer",
        f"# every question marked {ASK} (search for it). It lists spellings from the export: keep it with",
        "# the export, outside git. Then: outcomes deidentify EXPORT --mapping THIS_FILE --out DIR",
        "#   --key-file KEY --crosswalk PRIVATE_DIR (both outside the project)",
        "",
        "source:",
        f"  date_formats: [{', '.join(q(f) for f in dates.formats)}]   # guessed from the values; ISO always works",
    ]
    if dates.question:
        asked += 1
        lines.append(f"  # ??? {dates.question}")
    lines += [
        "",
        "# Columns that together identify a patient: they feed the keyed pseudonym only, never written.",
        "# Keep them the same for every export of this clinic: other columns give every patient a new pseudonym.",
    ]
    if identity:
        lines.append(f"identity: [{', '.join(q(c) for c in identity)}]")
    else:
        asked += 1
        lines.append(f'identity: ["{ASK}"]   # ??? no patient number or name column found: name the column(s)')
    lines += ["", f"clinic_id: {clinic_id}", "", "# contract field: source column", "columns:"]
    for fld in FIELDS:
        if fld in chosen:
            lines.append(f"  {fld}: {q(chosen[fld])}")
        elif fld in REQUIRED_FIELDS or (fld == "date_of_birth" and "age" not in chosen):
            asked += 1
            lines.append(f'  {fld}: "{ASK}"   # ??? no column looked like {fld}: name the export column')
    lines += ["", 'symptom_unit: week   # unit of a duration written without one ("26")', "", "values:"]
    for fld in CATEGORY_FIELDS:
        if fld in chosen:
            asked += _value_block(fld, frame, chosen[fld], identity, lines)
    markers = list(_DEFAULT_MISSING)
    for c in meas_cols:
        for text, _ in _spellings(frame[c], split=False):
            w = words(text)
            if w and not re.search(r"\d", w) and len(w) <= 20 and norm_text(text) not in markers:
                markers.append(norm_text(text))
    lines += [
        "",
        "# Values that mean 'not measured' (the measurement is left out).",
        f"missing_values: [{', '.join(q(m) for m in markers)}]",
        "",
        "# Source column: measure (a key of config/measures.yaml) and timing (pre/post).",
        "measurements:",
    ]
    seen: set[tuple[str, str]] = set()
    for c in meas_cols:
        measure, timing = guess_measure(c, measures)
        if measure is None or (measure, timing) in seen:
            asked += 1
            lines.append(
                f'  {q(c)}: {{measure: "{ASK}", timing: {timing}}}   # ??? choose one of: {", ".join(measures)}'
            )
            continue
        seen.add((measure, timing))
        lines.append(f"  {q(c)}: {{measure: {measure}, timing: {timing}}}")
    if not meas_cols:
        asked += 1
        lines.append(f'  "{ASK}": {{measure: "{ASK}", timing: pre}}   # ??? no measure column found: name one')
    lines += ["", "# Why the other columns are dropped (recorded in the log; they are never read)."]
    used = set(chosen.values()) | set(identity) | set(meas_cols)
    drops = []
    for col, role in roles.items():
        if col in used and role not in IDENTIFYING_ROLES:
            continue
        if col in used:
            if role == "date_of_birth":
                continue  # read (for the age band), so not dropped
            reason = _DROP_REASONS.get(role or "", "identifier") + ": used only inside the keyed pseudonym"
        else:
            reason = _DROP_REASONS.get(role or "", f"not recognised ({role or 'unknown'}): dropped unread")
        drops.append(f"  {q(col)}: {q(reason)}")
    lines += ["drop:", *drops] if drops else ["drop: {}"]
    return Draft("\n".join(lines) + "\n", asked)


def unanswered(raw: object, path: str = "") -> list[str]:
    """Where a drafted mapping still says ``???`` (dotted paths, e.g. ``values.techniques.Dry needling``).

    Examples
    --------
    >>> unanswered({"values": {"focus": {"Zumba": "???", "Hip": "hip"}}})
    ['values.focus.Zumba']
    """
    if isinstance(raw, dict):
        return [p for k, v in raw.items() for p in unanswered(v, f"{path}.{k}" if path else str(k))]
    if isinstance(raw, list):
        return [p for i, v in enumerate(raw) for p in unanswered(v, f"{path}[{i}]")]
    return [path] if raw == ASK else []


def run_draft_mapping(export: Path, out: Path | None, measures: Sequence[str], force: bool = False) -> str:
    """Read an export (any layout), draft its mapping, write it (refusing to overwrite unless ``force``)."""
    from analysis import store
    from analysis.deidentify.export import read_export

    export = Path(export)
    target = Path(out) if out is not None else export.with_name(export.stem + ".mapping.yaml")
    if target.exists() and not force:
        raise InputError(f"{target}: already exists (perhaps a mapping you edited); pass --force or another --out")
    label, frame, _info = read_export(export, Mapping((), {}, {}))
    draft = draft_mapping(frame, label, measures)
    store.write_text(target, draft.text)
    left = (
        f"; answer its {draft.questions} question(s) marked ??? before running deidentify"
        if draft.questions
        else "; no question is open, but check each guess"
    )
    return f"wrote a draft mapping for {label} ({len(frame.columns)} columns, {len(frame)} rows) to {target}{left}"
