"""analysis.store writes atomically: a failed or killed write leaves the previous file intact."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from analysis import store


def _others(folder: Path, keep: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != keep)


@pytest.mark.parametrize("writer", ["text", "bytes", "json", "csv", "parquet"])
def test_exception_mid_write_keeps_old_file_and_no_temp(tmp_path, writer, monkeypatch):
    target = tmp_path / "out.dat"
    target.write_bytes(b"previous content\n")

    class Boom(RuntimeError):
        pass

    if writer in ("text", "bytes", "json"):
        with pytest.raises(Boom), store.atomic_open(target, "wb" if writer == "bytes" else "w") as fh:
            fh.write(b"partial" if writer == "bytes" else "partial")
            raise Boom
    else:
        # Make the library writer fail after it has written part of the temp file.
        method = "to_csv" if writer == "csv" else "to_parquet"

        def half_then_fail(self, path, *args, **kwargs):
            Path(path).write_bytes(b"half a table")
            raise Boom

        monkeypatch.setattr(pd.DataFrame, method, half_then_fail)
        with pytest.raises(Boom):
            getattr(store, f"write_{writer}")(target, pd.DataFrame({"a": [1, 2]}))
    assert target.read_bytes() == b"previous content\n"
    assert _others(tmp_path, "out.dat") == []  # no temp file left behind


def test_successful_write_replaces_and_cleans_up(tmp_path):
    target = tmp_path / "t.json"
    target.write_text("old")
    store.write_json(target, {"b": 1, "a": float("nan")})
    assert json.loads(target.read_text()) == {"a": None, "b": 1}
    assert _others(tmp_path, "t.json") == []


KILLED_WRITER = r"""
import sys, time
from pathlib import Path
from analysis import store
target = Path(sys.argv[1])
chunk = b"x" * (1 << 20)
with store.atomic_open(target, "wb") as fh:
    for i in range(10_000):          # up to 10 GB: far more than it can write before the kill
        fh.write(chunk)
        fh.flush()
        if i == 3:
            print("writing", flush=True)
        time.sleep(0.001)
"""


def test_sigkill_mid_write_leaves_old_file(tmp_path):
    target = tmp_path / "big.bin"
    old = b"the previous, complete output\n" * 100
    target.write_bytes(old)
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(target)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = proc.stdout.readline()
        assert line.strip() == b"writing", proc.stderr.read()
        temps = [p for p in tmp_path.iterdir() if p.name != "big.bin"]
        deadline = time.monotonic() + 10
        while not temps or temps[0].stat().st_size < 8 << 20:  # let it get well into the write
            assert time.monotonic() < deadline, "writer did not make progress"
            time.sleep(0.01)
            temps = [p for p in tmp_path.iterdir() if p.name != "big.bin"]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert target.read_bytes() == old  # the partial file never replaced the old one
    # A killed process cannot clean up: what remains is only its hidden temp file, never the target name.
    leftovers = _others(tmp_path, "big.bin")
    assert all(n.startswith(".big.bin.") and n.endswith(".tmp") for n in leftovers), leftovers
    assert all((tmp_path / n).stat().st_size > len(old) for n in leftovers)


def test_a_running_writer_s_temp_file_is_left_alone_a_dead_one_s_removed(tmp_path):
    import os
    import subprocess
    import sys

    from analysis.store import write_text

    target = tmp_path / "report.html"
    mine = tmp_path / f".report.html.{os.getpid()}.abc.tmp"  # a concurrent writer in a live process
    mine.write_text("in progress")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = tmp_path / f".report.html.{int(dead.stdout)}.xyz.tmp"  # its process has exited
    gone.write_text("left behind")
    write_text(target, "done")
    assert target.read_text() == "done" and mine.exists() and not gone.exists()


def test_read_only_output_folder_is_one_clear_error(tmp_path, monkeypatch, capsys):
    from analysis.cli import main

    # root (as in CI) may write anywhere, so the refusal the OS gives a clinic user is simulated
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(store, "_new_temp", refuse)
    out = tmp_path / "ro"
    code = main(["simulate", "--out", str(out), "--clients", "5"])
    err = capsys.readouterr().err
    assert code != 0 and "internal error" not in err and "Traceback" not in err
    assert err.startswith(f"error: {out}/") and "permission denied; make the folder writable" in err
    assert len(err.strip().splitlines()) == 1
