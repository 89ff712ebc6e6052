"""De-identification: keys, pseudonyms, date shifts, mapping errors, the shipped example."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import re
import secrets
import stat
from pathlib import Path

import pandas as pd
import pytest
import yaml

from analysis import contract
from analysis.cli import main
from analysis.deidentify import (
    date_offset,
    deidentify_frames,
    load_key,
    parse_mapping,
    read_export,
    run_deidentify,
    run_keygen,
)
from analysis.deidentify.keys import key_text, parse_key
from analysis.errors import InputError, ValidationFailed
from analysis.example_export import make_example_export
from analysis.load import load_inputs
from analysis.params import load_params, with_updates
from analysis.params_schema import check_params
from conftest import deidentify_argv, deidentify_example, write_key

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "data" / "examples"
KEY = bytes(range(32))
TODAY = dt.date(2026, 1, 1)
REGISTRY = contract.load_registry(ROOT / "config" / "measures.yaml")
IDENTIFYING_COLUMNS = ("Patient No", "Patient Name", "Email", "Phone", "Address", "Postcode", "Notes", "Therapist")


def example_mapping(**changes):
    raw = yaml.safe_load((EXAMPLES / "mapping.yaml").read_text(encoding="utf-8"))
    raw.update(changes)
    return parse_mapping(raw, "mapping.yaml", REGISTRY)


def export(rows: list[dict], label: str = "export.csv") -> tuple[str, pd.DataFrame]:
    """A tiny export with the example's columns; unspecified cells blank."""
    full = [{c: r.get(c, "") for c in make_example_export(1, 1).columns} for r in rows]
    return label, pd.DataFrame(full, index=pd.RangeIndex(2, len(rows) + 2, name="row"), dtype="string")


def visit(name="Jane Smith", dob="01/02/1980", date="03/03/2025", **kw):
    base = {
        "Patient Name": name,
        "Date of Birth": dob,
        "Visit Date": date,
        "Treatment Area": "Hip",
        "Minutes": "45",
        "Gender": "Female",
        "Knee": "Left",
        "Sport": "Jogging",
        "Symptom Duration": "6 months",
        "Pain Before": "6",
        "Therapist": "Anna Berg",
        "Email": "jane@example.com",
        "Phone": "07700 900123",
        "Notes": "Dr Who says hi",
    }
    return {**base, **kw}


def run(rows, mapping=None, key=KEY, **kw):
    return deidentify_frames([export(rows)], mapping or example_mapping(), key, today=TODAY, **kw)


# ----------------------------------------------------------------------------- keys


def test_keygen_writes_a_private_key_and_never_prints_it(tmp_path):
    path = tmp_path / "keys" / "k"
    msg = run_keygen(path)
    text = path.read_text()
    header, hex_key, check = text.splitlines()
    assert header == "outcomes-key 1" and len(bytes.fromhex(hex_key)) == 32 and check.startswith("check ")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert hex_key not in msg
    assert load_key(path) == bytes.fromhex(hex_key)
    with pytest.raises(InputError, match="already exists"):
        run_keygen(path)
    assert path.read_text() == text


def test_keygen_refuses_inside_the_project(tmp_path, monkeypatch):
    monkeypatch.setenv("OUTCOMES_ROOT", str(tmp_path))
    with pytest.raises(InputError, match="inside the project"):
        run_keygen(tmp_path / "secrets" / "key")
    assert not (tmp_path / "secrets" / "key").exists()


def test_keygen_via_cli_does_not_echo_key(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["keygen", "--out", str(tmp_path / "k")])
    assert code == 0
    assert (tmp_path / "k").read_text().strip() not in out.getvalue() + err.getvalue()


