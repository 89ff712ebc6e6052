"""Strict reading and plausibility checks of a findings bundle: every number, every string the pooler copies.

Pure functions over bytes and parsed JSON; each problem is one line naming the field (the caller prefixes
the file). Limits, all stated in the message when hit:

- at most :data:`MAX_BYTES` (checked before reading the file), nesting at most :data:`MAX_DEPTH` deep;
- JSON with no duplicate keys and no ``NaN`` / ``Infinity`` (nor numbers that overflow to them);
- every number within +-:data:`MAX_ABS`; an SE in [:data:`SE_FLOOR`, :data:`MAX_ABS`] (an SE below 1e-6 points
  is no real clinic's uncertainty and would give that clinic all the weight); df > 0; p in [0, 1];
  ci_low <= estimate <= ci_high;
- counts whole numbers, 0 or >= the *network's* min_cell (never the one the bundle declares; a bundle built
  with a smaller min_cell is refused); the period in months, first <= last, not after the current month;
- strings the pooled outputs would show are tokens (measure, timing, df method, covariates, exposure, code
  version, hashes); every other string in a bundle is ignored, never rendered.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any, TypeGuard

from analysis.report import findings as fnd

MAX_BYTES = 1_000_000
MAX_DEPTH = 16
MAX_ABS = 1e6
MAX_COUNT = 1_000_000_000
SE_FLOOR = 1e-6
MAX_DIGITS = 40
TOKEN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")


class BadJSON(ValueError):
    """The bundle's JSON is not acceptable (duplicate key, NaN, overflowing number)."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise BadJSON(f"duplicate key {k[:40]!r} (JSON with a key twice can be read two ways)")
        out[k] = v
    return out


def _constant(name: str) -> Any:
    raise BadJSON(f"{name} is not a number (NaN and Infinity are not allowed)")


def _float(text: str) -> float:
    if len(text) > MAX_DIGITS:
        raise BadJSON(f"number {text[:20]}... has more than {MAX_DIGITS} characters")
    v = float(text)
    if not math.isfinite(v):
        raise BadJSON(f"number {text} overflows to infinity")
    return v


def _int(text: str) -> int:
    if len(text) > MAX_DIGITS:
        raise BadJSON(f"number {text[:20]}... has more than {MAX_DIGITS} digits")
    return int(text)


def depth(obj: Any) -> int:
    """How deeply arrays and objects nest in parsed JSON (iterative: no recursion limit to hit)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            stack += [(v, level + 1) for v in (node.values() if isinstance(node, dict) else node)]
    return deepest


def parse(data: bytes) -> tuple[Any, str | None]:
    """The parsed JSON of ``data``, or what is wrong with it (size, encoding, nesting, duplicate key, NaN)."""
    if len(data) > MAX_BYTES:
        return None, f"larger than {MAX_BYTES // 1_000_000} MB; a findings bundle is a few kB"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, "not a text file (a findings bundle is UTF-8 JSON)"
    too_deep = f"nested more than {MAX_DEPTH} levels deep; a findings bundle is not"
    try:
        obj = json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except BadJSON as exc:
        return None, f"not acceptable JSON: {exc}"
    except RecursionError:  # the C parser's own limit (about 1000 levels): refused before it costs anything
        return None, too_deep
    except (json.JSONDecodeError, ValueError) as exc:
        where = f" (line {exc.lineno}, column {exc.colno}: {exc.msg})" if isinstance(exc, json.JSONDecodeError) else ""
        return None, f"not JSON{where}; is it a findings.json?"
    if depth(obj) > MAX_DEPTH:
        return None, too_deep
    return obj, None


def _walk(obj: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """Every (path, key, value) of nested dicts and lists."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            p = f"{path}.{k}" if path else str(k)
            yield p, str(k), v
            yield from _walk(v, p)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            p = f"{path}[{i}]"
            yield p, "", v
            yield from _walk(v, p)


def _is_num(v: Any) -> TypeGuard[float]:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_count_key(path: str, key: str) -> bool:
    return key == "n" or key.startswith(("n_", "responders_")) or path.startswith("n_clients_by_group.")


def _count_problem(path: str, v: Any, min_cell: int) -> str | None:
    if isinstance(v, str) or v is None:
        return None  # '<k' / '*' are checked by the schema
    if not _is_num(v) or v != int(v) or not 0 <= v <= MAX_COUNT:
        return f"{path} is {v!r}; a count is a whole number from 0 to {MAX_COUNT}"
    if 0 < v < min_cell:
        return f"{path} is {int(v)}, below this network's min_cell {min_cell}; counts that small identify clients"
    return None


