"""Write the generated-clinic data sets for the R reference fits (tests/reference/lmm/<case>.csv).

Run from the project root with the project's environment:
``.venv/bin/python tests/reference/make_reference_data.py`` then ``Rscript tests/reference/make_reference.R``.

Each CSV has ``group``, ``y`` and the full fixed-effects design matrix as ``x_<name>`` columns
(``x_Intercept`` included), so R fits exactly ``y ~ 0 + x_... + (0 + <re cols> | group)`` and the
engine reads X, Z, y and groups straight from the file. ``<case>.design.json`` lists the fixed and
random columns and maps each ``x_`` name back to the project's patsy term. The clinics come from
the project's own generator, join and preparation, exactly as the pipeline analyses a clinic, with
the primary model's formula; visits are unbalanced (dropout, irregular spacing).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import patsy

from analysis.join import build_analysis_dataset
from analysis.model.prepare import primary_data
from analysis.model.primary import primary_formula
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


def sanitise(name: str) -> str:
    return "x_" + re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_")


def write_case(name: str, overrides: dict, seed: int, n_clients: int, re_terms: list[str], params: Params) -> None:
    sim = {**params.simulate, **overrides}
    clinic = simulate_clinic(sim, seed, n_clients=n_clients, primary_week=params.model.primary_week)
    pdata = primary_data(build_analysis_dataset(clinic.clients, clinic.sessions, clinic.measurements), params.model)
    y, X = patsy.dmatrices(primary_formula(pdata), pdata.data, return_type="dataframe")
    names = {c: sanitise(c) for c in X.columns}
    frame = pd.concat(
        [
            pdata.data["client_id"].rename("group").reset_index(drop=True),
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
        "source": f"analysis.simulate seed {seed}, {n_clients} clients simulated, overrides {overrides}",
        "n_clients": int(frame["group"].nunique()),
    }
    (OUT / f"{name}.design.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{name}: {len(frame)} rows, {meta['n_clients']} clients, {len(names)} fixed effects")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    params = load_params()
    for name, (overrides, seed, n, re_terms) in CASES.items():
        write_case(name, overrides, seed, n, re_terms, params)


if __name__ == "__main__":
    main()