def test_key_sources_and_refusal(tmp_path):
    f = write_key(tmp_path / "k", KEY)
    assert load_key(None, {"OUTCOMES_KEY": key_text(KEY)}) == KEY
    assert load_key(None, {"OUTCOMES_KEY": " ".join(key_text(KEY).split())}) == KEY  # one line in a shell
    assert load_key(None, {"OUTCOMES_KEY_FILE": str(f)}) == KEY
    assert load_key(f, {"OUTCOMES_KEY": "00" * 32}) == KEY  # --key-file wins
    with pytest.raises(InputError, match="outcomes keygen --out"):
        load_key(None, {})
    with pytest.raises(InputError, match="not a key made by `outcomes keygen`"):
        load_key(None, {"OUTCOMES_KEY": "not hex"})
    with pytest.raises(InputError, match="too short"):
        load_key(None, {"OUTCOMES_KEY": "abcd"})


# ----------------------------------------------------------------------------- pseudonyms and dates


def test_same_patient_same_id_across_exports_and_spellings():
    m = example_mapping()
    a = deidentify_frames([export([visit()], "jan.csv")], m, KEY, today=TODAY)
    b = deidentify_frames(
        [export([visit(name="  JANE   smith ", dob="01.02.1980", date="10/03/2025")], "feb.csv")], m, KEY, today=TODAY
    )
    assert a.tables["clients"]["client_id"].tolist() == b.tables["clients"]["client_id"].tolist()
    cid = a.tables["clients"]["client_id"].iloc[0]
    assert cid.startswith("C") and len(cid) == 13
    assert pd.Series([cid]).str.fullmatch(contract.ID_PATTERN).all()
    other_key = deidentify_frames([export([visit()])], m, bytes(32), today=TODAY)
    assert other_key.tables["clients"]["client_id"].iloc[0] != cid
    other_person = run([visit(dob="02/02/1980")])
    assert other_person.tables["clients"]["client_id"].iloc[0] != cid


def test_dates_shifted_per_client_intervals_kept():
    rows = [visit(date=d) for d in ("03/03/2025", "10/03/2025", "31/03/2025")] + [
        visit(name="Tom Reid", date="05/03/2025")
    ]
    res = run(rows, shift_max_days=180)
    s = res.tables["sessions"].assign(d=lambda x: pd.to_datetime(x["session_date"]))
    jane = res.tables["clients"]["client_id"].iloc[0]
    by = dict(tuple(s.groupby("client_id")))
    for _cid, g in by.items():
        days = sorted(g["d"])
        if len(days) == 3:
            assert [(days[1] - days[0]).days, (days[2] - days[0]).days] == [7, 28]
    assert jane in by
    real = {
        pd.Timestamp("2025-03-03"),
        pd.Timestamp("2025-03-10"),
        pd.Timestamp("2025-03-31"),
        pd.Timestamp("2025-03-05"),
    }
    assert (s["d"] <= pd.Timestamp(TODAY)).all() and (s["d"] >= pd.Timestamp("2000-01-01")).all()
    assert not set(s["d"]) <= real or date_offset(KEY, "x", 180) == 0  # dates really moved


def test_shift_never_into_the_future():
    # A visit a day before `today`: any positive offset is mirrored backwards.
    rows = [visit(name=f"P{i} Q", date=(TODAY - dt.timedelta(days=1)).strftime("%d/%m/%Y")) for i in range(12)]
    res = run(rows)
    d = pd.to_datetime(res.tables["sessions"]["session_date"])
    assert (d <= pd.Timestamp(TODAY)).all()
    assert d.nunique() > 1  # offsets differ between clients


def test_age_band_from_real_dates():
    # 29 at the real first visit; a shift must not change the band.
    res = run([visit(dob="04/03/1995", date="03/03/2025"), visit(dob="04/03/1995", date="20/03/2025")])
    assert res.tables["clients"]["age_band"].tolist() == ["18-29"]
    res = run([visit(dob="01/01/1930")])
    assert res.tables["clients"]["age_band"].tolist() == ["80+"]


def test_client_fields_latest_value_and_blank_fill():
    rows = [visit(date="10/03/2025", Sport="Bike"), visit(date="03/03/2025", Sport="", Knee="R")]
    res = run(rows)
    c = res.tables["clients"].iloc[0]
    # the earliest visit has no sport: the only non-blank value is used (no conflict); the knee differs
    # (right, then left): the latest visit's value wins, and the conflict is logged
    assert (c["activity"], c["knee"], c["symptom_weeks"], c["sex"]) == ("cycling", "left", "26", "F")
    assert res.log["conflicts"]["n"] == 1 and res.log["conflicts"]["by_field"]["knee"] == 1
    res = run([visit(Sport="")])
    assert res.tables["clients"]["activity"].tolist() == ["none"]
    assert res.log["blank_values_filled"]["Sport"] == 1


