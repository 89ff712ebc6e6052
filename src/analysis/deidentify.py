"""De-identify: turn a practice-software export into the three contract tables.

``outcomes deidentify EXPORT... --mapping M.yaml --out DIR [--key-file F]`` reads
one or more exports (CSV or XLSX, one row per visit, identifying columns
included), and writes ``clients.csv``, ``sessions.csv``, ``measurements.csv`` and
``deidentify_log.json`` (counts only) to ``DIR``. ``outcomes keygen --out F``
creates the secret key. See ``data/examples/`` for an export and its mapping.

How it works
------------
* **Allow-list.** Only the source columns named in the mapping are read. Every
  other column is dropped unread and listed (name and reason) in the log.
* **Pseudonyms.** ``client_id`` = ``C`` + base32 of HMAC-SHA256(key, normalised
  patient identity), truncated to params ``privacy.pseudonym_chars``; the
  identity is the mapping's ``identity`` columns (e.g. name + date of birth, or
  a practice patient number), normalised (case, accents, spaces, date format)
  so that the same patient gets the same id in every export made with the same
  key. ``session_id`` = ``S`` + HMAC of the patient identity, the real visit
  date and any ``session_key`` columns; ``therapist_id`` = ``T`` + HMAC of the
  therapist's normalised name. Without the key the ids cannot be linked back;
  with it, they can be reproduced (keep it outside the repo; back it up).
* **Dates.** Each client's dates move by one keyed offset in
  ``-privacy.date_shift_max_days..+max`` days (intervals between visits are
  kept). A shift that would put a date in the future is mirrored backwards, and
  shifted dates are kept between 2000-01-01 and today. The date of birth becomes
  the age band at the *real* first visit and is then dropped.
* **Final gate.** The written tables are scanned with
  :func:`analysis.privacy.scan_values`; anything that looks like an email, phone,
  postcode or name stops the run (:class:`~analysis.errors.PrivacyError`).
* **Problems** (unmapped category values, unreadable dates or numbers, blank
  identity, patients under 18) are all reported at once, one line each (file,
  row, column, what to add to the mapping), and nothing is written. Values are
  shown only when they cannot identify anyone (category labels, numbers);
  dates and anything that looks identifying are never shown.

HIPAA Safe Harbor identifiers (45 CFR 164.514(b)(2)) and what happens to each
-------------------------------------------------------------------------------
1. Names: dropped; the patient's name may feed the keyed HMAC (identity) only.
   Therapist names become keyed pseudonyms ``T...``.
2. Geographic subdivisions smaller than a state (street, city, postcode/ZIP):
   dropped (never read unless wrongly mapped; then the final gate stops it).
3. Dates (except year) related to the individual: date of birth -> age band
   (ages 80 and over are one band, stricter than Safe Harbor's 90+); visit
   dates are *shifted* per client. Note: shifted dates keep intervals and the
   approximate season, so the output is not Safe Harbor de-identified in the
   strict sense (which allows the year only); it is pseudonymised data for a
   clinic's own analysis and for peers who only see aggregates (peer outputs
   pass :func:`analysis.privacy.assert_peer_safe`).
4. Telephone numbers: dropped.      5. Fax numbers: dropped.
6. Email addresses: dropped.        7. Social security numbers: dropped.
8. Medical record numbers (practice patient numbers): identity input to the
   keyed HMAC only, then dropped.
9. Health plan beneficiary numbers: dropped.   10. Account numbers: dropped.
11. Certificate/licence numbers: dropped.      12. Vehicle identifiers: dropped.
13. Device identifiers and serial numbers: dropped.   14. URLs: dropped.
15. IP addresses: dropped.          16. Biometric identifiers: dropped.
17. Full-face photographs and comparable images: not read (tables only).
18. Any other unique identifying number, characteristic or code: dropped;
    free-text notes are always dropped. The only codes written are the keyed
    pseudonyms above and the ``clinic_id`` the mapping sets.

Residual risk: rare combinations of age band, sex, knee, sport and symptom
length can still single a client out; :func:`analysis.privacy.k_anonymity`
measures it, which is why peers get aggregates only.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import io
import os
import re
import secrets
import unicodedata
from collections.abc import Mapping as MappingABC
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from analysis import contract
from analysis.errors import InputError, PrivacyError, Problem, ValidationFailed
from analysis.load import CsvSyntaxError, csv_rows

KEY_ENV = "OUTCOMES_KEY"
KEY_FILE_ENV = "OUTCOMES_KEY_FILE"
KEY_BYTES = 32
KEYGEN_HINT = "run `outcomes keygen --out ~/.config/outcomes/key` once, then pass --key-file ~/.config/outcomes/key"

# Contract fields a mapping can fill from a source column.
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
_UNITS_IN_WEEKS = {
    "day": 1 / 7,
    "week": 1.0,
    "wk": 1.0,
    "w": 1.0,
    "month": 52 / 12,
    "mth": 52 / 12,
    "mo": 52 / 12,
    "m": 52 / 12,
    "year": 52.0,
    "yr": 52.0,
    "y": 52.0,
}
# Visible in errors only if it is one of these shapes (numbers, short category labels), never dates.
_SHOWABLE = re.compile(r"^[A-Za-z0-9 +&/_.,'()-]{0,40}$")


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
    if unit not in _UNITS_IN_WEEKS:
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


# ----------------------------------------------------------------------------- keys and pseudonyms


def _b32(digest: bytes, n: int) -> str:
    return base64.b32encode(digest).decode("ascii").rstrip("=")[:n]


def _hmac(key: bytes, purpose: str, text: str) -> bytes:
    # The purpose prefix keeps client ids, session ids, therapist ids and date offsets independent.
    return hmac.new(key, f"{purpose}\x1f{text}".encode(), hashlib.sha256).digest()


def pseudonym(key: bytes, purpose: str, text: str, prefix: str, n_chars: int) -> str:
    """A keyed pseudonym: ``prefix`` + base32 of HMAC-SHA256, ``n_chars`` characters (fits the id charset)."""
    return prefix + _b32(_hmac(key, purpose, text), n_chars)


def key_fingerprint(key: bytes) -> str:
    """A short, one-way tag of the key, so two logs show whether the same key was used."""
    return _b32(_hmac(key, "fingerprint", ""), 8)


def date_offset(key: bytes, identity: str, max_days: int) -> int:
    """The client's keyed date shift in days, uniform in -max_days..+max_days."""
    raw = int.from_bytes(_hmac(key, "date-shift", identity)[:8], "big")
    return int(raw % (2 * max_days + 1)) - max_days


