"""Drafted mappings: the guesses (pure) and drafts that de-identify exports of two layouts end to end."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from analysis import contract, store
from analysis.cli import main
from analysis.deidentify import deidentify_frames, parse_mapping, read_export
from analysis.deidentify.draft import draft_mapping
from analysis.deidentify.guess import guess_category, guess_date_formats, guess_measure, guess_role
from analysis.deidentify.mapping import Mapping
from analysis.example_export import make_example_export
from conftest import write_key

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "data" / "examples"
REGISTRY = contract.load_registry(ROOT / "config" / "measures.yaml")
KEY = bytes(range(32))
TODAY = dt.date(2026, 6, 1)


@pytest.mark.parametrize(
    ("header", "role"),
    [
        ("Patient No", "patient_no"),
        ("Client ID", "patient_no"),
        ("Patient Name", "name"),
        ("First Name", "name"),
        ("DOB", "date_of_birth"),
        ("Date of Birth", "date_of_birth"),
        ("Email Address", "email"),
        ("Mobile", "phone"),
        ("Zip", "address"),
        ("Clinical Notes", "notes"),
        ("Visit Date", "session_date"),
        ("Appointment Date", "session_date"),
        ("Practitioner", "therapist"),
        ("Body Region", "focus"),
        ("Treatment Area", "focus"),
        ("Treatment Given", "techniques"),
        ("Duration (min)", "minutes"),
        ("Symptom Duration", "symptom_weeks"),
        ("Symptoms since", "symptom_weeks"),
        ("Sitting hrs/day", "sitting_hours"),
        ("Affected Knee", "knee"),
        ("Sport", "activity"),
        ("Gender", "sex"),
        ("NPRS pre", "measure"),
        ("Hip IR L", "measure"),
        ("Age", "age"),
        ("Colour", None),
    ],
)
def test_guess_role_from_headers(header, role):
    assert guess_role(header) == role


def test_guess_role_from_values_when_the_header_says_nothing():
    assert guess_role("Contact", ["a.b@example.com", "c@example.org"]) == "email"
    assert guess_role("Contact", ["07700 900123", "+44 7700 900456"]) == "phone"
    assert guess_role("Contact", ["yes", "no"]) is None


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("focus", "HIP + pelvis", "hip"),
        ("focus", "hip/glutes", "hip"),
        ("focus", "knee (VMO, ITB)", "knee"),
        ("focus", "Hip & Knee", "hip_and_knee"),
        ("focus", "Lumbar spine", "other"),
        ("focus", "Zumba", None),
        ("sex", "Male", "M"),
        ("sex", " female ", "F"),
        ("sex", "Woman", "F"),
        ("sex", "M", "M"),
        ("sex", "banana", None),
        ("knee", "L+R", "both"),
        ("knee", "Rt", "right"),
        ("activity", "spin class", "cycling"),
        ("activity", "Gym/weights", "gym"),
        ("activity", "Netball", "team_sport"),
        ("techniques", "PNF stretching", "stretching"),
        ("techniques", "Maitland mobs", "joint_mobilisation"),
        ("techniques", "TrP", "trigger_point"),
        ("techniques", "Dry needling", None),
    ],
)
def test_guess_category(field, value, expected):
    assert guess_category(field, value) == expected


def test_guess_date_formats_day_month_order_from_the_values():
    assert guess_date_formats(["31/01/2024", "02.03.2024", "05/06/2024"]).formats == ("%d/%m/%Y", "%d.%m.%Y")
    us = guess_date_formats(["01/31/2024", "02/03/2024"])
    assert us.formats == ("%m/%d/%Y",) and us.question is None
    unclear = guess_date_formats(["01/02/2024", "03/04/2024"])
    assert unclear.formats == ("%d/%m/%Y",) and "%m/%d/%Y" in unclear.question
    assert guess_date_formats(["31-01-24"]).formats == ("%d-%m-%y",)


def test_guess_measure():
    keys = REGISTRY.keys
    assert guess_measure("Pain Before", keys) == ("knee_pain_nprs", "pre")
    assert guess_measure("NPRS post", keys) == ("knee_pain_nprs", "post")
    assert guess_measure("Hip IR Right (deg)", keys) == ("hip_ir_right_deg", "pre")
    assert guess_measure("LEFS score", keys) == ("lefs", "pre")
    assert guess_measure("KOOS", keys)[0] is None


def _frame(rows: list[dict[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, index=pd.RangeIndex(2, len(rows) + 2, name="row"), dtype="string")


def test_draft_asks_where_it_cannot_guess():
    rows = [
        {"ID": "1", "Date": "01/02/2024", "Area": "Zumba", "Mins": "30", "Sex": "F", "Knee": "L", "Sport": "x"},
        {"ID": "1", "Date": "03/04/2024", "Area": "hip", "Mins": "30", "Sex": "F", "Knee": "", "Sport": ""},
    ]
    draft = draft_mapping(_frame(rows), "e.csv", REGISTRY.keys)
    asks = [line for line in draft.text.splitlines() if "???" in line and not line.startswith("#")]
    # the date order, the area "Zumba", the sport "x", no symptom column, no date of birth, no measure
    assert draft.questions == len(asks) == 6
    assert any('"Zumba": "???"' in a and "choose one of: hip, knee, hip_and_knee, other" in a for a in asks)
    assert any("day/month order" in a for a in asks)
    # a blank knee is fine (the patient has one on another visit); a blank sport is guessed 'none'
    assert "every patient has a value on another visit" in draft.text
    raw = yaml.safe_load(draft.text)
    assert raw["identity"] == ["ID"] and raw["columns"]["focus"] == "Area"


def _answer(text: str, answers: dict[str, str]) -> str:
    """Apply exactly the edits the draft's ??? comments ask for, and check none is left."""
    for spelling, value in answers.items():
        text, n = re.subn(rf'("{re.escape(spelling)}"): "\?\?\?"', rf"\1: {value}", text)
        assert n == 1, spelling
    assert '"???"' not in text
    return text


