"""dvc.yaml lists every module a stage runs, derived from the import graph (read statically, nothing imported).

A stage's ``cmd`` is ``outcomes <command>``: it runs :mod:`analysis.cli` (its module-level imports) and the
command function of that name, with the stage modules that function imports; the command functions of
sub-apps (``outcomes network ...``) run only for their own commands, so their imports are not followed.
From there every ``analysis.*`` import is followed, at module level and inside functions alike (a
function-level import runs when the stage calls it), plus the ``__init__.py`` of every package on the way
(importing ``a.b.c`` runs ``a`` and ``a.b``).
Each module file of that closure must be a dep of the stage: listed itself, or inside a listed folder.
Otherwise editing it would not re-run the stage and ``dvc repro`` would keep stale results.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = "analysis"


def module_files(src: Path = SRC, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__.py``)."""
    out: dict[str, Path] = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imported_modules(nodes: list[ast.stmt], modules: dict[str, Path]) -> set[str]:
    """The package modules that the import statements anywhere in ``nodes`` name (absolute imports)."""
    found: set[str] = set()
    for node in (n for top in nodes for n in ast.walk(top)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in modules:
            found.add(node.module)
            # `from analysis.report import findings` imports the submodule analysis.report.findings
            found |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules}
    return found


def with_parents(names: set[str]) -> set[str]:
    """``names`` plus every package above them (``a.b.c`` -> ``a``, ``a.b``, ``a.b.c``)."""
    return {".".join(n.split(".")[:i]) for n in names for i in range(1, n.count(".") + 2)}


def closure(start: set[str], modules: dict[str, Path], read: frozenset[str] = frozenset()) -> set[str]:
    """All package modules that importing ``start`` (and calling into it) can run.

    Modules in ``read`` count as run but their imports are not followed (they are in ``start`` already).
    """
    seen: set[str] = set(read)
    todo = with_parents(start)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        tree = ast.parse(modules[name].read_text(encoding="utf-8"))
        # a CLI command function (e.g. a sub-app's `outcomes network ...`) runs only when that command runs
        body = [n for n in tree.body if not _is_command(n)]
        todo |= with_parents(imported_modules(body, modules)) - seen
    return seen


def _is_command(node: ast.stmt) -> bool:
    """A function decorated ``@app.command(...)``: one CLI subcommand."""
    return isinstance(node, ast.FunctionDef) and any(
        isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr == "command"
        for d in node.decorator_list
    )


def command_entry(command: str, cli: Path, modules: dict[str, Path]) -> set[str]:
    """What ``outcomes <command>`` imports: cli.py's own imports, except those inside the *other* commands.

    Module level and helpers (``_params``, ``main``, ...) count for every command; a command function only
    for itself.
    """
    tree = ast.parse(cli.read_text(encoding="utf-8"))
    name = command.replace("-", "_")
    own = [n for n in tree.body if isinstance(n, ast.FunctionDef) and _is_command(n) and n.name == name]
    assert own, f"dvc.yaml runs `outcomes {command}`, but {cli.name} defines no @app.command() {name!r}"
    shared = [n for n in tree.body if not _is_command(n)]
    return {"analysis.cli"} | imported_modules(shared + own, modules)


def stage_modules(command: str, modules: dict[str, Path]) -> set[str]:
    """Every package module that ``outcomes <command>`` can run (cli.py: only the parts that command runs)."""
    cli = f"{PACKAGE}.cli"
    return closure(command_entry(command, modules[cli], modules), modules, read=frozenset({cli}))


def covered(path: Path, deps: list[str]) -> bool:
    """True when ``path`` is one of ``deps`` or inside a folder among them."""
    rel = path.relative_to(ROOT)
    return any(rel == Path(d) or Path(d) in rel.parents for d in deps)


def _stages() -> dict[str, dict[str, Any]]:
    stages: dict[str, dict[str, Any]] = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    return stages


@pytest.mark.parametrize("stage", sorted(_stages()))
def test_stage_deps_cover_every_module_it_imports(stage: str) -> None:
    spec = _stages()[stage]
    cmd = str(spec["cmd"]).split()
    assert Path(cmd[0]).name == "outcomes", f"stage {stage}: cmd {spec['cmd']!r} is not an `outcomes` command"
    modules = module_files()
    needed = stage_modules(cmd[1], modules)
    deps = [str(d) for d in spec["deps"]]
    missing = sorted(str(modules[m].relative_to(ROOT)) for m in needed if not covered(modules[m], deps))
    assert not missing, (
        f"dvc.yaml stage {stage!r} (`{spec['cmd']}`) imports modules its deps do not list: "
        f"{', '.join(missing)}. Add them to the stage's deps (or a folder holding them)."
    )


def test_closure_follows_function_level_and_from_package_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "analysis"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "cli.py").write_text(
        "import analysis.a\n\n"
        "def _helper():\n    import analysis.d\n\n"
        "@app.command()\ndef go():\n    from analysis.sub import leaf\n\n"
        "@app.command()\ndef other():\n    import analysis.c\n"
    )
    (pkg / "a.py").write_text("def f():\n    from analysis import b\n")
    (pkg / "b.py").write_text("")
    (pkg / "c.py").write_text("")
    (pkg / "d.py").write_text("")
    (pkg / "sub" / "leaf.py").write_text("import json\n")
    modules = module_files(tmp_path)
    entry = command_entry("go", pkg / "cli.py", modules)
    assert entry == {"analysis.cli", "analysis.a", "analysis.d", "analysis.sub", "analysis.sub.leaf"}
    assert stage_modules("go", modules) == {
        "analysis",
        "analysis.cli",
        "analysis.a",
        "analysis.b",
        "analysis.d",
        "analysis.sub",
        "analysis.sub.leaf",
    }  # analysis.c belongs to another command


def test_covered_by_file_or_folder() -> None:
    path = ROOT / "src" / "analysis" / "model" / "lmm" / "fit.py"
    assert covered(path, ["src/analysis/model"])
    assert covered(path, ["src/analysis/model/lmm/fit.py"])
    assert not covered(path, ["src/analysis/model/lmm/fit"])
    assert not covered(path, ["src/analysis/mod", "${join.out}"])