def _parse_key(text: str, where: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise InputError(f"{where}: the key must be hex digits (as written by `outcomes keygen`)") from None
    if len(key) < 16:
        raise InputError(f"{where}: the key is too short ({len(key)} bytes, need at least 16); {KEYGEN_HINT}")
    if len(set(key)) < 8:
        # all zeros, one repeated byte, "0123..." typed by hand: anyone could guess it and undo the pseudonyms
        raise InputError(
            f"{where}: the key is weak (only {len(set(key))} distinct byte values); make a random one: {KEYGEN_HINT}"
        )
    return key


def load_key(key_file: Path | None = None, environ: MappingABC[str, str] | None = None) -> bytes:
    """The secret key: ``key_file``, else $OUTCOMES_KEY (hex), else $OUTCOMES_KEY_FILE. Never echoed."""
    env = os.environ if environ is None else environ
    path = key_file or (Path(env[KEY_FILE_ENV]).expanduser() if env.get(KEY_FILE_ENV) else None)
    if key_file is None and env.get(KEY_ENV):
        return _parse_key(env[KEY_ENV], f"${KEY_ENV}")
    if path is None:
        raise InputError(f"no de-identification key: {KEYGEN_HINT} (or set ${KEY_ENV} / ${KEY_FILE_ENV})")
    path = Path(path).expanduser()
    from analysis.crosswalk import git_work_tree

    tree = git_work_tree(path.resolve().parent)
    if tree is not None:
        raise InputError(
            f"{path}: the key file is inside the git work tree {tree}, where it could be committed; "
            "move it outside every repository (e.g. ~/.config/outcomes/key)"
        )
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise InputError(f"{path}: key file not found; {KEYGEN_HINT}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the key file ({exc.__class__.__name__})") from None
    return _parse_key(text, str(path))


def run_keygen(path: Path) -> str:
    """Create a new random key file (32 bytes, hex), mode 0600, outside the project; never print the key."""
    from analysis.crosswalk import git_work_tree
    from analysis.paths import project_root

    path = Path(path).expanduser().resolve()
    root = project_root().resolve()
    if path == root or root in path.parents:
        raise InputError(
            f"{path}: is inside the project folder {root}; keep the key outside the repository, "
            "e.g. `outcomes keygen --out ~/.config/outcomes/key`"
        )
    tree = git_work_tree(path.parent)
    if tree is not None:  # another checkout, or any repository: keygen run from outside a project too
        raise InputError(
            f"{path}: is inside the git work tree {tree}; keep the key outside every repository, "
            "e.g. `outcomes keygen --out ~/.config/outcomes/key`"
        )
    if path.exists() or path.is_symlink():
        raise InputError(
            f"{path}: already exists; a new key would change every pseudonym. Keep the old key, "
            "or move it away first if you really mean to start again"
        )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_bytes(KEY_BYTES)
    # O_EXCL: never overwrite, even if the file appeared since the check; 0600 from the start.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (key.hex() + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(path, 0o600)
    return (
        f"wrote a new key to {path} (mode 0600, fingerprint {key_fingerprint(key)}). Back it up somewhere "
        "safe: the same key gives the same pseudonyms in every export; never commit or share it."
    )


# ----------------------------------------------------------------------------- reading exports


def read_export(path: Path, mapping: Mapping) -> tuple[str, pd.DataFrame, dict[str, Any]]:
    """Read one export as strings; index = spreadsheet line (header = 1).

    Returns (label, frame, info) where info records the encoding and delimiter used.
    """
    path = Path(path)
    label = path.name
    if not path.exists():
        raise InputError(f"{path}: export not found")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; pass the export file(s)")
    data = path.read_bytes()
    if data.startswith(b"PK\x03\x04"):
        return label, _read_xlsx(data, label, mapping.sheet), {"format": "xlsx"}
    if not data.strip():
        raise InputError(f"{label}: file is empty")
    encodings = [mapping.encoding] if mapping.encoding else ["utf-8-sig", "cp1252"]
    text = None
    for enc in encodings:
        try:
            text = data.decode(enc)
            break
        except (UnicodeDecodeError, LookupError):
            continue
    if text is None:
        raise InputError(f"{label}: cannot be decoded as {' or '.join(encodings)}; set source.encoding in the mapping")
    first = text.splitlines()[0]
    delimiter = mapping.delimiter or max((",", ";", "\t", "|"), key=first.count)
    try:
        rows = csv_rows(text, delimiter)
    except CsvSyntaxError as exc:
        raise InputError(f"{label}, row {exc.line}: not well-formed CSV ({exc.message})") from None
    return label, _frame(rows, label), {"format": "csv", "encoding": enc, "delimiter": delimiter}


def _read_xlsx(data: bytes, label: str, sheet: str | None) -> pd.DataFrame:
    import warnings
    import zipfile

    import openpyxl

    try:
        with warnings.catch_warnings():
            # openpyxl warns about styles/extensions it ignores; they do not affect cell values
            warnings.simplefilter("ignore", UserWarning)
            wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, OSError, KeyError, ValueError) as exc:
        raise InputError(f"{label}: cannot be opened as a workbook ({exc.__class__.__name__})") from None
    try:
        if sheet and sheet not in wb.sheetnames:
            raise InputError(f"{label}: no sheet '{sheet}' (sheets: {', '.join(wb.sheetnames)})")
        ws = wb[sheet] if sheet else wb.worksheets[0]
        rows = []
        for i, r in enumerate(ws.iter_rows(values_only=True), start=1):
            cells = []
            for v in r:
                if v is None:
                    cells.append("")
                elif isinstance(v, dt.datetime):
                    cells.append(v.date().isoformat())
                elif isinstance(v, dt.date):
                    cells.append(v.isoformat())
                elif isinstance(v, float) and v.is_integer():
                    cells.append(str(int(v)))
                else:
                    cells.append(str(v))
            rows.append((i, cells))
    finally:
        wb.close()
    return _frame(rows, label)


