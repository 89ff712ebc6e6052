"""The README's data dictionary is generated from the contract; this keeps the two in sync."""

from __future__ import annotations

from pathlib import Path

from analysis.contract import data_dictionary_markdown, load_registry

ROOT = Path(__file__).resolve().parents[1]


def test_readme_dictionary_matches_contract():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start, end = "<!-- contract:start -->\n", "<!-- contract:end -->"
    assert start in readme and end in readme
    documented = readme.split(start, 1)[1].split(end, 1)[0].strip()
    generated = data_dictionary_markdown(load_registry(ROOT / "config" / "measures.yaml")).strip()
    assert documented == generated, "README data dictionary is stale: regenerate it from analysis.contract"


def test_readme_shows_the_two_commands_first():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first_block = readme.split("```bash", 1)[1].split("```", 1)[0]
    assert "make report" in first_block and "make test" in first_block
