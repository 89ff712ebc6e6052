"""Successive exports of one clinic: what the last run saw, kept beside the crosswalk, and what is new.

``outcomes deidentify ... --crosswalk DIR`` keeps ``DIR/deidentify_state.json`` (owner-only, in the
key holder's private folder, never in the project): the key's fingerprint, each client's date shift
and client-level values, and each visit's shifted date, all under pseudonyms (no names, no real
dates). The next run with the same key and folder

* gives every client already seen the same date shift (so visits already seen keep their shifted
  dates, even where the shift had to be mirrored or clamped to stay before today), and
* says in the log what is new: new clients, new visits, visits and clients no longer in the export,
  values that changed, and any date shift that had to change (a returning client's new visit would
  otherwise land after today).

:func:`build_state` and :func:`compare` are pure; :func:`read_state` and :func:`write_state` the edge.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import store
from analysis.errors import InputError

FILENAME = "deidentify_state.json"
VERSION = 1
_VALUES = ("age_band", "sex", "symptom_weeks", "sitting_hours", "activity", "knee")


def build_state(
    tables: dict[str, pd.DataFrame], shifts: pd.Series, fingerprint: str, previous: dict[str, Any] | None
) -> dict[str, Any]:
    """The state after this run: the previous state's clients and visits, updated with this run's.

    Clients and visits that are not in this export are kept, so a client who comes back in a later
    export gets the shift they had.
    """
    clients = dict((previous or {}).get("clients", {}))
    sessions = dict((previous or {}).get("sessions", {}))
    for row in tables["clients"].to_dict("records"):
        cid = str(row["client_id"])
        clients[cid] = {
            "date_shift_days": int(shifts[cid]),
            "values": {f: ("" if pd.isna(row[f]) else str(row[f])) for f in _VALUES},
        }
    for sid, date, cid in tables["sessions"][["session_id", "session_date", "client_id"]].itertuples(index=False):
        sessions[str(sid)] = {"client_id": str(cid), "session_date": str(date)}
    return {
        "version": VERSION,
        "key_fingerprint": fingerprint,
        "clients": dict(sorted(clients.items())),
        "sessions": dict(sorted(sessions.items())),
    }


def previous_shifts(previous: dict[str, Any] | None) -> dict[str, int]:
    """client_id -> the date shift the previous run gave it (empty without a previous state)."""
    return {cid: int(c["date_shift_days"]) for cid, c in (previous or {}).get("clients", {}).items()}


def compare(previous: dict[str, Any] | None, tables: dict[str, pd.DataFrame], shifts: pd.Series) -> dict[str, Any]:
    """What is new since the previous run (for the log): counts, pseudonyms and category values only.

    Returns
    -------
    dict
        ``first_run`` (bool), ``new_clients``/``new_client_ids``, ``clients_not_in_this_export``,
        ``new_visits``, ``visits_not_in_this_export``, ``visits_with_changed_date`` (0 unless a shift
        changed), ``changed_values`` (client_id, field, before, after) and ``date_shift_changed``
        (client ids whose shift had to change).
    """
    if not previous:
        return {"first_run": True, "new_clients": int(len(tables["clients"])), "new_visits": len(tables["sessions"])}
    old_clients: dict[str, Any] = previous.get("clients", {})
    old_sessions: dict[str, Any] = previous.get("sessions", {})
    now = tables["clients"].set_index("client_id")
    new_ids = sorted(set(now.index) - set(old_clients))
    changed = []
    for cid in sorted(set(now.index) & set(old_clients)):
        before = old_clients[cid].get("values", {})
        for f in _VALUES:
            value: Any = now.at[cid, f]
            after = "" if pd.isna(value) else str(value)
            if f in before and before[f] != after:
                changed.append({"client_id": cid, "field": f, "before": before[f], "after": after})
    sess = tables["sessions"].set_index("session_id")["session_date"]
    seen = [s for s in sess.index if s in old_sessions]
    moved = [s for s in seen if old_sessions[s]["session_date"] != sess[s]]
    shift_changed = sorted(
        c for c in set(now.index) & set(old_clients) if int(old_clients[c]["date_shift_days"]) != int(shifts[c])
    )
    return {
        "first_run": False,
        "new_clients": len(new_ids),
        "new_client_ids": new_ids,
        "clients_not_in_this_export": len(set(old_clients) - set(now.index)),
        "new_visits": int(len(sess) - len(seen)),
        "visits_not_in_this_export": len(set(old_sessions) - set(sess.index)),
        "visits_with_changed_date": len(moved),
        "changed_values": changed,
        "date_shift_changed": shift_changed,
    }


def merge_crosswalk(previous: pd.DataFrame | None, current: pd.DataFrame) -> pd.DataFrame:
    """The crosswalk of every client seen so far: this run's rows, plus earlier clients not in this export.

    A client who is not in this export keeps their row, so a pseudonym in an older table can still be
    looked up. Rows are sorted by client_id; all cells as text.
    """
    now = current.astype(str)
    if previous is None or previous.empty:
        return now.sort_values("client_id", kind="stable").reset_index(drop=True)
    earlier = previous[~previous["client_id"].isin(now["client_id"])].astype(str)
    merged = pd.concat([now, earlier], ignore_index=True).fillna("")
    return merged.sort_values("client_id", kind="stable").reset_index(drop=True)


def read_state(folder: Path | None, fingerprint: str) -> dict[str, Any] | None:
    """The previous run's state in the private folder, or None; refuses another key's state."""
    if folder is None:
        return None
    path = Path(folder).expanduser() / FILENAME
    if not path.is_file():
        return None
    try:
        state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot be read ({exc.__class__.__name__}); move it away to start afresh") from None
    if state.get("key_fingerprint") != fingerprint:
        raise InputError(
            f"{path}: was written with another key (fingerprint {state.get('key_fingerprint')}, this key "
            f"{fingerprint}); use the same key as before, or another --crosswalk folder for a new series"
        )
    return state


def write_state(folder: Path, state: dict[str, Any]) -> Path:
    """Write the state atomically, owner read/write only (0600 from the first byte), in an owner-only folder."""
    path = store.private_dir(folder) / FILENAME
    store.write_text(path, json.dumps(state, indent=1, sort_keys=True) + "\n", private=True)
    return path