@pytest.mark.parametrize(
    ("layout", "answers"),
    [("visits", {}), ("appointments", {"Dry needling": "trigger_point"})],
)
def test_draft_deidentifies_a_60_patient_export_after_its_questions(tmp_path, layout, answers):
    df = make_example_export(11, 60, layout=layout)
    path = tmp_path / f"{layout}.csv"
    store.write_csv(path, df)
    label, frame, _ = read_export(path, Mapping((), {}, {}))
    draft = draft_mapping(frame, label, REGISTRY.keys)
    assert draft.questions == len(answers)
    mapping = parse_mapping(yaml.safe_load(_answer(draft.text, answers)), "draft.yaml", REGISTRY)
    res = deidentify_frames([(label, frame)], mapping, KEY, today=TODAY)
    assert res.problems == []
    assert res.log["clients"] == 60
    assert res.log["rows_in"] == len(df) and res.log["duplicate_rows_removed"] == 1
    dropped = set(res.log["columns_dropped"])
    identifying = {c for c in df.columns if guess_role(c) in ("name", "email", "phone", "address", "notes")}
    assert identifying and identifying <= dropped


def test_shipped_drafts_match_the_drafter_and_deidentify(tmp_path):
    """data/examples/ ships each layout's export with its draft, as `outcomes draft-mapping` writes it."""
    p = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))["privacy"]
    generated = make_example_export(p["example_seed"], p["example_patients"], layout="appointments")
    committed = pd.read_csv(EXAMPLES / "appointments_export.csv", dtype=str, keep_default_na=False)
    expected = store.neutralise_formulas(generated).astype(object).fillna("")  # as write_csv writes it
    assert committed.to_numpy().tolist() == expected.to_numpy().tolist()
    answers = {"practice_export.csv": {}, "appointments_export.csv": {"Dry needling": "trigger_point"}}
    for export, answer in answers.items():
        shipped = EXAMPLES / export.replace(".csv", ".draft.yaml")
        out = tmp_path / shipped.name
        assert main(["draft-mapping", str(EXAMPLES / export), "--out", str(out)]) == 0
        text = shipped.read_text(encoding="utf-8")
        assert out.read_text(encoding="utf-8") == text
        mapping = parse_mapping(yaml.safe_load(_answer(text, answer)), shipped.name, REGISTRY)
        label, frame, _ = read_export(EXAMPLES / export, mapping)
        res = deidentify_frames([(label, frame)], mapping, KEY, today=TODAY)
        assert res.problems == [] and res.log["clients"] == p["example_patients"]
    assert main(["draft-mapping", str(EXAMPLES / "practice_export.csv"), "--out", str(out)]) == 2  # no overwrite


def test_deidentify_refuses_a_draft_with_open_questions(tmp_path, capsys):
    key = tmp_path / "key"
    write_key(key, KEY)
    export = EXAMPLES / "appointments_export.csv"
    draft = EXAMPLES / "appointments_export.draft.yaml"
    argv = ["deidentify", str(export), "--mapping", str(draft), "--out", str(tmp_path / "o"), "--key-file", str(key)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "1 question(s) marked ???" in err and "values.techniques.Dry needling" in err
    assert not (tmp_path / "o").exists()
