"""The data contract: the three input tables and the measures registry.

This module is the single source of truth for what the project accepts. The
great-expectations suites (:mod:`analysis.validate`), the blank templates
(:mod:`analysis.template`), the README data dictionary and the synthetic
clinic generator (:mod:`analysis.simulate`) are all derived from it, so they
cannot disagree.

Nothing here does I/O except :func:`load_registry`, which reads the measures
registry (a YAML file in ``config/``) so that a clinic can add a measure
without touching code.

One module on purpose, at about 400 lines: it is the single source of truth, and splitting the
tables from the registry would make a reader open two files to learn what one row must hold.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, overload

import numpy as np
import pandas as pd
import yaml

from analysis.errors import InputError

ID_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
ID_RULE = "1-32 characters of A-Z a-z 0-9 _ -"
EARLIEST_DATE = dt.date(2000, 1, 1)
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"

SEXES = ("F", "M", "X", "U")
AGE_BANDS = ("18-29", "30-39", "40-49", "50-59", "60-69", "70-79", "80+")
ACTIVITIES = ("running", "cycling", "gym", "team_sport", "walking", "none", "other")
KNEES = ("left", "right", "both")
FOCI = ("hip", "knee", "hip_and_knee", "other")
TECHNIQUES = (
    "myofascial_release",
    "stretching",
    "trigger_point",
    "joint_mobilisation",
    "exercise_advice",
    "other",
)
TIMINGS = ("pre", "post")
DEFAULT_CLINIC = "clinic-1"

Kind = Literal["id", "category", "integer", "number", "date", "multi_category", "measure", "value"]


@dataclass(frozen=True)
class Column:
    """One column of a contract table.

    ``kind`` decides the rule: ``id`` (pseudonym charset), ``category`` (one
    of ``categories``), ``multi_category`` (``;``-separated subset of
    ``categories``), ``integer``/``number`` (within ``minimum``..``maximum``),
    ``date`` (ISO, real, not future, not before 2000-01-01), ``measure`` (a key
    of the measures registry) and ``value`` (range from the registry entry of
    the row's measure).
    """

    name: str
    kind: Kind
    required: bool
    description: str
    example: str
    categories: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    unique: bool = False
    references: tuple[str, str] | None = None
    default: str | None = None

    @property
    def rule(self) -> str:
        """The rule in words, as shown in the data dictionary and error lines."""
        if self.kind == "id":
            text = ID_RULE
        elif self.kind == "category":
            text = "one of " + ", ".join(self.categories)
        elif self.kind == "multi_category":
            text = "';'-separated subset of " + ", ".join(self.categories)
        elif self.kind == "integer":
            text = f"whole number {self.minimum:g}-{self.maximum:g}"
        elif self.kind == "number":
            text = f"number {self.minimum:g}-{self.maximum:g}"
        elif self.kind == "date":
            text = f"YYYY-MM-DD, a real date, not in the future, not before {EARLIEST_DATE}"
        elif self.kind == "measure":
            text = "a measure defined in the measures registry"
        else:
            text = "within the measure's range, whole number where the measure is"
        if self.unique:
            text += "; unique"
        if self.references:
            text += f"; must exist in {self.references[0]}.{self.references[1]}"
        if self.default is not None:
            text += f"; default {self.default}"
        return text


@dataclass(frozen=True)
class Table:
    """One contract table (one CSV file, or one sheet of a workbook)."""

    name: str
    description: str
    columns: tuple[Column, ...]
    unique_together: tuple[str, ...] = ()

    @property
    def filename(self) -> str:
        return f"{self.name}.csv"

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


CLIENTS = Table(
    name="clients",
    description="One row per client episode of knee pain.",
    columns=(
        Column("client_id", "id", True, "Pseudonym of the client episode.", "C0001", unique=True),
        Column("clinic_id", "id", False, "Clinic the client attends.", "clinic-1", default=DEFAULT_CLINIC),
        Column("sex", "category", True, "Sex (U = unknown).", "F", categories=SEXES),
        Column("age_band", "category", True, "Age band at the first session.", "40-49", categories=AGE_BANDS),
        Column(
            "symptom_weeks",
            "integer",
            True,
            "How long the knee pain had lasted at the first session, in weeks.",
            "26",
            minimum=0,
            maximum=1040,
        ),
        Column("sitting_hours", "number", False, "Usual daily sitting, hours.", "7.5", minimum=0, maximum=24),
        Column("activity", "category", True, "Main sport or activity.", "running", categories=ACTIVITIES),
        Column("knee", "category", True, "Painful knee.", "right", categories=KNEES),
    ),
)

SESSIONS = Table(
    name="sessions",
    description="One row per treatment session.",
    columns=(
        Column("session_id", "id", True, "Pseudonym of the session.", "S00001", unique=True),
        Column("client_id", "id", True, "Client seen.", "C0001", references=("clients", "client_id")),
        Column("session_date", "date", True, "Date of the session.", "2025-03-14"),
        Column("therapist_id", "id", False, "Pseudonym of the therapist.", "T1"),
        Column("focus", "category", True, "Where the treatment was directed.", "hip", categories=FOCI),
        Column(
            "techniques",
            "multi_category",
            False,
            "Techniques used.",
            "myofascial_release;stretching",
            categories=TECHNIQUES,
        ),
        Column("minutes", "integer", True, "Length of the session, minutes.", "45", minimum=10, maximum=180),
    ),
)

MEASUREMENTS = Table(
    name="measurements",
    description="One row per measurement taken at a session.",
    columns=(
        Column(
            "session_id",
            "id",
            True,
            "Session the measurement was taken at.",
            "S00001",
            references=("sessions", "session_id"),
        ),
        Column("measure", "measure", True, "Measure, as named in the measures registry.", "knee_pain_nprs"),
        Column("timing", "category", True, "pre = on arrival, post = after treatment.", "pre", categories=TIMINGS),
        Column("value", "value", True, "The measured value.", "6"),
    ),
    unique_together=("session_id", "measure", "timing"),
)

TABLES: dict[str, Table] = {t.name: t for t in (CLIENTS, SESSIONS, MEASUREMENTS)}

# Column names that look like direct identifiers. A table carrying one is
# refused: the contract holds pseudonyms only (see analysis.deidentify).
IDENTIFIER_COLUMN_PATTERN = re.compile(
    r"(^|_)(first_?name|last_?name|sur_?name|full_?name|given_?name|name|patient|email|e_?mail|"
    r"phone|mobile|tel|telephone|address|street|postcode|post_code|zip|zipcode|city|dob|"
    r"birth|birth_?date|date_of_birth|notes?|comments?|free_?text|nhs|ssn|medicare|insurance|mrn)($|_)",
    re.IGNORECASE,
)


def identifier_reason(column: str) -> str | None:
    """Why a column name looks like a direct identifier, or None if it does not."""
    norm = re.sub(r"[^a-z0-9]+", "_", column.strip().lower()).strip("_")
    if IDENTIFIER_COLUMN_PATTERN.search(norm):
        return (
            f"column '{column}' looks like a direct identifier (names, contact details, addresses, "
            "dates of birth and free-text notes must not be in the contract tables); "
            "remove it or run `outcomes deidentify` on the export"
        )
    return None


# --------------------------------------------------------------------------- measures registry


@dataclass(frozen=True)
class Measure:
    """One entry of the measures registry."""

    key: str
    label: str
    unit: str
    minimum: float
    maximum: float
    integer: bool
    direction: Literal["lower_is_better", "higher_is_better"]
    mcid_points: float | None = None
    mcid_percent: float | None = None
    side: str | None = None
    reference: str = ""
    mdc_points: float | None = None

    @property
    def lower_is_better(self) -> bool:
        return self.direction == "lower_is_better"

    @overload
    def mcid_needed(self, baseline: float) -> float: ...
    @overload
    def mcid_needed(self, baseline: pd.Series) -> pd.Series: ...
    def mcid_needed(self, baseline: float | pd.Series) -> float | pd.Series:
        """Improvement (points) that counts as clinically important from ``baseline``.

        Either MCID in the registry reached counts, so the smaller of the points
        and the percent of baseline is what is needed. The percent is undefined
        at a baseline of 0 (then only points count); NaN when the measure has no
        MCID. Takes a scalar or a pandas Series (returned with the same index).
        """
        base = np.abs(np.asarray(baseline, dtype=float))
        need = np.full(base.shape, np.inf)
        if self.mcid_points:
            need = np.minimum(need, self.mcid_points)
        if self.mcid_percent:
            usable = np.isfinite(base) & (base > 0)
            need = np.minimum(need, np.where(usable, base * self.mcid_percent / 100.0, np.inf))
        need = np.where(np.isinf(need), np.nan, need)
        if isinstance(baseline, pd.Series):
            return pd.Series(need, index=baseline.index)
        return float(need)

    @overload
    def improvement(self, baseline: float, value: float) -> float: ...
    @overload
    def improvement(self, baseline: pd.Series, value: pd.Series) -> pd.Series: ...
    def improvement(self, baseline: float | pd.Series, value: float | pd.Series) -> float | pd.Series:
        """Improvement from baseline in points, positive = better (scalars or pandas Series)."""
        return (baseline - value) if self.lower_is_better else (value - baseline)

    def mcid_target(self, baseline: float) -> float:
        """The value that is a clinically important improvement from ``baseline`` (NaN without an MCID)."""
        need = self.mcid_needed(baseline)
        return baseline - need if self.lower_is_better else baseline + need


@dataclass(frozen=True)
class Registry:
    """The measures registry: measure key -> :class:`Measure`."""

    measures: dict[str, Measure] = field(default_factory=dict)
    source: str = ""

    def __contains__(self, key: object) -> bool:
        return key in self.measures

    def __getitem__(self, key: str) -> Measure:
        return self.measures[key]

    @property
    def keys(self) -> list[str]:
        return sorted(self.measures)


_MEASURE_FIELDS = {"label", "unit", "min", "max", "integer", "direction", "mcid", "mdc_points", "side", "reference"}


def parse_registry(raw: object, source: str = "<registry>") -> Registry:
    """Build a :class:`Registry` from the parsed YAML, checking every entry.

    Raises :class:`InputError` naming the entry and field for any problem.
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("measures"), dict) or not raw["measures"]:
        raise InputError(f"{source}: must contain a non-empty mapping 'measures:'")
    out: dict[str, Measure] = {}
    for key, entry in raw["measures"].items():
        where = f"{source}: measure '{key}'"
        if not isinstance(key, str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", key):
            raise InputError(f"{where}: key must be lower_snake_case letters, digits and _")
        if not isinstance(entry, dict):
            raise InputError(f"{where}: must be a mapping of fields")
        unknown = set(entry) - _MEASURE_FIELDS
        if unknown:
            raise InputError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(_MEASURE_FIELDS)}")
        for req in ("label", "unit", "min", "max", "integer", "direction"):
            if req not in entry:
                raise InputError(f"{where}: missing field '{req}'")
        lo, hi = entry["min"], entry["max"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi)) or lo >= hi:
            raise InputError(f"{where}: 'min' and 'max' must be numbers with min < max")
        if entry["direction"] not in ("lower_is_better", "higher_is_better"):
            raise InputError(f"{where}: 'direction' must be lower_is_better or higher_is_better")
        if not isinstance(entry["integer"], bool):
            raise InputError(f"{where}: 'integer' must be true or false")
        mcid = entry.get("mcid") or {}
        if not isinstance(mcid, dict) or set(mcid) - {"points", "percent"}:
            raise InputError(f"{where}: 'mcid' must be a mapping with 'points' and/or 'percent'")
        for k, v in mcid.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
                raise InputError(f"{where}: mcid {k} must be a positive number")
        mdc = entry.get("mdc_points")
        if mdc is not None and (not isinstance(mdc, (int, float)) or isinstance(mdc, bool) or mdc <= 0):
            raise InputError(f"{where}: 'mdc_points' must be a positive number (the minimal detectable change)")
        out[key] = Measure(
            key=key,
            label=str(entry["label"]),
            unit=str(entry["unit"]),
            minimum=float(lo),
            maximum=float(hi),
            integer=entry["integer"],
            direction=entry["direction"],
            mcid_points=float(mcid["points"]) if "points" in mcid else None,
            mcid_percent=float(mcid["percent"]) if "percent" in mcid else None,
            side=entry.get("side"),
            reference=str(entry.get("reference", "")),
            mdc_points=None if mdc is None else float(mdc),
        )
    return Registry(out, source)


