"""Successive exports of one clinic: same pseudonyms and shifted dates, what is new, never a zero shift."""

from __future__ import annotations

import datetime as dt
import json
import stat
from pathlib import Path

import pandas as pd
import pytest
import yaml

from analysis import contract, store
from analysis.deidentify import date_offset, deidentify_frames, parse_mapping, run_deidentify
from analysis.deidentify.state import FILENAME, compare
from analysis.errors import InputError
from analysis.example_export import make_example_export
from analysis.params import load_params
from conftest import write_key

ROOT = Path(__file__).resolve().parents[1]
MAPPING = ROOT / "data" / "examples" / "mapping.yaml"
KEY = bytes(range(32))
OTHER_KEY = bytes(range(100, 132))


def test_date_shift_is_never_zero_and_covers_both_signs():
    shifts = [date_offset(KEY, f"patient {i}", 30) for i in range(3000)]
    assert 0 not in shifts
    assert min(shifts) == -30 and max(shifts) == 30 and len(set(shifts)) == 60
    assert {date_offset(KEY, f"p{i}", 1) for i in range(200)} == {-1, 1}
    with pytest.raises(ValueError, match="at least 1"):
        date_offset(KEY, "p", 0)


def _exports(tmp_path: Path) -> tuple[Path, Path, pd.DataFrame]:
    """Export 1: visits before 2025; export 2: everything (the first's patients, new ones, new visits)."""
    full = make_example_export(5, 12)
    day = pd.to_datetime(full["Visit Date"].str.strip().str.replace(".", "/", regex=False), format="%d/%m/%Y")
    cut = day.sort_values().iloc[len(day) // 2]
    (tmp_path / "in").mkdir()
    one, two = tmp_path / "in" / "export1.csv", tmp_path / "in" / "export2.csv"
    store.write_csv(one, full[day < cut])
    store.write_csv(two, full)
    return one, two, full


def _key(tmp_path: Path, key: bytes, name: str = "key") -> Path:
    path = tmp_path / name
    write_key(path, key)
    return path


def test_two_overlapping_exports_are_one_clinic(tmp_path):
    one, two, _full = _exports(tmp_path)
    private = tmp_path / "private"
    key = _key(tmp_path, KEY)
    params = load_params(ROOT / "params.yaml")
    run_deidentify([one], MAPPING, tmp_path / "o1", key_file=key, params=params, crosswalk_dir=private)
    msg = run_deidentify([two], MAPPING, tmp_path / "o2", key_file=key, params=params, crosswalk_dir=private)
    s1 = pd.read_csv(tmp_path / "o1" / "sessions.csv", dtype=str)
    s2 = pd.read_csv(tmp_path / "o2" / "sessions.csv", dtype=str)
    c1 = pd.read_csv(tmp_path / "o1" / "clients.csv", dtype=str)
    c2 = pd.read_csv(tmp_path / "o2" / "clients.csv", dtype=str)
    # every visit already seen keeps its session id, client id and shifted date
    both = s1.merge(s2, on="session_id", suffixes=("_1", "_2"))
    assert len(both) == len(s1)
    assert (both["client_id_1"] == both["client_id_2"]).all()
    assert (both["session_date_1"] == both["session_date_2"]).all()
    assert set(c1["client_id"]) < set(c2["client_id"])
    since = json.loads((tmp_path / "o2" / "deidentify_log.json").read_text())["since_previous"]
    assert since["first_run"] is False
    assert since["new_clients"] == len(c2) - len(c1) > 0
    assert since["new_client_ids"] == sorted(set(c2["client_id"]) - set(c1["client_id"]))
    assert since["new_visits"] == len(s2) - len(s1) > 0
    assert since["visits_with_changed_date"] == 0 and since["date_shift_changed"] == []
    assert f"{since['new_clients']} new client(s), {since['new_visits']} new visit(s)" in msg
    # the private folder: owner-only, and the state names no one and holds no real date
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    state_file = private / FILENAME
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    text = state_file.read_text()
    real = pd.read_csv(two, dtype=str, keep_default_na=False)
    for col in ("Patient Name", "Patient No", "Email", "Visit Date", "Date of Birth"):
        assert not any(v.strip() and v.strip() in text for v in real[col]), col
    # the first export again: the clients only in the second are "not in this export", yet stay in the
    # crosswalk (a pseudonym in the second run's tables can still be looked up), and nothing moved
    run_deidentify([one], MAPPING, tmp_path / "o1b", key_file=key, params=params, crosswalk_dir=private)
    again = json.loads((tmp_path / "o1b" / "deidentify_log.json").read_text())["since_previous"]
    assert again["clients_not_in_this_export"] == since["new_clients"] and again["new_visits"] == 0
    assert again["visits_with_changed_date"] == 0 and again["changed_values"] == []
    walk = pd.read_csv(private / "crosswalk.csv", dtype=str)
    assert set(walk["client_id"]) == set(c2["client_id"])
    assert stat.S_IMODE((private / "crosswalk.csv").stat().st_mode) == 0o600
    # another key cannot continue this series
    with pytest.raises(InputError, match="another key"):
        run_deidentify(
            [two],
            MAPPING,
            tmp_path / "o3",
            key_file=_key(tmp_path, OTHER_KEY, "k2"),
            params=params,
            crosswalk_dir=private,
        )


def _frames(rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    return [("e.csv", rows.set_axis(pd.RangeIndex(2, len(rows) + 2, name="row")))]


def test_a_previous_shift_is_kept_while_it_fits_and_replaced_when_it_would_pass_today():
    registry = contract.load_registry(ROOT / "config" / "measures.yaml")
    mapping = parse_mapping(yaml.safe_load(MAPPING.read_text()), "mapping.yaml", registry)
    rows = make_example_export(3, 1)
    today = dt.date(2026, 1, 1)
    first = deidentify_frames(_frames(rows), mapping, KEY, today=today)
    cid = first.tables["clients"]["client_id"].iloc[0]
    kept = deidentify_frames(_frames(rows), mapping, KEY, today=today, previous_shifts={cid: 7})
    assert kept.shifts is not None and int(kept.shifts[cid]) == 7
    # a new visit yesterday: +7 would put it after today, so the shift changes and the log says so
    late = rows.iloc[[-1]].assign(**{"Visit Date": (today - dt.timedelta(days=1)).strftime("%d/%m/%Y")})
    more = deidentify_frames(_frames(pd.concat([rows, late])), mapping, KEY, today=today, previous_shifts={cid: 7})
    assert more.shifts is not None and int(more.shifts[cid]) != 7 and int(more.shifts[cid]) != 0
    previous = {"clients": {cid: {"date_shift_days": 7, "values": {}}}, "sessions": {}}
    assert compare(previous, more.tables, more.shifts)["date_shift_changed"] == [cid]
