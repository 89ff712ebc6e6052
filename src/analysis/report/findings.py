"""The findings bundle: what a peer needs to pool this clinic's result, and nothing identifying.

Schema: ``findings.schema.json`` beside this module (JSON Schema draft 2020-12),
versioned by :data:`SCHEMA_VERSION`. Change the version whenever a field is
added, removed or changes meaning; pooling code checks it.

Counts follow the privacy conventions of :mod:`analysis.privacy`: every count
sits under a key named ``n`` / ``n_*`` and is a number >= ``min_cell`` (or 0)
or the string ``"<min_cell>"``. The period covered is given in months only.
"""

from __future__ import annotations

import json
import math
from importlib.resources import files
from typing import Any

from analysis.privacy import suppress_count
from analysis.report.summary import headline, peer_text, primary_ok

SCHEMA_VERSION = "1.1.0"

SECONDARY_KEYS = ("gee", "iptw", "multiple_imputation", "tipping_point", "responders", "chronicity",
                  "mediation", "time_to_improvement", "dose_response", "immediate_effect")
_ESTIMATE_KEYS = ("estimate", "se", "ci_low", "ci_high", "p_value", "e_value")


def schema() -> dict:
    """The JSON Schema of findings.json."""
    return json.loads(files("analysis.report").joinpath("findings.schema.json").read_text(encoding="utf-8"))


def _num(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _count(n: Any, min_cell: int) -> int | str | None:
    """A count as it may appear in the bundle: int, or '<k' when small."""
    if n is None:
        return None
    text = suppress_count(n, min_cell)
    return int(text) if text.isdigit() else (text or None)


def build_findings(results: dict, *, clinic_id: str, period: tuple[str, str], n_by_group: dict[str, int],
                   params: dict, params_sha256: str, packages: dict[str, str], code_version: str,
                   min_cell: int) -> dict:
    """The findings bundle as a JSON-ready dict.

    Parameters
    ----------
    results : the model's results.json.
    clinic_id : the clinic's pseudonymous id (as in the data).
    period : first and last month of the data, ``("YYYY-MM", "YYYY-MM")``.
    n_by_group : analysed clients per group (suppressed here).

    Returns
    -------
    dict following ``findings.schema.json``.
    """
    primary = results.get("primary", {}) or {}
    model = params.get("model", {})
    ok = primary_ok(primary)
    p = {
        "estimand": str(primary.get("estimand") or ""),
        "status": str(primary.get("status") or "missing"),
        "reason": peer_text(str(primary.get("reason") or "")),
        "formula": str(primary.get("formula") or ""),
        "re_formula": str(primary.get("re_formula") or ""),
        "measure": str(model.get("measure", "")),
        "week": _num(model.get("primary_week")),
        "converged": bool(primary.get("converged", False)),
    }
    for key in ("estimate", "se", "ci_low", "ci_high", "p_value"):
        p[key] = _num(primary.get(key)) if ok else None
    sd = primary.get("slope_difference") or {}
    p["slope_difference"] = ({k: _num(sd.get(k)) for k in ("estimate", "se", "ci_low", "ci_high") if k in sd}
                             if ok and isinstance(sd, dict) else {})
    p["n_clients"] = _count(primary.get("n_clients"), min_cell)
    p["n_observations"] = _count(primary.get("n_observations"), min_cell)
    secondary = {}
    for key in SECONDARY_KEYS:
        s = (results.get("secondary") or {}).get(key)
        if not isinstance(s, dict):
            continue
        entry = {"status": str(s.get("status") or ""), "exploratory": bool(s.get("exploratory", False)),
                 "method": str(s.get("method") or "")}
        name, est = headline(s)
        if est is not None:
            if name:
                entry["estimate_of"] = name
            for k in _ESTIMATE_KEYS:
                if _num(est.get(k)) is not None:
                    entry[k] = _num(est[k])
        if _num(s.get("e_value")) is not None:
            entry["e_value"] = _num(s["e_value"])
        secondary[key] = entry
    groups = {str(g): _count(n, min_cell) for g, n in sorted(n_by_group.items())}
    if any(isinstance(v, str) for v in groups.values()):
        # the total (primary.n_clients) is shown, so one hidden group could be found by subtraction:
        # hide the other groups too ("*": hidden only to protect a small count)
        groups = {g: (v if isinstance(v, str) or v is None else "*") for g, v in groups.items()}
    return {
        "schema_version": SCHEMA_VERSION,
        "clinic_id": str(clinic_id),
        "period": {"from": period[0], "to": period[1]},
        "n_clients_by_group": groups,
        "primary": p,
        "secondary": secondary,
        "software": {"code_version": code_version, "packages": dict(sorted(packages.items()))},
        "params_sha256": params_sha256,
        "min_cell": int(min_cell),
    }
