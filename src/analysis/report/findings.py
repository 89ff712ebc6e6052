"""The findings bundle: what a peer needs to pool this clinic's result, and nothing identifying.

Schema: ``findings.schema.json`` beside this module (JSON Schema draft 2020-12),
versioned by :data:`SCHEMA_VERSION` (major 2). Change the version whenever a field
is added, removed or changes meaning; ``outcomes pool`` checks it.

A bundle holds (v2):

- ``clinic_id``: unique and stable per clinic (params ``report.clinic_id``, or a random
  id made at first use, see :func:`clinic_identity`), never a shared default;
- ``period``: the true first and last month (from ``deidentify_log.json`` when the
  data were date-shifted), months only;
- ``primary``: estimand, estimate, SE, df and df method, CI, p, slope difference, status;
- ``arms``: per group n, baseline mean/SD, change at the primary week (mean/SD) among
  those with an endpoint -- each withheld below ``min_cell``;
- ``responders``: counts per arm (suppressed), the log odds ratio and its SE (withheld
  when any cell is below ``min_cell``), the MCID used;
- ``chronicity``: the week x hip x ln(symptom weeks + 1) interaction and its SE;
- ``compatibility``: what the estimate means (measure, timing, weeks, window, exposure,
  covariates, df method) and its SHA-256, so a pooler can tell whether two bundles
  estimate the same thing;
- ``integrity``: SHA-256 of the canonical bundle without this field (an edited bundle
  is refused by the pooler; it guards against accidents, not against a forger).

Counts follow the privacy conventions of :mod:`analysis.privacy`: every count sits
under a key named ``n`` / ``n_*`` and is a number >= ``min_cell`` (or 0) or the
string ``"<min_cell>"``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import secrets
from importlib.resources import files
from pathlib import Path
from typing import Any

from analysis.params_schema import Params
from analysis.privacy import suppress_count
from analysis.privacy.audit import Count
from analysis.privacy.summaries import MIN_ARM, rounded
from analysis.report.secondary_text import headline, peer_text
from analysis.results import PrimaryResult, Results
from analysis.store import to_json_text

SCHEMA_VERSION = "2.0.0"
SCHEMA_MAJOR = 2
CLINIC_ID_ENV = "HIPKNEE_CLINIC_ID"

SECONDARY_KEYS = (
    "gee",
    "iptw",
    "multiple_imputation",
    "tipping_point",
    "responders",
    "chronicity",
    "mediation",
    "time_to_improvement",
    "dose_response",
    "immediate_effect",
)
_ESTIMATE_KEYS = ("estimate", "se", "ci_low", "ci_high", "p_value", "e_value")
ARMS = ("hip_focused", "comparator")
ESTIMAND = (
    "difference hip-focused minus knee-focused in model-estimated change from the first session "
    "to primary_week (linear mixed model, random intercept and slope per client)"
)
CHRONICITY_TERM = "week:hip:ln(symptom_weeks + 1)"
CHRONICITY_PER = "NPRS points per week per unit of ln(symptom weeks + 1)"
# every string the bundle writes itself; the release gate refuses any other string not from results/params
GENERATED_STRINGS = (
    SCHEMA_VERSION,
    ESTIMAND,
    CHRONICITY_TERM,
    CHRONICITY_PER,
    "not_available",
    "done",
    "withheld",
    "Woolf",
    "",
    *ARMS,
)


def schema() -> dict[str, Any]:
    """The JSON Schema of findings.json."""
    text = files("analysis.report").joinpath("findings.schema.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def canonical(obj: Any) -> bytes:
    """Canonical JSON bytes (sorted keys, no spaces) for hashing."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def sha256_of(obj: Any) -> str:
    return hashlib.sha256(canonical(obj)).hexdigest()


def integrity_hash(bundle: dict[str, Any]) -> str:
    """SHA-256 of the bundle without its ``integrity`` field."""
    return sha256_of({k: v for k, v in bundle.items() if k != "integrity"})


DEMO_CLINIC_ID = "demo-synthetic"


