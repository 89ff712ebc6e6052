"""Each contract field from its mapped source columns (pure): identity, visit dates, categories,
techniques, numbers and measurements, every problem reported on the :class:`~.log.Work` at once.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis import contract
from analysis.deidentify.log import Work
from analysis.deidentify.mapping import CATEGORY_FIELDS, Mapping, norm_text
from analysis.deidentify.values import clean_text, parse_dates, parse_duration_weeks, parse_number, parse_onset
from analysis.errors import Problem


def _combine(exports: Sequence[tuple[str, pd.DataFrame]], mapping: Mapping) -> Work:
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
            part = frame.loc[:, mapping.read_columns].apply(clean_text)
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
    return Work(df.loc[~dup].reset_index(drop=True), problems, log)


def _identity(w: Work, mapping: Mapping) -> pd.Series:
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
    joined: pd.Series = parts[0].str.cat(parts[1:], sep="\x1f") if len(parts) > 1 else parts[0]
    return joined


def _visit_dates(w: Work, mapping: Mapping, today: dt.date) -> pd.Series:
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


def _categories(w: Work, mapping: Mapping) -> tuple[dict[str, pd.Series], dict[str, str]]:
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


def _techniques(w: Work, mapping: Mapping) -> pd.Series:
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
        out.append(";".join(sorted(got, key=lambda t: order[t])) if got else pd.NA)
    for _item, where in sorted(unmapped.items()):
        # checked as exported (capitals intact) and only if shared by enough patients: free text in a
        # techniques column ("Olivia Whitfield ran 5k pain-free") is never echoed
        w.report_value([i for i, _ in where], src, rule, where[0][1])
    w.log["unmapped_values"][src] = n_unmapped
    return pd.Series(out, index=w.df.index, dtype="string")


def _numbers(w: Work, mapping: Mapping) -> dict[str, pd.Series]:
    """minutes, sitting_hours (NaN if not mapped/blank), symptom_weeks (a duration) or symptom_onset per row."""
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
    w.report(
        symptom.isna() & onset.isna() & ~missing(src),
        src,
        "symptom duration is not a number with an optional unit (e.g. '12 weeks', '6 months') nor an onset "
        "month or date (e.g. 'Nov 2022', '2022-11', or a date)",
        show=True,
    )
    # a duration is taken as typed; an onset becomes weeks before the client's first visit (in _clients)
    return {"minutes": minutes, "sitting_hours": sitting, "symptom_weeks": symptom, "symptom_onset": onset}


def _measurements(w: Work, mapping: Mapping) -> pd.DataFrame:
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