def _frame(rows: list[tuple[int, list[str]]], label: str) -> pd.DataFrame:
    rows = [(i, r) for i, r in rows if any(str(c).strip() for c in r)]
    if not rows:
        raise InputError(f"{label}: has no header row")
    header = [h.strip().lstrip("\ufeff") for h in rows[0][1]]
    dupes = sorted({h for h in header if h and header.count(h) > 1})
    if dupes:
        raise InputError(
            f"{label}, row {rows[0][0]}: column(s) {dupes} appear more than once in the header; rename one"
        )
    width = len(header)
    body = [(i, (r + [""] * width)[:width]) for i, r in rows[1:]]
    if not body:
        raise InputError(f"{label}: has a header but no data rows")
    frame = pd.DataFrame(
        [r for _, r in body], columns=header, index=pd.Index([i for i, _ in body], name="row"), dtype="string"
    )
    return frame.loc[:, [h for h in header if h]]


# ----------------------------------------------------------------------------- the pure core


@dataclass
class Deidentified:
    """Result of :func:`deidentify_frames`: the three tables, the log and any problems."""

    tables: dict[str, pd.DataFrame]
    log: dict[str, Any]
    problems: list[Problem]
    crosswalk: pd.DataFrame | None = None  # identifying: written only by --crosswalk, outside the project


def _clean(s: pd.Series) -> pd.Series:
    return s.fillna("").astype("string").str.replace(r"\s+", " ", regex=True).str.strip()


def _showable(value: str) -> str | None:
    from analysis.privacy import looks_identifying

    if (
        _SHOWABLE.match(value)
        and not re.search(r"\d{1,4}[./-]\d{1,2}[./-]\d{1,4}", value)
        and not looks_identifying(value)
    ):
        return value
    return None


def parse_dates(values: pd.Series, formats: Sequence[str]) -> pd.Series:
    """Parse date strings with the mapping's formats (first that fits), ISO always accepted.

    Returns a datetime64 Series; NaT where no format fits.
    """
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    text = values.astype("string").str.strip()
    for fmt in (*formats, "%Y-%m-%d"):
        todo = out.isna() & text.ne("").fillna(False)
        if not todo.any():
            break
        parsed = pd.to_datetime(text[todo], format=fmt, errors="coerce")
        out.loc[todo] = parsed.astype("datetime64[ns]")
    return out


def parse_number(values: pd.Series) -> pd.Series:
    """Numbers as typed by people: decimal comma, trailing units ("45 min", "7.5h"). NaN if not a number."""
    text = values.astype("string").str.strip().str.replace(",", ".", regex=False)
    num = text.str.extract(r"^([-+]?\d+(?:\.\d+)?)\s*[A-Za-z/%.]*$", expand=False)
    return pd.to_numeric(num, errors="coerce").astype("float64")


def parse_duration_weeks(values: pd.Series, default_unit: str) -> pd.Series:
    """Durations such as "6 months", "12 wks", "1 year", "26" (default unit) -> whole weeks; NaN if unreadable."""
    text = values.astype("string").str.strip().str.lower().str.replace(",", ".", regex=False)
    parts = text.str.extract(r"^(\d+(?:\.\d+)?)\s*([a-z]*)\.?$")
    number = pd.to_numeric(parts[0], errors="coerce")
    unit = parts[1].fillna("").str.rstrip("s").replace("", default_unit)
    factor = unit.map(lambda u: _UNITS_IN_WEEKS.get(u, np.nan)).astype("float64")
    return (number.astype("float64") * factor).round()


_MONTH_FORMATS = ("%b %Y", "%B %Y", "%Y-%m", "%m/%Y", "%m.%Y", "%b-%Y", "%b %y")


