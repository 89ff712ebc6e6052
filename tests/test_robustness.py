"""Robustness: corrupted and badly formed inputs give a clean result or a clean error, never a traceback.

Three layers: a hypothesis property test that corrupts a small valid clinic
(bytes, structure, encodings) and runs the loader and ``outcomes validate``; an
explicit, parametrised list of bad inputs each checked for its exit code and for
an error line that names the file (and row/column where there is one); and a
check that validating never modifies the input folder, even when it is read-only.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.cli import main
from analysis.errors import InputError
from analysis.load import load_inputs

ROOT = Path(__file__).resolve().parents[1]

CLIENTS = (
    "client_id,clinic_id,sex,age_band,symptom_weeks,sitting_hours,activity,knee\n"
    "C0001,clinic-1,F,40-49,26,7.5,running,right\n"
    "C0002,,M,50-59,8,,cycling,left\n"
)
SESSIONS = (
    "session_id,client_id,session_date,therapist_id,focus,techniques,minutes\n"
    "S0001,C0001,2025-03-03,T1,hip,myofascial_release;stretching,45\n"
    "S0002,C0001,2025-03-10,T1,hip,,45\n"
    "S0003,C0002,2025-03-04,T2,knee,trigger_point,30\n"
)
MEASUREMENTS = (
    "session_id,measure,timing,value\n"
    "S0001,knee_pain_nprs,pre,6\n"
    "S0001,knee_pain_nprs,post,4\n"
    "S0002,knee_pain_nprs,pre,5\n"
    "S0002,hip_ir_left_deg,pre,31.5\n"
    "S0003,knee_pain_nprs,pre,7\n"
    "S0003,lefs,pre,40\n"
)
VALID = {"clients.csv": CLIENTS, "sessions.csv": SESSIONS, "measurements.csv": MEASUREMENTS}


def write_clinic(folder: Path, files: dict[str, str | bytes] | None = None) -> Path:
    """Write the small valid clinic (with ``files`` replacing or adding entries) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in {**VALID, **(files or {})}.items():
        if content is None:
            continue
        data = content.encode("utf-8") if isinstance(content, str) else content
        (folder / name).write_bytes(data)
    return folder


