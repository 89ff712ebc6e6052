"""Benchmark (not a test): the therapist page at many clients -- its size, build time and first screen.

Run with ``.venv/bin/python benchmarks/bench_page.py [--clients 50000] [--repeats 3] [--project DIR]``.

The page is built from its real inputs: a clinic of N clients from the project's simulator, run through
the real validate, join and model stages in a temporary project (as the report tests do,
tests/fixtures/real_project.py), then read back as ``outcomes report`` reads them
(:func:`analysis.report.inputs.load_report_inputs`). ``--project DIR`` keeps that modelled project
and reuses it on the next run (modelling 50,000 clients takes minutes; it is not what is timed).

Timed, median over ``--repeats``:

- build: :func:`analysis.report.build.therapist_clients` + :func:`~analysis.report.build.build_therapist`
  (the page in memory, as ``build_outputs`` makes it; the shared context is built once, untimed);
- first screen in headless Chromium (``/usr/bin/chromium``): a copy of the page with one extra script
  at the end that, in the ``load`` event, writes ``performance.now()`` into the DOM; ``--dump-dom``
  (which dumps once ``load`` has fired, no virtual time) prints it. Reported: ``load`` = navigation
  start to the load event (the whole HTML parsed, the page's own scripts run: the data parsed, the
  finder's first page and the charts of the first clients drawn), and ``wall`` = the whole
  ``--screenshot`` run at 1280 x 900 (browser start-up, load, paint, PNG), and ``wall_net`` = that minus
  the same run on a blank page (browser start-up).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
PROBE = (
    "<script>addEventListener('load',function(){var n=performance.getEntriesByType('navigation')[0];"
    "var p=document.createElement('pre');p.id='bench-probe';p.textContent=JSON.stringify({load:performance.now(),"
    "dcl:n.domContentLoadedEventEnd});document.body.appendChild(p);});</script>"
)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"]


def _modelled(folder: Path, n_clients: int, seed: int) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from fixtures.real_project import build_modelled_project  # the report tests' own project builder

    if not (folder / "reports" / "results" / "results.json").is_file():
        t0 = time.perf_counter()
        build_modelled_project(folder, n_clients=n_clients, seed=seed)
        print(f"modelled {n_clients} clients in {time.perf_counter() - t0:.0f} s ({folder})", flush=True)
    return folder


def _chromium(args: list[str], timeout: float = 300) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run([CHROMIUM, *FLAGS, *args], capture_output=True, text=True, timeout=timeout, check=False)
    return time.perf_counter() - t0, out.stdout


def first_screen(page: Path, tmp: Path, repeats: int) -> dict[str, float]:
    """Medians (s) of the load time measured inside Chromium and of the screenshot wall time."""
    probe = tmp / "probe.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    blank = tmp / "blank.html"
    blank.write_text("<!doctype html><title>blank</title><p>blank</p>", encoding="utf-8")
    loads, walls, blanks = [], [], []
    for _ in range(repeats):
        _, dom = _chromium(["--dump-dom", probe.as_uri()])
        m = re.search(r'<pre id="bench-probe">(.*?)</pre>', dom)
        loads.append(json.loads(m.group(1).replace("&quot;", '"'))["load"] / 1000 if m else float("nan"))
        shot = tmp / "shot.png"
        walls.append(_chromium(["--window-size=1280,900", f"--screenshot={shot}", page.as_uri()])[0])
        blanks.append(_chromium(["--window-size=1280,900", f"--screenshot={shot}", blank.as_uri()])[0])
    wall, start = statistics.median(walls), statistics.median(blanks)
    return {"load": statistics.median(loads), "wall": wall, "wall_net": wall - start}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--project", type=Path, help="keep (and reuse) the modelled project here")
    ap.add_argument("--no-browser", action="store_true", help="size and build time only")
    args = ap.parse_args(argv)

    os.environ.setdefault("MPLBACKEND", "Agg")
    with tempfile.TemporaryDirectory(prefix="bench_page_") as tmp_name:
        tmp = Path(tmp_name)
        root = _modelled(args.project or tmp / "project", args.clients, args.seed)
        os.environ["OUTCOMES_ROOT"] = str(root)
        sys.path.insert(0, str(ROOT / "tests"))
        from analysis.report import provenance as prov
        from analysis.report.build import build_therapist, therapist_clients
        from analysis.report.context import common_context
        from analysis.report.inputs import load_report_inputs
        from fixtures.real_project import project_params

        params = project_params(root)
        inp, read = load_report_inputs(params, root)
        c = common_context(inp, prov.collect(params, root, read))
        times, html = [], ""
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            html = build_therapist(inp, c, therapist_clients(inp, c))
            times.append(time.perf_counter() - t0)
        page = tmp / "therapist" / "index.html"
        page.parent.mkdir()
        page.write_text(html, encoding="utf-8")
        size = page.stat().st_size / 1e6
        row = {"clients": args.clients, "size_mb": round(size, 2), "build_s": round(statistics.median(times), 2)}
        if not args.no_browser and shutil.which(CHROMIUM):
            row |= {f"{k}_s": round(v, 2) for k, v in first_screen(page, tmp, args.repeats).items()}
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
