"""The check on the network fit: the same model fitted to every clinic's records in one data frame.

Only for simulation and tests (a real network never pools records): it concatenates the clinics'
network frames, adds the clinic as a factor and builds the design with exactly the columns the
network fit kept, so that :func:`analysis.model.fit.fit_design` — and lme4 on the same CSV
(``tests/reference/lmm/network_4``) — fits ``y ~ 0 + clinic + <common columns> + (week | client)``.
Also the simulated clinics of the demo network and the reference case (:func:`simulate_datasets`).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from analysis.join import build_analysis_dataset
from analysis.model.lmm import design as dz
from analysis.network.clinic import ClinicNode
from analysis.network.spec import Spec
from analysis.params_schema import Params
from analysis.simulate import simulate_clinic

#: the reference network (tests/reference/lmm/network_4): clinics never used elsewhere, one of 12 clients
REFERENCE_NETWORK = {"seeds": (7101, 7102, 7103, 7104), "sizes": (12, 35, 60, 90)}


def simulate_datasets(
    params: Params, seeds: Sequence[int], sizes: Sequence[int], effects: Sequence[float] | None = None
) -> list[tuple[str, pd.DataFrame]]:
    """(label, analysis dataset) of simulated clinics ``N01``, ``N02``, ... (the generator's own effect by default)."""
    out = []
    for i, (seed, n) in enumerate(zip(seeds, sizes, strict=True)):
        sim = dict(params.simulate)
        if effects is not None:
            sim["hip_slope_effect"] = float(effects[i])
        c = simulate_clinic(sim, seed=seed, n_clients=n, primary_week=params.model.primary_week)
        out.append((f"N{i + 1:02d}", build_analysis_dataset(c.clients, c.sessions, c.measurements)))
    return out


def pooled_frame(nodes: Sequence[ClinicNode]) -> pd.DataFrame:
    """Every clinic's network frame in one, client ids prefixed by the clinic's label, ``clinic`` a factor."""
    frames = []
    for node in nodes:
        f = node.frame.copy()
        f["client_id"] = node.label + ":" + f["client_id"].astype(str)
        f["clinic"] = node.label
        frames.append(f)
    pooled = pd.concat(frames, ignore_index=True)
    pooled["clinic"] = pd.Categorical(pooled["clinic"], categories=[n.label for n in nodes])
    return pooled


def pooled_design(nodes: Sequence[ClinicNode], spec: Spec) -> dz.Design:
    """The one-frame design: intercept, clinic contrasts, then the network's kept common columns."""
    if spec.columns is None:
        raise ValueError("the spec has no kept columns yet (run the network's round 0 first)")
    formula = "y ~ C(clinic) + " + " + ".join(spec.terms)
    d = dz.from_formula(pooled_frame(nodes), formula, spec.groups, spec.re_formula)
    clinics = [i for i, n in enumerate(d.fixed_names) if n == "Intercept" or n.startswith("C(clinic)")]
    return dz.select_columns(d, clinics + [d.fixed_names.index(c) for c in spec.columns])