def parse_onset(values: pd.Series, date_formats: Sequence[str]) -> pd.Series:
    """An onset written as a month ("Nov 2022", "2022-11") or a date -> a datetime (NaT if neither).

    A month means its middle (the 15th), so the weeks before a visit are off by two weeks at most.
    """
    text = values.astype("string").str.strip().str.replace(r"(?i)^(since|from)\s*:?\s*", "", regex=True)
    out = parse_dates(text, date_formats)
    for fmt in _MONTH_FORMATS:
        todo = out.isna() & text.notna() & text.ne("")
        if not todo.any():
            break
        parsed = pd.to_datetime(text[todo], format=fmt, errors="coerce")
        out = out.where(~todo, parsed + pd.Timedelta(days=14))
    return out


def _age_band(age: float) -> str | None:
    if np.isnan(age) or age < 18:
        return None
    if age >= 80:
        return "80+"
    lo = int(age // 10 * 10)
    return "18-29" if lo < 30 else f"{lo}-{lo + 9}"


@dataclass
class _Work:
    """The combined export rows being de-identified, with the problems and log collected so far."""

    df: pd.DataFrame
    problems: list[Problem]
    log: dict[str, Any]

    def report(self, mask: pd.Series, column: str, rule: str, show: bool = False) -> None:
        """One problem per flagged row; the value is shown only if ``show`` and it cannot identify anyone."""
        for i in np.flatnonzero(mask.to_numpy()):
            value = _showable(self.df[column].iloc[i]) if show and self.df[column].iloc[i] else None
            self.problems.append(
                Problem(str(self.df["_file"].iloc[i]), int(self.df["_row"].iloc[i]), column, rule, value)
            )

    def report_grouped(self, mask: pd.Series, column: str, key: pd.Series, rule: str) -> None:
        """One problem per distinct value (at its first row): one missing mapping entry is one line, not 500."""
        hits = pd.DataFrame({"key": key[mask], "i": np.flatnonzero(mask.to_numpy())})
        for _, grp in hits.groupby("key", sort=True):
            rows = grp["i"].tolist()
            self.report_value(rows, column, rule, self.df[column].iloc[rows[0]])

    def report_value(self, rows: list[int], column: str, rule: str, text: Any) -> None:
        """One problem for a value found at row positions ``rows``, reported at the first of them.

        The value is shown only when it cannot point to a person: it passes the identifier checks on the
        text as exported (before any lower-casing) *and* at least :data:`ECHO_MIN_PATIENTS` patients have
        it -- a surname typed into a treatment-area column belongs to one patient and is never echoed.
        """
        ident = self.df["_identity"] if "_identity" in self.df else pd.Series("", index=self.df.index)
        patients = ident.iloc[rows].nunique()
        shown = _showable(text) if patients >= ECHO_MIN_PATIENTS else None
        more = f" (and {len(rows) - 1} more row(s) with this value)" if len(rows) > 1 else ""
        hidden = "" if shown else f" (value not shown: {patients} patient(s) have it, so it could identify someone)"
        i = rows[0]
        self.problems.append(
            Problem(str(self.df["_file"].iloc[i]), int(self.df["_row"].iloc[i]), column, rule + more + hidden, shown)
        )


def _combine(exports: Sequence[tuple[str, pd.DataFrame]], mapping: Mapping) -> _Work:
    """Keep only the mapped columns of every export (allow-list), cleaned, with file and row; drop repeats."""
    problems: list[Problem] = []
    log: dict[str, Any] = {"files": [], "columns_dropped": {}, "unmapped_values": {}, "blank_values_filled": {}}
    parts = []
    for label, frame in exports:
        missing = [c for c in mapping.read_columns if c not in frame.columns]
        for c in missing:
            problems.append(
                Problem(
                    label, 1, c, "column named in the mapping is not in the export; fix the column name in the mapping"
                )
            )
        for c in frame.columns:
            if c not in mapping.read_columns:
                log["columns_dropped"].setdefault(c, mapping.drop.get(c) or "not in the mapping (dropped unread)")
        log["files"].append({"file": label, "rows_in": int(len(frame))})
        if not missing:
            part = frame.loc[:, mapping.read_columns].apply(_clean)
            parts.append(part.assign(_file=label, _row=frame.index.to_numpy()))
    cols = mapping.columns
    for c in mapping.identity:
        log["columns_dropped"].setdefault(c, "direct identifier: used only inside the keyed pseudonym")
    if "date_of_birth" in cols:
        log["columns_dropped"].setdefault(cols["date_of_birth"], "date of birth: turned into the age band")
    if "therapist" in cols:
        log["columns_dropped"].setdefault(cols["therapist"], "therapist name: replaced by a keyed pseudonym")
    df = (
        pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[*mapping.read_columns, "_file", "_row"])
    )
    log["rows_in"] = int(len(df))
    # Exactly repeated rows (overlapping exports) are one visit.
    dup = df.duplicated(subset=mapping.read_columns, keep="first")
    log["duplicate_rows_removed"] = int(dup.sum())
    return _Work(df.loc[~dup].reset_index(drop=True), problems, log)


def _identity(w: _Work, mapping: Mapping) -> pd.Series:
    """The normalised patient identity per row: case, spacing, accents and date format do not matter."""
    dob_col = mapping.columns.get("date_of_birth")
    parts = []
    for c in mapping.identity:
        if c == dob_col:
            d = parse_dates(w.df[c], mapping.date_formats)
            part = d.dt.strftime("%Y-%m-%d").fillna("").astype("string")
            w.report(
                d.isna() & w.df[c].ne(""),
                c,
                "date of birth is not a date in the format(s) "
                f"{', '.join(mapping.date_formats)}; fix it or add its format to source.date_formats",
            )
        else:
            part = w.df[c].map(norm_text).astype("string")
        w.report(w.df[c].eq(""), c, "blank identity value: the patient cannot be recognised; fill it in")
        parts.append(part)
    return parts[0].str.cat(parts[1:], sep="\x1f") if len(parts) > 1 else parts[0]


