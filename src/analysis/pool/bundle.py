"""Read and check findings bundles before pooling: one clear line per problem, nothing pooled on any.

Checks, in order, per file: it exists and is at most 1 MB (before reading); with a registry, its detached
signature is valid and by a registered key (:mod:`.registry`); it is strict JSON (:func:`.checks.parse`:
no duplicate keys, NaN, Infinity, deep nesting); its schema major version is the one this pooler reads (2);
it follows ``findings.schema.json``; its integrity hash matches; its primary estimate and SE are numbers;
every number, count, string and the period are plausible (:mod:`.checks`); its clinic id is the one its key
is registered to. Then across files: no key signs two bundles, the compatibility keys agree (the differing
fields are named) and no clinic id appears twice.
"""

from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema

from analysis.pool import checks
from analysis.pool.registry import Clinic, read_signature, signer
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
RESULT_FIELDS = ("estimate", "se", "df", "ci_low", "ci_high", "n_clients")


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


def _content_problems(bundle: dict[str, Any], min_cell: int, this_month: str) -> list[str]:
    """What the schema cannot say: integrity, a usable estimate, plausible numbers and strings, the period."""
    if bundle["integrity"]["sha256"] != fnd.integrity_hash(bundle):
        return [
            (
                "its integrity hash does not match its content: the file was edited or damaged after `outcomes "
                "report` wrote it; ask the clinic for the original"
            )
        ]
    primary = bundle["primary"]
    if primary.get("status") not in ("ok", "fallback") or primary.get("estimate") is None or not primary.get("se"):
        return [f"the clinic's primary model gave no estimate (status {str(primary.get('status'))[:20]!r})"]
    if primary.get("n_clients") is None:
        return ["primary.n_clients is missing; a clinic's estimate is shown with its number of clients"]
    period = checks.period_problem(bundle["period"], this_month)
    return checks.string_problems(bundle) + checks.number_problems(bundle, min_cell) + ([period] if period else [])


def read_bundle(
    path: Path, *, registry: dict[bytes, Clinic] | None = None, min_cell: int = 5, this_month: str | None = None
) -> tuple[dict[str, Any] | None, Clinic | None, list[str]]:
    """One bundle and the registered clinic that signed it, or the reasons it cannot be pooled.

    ``registry`` None: signatures are not checked (``--allow-unsigned``). Each problem reads
    ``'<path>: <field>: <what is wrong>'``.
    """
    this_month = this_month or dt.date.today().strftime("%Y-%m")
    if not path.is_file():
        folder = " (a folder; give the findings.json in it)" if path.is_dir() else ""
        return None, None, [f"{path}: not found{folder}"]
    if path.stat().st_size > checks.MAX_BYTES:  # before reading: a huge file is refused at once
        return None, None, [f"{path}: larger than {checks.MAX_BYTES // 1_000_000} MB; a findings bundle is a few kB"]
    with open(path, "rb") as fh:
        data = fh.read(checks.MAX_BYTES + 1)
    clinic = None
    if registry is not None:
        clinic, problem = signer(path, data, read_signature(path), registry)
        if clinic is None:
            return None, None, [problem]
    bundle, bad = checks.parse(data)
    if bad:
        return None, None, [f"{path}: {bad}"]
    if not isinstance(bundle, dict):
        return None, None, [f"{path}: not a findings bundle (the JSON is not an object)"]
    version = str(bundle.get("schema_version", ""))[:20]
    if version.split(".")[0] != str(fnd.SCHEMA_MAJOR):
        return (
            None,
            None,
            [
                (
                    f"{path}: unknown schema version {version or '(none)'}; this pooler reads version "
                    f"{fnd.SCHEMA_MAJOR}.x (rebuild the bundle with a current `outcomes report`)"
                )
            ],
        )
    found = bundle.get("primary")
    primary: dict[str, Any] = found if isinstance(found, dict) else {}
    for key in ("estimate", "se"):
        if isinstance(primary.get(key), str):
            return (
                None,
                None,
                [f"{path}: primary.{key} is a suppressed or text value; a bundle's estimates must be numbers"],
            )
    schema_problem = _schema_problem(bundle)
    if schema_problem:
        return None, None, [f"{path}: {schema_problem}"]
    problems = [f"{path}: {p}" for p in _content_problems(bundle, min_cell, this_month)]
    if clinic is not None and clinic.clinic_id != bundle["clinic_id"]:
        problems.append(
            f"{path}: clinic_id {bundle['clinic_id']!r} but signed with the key registered to clinic "
            f"{clinic.clinic_id!r}: a clinic may send bundles only under its own id"
        )
    return (None, None, problems) if problems else (bundle, clinic, [])


def compatibility_problems(bundles: list[dict[str, Any]], paths: list[Path]) -> list[str]:
    """Bundles that estimate something else than the first one, duplicate clinic ids, and duplicate results."""
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
    same: dict[str, Path] = {}
    for b, p in zip(bundles, paths, strict=True):
        # one clinic's result resent under another id: the same numbers to the last digit
        key = fnd.sha256_of([b["period"], {k: b["primary"].get(k) for k in RESULT_FIELDS}])
        if key in same:
            problems.append(
                f"{p}: the same period and primary result ({', '.join(RESULT_FIELDS)}) as {same[key]}: one "
                "clinic's result twice under two ids; pool each clinic once"
            )
        else:
            same[key] = p
    return problems


def read_bundles(
    paths: list[Path],
    *,
    registry: dict[bytes, Clinic] | None = None,
    min_cell: int = 5,
    this_month: str | None = None,
) -> tuple[list[dict[str, Any]], list[str], dict[str, Clinic]]:
    """Every bundle, every problem (file by file, then across files), and the signer of each clinic id."""
    bundles: list[dict[str, Any]] = []
    problems: list[str] = []
    ok_paths: list[Path] = []
    signers: dict[str, Clinic] = {}
    signed_by: dict[bytes, Path] = {}
    for p in paths:
        b, clinic, found = read_bundle(p, registry=registry, min_cell=min_cell, this_month=this_month)
        problems += found
        if b is None:
            continue
        if clinic is not None:
            if clinic.public in signed_by:
                problems.append(
                    f"{p}: signed with the same key as {signed_by[clinic.public]} (clinic {clinic.clinic_id!r}): "
                    "the same clinic twice; pool each clinic's latest bundle once"
                )
                continue
            signed_by[clinic.public] = p
            signers[b["clinic_id"]] = clinic
        bundles.append(b)
        ok_paths.append(p)
    if bundles and not problems:
        problems += compatibility_problems(bundles, ok_paths)
    return bundles, problems, signers
