"""Expected recovery (analysis.model.expected): the band covers what it says on simulated clinics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.join import build_analysis_dataset
from analysis.model.expected import EXPECTED_COLUMNS, expected_trajectories
from analysis.model.fit import MixedFit
from analysis.model.prepare import primary_data
from analysis.model.primary import primary_analysis
from analysis.params import load_params
from analysis.report import recovery as rc
from analysis.simulate import simulate_clinic

LEVEL = 0.8
#: ~5,700 later observations over three clinics; scores within a client are correlated, so the effective
#: sample is smaller (design effect about 2: SE of the coverage about 0.008). 0.03 is about 4 such SEs.
TOLERANCE = 0.03


def _clinic(seed: int, n_clients: int):
    params = load_params()
    c = simulate_clinic(params.simulate, seed=seed, n_clients=n_clients, primary_week=params.model.primary_week)
    pdata = primary_data(build_analysis_dataset(c.clients, c.sessions, c.measurements), params.model)
    _, _, fit = primary_analysis(pdata, params.model)
    return pdata, fit, params.model.followup_weeks


@pytest.fixture(scope="module")
def clinics():
    return [_clinic(seed, 400) for seed in (1, 2, 3)]


def _inside(pdata, fit, followup) -> pd.DataFrame:
    """Every later observation (week > 0) with the band at its week: inside / above / below."""
    band = rc.by_client(rc.band_table(expected_trajectories(fit, followup), LEVEL))
    rows = []
    for obs in pdata.data[pdata.data["week"] > 0].itertuples():
        p = rc.band_at(band[str(obs.client_id)], float(obs.week))
        assert p is not None
        rows.append({"inside": p.low <= obs.y <= p.high, "above": obs.y > p.high, "below": obs.y < p.low})
    return pd.DataFrame(rows)


def test_band_covers_later_observations_at_its_nominal_level(clinics):
    hits = pd.concat([_inside(*c) for c in clinics], ignore_index=True)
    assert len(hits) > 5000
    coverage = float(hits["inside"].mean())
    assert abs(coverage - LEVEL) < TOLERANCE, coverage
    # and symmetrically: about (1 - level) / 2 above the band ("behind") and below it
    for side in ("above", "below"):
        assert abs(float(hits[side].mean()) - (1 - LEVEL) / 2) < TOLERANCE, (side, float(hits[side].mean()))


def test_one_row_per_client_and_week_conditional_on_the_first_score(clinics):
    pdata, fit, followup = clinics[0]
    e = expected_trajectories(fit, followup)
    assert list(e.columns) == EXPECTED_COLUMNS
    assert len(e) == pdata.n_clients * (int(followup) + 1)
    assert not e.duplicated(["client_id", "week"]).any() and e["sd"].gt(0).all()
    # conditioning on the first score: clients who started higher are expected higher at week 0 ...
    first = pdata.data.drop_duplicates("client_id").set_index("client_id")["y"]
    at0 = e[e["week"] == 0].set_index("client_id")["expected"]
    assert np.corrcoef(first.loc[at0.index.astype(first.index.dtype)], at0)[0, 1] > 0.9
    # ... and the band is narrower than the spread of first scores across the clinic
    assert float(e.loc[e["week"] == 0, "sd"].median()) < float(first.std())
    # the spread grows with time (clients differ in their slopes)
    sd_by_week = e.groupby("week")["sd"].median()
    assert sd_by_week.iloc[-1] > sd_by_week.iloc[1]


def test_no_band_when_the_primary_fit_failed():
    failed = MixedFit.failed("singular fit", formula="y ~ week * hip", re_formula="~week", n_groups=3, n_obs=9)
    e = expected_trajectories(failed, 12)
    assert e.empty and list(e.columns) == EXPECTED_COLUMNS
    assert rc.band_table(e, LEVEL).empty