def _visit_dates(w: _Work, mapping: Mapping, today: dt.date) -> pd.Series:
    """Real visit dates, checked (real, from 2000-01-01, not in the future)."""
    col = mapping.columns["session_date"]
    real = parse_dates(w.df[col], mapping.date_formats)
    w.report(
        real.isna(),
        col,
        f"visit date is blank or not in the format(s) {', '.join(mapping.date_formats)}; "
        "fix it or add its format to source.date_formats",
    )
    w.report(
        real.notna() & (real < pd.Timestamp(contract.EARLIEST_DATE)),
        col,
        f"visit date is before {contract.EARLIEST_DATE}; fix it",
    )
    w.report(real.notna() & (real > pd.Timestamp(today)), col, "visit date is in the future; fix it")
    return real


def _categories(w: _Work, mapping: Mapping) -> tuple[dict[str, pd.Series], dict[str, str]]:
    """Map sex, activity, knee and focus to contract values; (mapped per row, per-client blank fills)."""
    mapped: dict[str, pd.Series] = {}
    blank_fill: dict[str, str] = {}
    for fld in ("sex", "activity", "knee", "focus"):
        src = mapping.columns[fld]
        table = mapping.values.get(fld, {})
        contract_values = {norm_text(c): c for c in CATEGORY_FIELDS[fld]}
        norm = w.df[src].map(norm_text).astype("string")
        via = norm.map(lambda v, t=table: t.get(v, pd.NA) if v else pd.NA).astype("string")
        result = via.fillna(norm.map(lambda v, c=contract_values: c.get(v, pd.NA)).astype("string"))
        unmapped = result.isna() & norm.ne("")
        blank = norm.eq("")
        w.log["unmapped_values"][src] = int(unmapped.sum())
        if unmapped.any():
            w.report_grouped(
                unmapped,
                src,
                norm,
                f"value not in the mapping; add it under values: {fld}: "
                f"{{'<this value>': one of {', '.join(CATEGORY_FIELDS[fld])}}}",
            )
        if fld == "focus":
            # Focus belongs to the session, so a blank is filled (or reported) per row.
            if table.get("") is not None:
                result = result.mask(blank, table[""])
            else:
                w.report(blank, src, "blank treatment area; fill it in or map blanks with values: focus: {'': other}")
        elif table.get("") is not None:
            # A client-level blank is filled per client, only when no visit of the client has a value.
            blank_fill[fld] = table[""]
        mapped[fld] = result
    return mapped, blank_fill


def _techniques(w: _Work, mapping: Mapping) -> pd.Series:
    """Techniques per row as a ';'-list of contract values in contract order (NA if none)."""
    if "techniques" not in mapping.columns:
        return pd.Series(pd.NA, index=w.df.index, dtype="string")
    src = mapping.columns["techniques"]
    table = mapping.values.get("techniques", {})
    order = {t: i for i, t in enumerate(contract.TECHNIQUES)}
    rule = (
        "technique not in the mapping; add it under values: techniques: "
        f"{{'<this value>': one of {', '.join(contract.TECHNIQUES)}}}"
    )
    n_unmapped = 0
    out = []
    unmapped: dict[str, list[tuple[int, str]]] = {}  # normalised item -> (row position, text as exported)
    for i, cell in enumerate(w.df[src].tolist()):
        got = set()
        for raw_item in re.split(mapping.technique_separators, cell or "", flags=re.IGNORECASE):
            item = norm_text(raw_item)
            if not item:
                continue
            t = table.get(item) or (item if item in contract.TECHNIQUES else None)
            if t is None:
                n_unmapped += 1
                unmapped.setdefault(item, []).append((i, raw_item.strip()))
            else:
                got.add(t)
        out.append(";".join(sorted(got, key=order.get)) if got else pd.NA)
    for _item, where in sorted(unmapped.items()):
        # checked as exported (capitals intact) and only if shared by enough patients: free text in a
        # techniques column ("Olivia Whitfield ran 5k pain-free") is never echoed
        w.report_value([i for i, _ in where], src, rule, where[0][1])
    w.log["unmapped_values"][src] = n_unmapped
    return pd.Series(out, index=w.df.index, dtype="string")


def _numbers(w: _Work, mapping: Mapping) -> dict[str, pd.Series]:
    """minutes, sitting_hours (NaN if not mapped/blank) and symptom_weeks per row, checked."""
    cols = mapping.columns

    def missing(src: str) -> pd.Series:
        return w.df[src].map(norm_text).isin(mapping.missing_values)

    minutes = parse_number(w.df[cols["minutes"]])
    w.report(
        minutes.isna() | (minutes % 1 != 0),
        cols["minutes"],
        "minutes is blank or not a whole number; fix it",
        show=True,
    )
    sitting = pd.Series(np.nan, index=w.df.index)
    if "sitting_hours" in cols:
        src = cols["sitting_hours"]
        sitting = parse_number(w.df[src])
        w.report(
            sitting.isna() & ~missing(src), src, "sitting hours is not a number; fix it or leave it blank", show=True
        )
    src = cols["symptom_weeks"]
    symptom = parse_duration_weeks(w.df[src], mapping.symptom_unit)
    # exports often give the onset instead ("Knee pain since: Nov 2022", or a date): weeks before this visit
    onset = parse_onset(w.df[src], mapping.date_formats)
    since = ((w.df["_date"] - onset).dt.days / 7.0).round()
    w.report(
        symptom.isna() & onset.notna() & (since < 0), src, "symptom onset is after the visit; fix the date", show=False
    )
    symptom = symptom.fillna(since.where(since >= 0))
    w.report(
        symptom.isna() & onset.isna() & ~missing(src),
        src,
        "symptom duration is not a number with an optional unit (e.g. '12 weeks', '6 months') nor an onset "
        "month or date (e.g. 'Nov 2022', '2022-11', or a date)",
        show=True,
    )
    return {"minutes": minutes, "sitting_hours": sitting, "symptom_weeks": symptom}