def make_params(folder: Path, **validate) -> Path:
    """A params.yaml whose outputs go under ``folder`` (never into the repo)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["data"]["registry"] = str(ROOT / "config" / "measures.yaml")
    params["validate"]["out_dir"] = str(folder / "interim")
    params["validate"]["report_dir"] = str(folder / "reports")
    params["validate"].update(validate)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params), encoding="utf-8")
    return path


def run_cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


# ----------------------------------------------------------------------------- property test


def _corrupt(data: bytes, op: str, pos: float, junk: str, col: int) -> bytes:
    text = data.decode("utf-8")
    lines = text.split("\n")
    header = lines[0].split(",")
    i = int(pos * max(len(data) - 1, 1))
    if op == "flip":
        return data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
    if op == "truncate":
        return data[:i]
    if op == "drop_column":
        c = col % len(header)
        return "\n".join(",".join(f for j, f in enumerate(ln.split(",")) if j != c) for ln in lines).encode()
    if op == "duplicate_column":
        c = col % len(header)
        return "\n".join(ln + ("," + ln.split(",")[c] if ln else "") for ln in lines).encode()
    if op == "junk_cell":
        r = 1 + col % (len(lines) - 2)
        fields = lines[r].split(",")
        fields[col % len(fields)] = junk
        lines[r] = ",".join(fields)
        return "\n".join(lines).encode("utf-8", errors="surrogatepass")
    if op == "semicolons":
        return text.replace(",", ";").encode()
    if op == "tabs":
        return text.replace(",", "\t").encode()
    if op == "utf16":
        return text.encode("utf-16")
    if op == "latin1":
        return (text.replace("running", "rünning")).encode("latin-1")
    if op == "bom_crlf":
        return b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode()
    if op == "nul":
        return data[:i] + b"\x00" + data[i:]
    if op == "quote":
        return data[:i] + b'"' + data[i:]
    raise AssertionError(op)


OPS = [
    "flip",
    "truncate",
    "drop_column",
    "duplicate_column",
    "junk_cell",
    "semicolons",
    "tabs",
    "utf16",
    "latin1",
    "bom_crlf",
    "nul",
    "quote",
]


# 30 examples: each runs one great-expectations validation (~1 s), keeping this test well under a minute.
@settings(max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    target=st.sampled_from(sorted(VALID)),
    op=st.sampled_from(OPS),
    pos=st.floats(0, 1),
    junk=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30),
    col=st.integers(0, 20),
)
def test_corrupted_inputs_give_clean_results(target, op, pos, junk, col):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = _corrupt(VALID[target].encode(), op, pos, junk, col)
        folder = write_clinic(tmp / "in", {target: data})
        try:
            inputs = load_inputs(folder)
        except InputError:
            inputs = None
        if inputs is not None:
            assert all(p.file and p.rule for p in inputs.problems)
        # The CLI runs load_inputs + validate_tables; exit 3 would mean an exception escaped them.
        code, _, err = run_cli(["--params", str(make_params(tmp)), "validate", "--input", str(folder)])
        assert code in (0, 1, 2), err
        assert "Traceback" not in err and "internal error" not in err
        if code:
            assert err.strip()


# ----------------------------------------------------------------------------- explicit bad inputs

XLSX_BYTES = b"PK\x03\x04" + b"\x00" * 200


def _ragged():
    return {
        "sessions.csv": SESSIONS.replace(
            "S0002,C0001,2025-03-10,T1,hip,,45", "S0002,C0001,2025-03-10,T1,hip,stretching,trigger_point,45"
        )
    }


# id, files to replace (None = delete), extra validate params, expected exit code, strings the stderr must contain
CASES = [
    ("missing_file", {"measurements.csv": None}, {}, 1, ["measurements.csv", "file not found"]),
    ("empty_file", {"clients.csv": ""}, {}, 1, ["clients.csv", "empty"]),
    ("header_only", {"clients.csv": CLIENTS.splitlines()[0] + "\n"}, {}, 1, ["clients.csv", "no data rows"]),
    ("wrong_delimiter", {"clients.csv": CLIENTS.replace(",", ";")}, {}, 1, ["clients.csv", "row 1", "delimiter"]),
    (
        "not_utf8",
        {"clients.csv": CLIENTS.replace("running", "rünning").encode("latin-1")},
        {},
        1,
        ["clients.csv", "row 2", "UTF-8"],
    ),
    ("bom", {"clients.csv": b"\xef\xbb\xbf" + CLIENTS.encode()}, {}, 0, []),
    ("crlf", {k: v.replace("\n", "\r\n") for k, v in VALID.items()}, {}, 0, []),
    (
        "quoted_comma",
        {"sessions.csv": SESSIONS.replace("trigger_point,30", '"trigger_point,stretching",30')},
        {},
        1,
        ["sessions.csv", "row 4", "column techniques"],
    ),
    ("unquoted_comma", _ragged(), {}, 1, ["sessions.csv", "row 3", "fields"]),
    (
        "missing_column",
        {"clients.csv": CLIENTS.replace(",knee", "").replace(",right", "").replace(",left", "")},
        {},
        1,
        ["clients.csv", "column knee", "missing"],
    ),
    (
        "extra_column",
        {
            "clients.csv": CLIENTS.replace("knee\n", "knee,shoe_size\n")
            .replace("right\n", "right,9\n")
            .replace("left\n", "left,10\n")
        },
        {},
        1,
        ["clients.csv", "column shoe_size", "unknown column"],
    ),
    (
        "identifier_column",
        {
            "clients.csv": CLIENTS.replace("knee\n", "knee,email\n")
            .replace("right\n", "right,x\n")
            .replace("left\n", "left,y\n")
        },
        {},
        1,
        ["clients.csv", "column email", "identifier"],
    ),
    (
        "duplicated_column",
        {"measurements.csv": MEASUREMENTS.replace("value\n", "value,value\n")},
        {},
        1,
        ["measurements.csv", "column value", "more than once"],
    ),
    (
        "wrong_type",
        {"sessions.csv": SESSIONS.replace(",hip,,45", ",hip,,forty-five")},
        {},
        1,
        ["sessions.csv", "row 3", "column minutes"],
    ),
    (
        "out_of_range",
        {"measurements.csv": MEASUREMENTS.replace("pre,7", "pre,11")},
        {},
        1,
        ["measurements.csv", "row 6", "column value"],
    ),
    (
        "unknown_category",
        {"clients.csv": CLIENTS.replace(",F,", ",female,")},
        {},
        1,
        ["clients.csv", "row 2", "column sex"],
    ),
    (
        "other_date_format",
        {"sessions.csv": SESSIONS.replace("2025-03-04", "04/03/2025")},
        {},
        1,
        ["sessions.csv", "row 4", "column session_date"],
    ),
    (
        "impossible_date",
        {"sessions.csv": SESSIONS.replace("2025-03-04", "2025-02-30")},
        {},
        1,
        ["sessions.csv", "row 4", "column session_date"],
    ),
    (
        "future_date",
        {"sessions.csv": SESSIONS.replace("2025-03-04", "2099-03-04")},
        {},
        1,
        ["sessions.csv", "row 4", "column session_date"],
    ),
    (
        "duplicate_key",
        {"clients.csv": CLIENTS.replace("C0002,,M", "C0001,,M")},
        {},
        1,
        ["clients.csv", "row 3", "column client_id"],
    ),
    (
        "orphan",
        {"sessions.csv": SESSIONS.replace("S0003,C0002", "S0003,C0009")},
        {},
        1,
        ["sessions.csv", "row 4", "column client_id"],
    ),
    (
        "unknown_measure",
        {"measurements.csv": MEASUREMENTS.replace("S0003,lefs", "S0003,koos")},
        {},
        1,
        ["measurements.csv", "row 7", "column measure"],
    ),
    ("huge_file", {}, {"max_file_mb": 0.0001}, 1, ["clients.csv", "MB"]),
    ("xlsx_named_csv", {"clients.csv": XLSX_BYTES}, {}, 1, ["clients.csv", "Excel"]),
    (
        "email_in_cell",
        {"sessions.csv": SESSIONS.replace(",T2,", ",jo@example.com,")},
        {},
        1,
        ["sessions.csv", "row 4", "column therapist_id", "email"],
    ),
]


@pytest.mark.parametrize(("files", "extra", "code", "needles"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, files, extra, code, needles):
    folder = write_clinic(tmp_path / "in", files)
    got, out, err = run_cli(["--params", str(make_params(tmp_path, **extra)), "validate", "--input", str(folder)])
    assert "Traceback" not in err and "internal error" not in err
    assert got == code, err or out
    for needle in needles:
        assert needle in err, f"{needle!r} not in:\n{err}"
    # a flagged identifying value is never echoed
    assert "jo@example.com" not in err + out


def test_missing_folder(tmp_path):
    code, _, err = run_cli(["--params", str(make_params(tmp_path)), "validate", "--input", str(tmp_path / "nope")])
    assert code == 2 and "input folder not found" in err and "nope" in err


def test_file_instead_of_folder(tmp_path):
    f = tmp_path / "clients.csv"
    f.write_text(CLIENTS)
    code, _, err = run_cli(["--params", str(make_params(tmp_path)), "validate", "--input", str(f)])
    assert code == 2 and "not a folder" in err


def test_directory_where_a_file_should_be(tmp_path):
    folder = write_clinic(tmp_path / "in", {"clients.csv": None})
    (folder / "clients.csv").mkdir()
    code, _, err = run_cli(["--params", str(make_params(tmp_path)), "validate", "--input", str(folder)])
    assert code == 1 and "clients.csv" in err and "folder" in err


def test_valid_clinic_passes(tmp_path):
    folder = write_clinic(tmp_path / "in")
    code, out, err = run_cli(["--params", str(make_params(tmp_path)), "validate", "--input", str(folder)])
    assert code == 0, err
    assert "0 error(s)" in out


# ----------------------------------------------------------------------------- inputs are never modified


def _hashes(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), stat.S_IMODE(p.stat().st_mode))
        for p in sorted(folder.iterdir())
    }


@pytest.mark.parametrize("broken", [False, True], ids=["valid", "with_errors"])
def test_validate_never_modifies_inputs(tmp_path, broken):
    src = write_clinic(tmp_path / "src", {"clients.csv": CLIENTS.replace(",F,", ",female,")} if broken else None)
    folder = tmp_path / "copy"
    shutil.copytree(src, folder)
    for p in folder.iterdir():
        p.chmod(0o444)  # the tool must not need write access to its inputs
    folder.chmod(0o555)
    try:
        before = _hashes(folder)
        names = sorted(os.listdir(folder))
        code, _, err = run_cli(["--params", str(make_params(tmp_path)), "validate", "--input", str(folder)])
        assert code == (1 if broken else 0), err
        assert _hashes(folder) == before  # contents and read-only modes unchanged
        assert sorted(os.listdir(folder)) == names  # no temp or output files in the input folder
    finally:
        folder.chmod(0o755)