def test_measurements_techniques_and_numbers():
    rows = [
        visit(
            **{
                "Pain After": "4",
                "Hip IR L": "31,5",
                "Hip IR R": "n/a",
                "LEFS": "",
                "Minutes": "45 min",
                "Techniques": "MFR, stretch / Trigger point",
                "Treatment Area": " hip + KNEE ",
            }
        )
    ]
    res = run(rows)
    m = res.tables["measurements"]
    assert sorted(zip(m["measure"], m["timing"], m["value"], strict=True)) == [
        ("hip_ir_left_deg", "pre", "31.5"),
        ("knee_pain_nprs", "post", "4"),
        ("knee_pain_nprs", "pre", "6"),
    ]
    s = res.tables["sessions"].iloc[0]
    assert (s["techniques"], s["focus"], s["minutes"]) == (
        "myofascial_release;stretching;trigger_point",
        "hip_and_knee",
        "45",
    )
    assert s["therapist_id"].startswith("T") and len(s["therapist_id"]) == 7


def test_duplicate_rows_removed_and_same_day_visits_kept():
    res = run([visit(), visit(), visit(**{"Pain Before": "5"})])
    assert res.log["duplicate_rows_removed"] == 1
    assert res.tables["sessions"]["session_id"].nunique() == 2


def test_no_identifying_value_survives():
    rows = [visit(), visit(name="Tom Reid", date="05/03/2025", Therapist="Sara Khan")]
    res = run(rows)
    text = "\n".join(t.to_csv() for t in res.tables.values()) + json.dumps(res.log)
    for needle in (
        "Jane",
        "Smith",
        "jane@example.com",
        "07700",
        "Dr Who",
        "Anna",
        "Berg",
        "Sara",
        "1980",
        "2025-03-03",
    ):
        assert needle not in text, needle
    assert res.log["columns_dropped"]["Email"] == "contact details"
    assert res.log["columns_dropped"]["Patient Name"].startswith("direct identifier")


# ----------------------------------------------------------------------------- problems, not crashes


def test_unmapped_values_are_one_line_each_with_what_to_add():
    names = ["Ann Lee", "Bo Kim", "Cy Dunn", "Di Fox", "Ed Moss"]
    rows = [visit(name=n, Sport="Kayaking") for n in names] + [
        visit(name="Ann Lee", date="10/03/2025", Sport="Kayaking"),
        visit(name="Tom Reid", Techniques="Cupping"),
    ]
    res = run(rows)
    assert res.tables == {}
    lines = [p.line() for p in res.problems]
    assert len(lines) == 2, lines
    assert lines[0].startswith(
        "export.csv, row 2, column Sport: value not in the mapping; add it under values: activity:"
    )
    # shared by five patients: safe to show, so the user knows what to add
    assert "(and 5 more row(s) with this value)" in lines[0] and "(value 'Kayaking')" in lines[0]
    assert lines[1].startswith("export.csv, row 8, column Techniques: technique not in the mapping")
    assert "Cupping" not in lines[1] and "value not shown" in lines[1]  # one patient: never echoed
    assert res.log["unmapped_values"]["Sport"] == 6


def test_free_text_and_surnames_are_never_echoed():
    rows = [visit(name=f"Pat Number{i}", Techniques="Olivia Whitfield ran 5k pain-free") for i in "abcdef"]
    rows.append(visit(name="Ann Quintero", **{"Treatment Area": "Quintero"}))
    res = run(rows)
    text = "\n".join(p.line() for p in res.problems)
    assert "olivia" not in text.lower() and "whitfield" not in text.lower() and "Quintero" not in text
    assert "column Techniques" in text and "column Treatment Area" in text