def clinic_identity(params: Params, store: Path | None = None, demo: bool = False) -> str:
    """The clinic's id for bundles: unique and stable, never a shared default.

    Order: params ``report.clinic_id``; the environment variable ``HIPKNEE_CLINIC_ID``; ``demo-synthetic``
    for the bundled demo data (so its reports are byte-identical on every machine); else a random
    id (``K`` + 12 base32 characters) made at first use and kept in ``store`` (default
    ``~/.config/hip-knee-outcomes/clinic_id``, outside any project, so every checkout on the clinic's
    machine gives the same id and none is committed).
    """
    configured = params.report.clinic_id or os.environ.get(CLINIC_ID_ENV)
    if configured:
        return str(configured)
    if demo:  # the bundled synthetic demo: one fixed id, so its bundle is the same on every machine
        return DEMO_CLINIC_ID
    store = store or Path.home() / ".config" / "hip-knee-outcomes" / "clinic_id"
    if store.is_file():
        text = store.read_text(encoding="utf-8").strip()
        if text:
            return text

    new = "K" + base64.b32encode(secrets.token_bytes(10)).decode("ascii")[:12]
    store.parent.mkdir(parents=True, exist_ok=True)
    tmp = store.with_name(store.name + f".{os.getpid()}.tmp")
    tmp.write_text(new + "\n", encoding="utf-8")
    os.replace(tmp, store)
    return new


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


def _small(n: Any, min_cell: int) -> bool:
    v = _num(n)
    return v is None or 0 < v < min_cell


#: what every clinic's primary estimate means (bundles pool only when this and the settings agree)
ESTIMAND = (
    "difference hip-focused minus knee-focused in model-estimated change from the first session "
    "to primary_week (linear mixed model, random intercept and slope per client)"
)


def compatibility(params: Params) -> dict[str, Any]:
    """What the primary estimate means, and its hash: bundles pool only when these agree."""
    m = params.model
    key = {
        "measure": m.measure,
        "timing": m.timing,
        "primary_week": m.primary_week,
        "followup_weeks": m.followup_weeks,
        "endpoint_window_weeks": m.endpoint_window_weeks,
        "exposure": {k: sorted(v) for k, v in sorted(m.exposure.model_dump().items())},
        "covariates": list(m.covariates),
        "df_method": m.df_method,
        "estimand": ESTIMAND,
    }
    return {**key, "sha256": sha256_of(key)}


def _arms(primary: PrimaryResult, min_cell: int, baseline_shown: dict[str, bool] | None) -> dict[str, Any]:
    """Per-arm n and summaries; summaries rounded to 1 decimal and only for arms that cannot be inverted
    (:mod:`analysis.privacy.summaries`: at least ``MIN_ARM`` clients, and ``baseline_shown[arm]``, the
    enumeration's verdict on the arm's own scores, when the caller has them)."""
    out = {}
    for arm in ARMS:
        a = primary.arms[arm].model_dump() if arm in primary.arms else {}
        n, ne = a.get("n"), a.get("n_endpoint")
        floor = max(min_cell, MIN_ARM)
        base_ok = not _small(n, floor) and (baseline_shown or {}).get(arm, True)
        end_ok = not _small(ne, floor)
        out[arm] = {
            "n": _count(n, min_cell),
            "baseline_mean": rounded(_num(a.get("baseline_mean"))) if base_ok else None,
            "baseline_sd": rounded(_num(a.get("baseline_sd"))) if base_ok else None,
            "n_endpoint": _count(ne, min_cell),
            "change_mean": rounded(_num(a.get("change_mean"))) if end_ok else None,
            "change_sd": rounded(_num(a.get("change_sd"))) if end_ok else None,
        }
    return out


def apply_shown(bundle: dict[str, Any], counts: list[Count]) -> dict[str, Any]:
    """The bundle with each ``findings.json:<path>`` count shown as the release audit decided; new integrity."""
    out: dict[str, Any] = json.loads(json.dumps(bundle))
    for c in counts:
        if not c.name.startswith("findings.json:"):
            continue
        *parents, leaf = c.name.split(":", 1)[1].split(".")
        node = out
        for part in parents:
            node = node[part]
        node[leaf] = int(c.shown) if c.shown.isdigit() else c.shown
    out["integrity"] = {"sha256": integrity_hash({k: v for k, v in out.items() if k != "integrity"})}
    return out


def _responders(s: dict[str, Any] | None, mcid: dict[str, Any], min_cell: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "status": "not_available",
        "mcid": mcid,
        "definition": None,
        "n_hip_focused": None,
        "responders_hip_focused": None,
        "n_comparator": None,
        "responders_comparator": None,
        "log_odds_ratio": None,
        "log_odds_ratio_se": None,
        "log_odds_ratio_method": None,
    }
    if not isinstance(s, dict) or s.get("status") != "done":
        return out
    n1, r1, n0, r0 = (
        s.get(k) for k in ("n_hip_focused", "responders_hip_focused", "n_comparator", "responders_comparator")
    )
    cells = [r1, (n1 or 0) - (r1 or 0), r0, (n0 or 0) - (r0 or 0)]
    out.update(
        status="done",
        definition=s.get("definition"),
        n_hip_focused=_count(n1, min_cell),
        responders_hip_focused=_count(r1, min_cell),
        n_comparator=_count(n0, min_cell),
        responders_comparator=_count(r0, min_cell),
    )
    lor = s.get("log_odds_ratio") or {}
    if any(_small(c, min_cell) for c in cells):
        out["status"] = "withheld"  # a ratio with a small cell gives the cell back
    elif _num(lor.get("estimate")) is not None and _num(lor.get("se")) is not None:
        out.update(
            log_odds_ratio=_num(lor["estimate"]),
            log_odds_ratio_se=_num(lor["se"]),
            log_odds_ratio_method=str(lor.get("method") or "Woolf"),
        )
    return out


