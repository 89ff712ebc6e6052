"""Every OSError while writing an output is one line naming the file and what to do; nothing half-written."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from analysis import store
from analysis.cli import main
from analysis.errors import OutputError

CASES = [
    (errno.ENOSPC, "no space left on the device"),
    (errno.EDQUOT, "disk quota is used up"),
    (errno.EROFS, "the folder is read-only"),
    (errno.EACCES, "permission denied"),
]


def _fail(code):
    def raise_(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    return raise_


@pytest.mark.parametrize(("code", "words"), CASES)
@pytest.mark.parametrize("where", ["fsync", "replace"])
def test_write_failure_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch, code, words, where):
    target = tmp_path / "out.json"
    target.write_text("previous\n")
    monkeypatch.setattr(os, where, _fail(code))
    with pytest.raises(OutputError) as info:
        store.write_json(target, {"a": 1})
    message = str(info.value)
    assert message.startswith(f"{target}: cannot be written (") and words in message
    assert "\n" not in message
    assert target.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]  # no temp file left


def test_an_oserror_without_errno_is_read_from_its_message(tmp_path):
    # pyarrow raises OSError("... [Errno 28] No space left on device") without .errno
    err = store.write_failure(tmp_path / "t.parquet", OSError("Failed to write: [Errno 28] No space left on device"))
    assert "no space left on the device" in str(err)
    other = store.write_failure(tmp_path / "t.csv", OSError(errno.EIO, "Input/output error"))
    assert "Input/output error; check the folder and the disk" in str(other)


@pytest.mark.parametrize(("code", "words"), CASES[:2] + CASES[2:3])
def test_cli_full_disk_or_read_only_is_one_line_no_internal_error(tmp_path, monkeypatch, capsys, code, words):
    out = tmp_path / "sim"
    monkeypatch.setattr(os, "replace", _fail(code))
    exit_code = main(["simulate", "--out", str(out), "--clients", "5"])
    err = capsys.readouterr().err
    assert exit_code != 0
    assert "internal error" not in err and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {out}/") and words in lines[0]
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []


def test_cli_maps_a_stray_oserror_from_a_write_to_one_line(monkeypatch, capsys, tmp_path):
    # a write outside analysis.store (e.g. a library writing its own file) is still one line, not a traceback
    import analysis.cli as cli

    def boom(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.key"))

    monkeypatch.setattr("analysis.deidentify.run_keygen", boom)
    code = cli.main(["keygen", "--out", str(tmp_path / "x.key")])
    err = capsys.readouterr().err
    assert code != 0 and "internal error" not in err
    assert err.strip() == (
        f"error: {tmp_path / 'x.key'}: no space left on the device; free some space or choose another "
        "output folder, then run again"
    )


def test_private_temp_file_is_0600_from_the_first_byte(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace

    def inspect(src, dst):
        seen.append(stat.S_IMODE(os.stat(src).st_mode))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", inspect)
    created = []
    real_open = os.open

    def spy_open(path, flags, mode=0o777, *args, **kwargs):
        fd = real_open(path, flags, mode, *args, **kwargs)
        if str(path).endswith(".tmp"):
            created.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return fd

    monkeypatch.setattr(os, "open", spy_open)
    folder = tmp_path / "private" / "deeper"
    store.write_text(folder / "secret.csv", "a\n", private=True)
    assert created == [0o600] and seen == [0o600]
    assert stat.S_IMODE(os.stat(folder / "secret.csv").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(folder.parent).st_mode) == 0o700
    store.write_text(tmp_path / "public.txt", "b\n")
    assert seen[-1] == 0o644


def test_private_dir_tightens_an_existing_folder(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir(mode=0o755)
    assert store.private_dir(folder) == folder
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