def test_bad_dates_and_identity_problems_never_show_the_value():
    rows = [
        visit(date="2025/13/45"),
        visit(name="", date="04/03/2025"),
        visit(date="01/01/2099"),
        visit(dob="31/02/1980"),
    ]
    res = run(rows)
    lines = [p.line() for p in res.problems]
    assert any("row 2, column Visit Date: visit date is blank or not in the format" in x for x in lines)
    assert any("row 3, column Patient Name: blank identity value" in x for x in lines)
    assert any("row 4, column Visit Date: visit date is in the future" in x for x in lines)
    assert any("row 5, column Date of Birth: date of birth is not a date" in x for x in lines)
    assert all(p.value is None for p in res.problems)
    assert not any("2099" in x or "1980" in x for x in lines)


def test_under_18_is_a_problem():
    res = run([visit(dob="01/01/2015")])
    assert any("under 18" in p.rule for p in res.problems)


def test_missing_mapped_column(tmp_path):
    label, frame = export([visit()])
    res = deidentify_frames([(label, frame.drop(columns=["Knee"]))], example_mapping(), KEY, today=TODAY)
    assert [p.line() for p in res.problems] == [
        (
            "export.csv, row 1, column Knee: column named in the mapping is not in the export; "
            "fix the column name in the mapping"
        )
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"identity": []}, "identity"),
        ({"columns": {"focus": "Treatment Area"}}, "add the source column for"),
        ({"values": {"sex": {"Female": "woman"}}}, "not one of F, M, X, U"),
        ({"measurements": {"Pain Before": {"measure": "koos", "timing": "pre"}}}, "not in the measures registry"),
        (
            {"measurements": {"A": {"measure": "lefs", "timing": "pre"}, "B": {"measure": "lefs", "timing": "pre"}}},
            "both give lefs pre",
        ),
        ({"colums": {}}, "unknown key"),
    ],
)
def test_mapping_errors_are_clear(change, message):
    with pytest.raises(InputError, match=message):
        example_mapping(**change)


# ----------------------------------------------------------------------------- the shipped example, end to end


def test_committed_example_matches_generator():
    p = load_params(ROOT / "params.yaml").privacy
    expected = make_example_export(p.example_seed, p.example_patients)
    got = pd.read_csv(EXAMPLES / "practice_export.csv", dtype=str, keep_default_na=False)
    assert got.columns.tolist() == expected.columns.tolist()
    assert got.to_numpy().tolist() == expected.fillna("").to_numpy().tolist()


@pytest.fixture(scope="module")
def example_out(tmp_path_factory):
    return deidentify_example(tmp_path_factory.mktemp("deid"), KEY)


def test_example_deidentifies_and_passes_validate(example_out):
    from analysis.validate import validate_tables

    out, msg = example_out
    assert "40 clients" in msg
    assert sorted(p.name for p in out.iterdir()) == [
        "calendar.csv",  # real weeks since each last visit (no identity; see analysis.deidentify.calendar)
        "clients.csv",
        "deidentify_log.json",
        "measurements.csv",
        "sessions.csv",
    ]
    result = validate_tables(load_inputs(out), REGISTRY)
    assert result.errors == [], [p.line() for p in result.errors[:5]]
    assert len(result.tables["clients"]) == 40


def test_example_output_holds_no_source_identifiers(example_out):
    out, _ = example_out
    source = pd.read_csv(EXAMPLES / "practice_export.csv", dtype=str, keep_default_na=False)
    written = "\n".join(
        (out / n).read_text() for n in ("clients.csv", "sessions.csv", "measurements.csv", "deidentify_log.json")
    )
    for col in IDENTIFYING_COLUMNS:
        for value in set(source[col].str.strip()) - {""}:
            assert value not in written, (col, value)
    assert KEY.hex() not in written
    log = json.loads((out / "deidentify_log.json").read_text())
    assert log["rows_in"] == len(source) and log["duplicate_rows_removed"] == 1
    assert set(IDENTIFYING_COLUMNS) <= set(log["columns_dropped"])


