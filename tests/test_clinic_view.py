"""Calendar facts through de-identification, and the key holder's real-date view (``outcomes clinic-view``)."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pandas as pd
import pytest

from analysis.clinic_view import real_dates, references, run_clinic_view
from analysis.deidentify import norm_text, run_deidentify
from analysis.deidentify.calendar import calendar_frame, read_calendar
from analysis.errors import InputError
from analysis.params import load_params, with_updates
from conftest import write_key

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "data" / "examples"


def test_calendar_counts_whole_weeks_to_the_last_visit_of_the_export():
    ids = pd.Series(["A", "A", "B", "C"])
    dates = pd.to_datetime(pd.Series(["2025-01-01", "2025-03-01", "2025-02-20", "2025-02-14"]))
    frame = calendar_frame(ids, dates)
    assert frame.to_dict("list") == {"client_id": ["A", "B", "C"], "weeks_since_last_visit": [0, 1, 2]}


def test_real_dates_undo_each_clients_shift_and_references_join_the_identity():
    d = pd.DataFrame({"client_id": ["A", "A", "B"], "session_date": ["2025-01-10", "2025-01-17", "2024-12-01"]})
    real = real_dates(d, pd.Series({"A": 9, "B": -30}))
    assert real["session_date"].dt.strftime("%Y-%m-%d").tolist() == ["2025-01-01", "2025-01-08", "2024-12-31"]
    with pytest.raises(InputError, match="not in the crosswalk"):
        real_dates(d, pd.Series({"A": 9}))
    walk = pd.DataFrame(
        {
            "client_id": ["A"],
            "Patient No": ["P1"],
            "first_visit_real": ["x"],
            "last_visit_real": ["y"],
            "date_shift_days": ["9"],
        }
    )
    assert references(walk) == {"A": "P1"}


def test_clinic_view_is_refused_inside_a_repository(tmp_path):
    with pytest.raises(InputError, match="git work tree|inside the project"):
        run_clinic_view(load_params(ROOT / "params.yaml"), tmp_path, ROOT / "reports" / "real")
    assert not (ROOT / "reports" / "real").exists()


def _truly_active(export: Path, crosswalk: pd.DataFrame, weeks: float) -> set[str]:
    """Pseudonyms of the patients seen in the last ``weeks`` weeks of the export, from the export itself."""
    e = pd.read_csv(export, dtype=str, keep_default_na=False)

    def who(name: pd.Series, dob: pd.Series) -> pd.Series:
        return name.map(norm_text) + "|" + pd.to_datetime(dob, format="mixed", dayfirst=True).dt.strftime("%Y-%m-%d")

    visit = pd.to_datetime(e["Visit Date"], format="mixed", dayfirst=True)
    last = visit.groupby(who(e["Patient Name"], e["Date of Birth"])).max()
    seen = set(last[(visit.max() - last).dt.days < 7 * weeks].index)
    ids = dict(zip(who(crosswalk["Patient Name"], crosswalk["Date of Birth"]), crosswalk["client_id"], strict=True))
    return {ids[w] for w in seen}


def test_deidentify_pipeline_and_clinic_view_end_to_end(tmp_path, monkeypatch):
    """The shipped practice export: de-identify (shifted dates) -> validate -> join -> model -> report ->
    clinic-view. clients.csv marks exactly the truly active clients; the private view shows real dates."""
    from analysis.join import run_join
    from analysis.model.run import run_model
    from analysis.report.publish import run_report
    from analysis.validate import run_validate

    project, private = tmp_path / "project", tmp_path / "private"
    project.mkdir()
    shutil.copy(ROOT / "params.yaml", project / "params.yaml")
    shutil.copytree(ROOT / "config", project / "config")
    (project / "requirements.lock").write_text("fake-lock==1\n", encoding="utf-8")
    private.mkdir()
    write_key(private / "key", bytes(range(7, 39)))
    monkeypatch.setenv("OUTCOMES_ROOT", str(project))
    params = with_updates(load_params(project / "params.yaml"), {"data": {"input": "data/raw/example"}})
    export = EXAMPLES / "practice_export.csv"
    run_deidentify(
        [export], EXAMPLES / "mapping.yaml", project / "data/raw/example", private / "key", params, private / "cw"
    )
    sidecar = project / "data/raw/example/calendar.csv"
    assert stat.S_IMODE(sidecar.stat().st_mode) == 0o600 and read_calendar(sidecar.parent) is not None
    run_validate(params)
    run_join(params)
    run_model(params)
    run_report(params)

    walk = pd.read_csv(private / "cw/crosswalk.csv", dtype=str, keep_default_na=False)
    truth = _truly_active(export, walk, params.report.attention.active_weeks)
    shown = pd.read_csv(project / "reports/therapist/clients.csv")
    assert len(truth) == 6 and set(shown.loc[shown["active"], "pseudonym"]) == truth
    # on the shifted dates alone "active" would be wrong: the clients' last visits are on different calendars
    shifted_last = pd.to_datetime(shown.set_index("pseudonym")["last_visit"])
    assert set(shifted_last[(shifted_last.max() - shifted_last).dt.days < 28].index) != truth
    page = (project / "reports/therapist/index.html").read_text(encoding="utf-8")
    assert "Visit dates on this page are shifted" in page and "(real months)" in page
    assert page.count("<script>") == 1
    worklist = pd.read_csv(project / "reports/therapist/worklist.csv")
    assert worklist["on_worklist"].all() and set(worklist["pseudonym"]) <= set(shown["pseudonym"])

    msg = run_clinic_view(params, private / "cw", private / "view", sheets="active")
    view = private / "view"
    assert "progress sheet(s)" in msg and stat.S_IMODE(view.stat().st_mode) == 0o700
    real = pd.read_csv(view / "clients.csv", dtype=str, keep_default_na=False).merge(
        walk, left_on="pseudonym", right_on="client_id"
    )
    assert (real["last_visit"] == real["last_visit_real"]).all() and (
        real["first_visit"] == real["first_visit_real"]
    ).all()
    assert set(real.loc[real["active"] == "True", "pseudonym"]) == truth
    html = (view / "index.html").read_text(encoding="utf-8")
    one = real.iloc[0]
    assert one["last_visit_real"] in html and one["Patient Name"] in html and "Real visit dates" in html
    sheets = sorted((view / "sheets").glob("*.html"))
    assert len(sheets) == len(set(worklist.loc[worklist["active"], "pseudonym"])) > 0
    first_sheet = sheets[0].read_text(encoding="utf-8")
    row = real.set_index("pseudonym").loc[sheets[0].stem]
    assert f"to {row['last_visit_real']}" in first_sheet and row["Patient Name"] in first_sheet
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in view.rglob("*") if p.is_file())
    # peer outputs never carry a real date or a name
    peer = (project / "reports/peer/report.html").read_text(encoding="utf-8")
    assert one["last_visit_real"] not in peer and one["Patient Name"] not in peer
