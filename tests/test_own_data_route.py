"""The README's own-data route, end to end, as a new user runs it (README: "From a practice-software export").

Every step is the real command in its own process, in a fresh project folder, with the key, the mapping, the
crosswalk, the tables and the private view outside it: keygen -> draft-mapping (the draft needs no edits) ->
deidentify -> validate --input -> params.local.yaml ($OUTCOMES_PARAMS_LOCAL) -> validate, join, model, report
(what ``make report-local`` runs) -> clinic-view with real dates. The route's machine time is printed (run with
``-s``); the README quotes it.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

import analysis

ROOT = Path(__file__).resolve().parents[1]
EXPORT = ROOT / "data" / "examples" / "practice_export.csv"
#: the package under test, for the child processes (whichever checkout this test runs from)
SRC = Path(analysis.__file__).resolve().parents[1]


def _outcomes(args: list[str], cwd: Path, env: dict[str, str], times: dict[str, float]) -> subprocess.CompletedProcess:
    """One ``outcomes`` command in its own process; its wall time is added to ``times``."""
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "analysis", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    times[args[0]] = times.get(args[0], 0.0) + time.perf_counter() - t0
    assert done.returncode == 0, f"outcomes {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def test_readme_own_data_route_end_to_end(tmp_path):
    project, private, secure = tmp_path / "project", tmp_path / "clinic-private", tmp_path / "secure" / "tables"
    project.mkdir()
    for name in ("params.yaml", "requirements.lock"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(ROOT / "config", project / "config")
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("OUTCOMES_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    env.update(PYTHONPATH=str(SRC), MPLBACKEND="Agg", PYTHONHASHSEED="0", HOME=str(tmp_path / "home"))
    times: dict[str, float] = {}
    run = lambda *args: _outcomes(list(args), project, env, times)  # noqa: E731

    # 0. a secret key outside the project
    key = tmp_path / "home" / ".config" / "outcomes" / "key"
    run("keygen", "--out", str(key))
    assert key.is_file() and stat.S_IMODE(key.stat().st_mode) == 0o600

    # 1. draft the mapping; 2. it asks no question for this export (the one ??? is the header's instruction),
    # and it is exactly the draft shipped beside the export
    private.mkdir(mode=0o700)
    mapping = private / "mapping.yaml"
    run("draft-mapping", str(EXPORT), "--out", str(mapping))
    draft = mapping.read_text(encoding="utf-8")
    questions = [line for line in draft.splitlines() if "???" in line and not line.lstrip().startswith("#")]
    assert questions == [] and draft.count("???") == 1
    assert draft == (ROOT / "data/examples/practice_export.draft.yaml").read_text(encoding="utf-8")

    # 3. de-identify with the key and the crosswalk outside the project; check the tables
    done = run(
        "deidentify",
        str(EXPORT),
        "--mapping",
        str(mapping),
        "--out",
        str(secure),
        "--key-file",
        str(key),
        "--crosswalk",
        str(private),
    )
    for name in ("clients.csv", "sessions.csv", "measurements.csv", "deidentify_log.json"):
        assert (secure / name).is_file(), name
    assert (private / "crosswalk.csv").is_file() and "[" in done.stderr  # progress lines
    clients = pd.read_csv(secure / "clients.csv", dtype=str)
    raw = pd.read_csv(EXPORT, dtype=str)
    assert not set(raw["Patient Name"]) & set(clients.to_numpy().ravel())  # no name crossed over

    # 4. params.local.yaml (outside the project here) says where the tables are
    local = private / "params.local.yaml"
    local.write_text(yaml.safe_dump({"data": {"input": str(secure)}}), encoding="utf-8")
    env["OUTCOMES_PARAMS_LOCAL"] = str(local)

    # 5. the four stages, as `make report-local` runs them; validate says each step as it goes
    done = run("validate")
    assert "0 error(s)" in done.stdout and str(secure) in done.stdout
    steps = [line.strip() for line in done.stderr.splitlines() if line.lstrip().startswith("[")]
    assert steps[0].endswith(f"loading {secure}") and "writing the validation report" in steps[-1]
    assert [s.split("] ")[1].split(" (")[0] for s in steps if "checking " in s] == [
        "checking clients",
        "checking sessions",
        "checking measurements",
    ]
    for stage in ("join", "model", "report"):
        run(stage)
    assert (project / "data/processed/analysis.parquet").is_file()
    assert (project / "reports/results/results.json").is_file()
    expected = pd.read_csv(project / "reports/results/expected.csv")
    assert list(expected.columns) == ["client_id", "week", "expected", "sd"] and len(expected) > 0
    page = (project / "reports/therapist/index.html").read_text(encoding="utf-8")
    assert "Expected recovery: the primary mixed model" in page
    # the band is drawn by the page's script from the data block's band curves, when a client is opened
    data = json.loads(page.split('<script type="application/json" id="client-data">')[1].split("</script>")[0])
    assert data["band_curves"] and '<polygon class="band"' in page
    assert (project / "reports/peer/report.pdf").read_bytes().startswith(b"%PDF")
    shown = pd.read_csv(project / "reports/therapist/clients.csv", dtype=str)
    assert set(shown["pseudonym"]) <= set(clients["client_id"])

    # 6. the key holder's view with real dates, in a private folder outside the project
    view = private / "view"
    done = run("clinic-view", "--crosswalk", str(private), "--out", str(view), "--sheets", "active")
    walk = pd.read_csv(private / "crosswalk.csv", dtype=str, keep_default_na=False)
    html = (view / "index.html").read_text(encoding="utf-8")
    active = shown[(shown["on_worklist"] == "True") & (shown["active"] == "True")]["pseudonym"]
    # the active worklist rows show each client's real last visit (the finder's cards draw theirs from the data)
    real_last = walk.set_index("client_id")["last_visit_real"]
    assert "Real visit dates" in html and all(real_last[p] in html for p in active)
    assert sorted(p.stem for p in (view / "sheets").glob("*.pdf")) == sorted(active) and len(active) > 0
    assert "expected recovery" in html.lower()
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in view.rglob("*") if p.is_file())
    total = sum(times.values())
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        f"\nown-data route: {total:.0f} s wall ({cpu.ru_utime + cpu.ru_stime:.0f} s CPU); "
        + ", ".join(f"{k} {v:.1f} s" for k, v in times.items())
    )
