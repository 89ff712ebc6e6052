"""Inputs a real clinic will produce (issue: privacy and robustness, round two): each case gives the usual
one line or is accepted, never a crash, a memory blow-up, a live formula or a leaked identifier."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from analysis.cli import main
from analysis.load import load_inputs
from analysis.store import neutralise_formulas, write_csv
from conftest import write_key, write_params

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "raw" / "demo"
EXAMPLES = ROOT / "data" / "examples"


def _demo_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    shutil.copytree(DEMO, folder)
    return folder


def _edit_clients(folder: Path, edits: dict[tuple[int, str], str], prefix: str = "") -> None:
    lines = (folder / "clients.csv").read_text().splitlines()
    header = lines[0].split(",")
    for (row, col), value in edits.items():
        cells = lines[row].split(",")
        cells[header.index(col)] = value
        lines[row] = ",".join(cells)
    (folder / "clients.csv").write_text(prefix + "\n".join(lines) + "\n")


def test_unicode_digits_full_width_accepted_arabic_indic_one_line(tmp_path, capsys):
    folder = _demo_copy(tmp_path)
    _edit_clients(folder, {(1, "symptom_weeks"): "٤٥", (2, "symptom_weeks"): "２６", (3, "sitting_hours"): "٧.٥"})
    code = main(["--params", str(write_params(tmp_path, folder)), "validate"])
    err = capsys.readouterr().err
    assert code == 1 and "internal error" not in err
    assert "clients.csv, row 2, column symptom_weeks: not a whole number" in err
    assert "clients.csv, row 4, column sitting_hours" in err
    assert "row 3, column symptom_weeks" not in err  # full-width 26 is read as 26
    inputs = load_inputs(folder)
    assert inputs.tables["clients"].loc[3, "symptom_weeks"] == "26"


def test_gentle_csv_cases_are_accepted(tmp_path):
    folder = _demo_copy(tmp_path)
    text = (folder / "sessions.csv").read_text().splitlines()
    # Excel's sep= hint, trailing empty columns, and dates with a midnight time
    header, rows = text[0] + ",,", [r + ",," for r in text[1:]]
    rows[0] = rows[0].replace(rows[0].split(",")[2], rows[0].split(",")[2] + " 00:00:00", 1)
    (folder / "sessions.csv").write_text("sep=,\n" + "\n".join([header, *rows]) + "\n")
    inputs = load_inputs(folder)
    assert inputs.problems == [], [p.line() for p in inputs.problems]
    s = inputs.tables["sessions"]
    assert list(s.columns)[:3] == ["session_id", "client_id", "session_date"]
    assert s["session_date"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    assert s.index[0] == 3  # the spreadsheet line: sep= is line 1, the header line 2


def test_capitalised_sheet_names_and_a_huge_declared_range(tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    from openpyxl.styles import Font

    folder = tmp_path / "book"
    folder.mkdir()
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name in ("Clients", "Sessions", "Measurements"):
        ws = wb.create_sheet(name)
        df = pd.read_csv(DEMO / f"{name.lower()}.csv", dtype=str, keep_default_na=False).head(40)
        ws.append(list(df.columns))
        for r in df.itertuples(index=False):
            ws.append(list(r))
    # one formatted, empty cell at the last column and row: the used range becomes A1:XFD1048576
    wb["Clients"].cell(row=1048576, column=16384).font = Font(bold=True)
    wb.save(folder / "clinic.xlsx")
    inputs = load_inputs(folder)
    assert "clients" in inputs.tables and len(inputs.tables["clients"]) == 40
    assert not [p for p in inputs.problems if p.file.startswith("clinic.xlsx[clients]")]


def test_a_five_megabyte_cell_is_named_not_a_quoting_error(tmp_path):
    folder = _demo_copy(tmp_path)
    _edit_clients(folder, {(5, "activity"): "x" * 5_000_000})
    inputs = load_inputs(folder)
    lines = [p.line() for p in inputs.problems]
    assert any("row 6, column activity: value is 5,000,000 characters long" in x for x in lines), lines
    assert not any("not well-formed CSV" in x for x in lines)


def test_name_like_client_id_is_refused(tmp_path, capsys):
    folder = _demo_copy(tmp_path)
    _edit_clients(folder, {(3, "client_id"): "Olivia_Whitfield"})
    assert main(["--params", str(write_params(tmp_path, folder)), "validate"]) == 1
    err = capsys.readouterr().err
    assert "row 4, column client_id: looks like a person's name written as an id" in err
    assert "Olivia" not in err  # never echoed


def test_every_csv_written_neutralises_formulas(tmp_path):
    df = pd.DataFrame(
        {"raw": ['=HYPERLINK("http://x","y")', "=cmd|' /C calc'!A0", "@SUM(A1)", "\tx", "-1.5", "ok"], "n": range(6)}
    )
    write_csv(tmp_path / "r.csv", df)
    back = pd.read_csv(tmp_path / "r.csv", dtype=str)["raw"].tolist()
    assert back[:4] == ['\'=HYPERLINK("http://x","y")', "'=cmd|' /C calc'!A0", "'@SUM(A1)", "'\tx"]
    assert back[4:] == ["-1.5", "ok"]  # numbers stay numbers
    assert neutralise_formulas(df)["n"].tolist() == list(range(6))


def test_rejects_csv_has_no_live_formula(tmp_path):
    folder = _demo_copy(tmp_path)
    _edit_clients(folder, {(2, "activity"): '=HYPERLINK("http://evil")'})
    out = tmp_path / "params.yaml"
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["input"] = str(folder)
    params["validate"].update(out_dir=str(tmp_path / "interim"), report_dir=str(tmp_path / "val"), allow_rejects=True)
    out.write_text(yaml.safe_dump(params))
    main(["--params", str(out), "validate"])
    rejects = (tmp_path / "interim" / "rejects.csv").read_text()
    assert "HYPERLINK" in rejects and ",=HYPERLINK" not in rejects and "'=HYPERLINK" in rejects


def test_yaml_alias_bomb_is_refused_at_once(tmp_path, capsys):
    bomb = tmp_path / "bomb.yaml"
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    bomb.write_text("\n".join(lines) + "\n")
    key = tmp_path / "k.key"
    write_key(key, bytes(range(1, 33)))
    code = main(
        [
            "deidentify",
            str(EXAMPLES / "practice_export.csv"),
            "--mapping",
            str(bomb),
            "--out",
            str(tmp_path / "o"),
            "--key-file",
            str(key),
        ]
    )
    assert code != 0 and "aliases (*name) are not allowed" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_deidentify_refuses_a_phone_number_mapped_into_a_number_field(tmp_path, capsys):
    mapping = (EXAMPLES / "mapping.yaml").read_text().replace("symptom_weeks: Symptom Duration", "symptom_weeks: Phone")
    m = tmp_path / "mapping.yaml"
    m.write_text(mapping)
    export = pd.read_csv(EXAMPLES / "practice_export.csv", dtype=str, keep_default_na=False)
    export["Phone"] = [f"74677064{i:02d}" for i in range(len(export))]  # NHS-number-shaped whole numbers
    src = tmp_path / "export.csv"
    export.to_csv(src, index=False)
    key = tmp_path / "k.key"
    write_key(key, bytes(range(1, 33)))
    code = main(["deidentify", str(src), "--mapping", str(m), "--out", str(tmp_path / "o"), "--key-file", str(key)])
    err = capsys.readouterr().err
    assert code != 0 and not (tmp_path / "o").exists()
    assert "column symptom_weeks" in err and "de-identified clients.csv" in err
    assert not any(p in err for p in export["Phone"])  # never echoed
