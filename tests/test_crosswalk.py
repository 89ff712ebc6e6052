"""The key holder's way back from a pseudonym to the practice's record: written only outside the project
and any git work tree, and found by `outcomes lookup` in both directions."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from analysis.cli import main
from analysis.crosswalk import check_private_dir
from analysis.errors import InputError
from conftest import deidentify_argv, deidentify_example, write_key

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "data" / "examples"
KEY = bytes(range(1, 33))


@pytest.fixture(scope="module")
def deidentified(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("walk")
    private = tmp / "private"
    out, msg = deidentify_example(tmp, KEY, crosswalk_dir=private)
    return out, private, msg


def test_crosswalk_maps_every_pseudonym_to_the_practice_record(deidentified):
    out, private, msg = deidentified
    walk = pd.read_csv(private / "crosswalk.csv", dtype=str)
    clients = pd.read_csv(out / "clients.csv", dtype=str)
    assert sorted(walk["client_id"]) == sorted(clients["client_id"])
    assert {"first_visit_real", "last_visit_real", "date_shift_days"} <= set(walk.columns)
    assert (private / "crosswalk.csv").stat().st_mode & 0o077 == 0  # owner only
    assert "Crosswalk (key holder only)" in msg
    # nothing of it reaches the de-identified folder
    assert sorted(p.name for p in out.iterdir()) == [
        "calendar.csv",  # real weeks since each last visit (no identity; see analysis.deidentify.calendar)
        "clients.csv",
        "deidentify_log.json",
        "measurements.csv",
        "sessions.csv",
    ]
    # the shift turns a shifted date back into the real one
    sessions = pd.read_csv(out / "sessions.csv", dtype=str)
    row = walk.iloc[0]
    first_shifted = pd.to_datetime(sessions.loc[sessions["client_id"] == row["client_id"], "session_date"]).min()
    real = first_shifted - pd.Timedelta(days=int(row["date_shift_days"]))
    assert real.strftime("%Y-%m-%d") == row["first_visit_real"]


def test_lookup_both_ways(deidentified, capsys):
    _, private, _ = deidentified
    walk = pd.read_csv(private / "crosswalk.csv", dtype=str)
    pseudonym = walk["client_id"].iloc[3]
    identity_cols = [
        c for c in walk.columns if c not in ("client_id", "first_visit_real", "last_visit_real", "date_shift_days")
    ]
    record = walk[identity_cols[0]].iloc[3]
    assert main(["lookup", pseudonym, "--crosswalk", str(private)]) == 0
    assert record in capsys.readouterr().out
    assert main(["lookup", record, "--crosswalk", str(private)]) == 0
    assert pseudonym in capsys.readouterr().out
    assert main(["lookup", "CNOTAPSEUDONYM", "--crosswalk", str(private)]) != 0
    assert "not in" in capsys.readouterr().err


def test_crosswalk_refused_inside_the_project_or_a_git_tree(tmp_path):
    with pytest.raises(InputError, match="inside the project"):
        check_private_dir(ROOT / "reports" / "private", root=ROOT)
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    with pytest.raises(InputError, match="git work tree"):
        check_private_dir(repo / "crosswalk", root=ROOT)
    assert check_private_dir(tmp_path / "ok", root=ROOT) == (tmp_path / "ok").resolve()


def test_deidentify_refuses_a_crosswalk_in_the_project_before_writing(tmp_path):
    key = tmp_path / "key"
    write_key(key, KEY)
    code = main(deidentify_argv(tmp_path / "out", "--key-file", str(key), "--crosswalk", str(ROOT / "reports" / "cw")))
    assert code != 0 and not (tmp_path / "out").exists() and not (ROOT / "reports" / "cw").exists()


def test_crosswalk_folder_0700_and_files_0600_from_the_first_byte(tmp_path, monkeypatch):
    import os
    import stat

    from analysis.crosswalk import write_crosswalk
    from analysis.deidentify.state import write_state

    seen = []
    real_replace = os.replace

    def inspect(src, dst):  # the temp file just before it takes the final name
        seen.append(
            (Path(dst).name, stat.S_IMODE(os.stat(src).st_mode), stat.S_IMODE(os.stat(Path(src).parent).st_mode))
        )
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", inspect)
    private = tmp_path / "clinic-private" / "walk"
    frame = pd.DataFrame({"client_id": ["C1"], "patient_no": ["17"]})
    path = write_crosswalk(private, frame, root=ROOT)
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(private.parent).st_mode) == 0o700  # a missing parent is private too
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    write_state(private, {"key_fingerprint": "X"})
    assert stat.S_IMODE(os.stat(private / "deidentify_state.json").st_mode) == 0o600
    assert seen == [("crosswalk.csv", 0o600, 0o700), ("deidentify_state.json", 0o600, 0o700)]