def _measurements(w: _Work, mapping: Mapping) -> pd.DataFrame:
    """Long measurements: row position ``_i``, measure, timing, value (float); blanks and markers left out."""
    parts = []
    for src, (measure, timing) in mapping.measurements.items():
        v = parse_number(w.df[src])
        miss = w.df[src].map(norm_text).isin(mapping.missing_values)
        w.report(
            v.isna() & ~miss,
            src,
            f"{measure} value is not a number; fix it or leave it blank (or add the marker to missing_values)",
            show=True,
        )
        parts.append(
            pd.DataFrame(
                {"_i": w.df.index[v.notna()], "measure": measure, "timing": timing, "value": v[v.notna()].to_numpy()}
            )
        )
    return pd.concat(parts, ignore_index=True)


def _clients(
    w: _Work, mapping: Mapping, mapped: dict[str, pd.Series], blank_fill: dict[str, str], numbers: dict[str, pd.Series]
) -> pd.DataFrame:
    """One row per client: the first non-blank value of each field by real visit date; age band from real dates.

    Index client_id; columns sex, activity, knee, symptom_weeks, sitting_hours, age_band.
    """
    cols = mapping.columns
    df = w.df
    order = df.sort_values(["client_id", "_date", "_file", "_row"], kind="stable").index
    grouped = pd.DataFrame(
        {
            "client_id": df.loc[order, "client_id"],
            **{f: mapped[f].loc[order] for f in ("sex", "activity", "knee")},
            **{f: numbers[f].loc[order] for f in ("symptom_weeks", "sitting_hours")},
            "_date": df.loc[order, "_date"],
            "_file": df.loc[order, "_file"],
            "_row": df.loc[order, "_row"],
        }
    ).groupby("client_id", sort=True)
    clients = grouped.first()  # first non-null per column, in real-date order
    w.log["clients_with_conflicting_values_first_visit_used"] = {
        c: int((grouped[c].nunique() > 1).sum()) for c in ("sex", "activity", "knee")
    }
    for fld, fill in blank_fill.items():
        w.log["blank_values_filled"][cols[fld]] = int(clients[fld].isna().sum())
        clients[fld] = clients[fld].fillna(fill)
    # The age band is computed from the REAL dates, before any shift.
    age_src = cols.get("date_of_birth") or cols["age"]
    by_client = df.loc[order, "client_id"]
    if "date_of_birth" in cols:
        dob = parse_dates(df.loc[order, age_src], mapping.date_formats).groupby(by_client).first()
        d0 = clients["_date"]
        age = (d0.dt.year - dob.dt.year) - ((d0.dt.month * 100 + d0.dt.day) < (dob.dt.month * 100 + dob.dt.day))
        age = age.astype("float64")
    else:
        age = parse_number(df.loc[order, age_src]).groupby(by_client).first()
    clients["age_band"] = age.map(_age_band)
    for cid, c in clients.iterrows():
        where = (str(c["_file"]), int(c["_row"]))
        if c["age_band"] is None:
            under = not pd.isna(age.get(cid))
            w.problems.append(
                Problem(
                    *where,
                    age_src,
                    "client is under 18, outside the contract's age bands; remove them from the export"
                    if under
                    else "age is unknown (date of birth / age blank or unreadable); fill it in",
                )
            )
        for fld in ("sex", "activity", "knee", "symptom_weeks"):
            if pd.isna(c[fld]):
                w.problems.append(
                    Problem(
                        *where,
                        cols[fld],
                        f"no {fld} on any visit of this patient; fill it in or map blanks in values (e.g. '': ...)",
                    )
                )
    return clients


def _shifted_dates(w: _Work, key: bytes, max_days: int, today: dt.date) -> tuple[pd.Series, int, pd.Series]:
    """Visit dates moved by each client's keyed offset, kept within 2000-01-01..today; (dates, n adjusted)."""
    span = w.df.groupby("client_id")["_date"].agg(["min", "max"])
    identities = w.df.groupby("client_id")["_identity"].first()
    offsets = {}
    adjusted = 0
    for cid, ident in identities.items():
        raw = off = date_offset(key, ident, max_days)
        lo = (pd.Timestamp(contract.EARLIEST_DATE) - span.at[cid, "min"]).days
        hi = (pd.Timestamp(today) - span.at[cid, "max"]).days
        if off > hi:
            off = -off  # would land in the future: shift backwards instead
        offsets[cid] = int(min(max(off, lo), hi))
        adjusted += offsets[cid] != raw
    return (
        w.df["_date"] + pd.to_timedelta(w.df["client_id"].map(offsets), unit="D"),
        int(adjusted),
        pd.Series(offsets, dtype="int64"),
    )