def _chronicity(s: dict[str, Any] | None) -> dict[str, Any]:
    inter = (s or {}).get("interaction") or {}
    done = isinstance(s, dict) and s.get("status") == "done" and _num(inter.get("estimate")) is not None
    return {
        "status": "done" if done else "not_available",
        "term": CHRONICITY_TERM,
        "estimate": _num(inter.get("estimate")) if done else None,
        "se": _num(inter.get("se")) if done else None,
        "df": _num(inter.get("df")) if done else None,
        "per": CHRONICITY_PER,
    }


def build_findings(
    results: Results,
    *,
    clinic_id: str,
    period: tuple[str, str],
    n_by_group: dict[str, int],
    params: Params,
    params_sha256: str,
    packages: dict[str, str],
    code_version: str,
    min_cell: int,
    mcid: dict[str, Any] | None = None,
    baseline_shown: dict[str, bool] | None = None,
) -> dict[str, Any]:
    """The findings bundle as a JSON-ready dict (schema version 2).

    Parameters
    ----------
    results : the model's results.json.
    clinic_id : from :func:`clinic_identity`.
    period : true first and last month of the data, ``("YYYY-MM", "YYYY-MM")``.
    n_by_group : analysed clients per group (suppressed here).
    mcid : the primary measure's MCID ``{"points": .., "percent": ..}``.
    baseline_shown : per arm, whether its baseline summaries may be shown
        (:func:`analysis.privacy.summaries.summaries_shown` on the arm's scores); by arm size alone if None.

    Returns
    -------
    dict following ``findings.schema.json``, with its ``integrity`` hash.
    """
    primary = results.primary
    model = params.model
    ok = primary.ok
    p: dict[str, Any] = {
        "estimand": primary.estimand,
        "status": primary.status,
        "reason": peer_text(primary.reason),
        "formula": primary.formula,
        "re_formula": primary.re_formula or "",
        "measure": model.measure,
        "week": model.primary_week,
        "converged": primary.converged,
        "df_method": primary.df_method,
    }
    primary_numbers = primary.model_dump()
    for key in ("estimate", "se", "df", "ci_low", "ci_high", "p_value"):
        p[key] = _num(primary_numbers[key]) if ok else None
    sd = primary.slope_difference
    p["slope_difference"] = (
        {k: _num(v) for k, v in sd.model_dump().items() if k != "df_method"} if ok and sd is not None else {}
    )
    p["n_clients"] = _count(primary.n_clients, min_cell)
    p["n_observations"] = _count(primary.n_observations, min_cell)
    secondary = {}
    for key in SECONDARY_KEYS:
        result = results.secondary.get(key)
        if result is None:
            continue
        s = result.model_dump()
        entry: dict[str, Any] = {"status": result.status, "exploratory": result.exploratory, "method": result.method}
        name, est = headline(s)
        if est is not None and key != "responders":  # responders: see the block below (small-cell rules)
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
    sec = {k: v.model_dump() for k, v in results.secondary.items()}
    bundle = {
        "schema_version": SCHEMA_VERSION,
        "clinic_id": str(clinic_id),
        "period": {"from": period[0], "to": period[1]},
        "n_clients_by_group": groups,
        "primary": p,
        "arms": _arms(primary, min_cell, baseline_shown),
        "responders": _responders(sec.get("responders"), mcid or {}, min_cell),
        "chronicity": _chronicity(sec.get("chronicity")),
        "compatibility": compatibility(params),
        "secondary": secondary,
        "software": {"code_version": code_version, "packages": dict(sorted(packages.items()))},
        "params_sha256": params_sha256,
        "min_cell": int(min_cell),
    }
    # the numbers as they will be published (store's significant-digit rule), so the hash is over what is written
    published: dict[str, Any] = json.loads(to_json_text(bundle))
    published["integrity"] = {"sha256": integrity_hash(published)}
    return published