def test_run_refuses_bad_out_folders(tmp_path):
    key = tmp_path / "key"
    write_key(key, KEY)
    params = load_params(ROOT / "params.yaml")
    src = tmp_path / "exports"
    src.mkdir()
    (src / "e.csv").write_bytes((EXAMPLES / "practice_export.csv").read_bytes())
    with pytest.raises(InputError, match="demo data folder"):
        run_deidentify(
            [src / "e.csv"],
            EXAMPLES / "mapping.yaml",
            ROOT / "data" / "raw" / "demo" / "x",
            key_file=key,
            params=params,
        )
    with pytest.raises(InputError, match="folder of the export"):
        run_deidentify([src / "e.csv"], EXAMPLES / "mapping.yaml", src, key_file=key, params=params)
    assert sorted(p.name for p in src.iterdir()) == ["e.csv"]


def test_run_without_key_refuses(tmp_path, monkeypatch):
    monkeypatch.delenv("OUTCOMES_KEY", raising=False)
    monkeypatch.delenv("OUTCOMES_KEY_FILE", raising=False)
    with pytest.raises(InputError, match="keygen"):
        run_deidentify(
            [EXAMPLES / "practice_export.csv"],
            EXAMPLES / "mapping.yaml",
            tmp_path / "o",
            params=load_params(ROOT / "params.yaml"),
        )
    assert not (tmp_path / "o").exists()


def test_run_with_unmapped_values_writes_nothing(tmp_path):
    key = tmp_path / "key"
    write_key(key, KEY)
    raw = yaml.safe_load((EXAMPLES / "mapping.yaml").read_text())
    del raw["values"]["activity"]["Jogging"]
    m = tmp_path / "m.yaml"
    m.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValidationFailed) as info:
        run_deidentify(
            [EXAMPLES / "practice_export.csv"],
            m,
            tmp_path / "o",
            key_file=key,
            params=load_params(ROOT / "params.yaml"),
        )
    assert any("column Sport" in p.line() and "'Jogging'" in p.line() for p in info.value.problems)
    assert not (tmp_path / "o").exists()


def test_xlsx_export_reads_like_csv(tmp_path):
    label, frame = export([visit(), visit(date="10/03/2025")])
    path = tmp_path / "e.xlsx"
    frame.to_excel(path, index=False)
    got_label, got, info = read_export(path, example_mapping())
    assert (got_label, info["format"]) == ("e.xlsx", "xlsx")
    assert got.index.tolist() == [2, 3]
    assert got["Visit Date"].tolist() == ["03/03/2025", "10/03/2025"]


def test_semicolon_cp1252_export(tmp_path):
    label, frame = export([visit(name="Zoë Smith")])
    path = tmp_path / "e.csv"
    path.write_bytes(frame.to_csv(index=False, sep=";").encode("cp1252"))
    _, got, info = read_export(path, example_mapping())
    assert (info["delimiter"], info["encoding"]) == (";", "cp1252")
    assert got["Patient Name"].iloc[0] == "Zoë Smith"


def test_cli_deidentify_with_env_key(tmp_path, monkeypatch):
    monkeypatch.setenv("OUTCOMES_KEY", " ".join(key_text(KEY).split()))
    monkeypatch.delenv("OUTCOMES_KEY_FILE", raising=False)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(deidentify_argv(tmp_path / "o"))
    assert code == 0, err.getvalue()
    assert "Next: outcomes validate --input" in out.getvalue()
    assert "0 warning(s)." in out.getvalue()  # the example's patients agree with themselves across visits
    assert KEY.hex() not in out.getvalue() + err.getvalue()
    # progress: one line per step on stderr, each with the elapsed time
    steps = err.getvalue().splitlines()
    assert len(steps) == 5 and all(re.match(r"^  \[ *\d+\.\d s\] \w", s) for s in steps)
    assert "reading the export practice_export.csv" in steps[1]
    first = (tmp_path / "o" / "clients.csv").read_text()
    # same key, same export -> byte-identical output (deterministic pseudonyms and shifts)
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(deidentify_argv(tmp_path / "o2")) == 0
    assert (tmp_path / "o2" / "clients.csv").read_text() == first


