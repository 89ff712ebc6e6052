"""Reproducibility check: build the demo twice from scratch and compare every output byte for byte.

Not a test (it takes a few minutes); run it with ``make repro-check`` or::

    .venv/bin/python benchmarks/repro_check.py [--keep] [--serial] [--no-lock] [--coretype Sandybridge]

It copies the project's tracked files (as they are in the work tree, so uncommitted edits are checked too)
into two temporary folders and runs ``validate -> join -> model -> report`` in each with the running
Python (its venv) and the copy's own ``src`` first on the path:

``default``
    the environment as it is;
``variant``
    a different machine, as far as one machine can pretend: ``OPENBLAS_CORETYPE=Prescott`` (other BLAS
    kernels: different rounding inside matrix products), ``FONTCONFIG_FILE`` pointing at a fontconfig
    that exposes a single font family (Computer Modern from matplotlib's own fonts, so no system font
    can be found by name), another time zone and locale, and another folder path.

Every file under ``reports/`` and ``data/processed/`` must be identical; a difference is printed as
``file  size_a  size_b  first differing byte`` with the bytes around it. With the committed ``dvc.lock``
present, the ``default`` build's stage outputs are also hashed the way DVC does (md5 of each file; md5 of
the sorted JSON listing for a folder) and compared with the hashes recorded there.

Exit status 0 when everything matches, 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPARED = ("reports", "data/processed")
STAGES = ("validate", "join", "model", "report")
CONTEXT = 40

FONTS_CONF = """<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "fonts.dtd">
<fontconfig>
  <dir>{fonts}</dir>
  <cachedir>{cache}</cachedir>
</fontconfig>
"""


def tracked_files(root: Path) -> list[str]:
    """The files git tracks in ``root`` (relative paths), deleted-but-tracked ones left out."""
    out = subprocess.run(["git", "ls-files", "-z"], cwd=root, check=True, capture_output=True).stdout
    return sorted(p for p in out.decode().split("\0") if p and (root / p).is_file())


def copy_project(root: Path, dest: Path) -> None:
    """A fresh copy of the tracked files: no outputs, no caches, no virtual environment."""
    for rel in tracked_files(root):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)


def single_family_fontconfig(where: Path) -> Path:
    """A fontconfig file exposing one family only: matplotlib's Computer Modern (cmr10)."""
    import matplotlib

    fonts = where / "fonts"
    fonts.mkdir(parents=True)
    shutil.copy2(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "cmr10.ttf", fonts / "cmr10.ttf")
    conf = where / "fonts.conf"
    conf.write_text(FONTS_CONF.format(fonts=fonts, cache=where / "cache"), encoding="utf-8")
    return conf


def build_env(project: Path, scratch: Path, extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of one build: the copy's ``src`` first, its own matplotlib cache, the Makefile's pins."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OUTCOMES_ROOT", "SOURCE_DATE_EPOCH")}
    mpl = scratch / "mplconfig"
    mpl.mkdir(parents=True, exist_ok=True)
    env.update(
        PYTHONPATH=str(project / "src"),
        OUTCOMES_ROOT=str(project),
        PYTHONHASHSEED="0",
        MPLBACKEND="Agg",
        MPLCONFIGDIR=str(mpl),
        XDG_CACHE_HOME=str(scratch / "cache"),
    )
    env.update(extra)
    return env