def load_registry(path: Path) -> Registry:
    """Read and check the measures registry YAML file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: measures registry not found") from None
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the measures registry ({exc.__class__.__name__})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return parse_registry(raw, str(path))


def data_dictionary_markdown(registry: Registry | None = None) -> str:
    """The data dictionary (README section) rendered from the contract."""
    lines: list[str] = []
    for table in TABLES.values():
        lines.append(f"`{table.filename}` — {table.description}")
        lines.append("")
        lines.append("| column | required | rule | description | example |")
        lines.append("|---|---|---|---|---|")
        for c in table.columns:
            rule = c.rule.replace("|", "\\|")
            lines.append(f"| {c.name} | {'yes' if c.required else 'no'} | {rule} | {c.description} | `{c.example}` |")
        if table.unique_together:
            lines.append("")
            lines.append(f"({', '.join(table.unique_together)}) together are unique.")
        lines.append("")
    if registry is not None:
        lines.append("Measures registry (`config/measures.yaml`):")
        lines.append("")
        lines.append("| measure | label | range | integer | better | MCID | reference |")
        lines.append("|---|---|---|---|---|---|---|")
        for m in registry.measures.values():
            mcid = (
                ", ".join(
                    x
                    for x in (
                        f"{m.mcid_points:g} points" if m.mcid_points else "",
                        f"{m.mcid_percent:g}%" if m.mcid_percent else "",
                    )
                    if x
                )
                or "—"
            )
            better = "lower" if m.lower_is_better else "higher"
            lines.append(
                f"| {m.key} | {m.label} | {m.minimum:g}–{m.maximum:g} | {'yes' if m.integer else 'no'} "
                f"| {better} | {mcid} | {m.reference} |"
            )
        lines.append("")
    return "\n".join(lines)
