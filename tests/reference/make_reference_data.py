"""Write the generated-clinic data sets for the R reference fits (tests/reference/lmm/<case>.csv).

Run from the project root with the project's environment:
``.venv/bin/python tests/reference/make_reference_data.py`` then ``Rscript tests/reference/make_reference.R``
(name cases after either command to write / fit only those).

Each CSV has ``group``, ``y`` and the full fixed-effects design matrix as ``x_<name>`` columns
(``x_Intercept`` included), so R fits exactly ``y ~ 0 + x_... + (0 + <re cols> | group)`` and the
engine reads X, Z, y and groups straight from the file. ``<case>.design.json`` lists the fixed and
random columns and maps each ``x_`` name back to the project's patsy term. The clinics come from
the project's own generator, join and preparation, exactly as the pipeline analyses a clinic, with
the primary model's formula; visits are unbalanced (dropout, irregular spacing). The two ``toy_`` cases
are :func:`no_slope_variance`'s small data sets (tests/test_fit.py fits them through the formula interface).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import patsy

from analysis.join import build_analysis_dataset
from analysis.model.prepare import primary_data
from analysis.model.primary import primary_formula
from analysis.model.specification import piecewise_basis, piecewise_formula
from analysis.params import load_params
from analysis.params_schema import Params
from analysis.simulate import simulate_clinic

OUT = Path(__file__).parent / "lmm"

#: case -> (generator overrides, seed, clients simulated, random-effects terms)
CASES = {
    "clinic_50": ({}, 3, 62, ["Intercept", "week"]),
    "clinic_50_ri": ({}, 3, 62, ["Intercept"]),
    "clinic_400": ({}, 11, 470, ["Intercept", "week"]),
    # true slope SD 0: (week | client) is singular (correlation -1 or slope variance 0)
    "singular": ({"slope_sd": 0.0}, 5, 150, ["Intercept", "week"]),
    # true intercept SD tiny against the residual: (1 | client) estimated at 0
    "singular_ri": ({"intercept_sd": 0.0, "slope_sd": 0.0, "residual_sd": 2.0}, 1, 40, ["Intercept"]),
}

#: piecewise time-trend cases (analysis.model.specification): case -> (seed, clients simulated, knots); the
#: hinge columns are computed here by the project's own basis function, so R fits exactly the same design.
#: "_ml" cases are fitted by ML (the likelihood-ratio test of the linear against the piecewise trend).
PIECEWISE_CASES = {
    "clinic_50_piecewise": (3, 62, [6.0]),
    "clinic_50_piecewise_ml": (3, 62, [6.0]),
    "clinic_50_ml": (3, 62, []),
}

#: toy case -> seed of :func:`no_slope_variance`
TOY_CASES = {
    # lme4: (t | g) singular (slope variance 0)
    "toy_singular": 11,
    # lme4 (bobyqa): not singular; a gradient optimiser can stop at the saddle where the slope column of T is 0
    "toy_saddle": 13,
}


def no_slope_variance(seed: int = 11, n_groups: int = 40) -> pd.DataFrame:
    """Random intercepts only: every group has exactly the same slope (columns ``g``, ``t``, ``y``)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), 6)
    t = np.tile(np.arange(6, dtype=float), n_groups)
    y = 5 + rng.normal(0, 1.0, n_groups)[g] - 0.3 * t + rng.normal(0, 0.5, len(g))
    return pd.DataFrame({"g": [f"g{i:02d}" for i in g], "t": t, "y": y})


def write_toy_case(name: str, seed: int) -> None:
    data = no_slope_variance(seed)
    frame = pd.DataFrame({"group": data["g"], "y": data["y"], "x_Intercept": 1.0, "x_t": data["t"]})
    frame.to_csv(OUT / f"{name}.csv", index=False, lineterminator="\n", float_format="%.17g")
    meta = {
        "fixed_names": ["x_Intercept", "x_t"],
        "re_names": ["x_Intercept", "x_t"],
        "term_map": {"x_Intercept": "Intercept", "x_t": "t"},
        "source": f"tests/reference/make_reference_data.py no_slope_variance(seed={seed}) (no true slope variance)",
        "n_clients": int(frame["group"].nunique()),
    }
    (OUT / f"{name}.design.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{name}: {len(frame)} rows, {meta['n_clients']} groups")


def sanitise(name: str) -> str:
    return "x_" + re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_")