def test_example_output_reports_k_anonymity(example_out):
    out, msg = example_out
    log = json.loads((out / "deidentify_log.json").read_text())
    clients = pd.read_csv(out / "clients.csv", dtype=str, keep_default_na=False)
    k = log["k_anonymity"]
    sizes = clients.groupby(["clinic_id", "sex", "age_band", "knee"]).size()
    assert k["k"] == sizes.min() and k["n_classes"] == len(sizes)
    assert k["n_records_below_threshold"] == sizes[sizes < k["threshold"]].sum()
    assert f"k = {k['k']}" in msg


def test_weak_keys_are_refused(tmp_path):
    with pytest.raises(InputError, match="weak"):
        parse_key("00" * 32, "k")
    with pytest.raises(InputError, match="weak"):
        parse_key("ab" * 32, "k")
    with pytest.raises(InputError, match="too short"):
        parse_key("0123456789abcdef", "k")
    with pytest.raises(InputError, match="weak"):
        parse_key(key_text(bytes(32)), "k")  # keygen's format cannot make zeros safe


HAND_TYPED = {
    "counting bytes": bytes(range(1, 33)).hex(),
    "a phrase repeated": ("deadbeef" * 8),
    "hex digits typed in order": "0123456789abcdef" * 4,
    "hex of a passphrase": b"correct horse battery staple ok!".hex(),
    "hex of a long passphrase": b"my clinic's secret passphrase, 2026".hex(),
    "hex of a short passphrase": b"physio2026".hex(),
    "short": secrets.token_bytes(16).hex(),
    "a passphrase itself": "correct horse battery staple",
}


@pytest.mark.parametrize("text", HAND_TYPED.values(), ids=HAND_TYPED.keys())
def test_hand_made_keys_are_refused_with_a_line_saying_to_run_keygen(tmp_path, text, capsys):
    key = tmp_path / "k"
    key.write_text(text + "\n")
    key.chmod(0o600)
    with pytest.raises(InputError, match="not a key made by `outcomes keygen`") as info:
        load_key(key)
    assert "run `outcomes keygen --out" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(InputError, match="run `outcomes keygen"):
        load_key(None, {"OUTCOMES_KEY": text})
    code = main(deidentify_argv(tmp_path / "out", "--key-file", str(key)))
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "outcomes keygen" in err
    assert text not in err and not (tmp_path / "out").exists()  # the key is never echoed


def test_keygen_output_loads_old_and_new(tmp_path):
    new = tmp_path / "new.key"
    run_keygen(new)
    assert len(load_key(new)) == 32
    # a key from an earlier `outcomes keygen` (64 random hex digits and a newline) still loads
    old = tmp_path / "old.key"
    random_key = secrets.token_bytes(32)
    old.write_text(random_key.hex() + "\n")
    old.chmod(0o600)
    assert load_key(old) == random_key
    assert load_key(None, {"OUTCOMES_KEY": random_key.hex()}) == random_key


def test_edited_or_damaged_keygen_file_is_refused(tmp_path):
    header, hex_key, check = key_text(KEY).splitlines()
    edited = hex_key[:-1] + ("0" if hex_key[-1] != "0" else "1")
    with pytest.raises(InputError, match="check line does not match"):
        parse_key(f"{header}\n{edited}\n{check}\n", "k")
    with pytest.raises(InputError, match="damaged"):
        parse_key(f"{header}\n{hex_key}\n", "k")
    with pytest.raises(InputError, match="of this version"):
        parse_key(f"outcomes-key 9\n{hex_key}\n{check}\n", "k")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_key_file_readable_by_group_or_others_is_refused(tmp_path, mode):
    key = write_key(tmp_path / "k", KEY)
    key.chmod(mode)
    with pytest.raises(InputError, match=r"readable by other users; run `chmod 600 "):
        load_key(key)
    key.chmod(0o600)
    assert load_key(key) == KEY


def test_key_file_inside_any_git_work_tree_is_refused(tmp_path):
    repo = tmp_path / "other-repo"
    (repo / ".git").mkdir(parents=True)
    key = repo / "k.key"
    write_key(key, bytes(range(1, 33)))
    with pytest.raises(InputError, match="git work tree"):
        load_key(key)
    with pytest.raises(InputError, match="git work tree"):
        run_keygen(repo / "sub" / "new.key")


