"""How closely the engine and the pooling agree with R, case by case, as Markdown tables.

Reads the committed fixtures (lme4 / lmerTest / pbkrtest in ``lmm/``, metafor in ``metafor/``), refits
every case with the project's code and prints the largest differences. The tests
(``tests/test_lmm_reference.py``, ``tests/test_pool_meta.py``) assert the tolerances; this script shows
the actual agreement, for closing notes and reviews. R is not needed.

Run: ``.venv/bin/python tests/reference/agreement.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.model import lmm
from analysis.pool import meta

HERE = Path(__file__).parent


def _rel(ours: Any, ref: Any) -> float:
    """Largest relative difference (absolute where the reference is 0)."""
    a, b = np.asarray(ours, float), np.asarray(ref, float)
    scale = np.where(np.abs(b) > 0, np.abs(b), 1.0)
    return float(np.max(np.abs(a - b) / scale))


def fit_case(name: str) -> tuple[dict[str, Any], lmm.LmmFit]:
    """R's numbers for one lme4 case and the engine's fit of the same data (used by the tests too)."""
    ref = json.loads((HERE / "lmm" / f"{name}.json").read_text())
    data = pd.read_csv(HERE / "lmm" / f"{name}.csv", dtype={"group": str})
    design = lmm.from_arrays(
        data[ref["fixed_names"]].to_numpy(),
        data[ref["re_names"]].to_numpy(),
        data["y"].to_numpy(),
        data["group"].to_numpy(),
        fixed_names=ref["fixed_names"],
        re_names=ref["re_names"],
    )
    return ref, lmm.fit(design, reml=bool(ref["reml"]))


def lmm_rows() -> list[str]:
    """One row per lme4 case: size, singular, largest relative differences, and the first contrast."""
    cases = sorted(
        p.stem for p in (HERE / "lmm").glob("*.json") if p.stem != "versions" and not p.stem.endswith(".design")
    )
    rows = [
        (
            "| case | obs / groups | criterion | singular ours / lme4 | β | SE | variances | deviance Δ "
            "| Satterthwaite df | KR SE | KR df | contrast SE ours / R | contrast Satt. df ours / R |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in cases:
        ref, fit = fit_case(name)
        names = ref["fixed_names"]
        beta = _rel(fit.fe_params[names].to_numpy(), [ref["beta"][n] for n in names])
        se = _rel(np.sqrt(np.diag(fit.vcov)), [ref["se"][n] for n in names])
        var = _rel(
            [fit.sigma2, *np.diag(fit.cov_re)],
            [ref["varcorr"]["residual"], *(ref["varcorr"]["variances"][n] for n in ref["re_names"])],
        )
        eye = np.eye(len(names))
        sat = kr_se = kr_df = "–"
        if not ref["isSingular"]:
            got = [fit.contrast(eye[i], "satterthwaite")["df"] for i in range(len(names))]
            sat = f"{_rel(got, [ref['satterthwaite'][n]['df'] for n in names]):.0e}"
        if ref.get("kenward_roger"):
            kr = [fit.contrast(eye[i], "kenward_roger") for i in range(len(names))]
            kr_se = f"{_rel([k['se'] for k in kr], [ref['kenward_roger'][n]['se_adj'] for n in names]):.0e}"
            kr_df = f"{_rel([k['df'] for k in kr], [ref['kenward_roger'][n]['df'] for n in names]):.0e}"
        con = ref["contrasts"][0]
        c = fit.contrast(con["L"], "satterthwaite")
        con_se = f"{c['se']:.4g} / {con['se']:.4g}"
        con_df = "–" if ref["isSingular"] else f"{c['df']:.4g} / {con['satterthwaite_df']:.4g}"
        rows.append(
            f"| {name} | {fit.design.n_obs} / {fit.design.n_groups} | {'REML' if ref['reml'] else 'ML'} "
            f"| {fit.singular} / {bool(ref['isSingular'])} | {beta:.0e} | {se:.0e} | {var:.0e} "
            f"| {fit.deviance - ref['deviance']:.0e} | {sat} | {kr_se} | {kr_df} | {con_se} | {con_df} |"
        )
    return rows


def metafor_rows() -> list[str]:
    """One row per metafor case: the fits compared and the largest absolute differences over them."""
    rows = [
        "| case | k | fits (tau² methods × CIs) | estimate | SE | tau² | CI bounds | PI bounds | tau² CI | I² |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for path in sorted(p for p in (HERE / "metafor").glob("*.json") if p.stem != "versions"):
        ref = json.loads(path.read_text())
        worst: dict[str, float] = {}
        for key, exp in ref["fits"].items():
            method, ci = key.split("/")
            r = meta.rma(ref["y"], ref["v"], tau2_method=method, ci_method=ci)
            pairs = {
                "estimate": ([r["pooled"]["estimate"]], [exp["estimate"]]),
                "se": ([r["pooled"]["se"]], [exp["se"]]),
                "tau2": ([r["tau2"]], [exp["tau2"]]),
                "ci": ([r["pooled"]["ci_low"], r["pooled"]["ci_high"]], [exp["ci_low"], exp["ci_high"]]),
                "pi": (
                    [r["prediction"]["pi_low"], r["prediction"]["pi_high"]],
                    [exp["pi_low"], exp["pi_high"]],
                ),
                "tau2_ci": (r["tau2_ci"], exp["tau2_ci"]),
                "i2": ([r["i2"]], [exp["i2"]]),
            }
            for k, (a, b) in pairs.items():
                a_, b_ = np.asarray(a, float), np.asarray(b, float)
                finite = np.isfinite(b_)
                d = float(np.max(np.abs(a_[finite] - b_[finite]))) if finite.any() else 0.0
                worst[k] = max(worst.get(k, 0.0), d)
        methods = sorted({k.split("/")[0] for k in ref["fits"]})
        cis = sorted({k.split("/")[1] for k in ref["fits"]})
        fits = f"{len(ref['fits'])} ({', '.join(methods)} × {', '.join(cis)})"
        cells = " | ".join(f"{worst[k]:.0e}" for k in ("estimate", "se", "tau2", "ci", "pi", "tau2_ci", "i2"))
        rows.append(f"| {path.stem} | {len(ref['y'])} | {fits} | {cells} |")
    return rows


def _versions(path: Path) -> str:
    found = json.loads(path.read_text())
    return ", ".join(f"{k} {str(v).removeprefix('R version ')}" for k, v in found.items())


def main() -> int:
    print(f"## Mixed models against {_versions(HERE / 'lmm' / 'versions.json')}\n")
    print("Largest relative difference per case (β, SE, variances, df); deviance Δ = ours − lme4.\n")
    print("\n".join(lmm_rows()))
    print(f"\n## Pooling against {_versions(HERE / 'metafor' / 'versions.json')}\n")
    print("Largest absolute difference per case over every tau² method and CI method fitted.\n")
    print("\n".join(metafor_rows()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