def _session_ids(w: _Work, mapping: Mapping, key: bytes, n_chars: int) -> pd.Series:
    """Keyed session pseudonyms from patient identity, real visit date and any session_key columns."""
    skey = w.df["_identity"] + "\x1f" + w.df["_date"].dt.strftime("%Y-%m-%d")
    for c in mapping.session_key:
        skey = skey + "\x1f" + w.df[c].map(norm_text).astype("string")
    # Two different visits of one patient on one day (no session_key): numbered in export order.
    skey = skey + "\x1f" + w.df.groupby(skey, sort=False).cumcount().astype(str)
    return pd.Series([pseudonym(key, "session", s, "S", n_chars) for s in skey], index=w.df.index)


def deidentify_frames(
    exports: Sequence[tuple[str, pd.DataFrame]],
    mapping: Mapping,
    key: bytes,
    *,
    pseudonym_chars: int = 12,
    therapist_chars: int = 6,
    shift_max_days: int = 180,
    today: dt.date | None = None,
    coarsen: str | None = None,
) -> Deidentified:
    """De-identify practice exports into the three contract tables (pure; no I/O).

    ``coarsen="week"`` moves every (shifted) visit date to the Monday of its week: the pattern of gaps
    between visits, which is unique for most clients and links them to an appointment book, is then
    only known to the week. The cost: follow-up is measured in whole weeks, and visits within one week
    lose their order (they are numbered by session pseudonym), so within-week changes cannot be seen.

    Parameters
    ----------
    exports
        (file label, frame) pairs as read by :func:`read_export`: string cells,
        index = spreadsheet line.
    mapping
        The parsed mapping.
    key
        The secret key (bytes).
    pseudonym_chars, therapist_chars, shift_max_days
        From params ``privacy``.
    today
        Latest allowed date (default: the real today).

    Returns
    -------
    Deidentified
        ``tables``: ``clients`` (client_id, clinic_id, sex, age_band, symptom_weeks,
        sitting_hours, activity, knee), ``sessions`` (session_id, client_id,
        session_date, therapist_id, focus, techniques, minutes) and ``measurements``
        (session_id, measure, timing, value), all strings in contract column order;
        ``log`` (counts only); ``problems`` (every problem at once; ``tables`` is
        empty unless there are none).
    """
    today = today or dt.date.today()
    w = _combine(exports, mapping)
    if w.df.empty:
        return Deidentified({}, w.log, w.problems)
    w.df["_identity"] = _identity(w, mapping)
    w.df["_date"] = _visit_dates(w, mapping, today)
    mapped, blank_fill = _categories(w, mapping)
    techniques = _techniques(w, mapping)
    numbers = _numbers(w, mapping)
    measurements = _measurements(w, mapping)
    if w.problems:
        return Deidentified({}, w.log, w.problems)

    w.df["client_id"] = [pseudonym(key, "client", s, "C", pseudonym_chars) for s in w.df["_identity"]]
    clients = _clients(w, mapping, mapped, blank_fill, numbers)
    if w.problems:
        return Deidentified({}, w.log, w.problems)
    shifted, n_adjusted, offsets = _shifted_dates(w, key, shift_max_days, today)
    if coarsen == "week":
        shifted = shifted - pd.to_timedelta(shifted.dt.day_of_week, unit="D")
    elif coarsen is not None:
        raise InputError(f"--coarsen-dates {coarsen!r}: only 'week' is offered")
    session_id = _session_ids(w, mapping, key, pseudonym_chars)
    therapist = pd.Series(pd.NA, index=w.df.index, dtype="string")
    if "therapist" in mapping.columns:
        therapist = pd.Series(
            [
                pseudonym(key, "therapist", n, "T", therapist_chars) if n else pd.NA
                for n in w.df[mapping.columns["therapist"]].map(norm_text)
            ],
            index=w.df.index,
            dtype="string",
        )

    clients_out = pd.DataFrame(
        {
            "client_id": clients.index,
            "clinic_id": mapping.clinic_id,
            "sex": clients["sex"].to_numpy(),
            "age_band": clients["age_band"].to_numpy(),
            "symptom_weeks": [str(int(v)) for v in clients["symptom_weeks"]],
            "sitting_hours": ["" if pd.isna(v) else _num_text(v) for v in clients["sitting_hours"]],
            "activity": clients["activity"].to_numpy(),
            "knee": clients["knee"].to_numpy(),
        }
    )
    sessions = pd.DataFrame(
        {
            "session_id": session_id,
            "client_id": w.df["client_id"],
            "session_date": shifted.dt.strftime("%Y-%m-%d"),
            "therapist_id": therapist,
            "focus": mapped["focus"],
            "techniques": techniques,
            "minutes": numbers["minutes"].astype("int64").astype(str),
        }
    ).sort_values(["client_id", "session_date", "session_id"], kind="stable")
    measurements = measurements.assign(
        session_id=session_id.reindex(measurements["_i"]).to_numpy(),
        value=[_num_text(v) for v in measurements["value"]],
    )[["session_id", "measure", "timing", "value"]].sort_values(["session_id", "measure", "timing"], kind="stable")
    tables = {
        "clients": clients_out.reset_index(drop=True).astype("string"),
        "sessions": sessions.reset_index(drop=True).astype("string"),
        "measurements": measurements.reset_index(drop=True).astype("string"),
    }
    w.log.update(
        {
            "rows_out": {k: int(len(v)) for k, v in tables.items()},
            "clients": int(len(clients_out)),
            "sessions": int(len(sessions)),
            "measurements": int(len(measurements)),
            "therapists": int(therapist.dropna().nunique()),
            "date_shift_days_range": [-shift_max_days, shift_max_days],
            "dates_coarsened_to": coarsen or "day",
            "clients_shift_adjusted_to_stay_in_range": n_adjusted,
            # the real period at month level (the tables' dates are shifted): the findings bundle reports this
            "true_period": {
                "first_month": w.df["_date"].min().strftime("%Y-%m"),
                "last_month": w.df["_date"].max().strftime("%Y-%m"),
            },
            "key_fingerprint": key_fingerprint(key),
            "pseudonym_chars": pseudonym_chars,
        }
    )
    from analysis.crosswalk import crosswalk_frame

    return Deidentified(tables, w.log, [], crosswalk=crosswalk_frame(w.df, list(mapping.identity), offsets))