def test_key_file_inside_the_project_is_refused_even_outside_git(tmp_path, monkeypatch):
    """A project unpacked from an archive has no .git: the key is still refused there (one shared check)."""
    project = tmp_path / "project"
    (project / "keys").mkdir(parents=True)
    (project / "params.yaml").write_text("{}")
    key = project / "keys" / "k.key"
    write_key(key, bytes(range(1, 33)))
    monkeypatch.setenv("OUTCOMES_ROOT", str(project))
    with pytest.raises(InputError, match="the key file may not be inside the project folder"):
        load_key(key)
    with pytest.raises(InputError, match="the key may not be inside the project folder"):
        run_keygen(project / "new.key")
    outside = tmp_path / "elsewhere" / "k.key"
    outside.parent.mkdir()
    write_key(outside, bytes(range(1, 33)))
    assert len(load_key(outside)) == 32


def test_output_inside_the_project_only_under_data_raw_name(tmp_path):
    key = tmp_path / "k.key"
    write_key(key, bytes(range(1, 33)))
    params = load_params(ROOT / "params.yaml")
    with pytest.raises(InputError, match="data/raw/<name>"):
        run_deidentify(
            [EXAMPLES / "practice_export.csv"],
            EXAMPLES / "mapping.yaml",
            ROOT / "reports" / "deid",
            key_file=key,
            params=params,
        )
    assert not (ROOT / "reports" / "deid").exists()


def test_clinic_id_column_in_a_mapping_is_refused():
    raw = yaml.safe_load((EXAMPLES / "mapping.yaml").read_text(encoding="utf-8"))
    raw["columns"]["clinic_id"] = "Clinic"
    with pytest.raises(InputError, match="clinic_id is not read from an export column"):
        parse_mapping(raw, "mapping.yaml", REGISTRY)


def test_onset_month_or_date_becomes_weeks_before_the_first_visit():
    from analysis.deidentify.values import parse_onset

    onset = parse_onset(pd.Series(["Nov 2022", "since: 2022-11", "15/11/2022", "26 weeks", ""]), ["%d/%m/%Y"])
    assert onset.iloc[:3].dt.strftime("%Y-%m-%d").tolist() == ["2022-11-15"] * 3
    assert onset.iloc[3:].isna().all()
    res = run([visit(date="03/03/2025", **{"Symptom Duration": "Nov 2022"})])
    assert res.problems == [], [p.line() for p in res.problems]
    assert res.tables["clients"]["symptom_weeks"].iloc[0] == str(
        round((pd.Timestamp("2025-03-03") - pd.Timestamp("2022-11-15")).days / 7)
    )
    late = run([visit(date="03/03/2025", **{"Symptom Duration": "Apr 2025"})])
    assert any("onset is after the visit" in p.line() for p in late.problems)


def test_dates_can_be_coarsened_to_the_week():
    rows = [visit(date=d) for d in ("03/03/2025", "05/03/2025", "13/03/2025")]
    fine = run(rows)
    coarse = run(rows, coarsen="week")
    days = pd.to_datetime(coarse.tables["sessions"]["session_date"])
    assert (days.dt.day_of_week == 0).all()  # every date a Monday
    assert coarse.log["dates_coarsened_to"] == "week" and fine.log["dates_coarsened_to"] == "day"
    fine_days = pd.to_datetime(fine.tables["sessions"]["session_date"]).sort_values().tolist()
    assert days.sort_values().tolist() == [d - pd.Timedelta(days=d.weekday()) for d in fine_days]


# ----------------------------------------------------------------------------- conflicts


def _conflicted():
    # knee: right, left, left (latest left; most frequent left); sport: bike, running, bike
    # (latest bike... then running last by date); sex the same throughout
    return [
        visit(date="03/03/2025", Knee="R", Sport="Bike"),
        visit(date="10/03/2025", Knee="L", Sport="Running"),
        visit(date="24/03/2025", Knee="Left", Sport="Bike"),
        visit(date="17/03/2025", Knee="", Sport="Running"),
        visit(name="Tom Reid", date="05/03/2025", Knee="R", Gender="Male"),
        visit(name="Tom Reid", date="06/03/2025", Knee="R", Gender="M"),  # a spelling, not a conflict
    ]


