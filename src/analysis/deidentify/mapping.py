"""The mapping file: which export column feeds which contract field, and how its values translate.

Parsing is pure (:func:`parse_mapping` checks every key and value and raises one :class:`InputError`
naming the entry); :func:`load_mapping_yaml` reads the file, bounded in size and without YAML aliases.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from analysis import contract
from analysis.deidentify.values import UNITS_IN_WEEKS
from analysis.errors import InputError

CLIENT_FIELDS = ("clinic_id", "sex", "date_of_birth", "age", "symptom_weeks", "sitting_hours", "activity", "knee")
SESSION_FIELDS = ("session_date", "therapist", "focus", "techniques", "minutes")
CATEGORY_FIELDS = {
    "sex": contract.SEXES,
    "activity": contract.ACTIVITIES,
    "knee": contract.KNEES,
    "focus": contract.FOCI,
    "techniques": contract.TECHNIQUES,
}
REQUIRED_FIELDS = ("session_date", "focus", "minutes", "sex", "symptom_weeks", "activity", "knee")
_MAPPING_KEYS = {
    "source",
    "identity",
    "session_key",
    "clinic_id",
    "columns",
    "values",
    "measurements",
    "drop",
    "missing_values",
    "technique_separators",
    "symptom_unit",
}
_SOURCE_KEYS = {"date_formats", "encoding", "delimiter", "sheet"}
# Visible in errors only if it is one of these shapes (numbers, short category labels), never dates.

MAX_MAPPING_BYTES = 1_000_000

# ----------------------------------------------------------------------------- mapping


@dataclass(frozen=True)
class Mapping:
    """A parsed mapping file (see ``data/examples/mapping.yaml``)."""

    identity: tuple[str, ...]
    columns: dict[str, str]
    measurements: dict[str, tuple[str, str]]
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    session_key: tuple[str, ...] = ()
    clinic_id: str = contract.DEFAULT_CLINIC
    drop: dict[str, str] = field(default_factory=dict)
    date_formats: tuple[str, ...] = ("%d/%m/%Y",)
    encoding: str | None = None
    delimiter: str | None = None
    sheet: str | None = None
    missing_values: tuple[str, ...] = ("", "n/a", "na", "-", "--", "?", "none recorded")
    technique_separators: str = r"\s*(?:[,;/+|]|\band\b|&)\s*"
    symptom_unit: str = "week"

    @property
    def read_columns(self) -> list[str]:
        """Every source column the mapping reads, in a stable order."""
        cols = list(self.identity) + list(self.session_key) + list(self.columns.values()) + list(self.measurements)
        return list(dict.fromkeys(cols))


def norm_text(value: str) -> str:
    """Normalise a label for matching: accents removed, case folded, spaces collapsed."""
    text = unicodedata.normalize("NFKD", str(value))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return re.sub(r"\s+", " ", text).strip().casefold()


def parse_mapping(raw: object, source: str, registry: contract.Registry) -> Mapping:
    """Check a mapping (parsed YAML) and build a :class:`Mapping`.

    Raises :class:`InputError` naming the key at fault and what to write instead.
    """
    if not isinstance(raw, dict):
        raise InputError(f"{source}: must be a mapping with keys identity, columns, values, measurements")
    unknown = set(raw) - _MAPPING_KEYS
    if unknown:
        raise InputError(f"{source}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_MAPPING_KEYS)}")

    def str_list(key: str, value: object, required: bool) -> tuple[str, ...]:
        if value is None and not required:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise InputError(f"{source}: '{key}' must be a source column name or a list of them")
        return tuple(value)

    identity = str_list("identity", raw.get("identity"), True)
    session_key = str_list("session_key", raw.get("session_key"), False)
    src = raw.get("source") or {}
    if not isinstance(src, dict) or set(src) - _SOURCE_KEYS:
        raise InputError(f"{source}: 'source' must be a mapping with keys among {sorted(_SOURCE_KEYS)}")
    formats = str_list("source.date_formats", src.get("date_formats", ["%d/%m/%Y"]), True)
    for f in formats:
        if "%" not in f:
            raise InputError(f"{source}: date format '{f}' must use strftime codes, e.g. %d/%m/%Y")
    columns = raw.get("columns")
    allowed = set(CLIENT_FIELDS) | set(SESSION_FIELDS)
    if not isinstance(columns, dict) or not all(isinstance(v, str) and v for v in columns.values()):
        raise InputError(f"{source}: 'columns' must map contract fields to source column names")
    if "clinic_id" in columns:
        raise InputError(
            f"{source}: columns: clinic_id is not read from an export column; one export is one "
            "clinic: write `clinic_id: <name>` at the top level instead (run deidentify once per clinic)"
        )
    bad = set(columns) - allowed
    if bad:
        allowed_shown = sorted(allowed - {"clinic_id"})
        raise InputError(f"{source}: columns: unknown field(s) {sorted(bad)}; allowed: {allowed_shown}")
    missing = [f for f in REQUIRED_FIELDS if f not in columns]
    if "date_of_birth" not in columns and "age" not in columns:
        missing.append("date_of_birth (or age)")
    if missing:
        raise InputError(f"{source}: columns: add the source column for {', '.join(missing)}")
    values_raw = raw.get("values") or {}
    if not isinstance(values_raw, dict):
        raise InputError(f"{source}: 'values' must map a field to {{source value: contract value}}")
    values: dict[str, dict[str, str]] = {}
    for fld, table in values_raw.items():
        if fld not in CATEGORY_FIELDS and fld != "clinic_id":
            raise InputError(
                f"{source}: values: '{fld}' is not a category field; allowed: {sorted(CATEGORY_FIELDS)} and clinic_id"
            )
        if not isinstance(table, dict):
            raise InputError(f"{source}: values.{fld} must map source values to contract values")
        out: dict[str, str] = {}
        for k, v in table.items():
            k = "" if k is None else str(k)
            v = str(v)
            if fld in CATEGORY_FIELDS and v not in CATEGORY_FIELDS[fld]:
                raise InputError(
                    f"{source}: values.{fld}: '{k}' maps to '{v}', which is not one of "
                    f"{', '.join(CATEGORY_FIELDS[fld])}"
                )
            if fld == "clinic_id" and not re.fullmatch(contract.ID_PATTERN, v):
                raise InputError(f"{source}: values.clinic_id: '{v}' must be {contract.ID_RULE}")
            out[norm_text(k)] = v
        values[fld] = out
    meas_raw = raw.get("measurements") or {}
    if not isinstance(meas_raw, dict) or not meas_raw:
        raise InputError(f"{source}: 'measurements' must map source columns to {{measure: ..., timing: pre|post}}")
    measurements: dict[str, tuple[str, str]] = {}
    seen: dict[tuple[str, str], str] = {}
    for col, spec in meas_raw.items():
        if not isinstance(spec, dict) or set(spec) != {"measure", "timing"}:
            raise InputError(f"{source}: measurements.{col} must be {{measure: <registry key>, timing: pre|post}}")
        m, t = str(spec["measure"]), str(spec["timing"])
        if m not in registry:
            raise InputError(
                f"{source}: measurements.{col}: measure '{m}' is not in the measures registry "
                f"({', '.join(registry.keys)}); add it to config/measures.yaml"
            )
        if t not in contract.TIMINGS:
            raise InputError(f"{source}: measurements.{col}: timing must be pre or post")
        if (m, t) in seen:
            raise InputError(f"{source}: measurements: '{col}' and '{seen[(m, t)]}' both give {m} {t}; keep one")
        seen[(m, t)] = col
        measurements[str(col)] = (m, t)
    clinic = str(raw.get("clinic_id", contract.DEFAULT_CLINIC))
    if not re.fullmatch(contract.ID_PATTERN, clinic):
        raise InputError(f"{source}: clinic_id '{clinic}' must be {contract.ID_RULE}")
    drop = raw.get("drop") or {}
    if not isinstance(drop, dict):
        raise InputError(f"{source}: 'drop' must map source columns to the reason they are dropped")
    missing_values = raw.get("missing_values")
    unit = str(raw.get("symptom_unit", "week")).rstrip("s")
    if unit not in UNITS_IN_WEEKS:
        raise InputError(f"{source}: symptom_unit must be day, week, month or year")
    kwargs: dict[str, Any] = {}
    if missing_values is not None:
        if not isinstance(missing_values, list) or not all(isinstance(v, (str, int, float)) for v in missing_values):
            raise InputError(f"{source}: 'missing_values' must be a list of markers, e.g. ['', 'n/a', '-']")
        kwargs["missing_values"] = tuple(norm_text(str(v)) for v in missing_values)
    if raw.get("technique_separators") is not None:
        kwargs["technique_separators"] = str(raw["technique_separators"])
    delimiter = src.get("delimiter")
    if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter.replace("\\t", "\t")) != 1):
        raise InputError(f"{source}: source.delimiter must be one character (e.g. ',' or ';' or '\\t')")
    return Mapping(
        identity=identity,
        columns={str(k): str(v) for k, v in columns.items()},
        measurements=measurements,
        values=values,
        session_key=session_key,
        clinic_id=clinic,
        drop={str(k): str(v) for k, v in drop.items()},
        date_formats=formats,
        encoding=src.get("encoding"),
        delimiter=delimiter.replace("\\t", "\t") if isinstance(delimiter, str) else None,
        sheet=src.get("sheet"),
        symptom_unit=unit,
        **kwargs,
    )


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without anchors and aliases: a mapping file never needs them, and nested aliases can expand a
    few hundred bytes into gigabytes (a "billion laughs" file)."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            # types-pyyaml declares Parser.peek_event without types; the event is a yaml.Event
            event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]
            line = event.start_mark.line + 1 if event.start_mark else "?"
            raise yaml.YAMLError(
                f"line {line}: YAML aliases (*name) are not allowed in a mapping file; write the values out"
            )
        return super().compose_node(parent, index)


def load_mapping_yaml(path: Path) -> Any:
    """The mapping file's YAML, bounded in size and without aliases (raises InputError / YAMLError)."""
    size = path.stat().st_size
    if size > MAX_MAPPING_BYTES:
        raise InputError(f"{path}: {size:,} bytes; a mapping file is a few kilobytes (limit {MAX_MAPPING_BYTES:,})")
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_NoAliasLoader)  # a SafeLoader subclass