def _num_text(v: float) -> str:
    return np.format_float_positional(float(v), trim="-")


# ----------------------------------------------------------------------------- the edge


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


MAX_MAPPING_BYTES = 1_000_000
#: an unmapped value is echoed in a console message only when at least this many patients have it
ECHO_MIN_PATIENTS = 5


def check_against_contract(tables: dict[str, pd.DataFrame], registry: contract.Registry) -> list[Problem]:
    """The de-identified tables checked by the same contract as ``outcomes validate``, before anything is written.

    Ranges catch a phone or NHS number mapped into a numeric field (7,467,706,428 symptom weeks). The
    values are never shown: a value that breaks the contract here may well be an identifier. Rows are
    those of the de-identified table (header = row 1).
    """
    from dataclasses import replace

    from analysis.load import Inputs
    from analysis.validate import validate_tables

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


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without anchors and aliases: a mapping file never needs them, and nested aliases can expand a
    few hundred bytes into gigabytes (a "billion laughs" file)."""

    def compose_node(self, parent, index):  # noqa: ANN001 - PyYAML's signature
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.YAMLError(
                f"line {event.start_mark.line + 1}: YAML aliases (*name) are not allowed in a "
                "mapping file; write the values out"
            )
        return super().compose_node(parent, index)


def load_mapping_yaml(path: Path) -> Any:
    """The mapping file's YAML, bounded in size and without aliases (raises InputError / YAMLError)."""
    size = path.stat().st_size
    if size > MAX_MAPPING_BYTES:
        raise InputError(f"{path}: {size:,} bytes; a mapping file is a few kilobytes (limit {MAX_MAPPING_BYTES:,})")
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_NoAliasLoader)  # noqa: S506 - safe loader subclass


def run_deidentify(
    export_paths: Sequence[Path],
    mapping_path: Path,
    out_dir: Path,
    key_file: Path | None = None,
    params: dict | None = None,
    crosswalk_dir: Path | None = None,
    coarsen: str | None = None,
) -> str:
    """Read the export(s) and mapping, de-identify, write the three tables and the log atomically."""
    from analysis import store
    from analysis.params import load_params, section
    from analysis.paths import resolve
    from analysis.privacy import k_anonymity, scan_values

    params = params or load_params()
    priv = section(params, "privacy")
    if not export_paths:
        raise InputError("no export given; pass the practice-software export file(s)")
    out = resolve(out_dir).resolve()
    demo = resolve("data/raw/demo").resolve()
    if _inside(out, demo):
        raise InputError(f"{out}: is the demo data folder; choose another --out, e.g. data/raw/clinic")
    from analysis.paths import project_root

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
        from analysis.crosswalk import check_private_dir

        check_private_dir(crosswalk_dir)  # refuse before any work is done
    key = load_key(key_file)
    mapping_path = resolve(mapping_path)
    try:
        raw = load_mapping_yaml(mapping_path)
    except FileNotFoundError:
        raise InputError(f"{mapping_path}: mapping file not found (see data/examples/mapping.yaml)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{mapping_path}: cannot read the mapping ({exc.__class__.__name__})") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{mapping_path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    registry = contract.load_registry(resolve(section(params, "data").get("registry", "config/measures.yaml")))
    mapping = parse_mapping(raw, mapping_path.name, registry)
    frames = []
    read_info = []
    for p in exports:
        label, frame, info = read_export(p, mapping)
        frames.append((label, frame))
        read_info.append(info)
    result = deidentify_frames(
        frames,
        mapping,
        key,
        pseudonym_chars=int(priv.get("pseudonym_chars", 12)),
        therapist_chars=int(priv.get("therapist_pseudonym_chars", 6)),
        shift_max_days=int(priv.get("date_shift_max_days", 180)),
        coarsen=coarsen,
    )
    if result.problems:
        raise ValidationFailed(result.problems)
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
    k_threshold = int(priv.get("k_threshold", 5))
    kanon = k_anonymity(result.tables["clients"], threshold=k_threshold)
    result.log["k_anonymity"] = dict(
        kanon, quasi_identifiers=["clinic_id", "sex", "age_band", "knee"], threshold=k_threshold
    )
    for name, table in result.tables.items():
        store.write_csv(out / f"{name}.csv", table)
    store.write_json(out / "deidentify_log.json", result.log)
    walk = ""
    if crosswalk_dir is not None and result.crosswalk is not None:
        from analysis.crosswalk import write_crosswalk

        walk = f" Crosswalk (key holder only): {write_crosswalk(crosswalk_dir, result.crosswalk)}."
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
        f"Next: outcomes validate --input {out}.{walk}"
    )