@pytest.mark.parametrize(("rule", "activity"), [("latest", "cycling"), ("most_frequent", "cycling")])
def test_conflicts_are_reported_per_client_and_field_with_the_choice(rule, activity):
    res = run(_conflicted(), conflict_rule=rule)
    jane = res.tables["clients"].set_index("sex").loc["F"]
    assert (jane["knee"], jane["activity"]) == ("left", activity)
    log = res.log["conflicts"]
    assert (log["rule"], log["n"], log["clients"]) == (rule, 2, 1)
    by = {c["field"]: c for c in log["list"]}
    assert by["knee"] | {"client_id": ""} == {
        "client_id": "",
        "field": "knee",
        "column": "Knee",
        "values": ["left", "right"],
        "chosen": "left",
        "rule": rule,
    }
    assert by["activity"]["values"] == ["cycling", "running"] and by["activity"]["client_id"] == jane["client_id"]
    # the log names no person and no date: only pseudonyms, column names and contract values
    text = json.dumps(log)
    assert "Jane" not in text and "2025" not in text


def test_most_frequent_differs_from_latest():
    rows = [visit(date=d, Knee=k) for d, k in (("03/03/2025", "R"), ("10/03/2025", "R"), ("17/03/2025", "L"))]
    assert run(rows, conflict_rule="latest").tables["clients"]["knee"].tolist() == ["left"]
    assert run(rows, conflict_rule="most_frequent").tables["clients"]["knee"].tolist() == ["right"]


def test_refuse_names_row_and_column_and_writes_nothing():
    res = run(_conflicted(), conflict_rule="refuse")
    assert res.tables == {}
    lines = [p.line() for p in res.problems]
    assert len(lines) == 2
    assert any(ln.startswith("export.csv, row 4, column Knee: knee differs") and "first at row 2" in ln for ln in lines)
    assert all("conflict_rule is refuse" in ln and "Jane" not in ln for ln in lines)


def test_onset_typed_on_later_visits_is_not_a_conflict():
    rows = [visit(date=d, **{"Symptom Duration": "Nov 2024"}) for d in ("03/03/2025", "31/03/2025")]
    res = run(rows)
    assert res.log["conflicts"]["n"] == 0
    assert res.tables["clients"]["symptom_weeks"].tolist() == ["15"]  # weeks before the first visit


def test_conflicts_in_the_console_and_log(tmp_path):
    key_file = tmp_path / "key"
    write_key(key_file, KEY)
    src = tmp_path / "in" / "export.csv"
    src.parent.mkdir()
    store_rows = pd.DataFrame(export(_conflicted())[1])
    store_rows.to_csv(src, index=False)
    msg = run_deidentify([src], EXAMPLES / "mapping.yaml", tmp_path / "out", key_file=key_file)
    assert "2 warning(s)" in msg and "knee: left, right -> left (latest)" in msg
    log = json.loads((tmp_path / "out" / "deidentify_log.json").read_text())
    assert log["conflicts"]["n"] == 2
    params = with_updates(load_params(ROOT / "params.yaml"), {"privacy": {"conflict_rule": "refuse"}})
    with pytest.raises(ValidationFailed) as err:
        run_deidentify([src], EXAMPLES / "mapping.yaml", tmp_path / "out2", key_file=key_file, params=params)
    assert len(err.value.problems) == 2 and not (tmp_path / "out2").exists()


def test_conflict_rule_and_shift_range_are_checked_in_params():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    assert raw["privacy"]["conflict_rule"] == "latest" and check_params(raw) == []
    raw["privacy"].update(conflict_rule="first", date_shift_max_days=0)
    lines = check_params(raw)
    assert any(ln.startswith("params.yaml: privacy.conflict_rule:") for ln in lines)
    assert any(ln.startswith("params.yaml: privacy.date_shift_max_days:") for ln in lines)
