"""Pool clinics' findings bundles: random-effects meta-analysis of the primary estimand and two secondaries.

``outcomes pool BUNDLE... --out DIR`` reads the bundles (:mod:`.bundle`: every problem at once, one
line each, and nothing written when there is any), pools them (:func:`pool`, pure, using
:mod:`.meta`), and writes to DIR, atomically and deterministically (bundles sorted by clinic id):

- ``pooled.json`` (schema ``pooled.schema.json`` beside this module);
- ``forest.svg``: each clinic with its n, the pooled diamond and the prediction interval;
- ``pooled.html`` and ``pooled.pdf``: methods, heterogeneity, limitations, the bundles' provenance.

The outputs pass the same privacy gate as peer outputs. k = 1: nothing is pooled and the reason is
said; k = 2: pooled, with a warning that between-clinic variance is barely estimable.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any

from analysis.errors import InputError
from analysis.pool import caveats, meta
from analysis.pool.bundle import read_bundles
from analysis.pool.registry import Clinic, load_registry
from analysis.pool.report import render_outputs
from analysis.privacy import assert_peer_safe
from analysis.store import to_json_text, write_bytes, write_text

SCHEMA_VERSION = "1.1.0"
MIN_CELL = 5
LIMITATIONS = [
    (
        "Each clinic's estimate comes from routine care, not randomisation: therapists chose hip-focused care for "
        "reasons that may also affect recovery (confounding by indication). Pooling makes the estimate more precise, "
        "not less confounded."
    ),
    (
        "Confounding by indication can differ between clinics (different therapists, referral routes and case mix), "
        "which is one reason the clinics' estimates may disagree; heterogeneity (tau^2, I^2, the prediction "
        "interval) says how much they do."
    ),
    "Clinics that share bundles may differ from those that do not (selective sharing).",
    (
        "With few clinics the between-clinic variance is poorly estimated. The pooled CI uses t with k - 1 df and "
        "is never narrower than the standard random-effects interval, but the prediction interval still treats "
        "tau^2 as known: when tau^2 is estimated as 0 it is no wider than the CI."
    ),
    (
        "Each clinic adjusts for the same covariates (the compatibility key), but measurement practice can still "
        "differ between clinics."
    ),
]


def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        files("analysis.pool").joinpath("pooled.schema.json").read_text(encoding="utf-8")
    )
    return loaded


def _clinic_row(b: dict[str, Any], label: str) -> dict[str, Any]:
    p = b["primary"]
    return {
        "clinic_id": b["clinic_id"],
        "label": label,
        "period": b["period"],
        "n_clients": p.get("n_clients"),
        "estimate": p["estimate"],
        "se": p["se"],
        "df": p.get("df"),
        "df_method": p.get("df_method"),
        "ci_low": p.get("ci_low"),
        "ci_high": p.get("ci_high"),
        "status": p.get("status"),
    }


def _meta_block(
    y: list[float],
    v: list[float],
    ids: list[str],
    tau2_method: str,
    ci_method: str,
    alpha: float,
    df: list[float | None] | None = None,
) -> dict[str, Any]:
    """The pooled result of one estimand, or why it was not pooled."""
    k = len(y)
    if k < 2:
        return {
            "status": "not_pooled",
            "k": k,
            "reason": "one clinic: there is nothing to pool; its own estimate is shown"
            if k == 1
            else "no clinic has this estimate",
        }
    r = meta.rma(y, v, tau2_method=tau2_method, ci_method=ci_method, alpha=alpha)
    out = {"status": "pooled", **r, "clinic_ids": ids, "warnings": caveats.caveats(y, r, ids=ids, df=df)}
    if r["tau2_fallbacks"]:
        out["warnings"] += r["tau2_fallbacks"]
    if k >= 3:
        loo = meta.leave_one_out(y, v, tau2_method=tau2_method, ci_method=ci_method, alpha=alpha)
        inf = meta.influence(y, v, tau2_method=tau2_method, ci_method=ci_method, alpha=alpha)
        out["leave_one_out"] = [{"clinic_id": i, **a} for i, a in zip(ids, loo, strict=True)]
        out["influence"] = [{"clinic_id": i, **a} for i, a in zip(ids, inf, strict=True)]
    return out


def authentication(signers: Mapping[str, Clinic] | None) -> dict[str, Any]:
    """Whether the bundles were authenticated, said plainly."""
    if signers is None:
        return {
            "authenticated": False,
            "statement": "The bundles were NOT authenticated (pooled with --allow-unsigned): nothing shows that "
            "they came unchanged from the clinics they name.",
        }
    return {
        "authenticated": True,
        "statement": "Every bundle carried a valid Ed25519 signature by the key the network's registry holds for "
        "its clinic: each came unchanged from the holder of that key. This does not show that its numbers are "
        "right, that the key holder is honest, or that the key was not stolen.",
    }


def pool(
    bundles: list[dict[str, Any]],
    *,
    tau2_method: str = "REML",
    ci_method: str = meta.CI_METHOD_DEFAULT,
    alpha: float = 0.05,
    signers: Mapping[str, Clinic] | None = None,
) -> dict[str, Any]:
    """Pool checked bundles (see :func:`analysis.pool.bundle.read_bundles`).

    ``signers`` maps each clinic id to its registered clinic (label, key); None: not authenticated, and
    each clinic is labelled by its (checked) id. No other string from a bundle is copied but checked tokens.

    Returns
    -------
    dict following ``pooled.schema.json``: ``clinics`` (one row per bundle, by clinic id), ``primary``
    (:func:`meta.rma` output plus leave-one-out and influence, or ``not_pooled`` with the reason),
    ``responders`` (pooled log odds ratios of the clinics that report one) and ``chronicity`` (pooled
    interaction), the ``compatibility`` key and the settings.
    """
    bundles = sorted(bundles, key=lambda b: b["clinic_id"])
    reg = signers or {}
    labels = {b["clinic_id"]: reg[b["clinic_id"]].label if b["clinic_id"] in reg else b["clinic_id"] for b in bundles}
    clinics = [_clinic_row(b, labels[b["clinic_id"]]) for b in bundles]
    ids = [c["clinic_id"] for c in clinics]
    primary = _meta_block(
        [c["estimate"] for c in clinics],
        [c["se"] ** 2 for c in clinics],
        ids,
        tau2_method,
        ci_method,
        alpha,
        [c["df"] for c in clinics],
    )
    resp = [
        b
        for b in bundles
        if b["responders"].get("log_odds_ratio") is not None and b["responders"].get("log_odds_ratio_se")
    ]
    mcids = sorted({json.dumps(b["responders"].get("mcid"), sort_keys=True) for b in resp})
    if len(mcids) > 1:  # the MCID is not in the compatibility key: responders can mean different things
        responders = {
            "status": "not_pooled",
            "k": len(resp),
            "reason": "the clinics defined a responder with different MCIDs ("
            + " vs ".join(mcids)
            + "), so their odds ratios compare different things",
        }
    else:
        responders = _meta_block(
            [b["responders"]["log_odds_ratio"] for b in resp],
            [b["responders"]["log_odds_ratio_se"] ** 2 for b in resp],
            [b["clinic_id"] for b in resp],
            tau2_method,
            ci_method,
            alpha,
        )
    responders["scale"] = "log odds ratio, hip-focused vs comparator (positive = more responders with hip focus)"
    responders["mcid"] = (
        json.loads(mcids[0])
        if len(mcids) == 1
        else None
        if mcids or not bundles
        else bundles[0]["responders"].get("mcid")
    )
    chron = [b for b in bundles if b["chronicity"].get("estimate") is not None and b["chronicity"].get("se")]
    chronicity = _meta_block(
        [b["chronicity"]["estimate"] for b in chron],
        [b["chronicity"]["se"] ** 2 for b in chron],
        [b["clinic_id"] for b in chron],
        tau2_method,
        ci_method,
        alpha,
    )
    chronicity["per"] = "NPRS points per week per unit of ln(symptom weeks + 1)"
    compat = bundles[0]["compatibility"] if bundles else {}
    return {
        "schema_version": SCHEMA_VERSION,
        "settings": {"tau2_method": tau2_method, "ci_method": ci_method, "alpha": alpha},
        "compatibility": compat,
        "k": len(bundles),
        "authentication": authentication(signers),
        "clinics": clinics,
        "primary": primary,
        "responders": responders,
        "chronicity": chronicity,
        "limitations": LIMITATIONS,
        "bundles": [
            {
                "clinic_id": b["clinic_id"],
                "label": labels[b["clinic_id"]],
                "key_fingerprint": reg[b["clinic_id"]].fingerprint if b["clinic_id"] in reg else None,
                "period": b["period"],
                "schema_version": b["schema_version"],
                "code_version": b["software"]["code_version"],
                "params_sha256": b["params_sha256"],
                "integrity_sha256": b["integrity"]["sha256"],
                "min_cell": b["min_cell"],
            }
            for b in bundles
        ],
    }


def run_pool(
    paths: list[Path],
    out_dir: Path,
    *,
    registry: Path | None = None,
    allow_unsigned: bool = False,
    min_cell: int = 5,
    tau2_method: str = "REML",
    ci_method: str = meta.CI_METHOD_DEFAULT,
    alpha: float = 0.05,
    progress: Callable[[str], None] | None = None,
) -> str:
    """I/O edge of ``outcomes pool``: read and check, pool, render, gate, write. Returns a console summary.

    ``registry``: the network's ``clinics.yaml`` (:mod:`.registry`); every bundle must be signed by its
    clinic's registered key. Without it, pooling needs ``allow_unsigned`` and the outputs say the bundles
    were not authenticated. ``min_cell``: the network's smallest count (>= 5), whatever a bundle declares.

    Raises
    ------
    InputError : one line per problem with the bundles; nothing is written.
    """
    say = progress or (lambda step: None)
    if not paths:
        raise InputError("outcomes pool: give at least one findings bundle (findings.json)")
    if registry is not None and allow_unsigned:
        raise InputError("outcomes pool: give --registry or --allow-unsigned, not both")
    if registry is None and not allow_unsigned:
        raise InputError(
            "outcomes pool: no --registry: give the network's clinics.yaml so that only bundles signed by known "
            "clinics are pooled (or --allow-unsigned for a local trial; the report then says they were not "
            "authenticated)"
        )
    if min_cell < MIN_CELL:
        raise InputError(f"outcomes pool: min_cell {min_cell} is below {MIN_CELL}; small counts identify clients")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: --out names an existing file; give a folder (it is created if missing)")
    reg = load_registry(Path(registry)) if registry is not None else None
    say(f"checking {len(paths)} bundle(s)")
    bundles, problems, signers = read_bundles([Path(p) for p in paths], registry=reg, min_cell=min_cell)
    if problems:
        raise InputError("\n".join(problems) + f"\n{len(problems)} problem(s): nothing pooled, nothing written")
    say("pooling (meta-analysis, leave-one-out, influence)")
    result = pool(
        bundles, tau2_method=tau2_method, ci_method=ci_method, alpha=alpha, signers=signers if reg is not None else None
    )
    say("forest plot and the pooled report (HTML, PDF)")
    outputs = render_outputs(result)
    assert_peer_safe(result, forbidden_ids=set(), min_cell=min_cell, label=str(out_dir / "pooled.json"))
    assert_peer_safe(outputs["html_text"], forbidden_ids=set(), min_cell=min_cell, label=str(out_dir / "pooled.html"))
    write_text(out_dir / "pooled.json", to_json_text(result))
    write_bytes(out_dir / "forest.svg", outputs["forest_svg"])
    write_text(out_dir / "pooled.html", outputs["html"])
    write_bytes(out_dir / "pooled.pdf", outputs["pdf"])
    return summary_line(result, out_dir)


def summary_line(result: dict[str, Any], out_dir: Path) -> str:
    p = result["primary"]
    unsigned = "" if result["authentication"]["authenticated"] else "\nWARNING: the bundles were not authenticated"
    if p["status"] != "pooled":
        return f"{result['k']} bundle(s): not pooled - {p['reason']}{unsigned}\nwritten -> {out_dir}"
    pooled = p["pooled"]
    text = (
        f"{p['k']} clinics pooled ({p['tau2_method_used']}, {p['ci_method']}): difference in change = "
        f"{pooled['estimate']:.2f} (95% CI {pooled['ci_low']:.2f} to {pooled['ci_high']:.2f}); prediction "
        f"interval {p['prediction']['pi_low']:.2f} to {p['prediction']['pi_high']:.2f}; tau^2 {p['tau2']:.3f}, "
        f"I^2 {p['i2']:.0f}%"
    )
    for w in p.get("warnings", []):
        text += f"\nWARNING: {w}"
    return text + f"{unsigned}\nwritten -> {out_dir}"
