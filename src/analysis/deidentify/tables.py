"""The pure core: practice exports -> the three contract tables, the log and the crosswalk (no I/O)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping as MappingABC
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from analysis import contract
from analysis.crosswalk import crosswalk_frame
from analysis.deidentify.calendar import calendar_frame
from analysis.deidentify.conflicts import resolve
from analysis.deidentify.fields import (
    _categories,
    _combine,
    _identity,
    _measurements,
    _numbers,
    _techniques,
    _visit_dates,
)
from analysis.deidentify.log import Work
from analysis.deidentify.mapping import Mapping, norm_text
from analysis.deidentify.pseudonyms import date_offset, key_fingerprint, pseudonym
from analysis.deidentify.values import age_band, num_text, parse_dates, parse_number
from analysis.errors import InputError, Problem

#: client-level fields: one value per client, however many visits repeat it
CLIENT_LEVEL = ("sex", "activity", "knee", "symptom_weeks", "sitting_hours")


def _show(value: object) -> str:
    return num_text(float(value)) if isinstance(value, (int, float)) else str(value)


@dataclass
class Deidentified:
    """Result of :func:`deidentify_frames`: the three tables, the log and any problems."""

    tables: dict[str, pd.DataFrame]
    log: dict[str, Any]
    problems: list[Problem]
    crosswalk: pd.DataFrame | None = None  # identifying: written only by --crosswalk, outside the project
    shifts: pd.Series | None = None  # client_id -> date shift in days (kept in the private state)
    calendar: pd.DataFrame | None = None  # real weeks since each client's last visit (private sidecar)


def _clients(
    w: Work,
    mapping: Mapping,
    mapped: dict[str, pd.Series],
    blank_fill: dict[str, str],
    numbers: dict[str, pd.Series],
    conflict_rule: str = "latest",
) -> pd.DataFrame:
    """One row per client: each field's value chosen by ``conflict_rule`` (:mod:`.conflicts`).

    Index client_id; columns age_band, sex, activity, knee, symptom_weeks, sitting_hours, _date (real first
    visit), _file, _row (where the client's first visit is). Every conflict is logged (``conflicts``) and,
    under ``refuse``, reported as a problem.
    """
    cols = mapping.columns
    df = w.df
    order = df.sort_values(["client_id", "_date", "_file", "_row"], kind="stable").index
    first_visit = df.groupby("client_id")["_date"].transform("min")
    # an onset ("Nov 2022") means the weeks before the client's first visit, on whichever visit it was typed
    since_first = ((first_visit - numbers["symptom_onset"]).dt.days / 7.0).round().clip(lower=0)
    # The age band at the REAL first visit (before any shift), from each visit's date of birth or age.
    age_src = cols.get("date_of_birth") or cols["age"]
    if "date_of_birth" in cols:
        dob = parse_dates(df[age_src], mapping.date_formats)
        d0 = first_visit
        before = (d0.dt.month * 100 + d0.dt.day) < (dob.dt.month * 100 + dob.dt.day)
        age = ((d0.dt.year - dob.dt.year) - before).astype("float64")
    else:
        # an age grows between visits: the first visit's is the client's (no conflict is made of birthdays)
        by_date = df.sort_values("_date", kind="stable")
        age = parse_number(by_date[age_src]).groupby(by_date["client_id"]).transform("first").reindex(df.index)
    known_age = age.notna().groupby(df["client_id"]).any()
    rows = pd.DataFrame(
        {
            "client_id": df["client_id"],
            "age_band": age.map(age_band),
            **{f: mapped[f] for f in ("sex", "activity", "knee")},
            "symptom_weeks": numbers["symptom_weeks"].fillna(since_first),
            "sitting_hours": numbers["sitting_hours"],
            "_file": df["_file"],
            "_row": df["_row"],
        }
    ).loc[order]
    fields = {"age_band": age_src} | {f: cols[f] for f in CLIENT_LEVEL if f in cols}
    chosen, conflicts = resolve(rows, fields, conflict_rule, show=_show)
    for f in CLIENT_LEVEL:
        if f not in chosen:
            chosen[f] = pd.NA
    firsts = rows.groupby("client_id", sort=True)[["_file", "_row"]].first()
    clients = chosen.join(firsts).assign(_date=df.groupby("client_id")["_date"].min())
    w.log["conflicts"] = {
        "rule": conflict_rule,
        "n": len(conflicts),
        "clients": len({c.client_id for c in conflicts}),
        "by_field": {f: sum(c.field == f for c in conflicts) for f in fields},
        "list": [c.as_log(conflict_rule) for c in conflicts],
    }
    if conflict_rule == "refuse":
        for k in conflicts:
            w.problems.append(
                Problem(
                    k.file,
                    k.row,
                    k.column,
                    f"{k.field} differs across this client's visits (values {', '.join(k.values)}; first at row "
                    f"{k.first_row}) and privacy.conflict_rule is refuse: correct the export, or set "
                    "privacy.conflict_rule to latest or most_frequent in params.local.yaml",
                )
            )
    for fld, fill in blank_fill.items():
        w.log["blank_values_filled"][cols[fld]] = int(clients[fld].isna().sum())
        clients[fld] = clients[fld].fillna(fill)
    for cid, c in clients.iterrows():
        where = (str(c["_file"]), int(c["_row"]))
        if pd.isna(c["age_band"]):
            under = bool(known_age.get(cid, False))
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


def _nonzero_shift(off: int, lo: int, hi: int) -> int:
    """The keyed shift ``off`` if it keeps every date in lo..hi days, else its mirror, else the nearest non-zero."""
    for cand in (off, -off):
        if lo <= cand <= hi:
            return cand
    near = min(max(off, lo), hi)
    if near == 0:  # only when the client's visits span 2000-01-01..today: no other room
        near = 1 if hi >= 1 else -1 if lo <= -1 else 0
    return near


def _shifted_dates(
    w: Work, key: bytes, max_days: int, today: dt.date, previous: dict[str, int]
) -> tuple[pd.Series, int, pd.Series]:
    """Visit dates moved by each client's shift, kept within 2000-01-01..today; (dates, n adjusted, shifts).

    A client seen by a previous run keeps that run's shift (``previous``) while it still fits, so visits
    already seen keep their shifted dates; a new client gets the keyed shift, mirrored if it would land
    after today. No shift is ever 0.
    """
    span = w.df.groupby("client_id")["_date"].agg(["min", "max"])
    identities = w.df.groupby("client_id")["_identity"].first()
    first_visit, last_visit = span["min"].to_dict(), span["max"].to_dict()
    offsets = {}
    adjusted = 0
    for cid, ident in identities.items():
        raw = date_offset(key, ident, max_days)
        lo = (pd.Timestamp(contract.EARLIEST_DATE) - first_visit[cid]).days
        hi = (pd.Timestamp(today) - last_visit[cid]).days
        kept = previous.get(str(cid))
        offsets[cid] = kept if kept is not None and lo <= kept <= hi else _nonzero_shift(raw, lo, hi)
        adjusted += offsets[cid] != raw
    return (
        w.df["_date"] + pd.to_timedelta(w.df["client_id"].map(offsets), unit="D"),
        int(adjusted),
        pd.Series(offsets, dtype="int64"),
    )


def _session_ids(w: Work, mapping: Mapping, key: bytes, n_chars: int) -> pd.Series:
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
    conflict_rule: str = "latest",
    previous_shifts: MappingABC[str, int] | None = None,
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
    previous_shifts
        client_id -> date shift given by the previous run (:mod:`.state`): kept while it fits.
    conflict_rule
        params ``privacy.conflict_rule``: ``latest``, ``most_frequent`` or ``refuse`` (see :mod:`.conflicts`).

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
    clients = _clients(w, mapping, mapped, blank_fill, numbers, conflict_rule)
    if w.problems:
        return Deidentified({}, w.log, w.problems)
    shifted, n_adjusted, offsets = _shifted_dates(w, key, shift_max_days, today, dict(previous_shifts or {}))
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
            "sitting_hours": ["" if pd.isna(v) else num_text(v) for v in clients["sitting_hours"]],
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
        value=[num_text(v) for v in measurements["value"]],
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
            "date_shift_never_zero": bool((offsets != 0).all()),
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

    crosswalk = crosswalk_frame(w.df, list(mapping.identity), offsets)
    calendar = calendar_frame(w.df["client_id"], w.df["_date"])
    return Deidentified(tables, w.log, [], crosswalk=crosswalk, shifts=offsets, calendar=calendar)