def _number_problem(path: str, key: str, v: Any) -> str | None:
    if abs(v) > MAX_ABS:
        return f"{path} is {v:g}, beyond +-{MAX_ABS:g}: not a plausible value"
    if (key == "se" or key.endswith("_se")) and not v >= SE_FLOOR:
        return f"{path} is {v:g}; an SE must be at least {SE_FLOOR:g} (positive and not absurdly small)"
    if key == "df" and not v > 0:
        return f"{path} is {v:g}; degrees of freedom must be positive"
    if key == "p_value" and not 0 <= v <= 1:
        return f"{path} is {v:g}; a p-value lies in [0, 1]"
    return None


def _interval_problem(path: str, d: dict[str, Any]) -> str | None:
    lo, hi, est = d.get("ci_low"), d.get("ci_high"), d.get("estimate")
    if not (_is_num(lo) and _is_num(hi)):
        return None
    where = path or "(top level)"
    if lo > hi:
        return f"{where}: ci_low {lo:g} is above ci_high {hi:g} (an inverted interval)"
    if _is_num(est) and not lo <= est <= hi:
        return f"{where}: estimate {est:g} lies outside its interval {lo:g} to {hi:g}"
    return None


def number_problems(bundle: dict[str, Any], min_cell: int) -> list[str]:
    """Every implausible number in a schema-valid bundle, one line each (field named)."""
    problems = []
    declared = bundle.get("min_cell")
    if _is_num(declared) and declared < min_cell:
        problems.append(
            f"min_cell is {declared}: the bundle was built with a smaller minimum cell than this network's "
            f"{min_cell}; the clinic must rebuild it with report.min_cell >= {min_cell}"
        )
    for path, key, v in _walk(bundle):
        if isinstance(v, dict):
            interval = _interval_problem(path, v)
            problems += [interval] if interval else []
        elif _is_count_key(path, key) and not isinstance(v, dict | list):
            problem = _count_problem(path, v, min_cell)
            problems += [problem] if problem else []
        elif _is_num(v):
            problem = _number_problem(path, key, v)
            problems += [problem] if problem else []
    return problems


def period_problem(period: dict[str, str], this_month: str) -> str | None:
    """``period`` (``{'from': 'YYYY-MM', 'to': 'YYYY-MM'}``, schema-checked) against ``this_month``."""
    if period["from"] > period["to"]:
        return f"period: from {period['from']} is after to {period['to']}"
    if period["to"] > this_month:
        return f"period: to {period['to']} is in the future (this month is {this_month})"
    return None


def string_problems(bundle: dict[str, Any]) -> list[str]:
    """Strings the pooled outputs copy must be tokens or hashes, and the estimand the one this code defines."""
    c = bundle["compatibility"]
    tokens = {
        "primary.df_method": bundle["primary"].get("df_method"),
        "compatibility.measure": c.get("measure"),
        "compatibility.timing": c.get("timing"),
        "compatibility.df_method": c.get("df_method"),
    }
    tokens |= {f"compatibility.covariates[{i}]": v for i, v in enumerate(c.get("covariates") or [])}
    for arm, levels in (c.get("exposure") or {}).items():
        tokens[f"compatibility.exposure key {arm[:40]!r}"] = arm
        tokens |= {f"compatibility.exposure.{arm[:40]}[{i}]": v for i, v in enumerate(levels or [])}
    problems = [
        f"{where} is not a plain name (lower-case letters, digits, _; at most 40): free text is not pooled"
        for where, v in tokens.items()
        if not (isinstance(v, str) and TOKEN.match(v))
    ]
    code = bundle["software"].get("code_version")
    if not (isinstance(code, str) and VERSION.match(code)):
        problems.append("software.code_version is not a version string (letters, digits, . _ + -; at most 64)")
    hashes = {"params_sha256": bundle.get("params_sha256"), "integrity.sha256": bundle["integrity"].get("sha256")}
    for where, v in hashes.items():
        if not (isinstance(v, str) and HEX64.match(v)):
            problems.append(f"{where} is not a SHA-256 (64 lower-case hex digits)")
    if c.get("estimand") != fnd.ESTIMAND:
        problems.append("compatibility.estimand is not the estimand this pooler knows (free text is not pooled)")
    if c.get("sha256") != fnd.sha256_of({k: v for k, v in c.items() if k != "sha256"}):
        problems.append("compatibility.sha256 does not match the compatibility key it belongs to")
    return problems