def start_build(project: Path, env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Run the four stages in ``project`` (a shell chain stopping at the first failure), output to ``log``."""
    py = sys.executable
    chain = " && ".join(f"'{py}' -m analysis {stage}" for stage in STAGES)
    with open(log, "wb") as fh:
        return subprocess.Popen(["bash", "-c", chain], cwd=project, env=dict(env), stdout=fh, stderr=fh)


def output_files(project: Path) -> dict[str, Path]:
    """Every file under the compared folders, by path relative to the project."""
    found: dict[str, Path] = {}
    for folder in COMPARED:
        for p in sorted((project / folder).rglob("*")):
            if p.is_file():
                found[p.relative_to(project).as_posix()] = p
    return found


def first_difference(a: bytes, b: bytes) -> int | None:
    """Offset of the first byte at which ``a`` and ``b`` differ (the shorter length if one is a prefix)."""
    if a == b:
        return None
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def compare(a: Mapping[str, Path], b: Mapping[str, Path]) -> list[str]:
    """One line (plus context) per file that is missing on one side or differs."""
    lines = []
    for rel in sorted(set(a) | set(b)):
        if rel not in a or rel not in b:
            lines.append(f"{rel}: only in {'default' if rel in a else 'variant'}")
            continue
        da, db = a[rel].read_bytes(), b[rel].read_bytes()
        at = first_difference(da, db)
        if at is None:
            continue
        lo = max(at - CONTEXT, 0)
        lines.append(f"{rel}: {len(da)} vs {len(db)} bytes, first difference at byte {at}")
        lines.append(f"    default: {da[lo : at + CONTEXT]!r}")
        lines.append(f"    variant: {db[lo : at + CONTEXT]!r}")
    return lines


def dvc_md5(path: Path) -> str:
    """The md5 DVC records for an output: of the bytes for a file, of the sorted listing for a folder."""
    if path.is_file():
        return hashlib.md5(path.read_bytes()).hexdigest()
    listing = [
        {"md5": hashlib.md5(p.read_bytes()).hexdigest(), "relpath": p.relative_to(path).as_posix()}
        for p in sorted(path.rglob("*"))
        if p.is_file()
    ]
    listing.sort(key=lambda e: e["relpath"])
    return hashlib.md5(json.dumps(listing, sort_keys=True).encode("utf-8")).hexdigest() + ".dir"


def lock_outs(lock: Mapping[str, object]) -> Iterable[tuple[str, str, str]]:
    """(stage, path, md5) of every output recorded in a parsed ``dvc.lock``."""
    stages = lock.get("stages", {})
    assert isinstance(stages, dict)
    for stage, entry in stages.items():
        for out in entry.get("outs", []):
            yield stage, out["path"], out["md5"]


def compare_lock(project: Path, lock_path: Path) -> list[str]:
    """Stage outputs of the build whose DVC hash differs from the one in ``dvc.lock``."""
    lock = yaml.safe_load(lock_path.read_text(encoding="utf-8"))
    lines = []
    for stage, rel, md5 in lock_outs(lock):
        got = dvc_md5(project / rel) if (project / rel).exists() else "missing"
        status = "ok" if got == md5 else "DIFFERS"
        lines.append(f"{status:8} {stage:9} {rel}: dvc.lock {md5}, this build {got}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", action="store_true", help="keep the two builds (their folder is printed)")
    ap.add_argument("--serial", action="store_true", help="one build after the other (default: both at once)")
    ap.add_argument("--no-lock", action="store_true", help="skip the comparison with the committed dvc.lock")
    ap.add_argument("--coretype", default="Prescott", help="OPENBLAS_CORETYPE of the variant (default Prescott)")
    args = ap.parse_args(argv)

    scratch = Path(tempfile.mkdtemp(prefix="repro-check-"))
    try:
        fontconf = single_family_fontconfig(scratch / "fontconfig")
        conditions = {
            "default": {},
            "variant": {
                "OPENBLAS_CORETYPE": args.coretype,
                "FONTCONFIG_FILE": str(fontconf),
                "TZ": "Pacific/Auckland",
                "LC_ALL": "C.UTF-8",
                "LANG": "C.UTF-8",
            },
        }
        projects, procs = {}, {}
        for name, extra in conditions.items():
            project = scratch / name / "hip-knee"
            copy_project(ROOT, project)
            projects[name] = project
            env = build_env(project, scratch / name, extra)
            print(f"building {name} in {project}" + "".join(f"\n    {k}={v}" for k, v in extra.items()), flush=True)
            procs[name] = start_build(project, env, scratch / name / "build.log")
            if args.serial:
                procs[name].wait()
        failed = [name for name, proc in procs.items() if proc.wait() != 0]
        for name in failed:
            print(f"BUILD FAILED ({name}):\n" + (scratch / name / "build.log").read_text(errors="replace")[-3000:])
        if failed:
            return 1

        a, b = output_files(projects["default"]), output_files(projects["variant"])
        diffs = compare(a, b)
        n = len(set(a) | set(b))
        print(f"\ncompared {n} files under {', '.join(COMPARED)}: {len(a)} default, {len(b)} variant")
        print("\n".join(diffs) if diffs else "all identical")
        lock_bad = False
        if not args.no_lock and (ROOT / "dvc.lock").is_file():
            lock_lines = compare_lock(projects["default"], ROOT / "dvc.lock")
            print("\nagainst the committed dvc.lock:\n" + "\n".join(lock_lines))
            lock_bad = any(line.startswith("DIFFERS") for line in lock_lines)
        ok = not diffs and not lock_bad
        print("\nREPRODUCIBLE" if ok else "\nNOT REPRODUCIBLE")
        return 0 if ok else 1
    finally:
        if args.keep:
            print(f"builds kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
