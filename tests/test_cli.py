"""The command line as a user meets it: usage mistakes, --version, clean help, stage order, --force."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from analysis.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        ([], "Usage: outcomes"),
        (["valdiate"], "Did you mean 'validate'"),
        # click says "No such option '--input'."; typer >= 0.21 (its vendored click) "No such option: --input"
        (["model", "--input", "x"], "No such option"),
    ],
)
def test_usage_mistakes_exit_2_with_click_s_message(capsys, args, expect):
    assert main(args) == 2
    out = capsys.readouterr()
    assert expect in out.out + out.err and "internal error" not in out.err
    assert all(a in out.out + out.err for a in args if a.startswith("--"))


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("outcomes (hip-knee-outcomes) ")


def test_help_reads_cleanly(capsys):
    main(["deidentify", "--help"])
    text = capsys.readouterr().out
    assert "--mapping FILE" in text and "--out DIR" in text and "<bool>" not in text and "<path>" not in text


def test_simulate_refuses_to_overwrite_without_force(tmp_path, capsys):
    out = tmp_path / "clinic"
    assert main(["simulate", "--out", str(out), "--clients", "10"]) == 0
    before = (out / "clients.csv").read_bytes()
    assert main(["simulate", "--out", str(out), "--clients", "12"]) != 0
    assert "pass --force" in capsys.readouterr().err
    assert (out / "clients.csv").read_bytes() == before
    assert main(["simulate", "--out", str(out), "--clients", "12", "--force"]) == 0


def test_join_refuses_after_a_failed_validate(tmp_path, capsys):
    folder = tmp_path / "in"
    shutil.copytree(ROOT / "data" / "raw" / "demo", folder)
    lines = (folder / "clients.csv").read_text().splitlines()
    lines[1] = lines[1].replace("F", "Q", 1) if ",F," in lines[1] else lines[1].replace(",M,", ",Q,", 1)
    (folder / "clients.csv").write_text("\n".join(lines) + "\n")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["input"] = str(folder)
    params["validate"].update(out_dir=str(tmp_path / "interim"), report_dir=str(tmp_path / "val"))
    params["join"].update(out=str(tmp_path / "a.parquet"), flow=str(tmp_path / "flow.csv"))
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(params))
    assert main(["--params", str(p), "validate"]) == 1
    capsys.readouterr()
    assert main(["--params", str(p), "join"]) != 0
    err = capsys.readouterr().err
    assert "validation.html" in err and "rejects.csv" in err and "allow_rejects" in err
    assert not (tmp_path / "a.parquet").exists()


def _params_file(tmp_path: Path, edit) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    edit(params)
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(params))
    return p


@pytest.mark.parametrize(
    ("edit", "expect"),
    [
        (lambda p: p["model"].update(primary_week="six"), "model.primary_week: Input should be a valid number"),
        (lambda p: p["model"].update(df_methd="z"), "model.df_methd: unknown key"),
        (lambda p: p.pop("join"), "join: missing"),
        (
            lambda p: p["report"].update(min_cell=1),
            "report.min_cell: must be at least 5: a smaller count shown in a peer output could single out a client",
        ),
    ],
)
def test_params_are_validated_with_one_line_naming_the_key(tmp_path, capsys, edit, expect):
    p = _params_file(tmp_path, edit)
    assert main(["--params", str(p), "model"]) != 0
    err = capsys.readouterr().err
    assert expect in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_local_params_override_stays_out_of_git(tmp_path):
    from analysis.params import load_params

    p = _params_file(tmp_path, lambda params: None)
    (tmp_path / "params.local.yaml").write_text("data:\n  input: /private/clinic\n")
    assert load_params(p).data.input == "/private/clinic"
    assert "params.local.yaml" in (ROOT / ".gitignore").read_text()
