"""Read and check findings bundles before pooling: one clear line per problem, nothing pooled on any.

Checks, in order, per file: it exists and is JSON; its schema major version is the one this pooler
reads (2); it follows ``findings.schema.json``; its integrity hash matches its content; its primary
estimate and SE are numbers (not suppressed or missing). Then across files: the compatibility keys
agree (the differing fields are named) and no clinic id appears twice.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema

from analysis.report import findings as fnd

if TYPE_CHECKING:
    import jsonschema.protocols

COMPAT_FIELDS = (
    "measure",
    "timing",
    "primary_week",
    "followup_weeks",
    "endpoint_window_weeks",
    "exposure",
    "covariates",
    "df_method",
    "estimand",
)


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    """The findings schema's validator, built once per run (not once per bundle)."""
    return jsonschema.Draft202012Validator(fnd.schema())


def _schema_problem(bundle: dict[str, Any]) -> str | None:
    errors = sorted(_validator().iter_errors(bundle), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    e = errors[0]
    where = ".".join(str(p) for p in e.absolute_path) or "(top level)"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"does not follow the findings schema at {where}: {e.message}{more}"


def read_bundle(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """One bundle, or the reason it cannot be pooled (``'<path>: <what is wrong>'``)."""
    if not path.is_file():
        return None, f"{path}: not found"
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None, f"{path}: not a text file (a findings bundle is UTF-8 JSON)"
    try:
        bundle = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"{path}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); is it a findings.json?"
    if not isinstance(bundle, dict):
        return None, f"{path}: not a findings bundle (the JSON is not an object)"
    version = str(bundle.get("schema_version", ""))
    if version.split(".")[0] != str(fnd.SCHEMA_MAJOR):
        return None, (
            f"{path}: unknown schema version {version or '(none)'}; this pooler reads version "
            f"{fnd.SCHEMA_MAJOR}.x (rebuild the bundle with a current `outcomes report`)"
        )
    found = bundle.get("primary")
    primary: dict[str, Any] = found if isinstance(found, dict) else {}
    for key in ("estimate", "se"):
        if isinstance(primary.get(key), str):
            return None, (
                f"{path}: primary.{key} is {primary[key]!r}, a suppressed or text value; a bundle's "
                "estimates must be numbers"
            )
    problem = _schema_problem(bundle)
    if problem:
        return None, f"{path}: {problem}"
    if bundle["integrity"]["sha256"] != fnd.integrity_hash(bundle):
        return None, (
            f"{path}: its integrity hash does not match its content: the file was edited or damaged "
            "after `outcomes report` wrote it; ask the clinic for the original"
        )
    if primary.get("status") not in ("ok", "fallback") or primary.get("estimate") is None or not primary.get("se"):
        reason = primary.get("reason") or "no estimate"
        return None, f"{path}: the clinic's primary model gave no estimate (status {primary.get('status')}: {reason})"
    return bundle, None


def compatibility_problems(bundles: list[dict[str, Any]], paths: list[Path]) -> list[str]:
    """Bundles that estimate something else than the first one, and duplicate clinic ids."""
    problems = []
    ref, ref_path = bundles[0]["compatibility"], paths[0]
    for b, p in zip(bundles[1:], paths[1:], strict=True):
        c = b["compatibility"]
        if c["sha256"] != ref["sha256"]:
            diff = [f"{k} {c.get(k)!r} vs {ref.get(k)!r}" for k in COMPAT_FIELDS if c.get(k) != ref.get(k)]
            problems.append(
                f"{p}: estimates a different thing than {ref_path} ({'; '.join(diff) or 'hash differs'})"
                "; only bundles with the same compatibility key can be pooled"
            )
    seen: dict[str, Path] = {}
    for b, p in zip(bundles, paths, strict=True):
        cid = b["clinic_id"]
        if cid in seen:
            problems.append(
                f"{p}: clinic id {cid!r} is also in {seen[cid]}: the same clinic twice, or two clinics "
                "sharing an id (each clinic sets a unique report.clinic_id)"
            )
        else:
            seen[cid] = p
    return problems


def read_bundles(paths: list[Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """Every bundle, and every problem (file by file, then across files)."""
    bundles: list[dict[str, Any]] = []
    problems: list[str] = []
    ok_paths: list[Path] = []
    for p in paths:
        b, problem = read_bundle(p)
        if b is None:  # read_bundle gives a bundle or a problem, never both
            problems.append(str(problem))
        else:
            bundles.append(b)
            ok_paths.append(p)
    if bundles and not problems:
        problems += compatibility_problems(bundles, ok_paths)
    return bundles, problems