def write_case(
    name: str,
    overrides: dict,
    seed: int,
    n_clients: int,
    re_terms: list[str],
    params: Params,
    knots: list[float] | None = None,
) -> None:
    """One clinic case; with ``knots`` the piecewise time-trend design (hinge columns per knot)."""
    sim = {**params.simulate, **overrides}
    clinic = simulate_clinic(sim, seed, n_clients=n_clients, primary_week=params.model.primary_week)
    pdata = primary_data(build_analysis_dataset(clinic.clients, clinic.sessions, clinic.measurements), params.model)
    data, formula = pdata.data, primary_formula(pdata)
    if knots:
        data = pd.concat([data, piecewise_basis(data["week"], knots)], axis=1)
        formula = piecewise_formula(pdata, knots)
    y, X = patsy.dmatrices(formula, data, return_type="dataframe")
    names = {c: sanitise(c) for c in X.columns}
    frame = pd.concat(
        [
            data["client_id"].rename("group").reset_index(drop=True),
            y.iloc[:, 0].rename("y").reset_index(drop=True),
            X.rename(columns=names).reset_index(drop=True),
        ],
        axis=1,
    )
    frame.to_csv(OUT / f"{name}.csv", index=False, lineterminator="\n", float_format="%.17g")
    meta = {
        "fixed_names": list(names.values()),
        "re_names": [names[t] for t in re_terms],
        "term_map": {v: k for k, v in names.items()},
        "source": f"analysis.simulate seed {seed}, {n_clients} clients simulated, overrides {overrides}"
        + (f", piecewise time trend, knots {knots}" if knots else ""),
        "n_clients": int(frame["group"].nunique()),
    }
    (OUT / f"{name}.design.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{name}: {len(frame)} rows, {meta['n_clients']} clients, {len(names)} fixed effects")


def write_network_case(name: str, params: Params) -> None:
    """The clinic network's reference: four simulated clinics (one of 12 clients) in one frame, with the clinic
    intercepts and exactly the common columns the network fit keeps (analysis.network.pooled)."""
    from analysis.network.clinic import ClinicNode
    from analysis.network.engine import NetworkFit
    from analysis.network.pooled import REFERENCE_NETWORK, pooled_design, simulate_datasets
    from analysis.network.protocol import InProcess, run
    from analysis.network.spec import Rules, primary_spec

    spec = primary_spec(list(params.model.covariates), params.model.primary_week, params.model.alpha)
    rules = Rules()
    data = simulate_datasets(params, REFERENCE_NETWORK["seeds"], REFERENCE_NETWORK["sizes"])
    nodes = [ClinicNode.from_dataset(label, ds, params.model, spec, rules, say=lambda _: None) for label, ds in data]
    driver = NetworkFit(spec, rules)
    run(driver, InProcess(nodes))
    d = pooled_design(nodes, driver.spec)
    names = {c: sanitise(c) for c in d.fixed_names}
    frame = pd.concat(
        [
            pd.Series(d.group_labels[d.group_codes], name="group"),
            pd.Series(d.y, name="y"),
            pd.DataFrame(d.X, columns=[names[c] for c in d.fixed_names]),
        ],
        axis=1,
    )
    frame.to_csv(OUT / f"{name}.csv", index=False, lineterminator="\n", float_format="%.17g")
    meta = {
        "fixed_names": list(names.values()),
        "re_names": [names["Intercept"], names["week"]],
        "term_map": {v: k for k, v in names.items()},
        "source": f"analysis.network.pooled.REFERENCE_NETWORK {REFERENCE_NETWORK}: the network's records in one frame",
        "n_clients": int(frame["group"].nunique()),
    }
    (OUT / f"{name}.design.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{name}: {len(frame)} rows, {meta['n_clients']} clients, {len(names)} fixed effects")


def main(only: list[str]) -> None:
    """Write every case, or only the cases named in ``only``."""
    known = set(CASES) | set(PIECEWISE_CASES) | set(TOY_CASES) | {"network_4"}
    unknown = set(only) - known
    if unknown:
        raise SystemExit(f"unknown cases {sorted(unknown)}; known: {sorted(known)}")
    OUT.mkdir(parents=True, exist_ok=True)
    params = load_params()
    for name, (overrides, seed, n, re_terms) in CASES.items():
        if not only or name in only:
            write_case(name, overrides, seed, n, re_terms, params)
    for name, (seed, n, knots) in PIECEWISE_CASES.items():
        if not only or name in only:
            write_case(name, {}, seed, n, ["Intercept", "week"], params, knots)
    for name, seed in TOY_CASES.items():
        if not only or name in only:
            write_toy_case(name, seed)
    if not only or "network_4" in only:
        write_network_case("network_4", params)


if __name__ == "__main__":
    main(sys.argv[1:])
