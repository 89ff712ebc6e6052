"""Join: derived columns on a hand-made clinic, no row lost unaccounted, flow counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.errors import InputError
from analysis.join import DATASET_COLUMNS, FlowConfig, build_analysis_dataset, exclusion_flow


@pytest.fixture()
def tiny():
    clients = pd.DataFrame(
        {
            "client_id": ["A", "B", "C", "D"],
            "clinic_id": ["clinic-1"] * 4,
            "sex": ["F", "M", "F", "X"],
            "age_band": ["30-39", "40-49", "50-59", "18-29"],
            "symptom_weeks": np.array([0, 12, 52, 3], dtype="int64"),
            "sitting_hours": [8.0, np.nan, 4.0, 6.0],
            "activity": ["running", "cycling", "gym", "none"],
            "knee": ["left", "right", "both", "left"],
        }
    )
    sessions = pd.DataFrame(
        {
            # B's sessions are given out of order and two fall on one day (ordered by session_id)
            "session_id": ["A1", "A2", "A3", "B2", "B1", "B3", "C1"],
            "client_id": ["A", "A", "A", "B", "B", "B", "C"],
            "session_date": pd.to_datetime(
                ["2024-01-01", "2024-01-08", "2024-01-22", "2024-02-01", "2024-02-01", "2024-02-15", "2024-03-01"]
            ),
            "therapist_id": ["T1"] * 7,
            "focus": ["hip", "knee", "hip_and_knee", "knee", "knee", "hip", "other"],
            "techniques": ["stretching"] * 7,
            "minutes": np.array([45] * 7, dtype="int64"),
        }
    )
    measurements = pd.DataFrame(
        {
            "session_id": ["A1", "A1", "A2", "A3", "B1", "B2", "B3", "C1", "A1"],
            "measure": ["knee_pain_nprs"] * 8 + ["lefs"],
            "timing": ["pre", "post", "pre", "pre", "pre", "pre", "pre", "pre", "pre"],
            "value": [6.0, 4.0, 5.0, 2.0, 7.0, 7.0, 6.0, 5.0, 40.0],
        }
    )
    return clients, sessions, measurements


def test_derived_columns_by_hand(tiny):
    ds = build_analysis_dataset(*tiny)
    assert list(ds.columns) == DATASET_COLUMNS
    assert len(ds) == len(tiny[2])  # one row per measurement, none lost
    a = ds[(ds.client_id == "A") & (ds.measure == "knee_pain_nprs") & (ds.timing == "pre")]
    assert a.session_number.tolist() == [1, 2, 3]
    assert a.days_since_first.tolist() == [0, 7, 21]
    assert a.weeks_since_first.tolist() == [0.0, 1.0, 3.0]
    assert a.baseline_value.tolist() == [6.0, 6.0, 6.0]
    assert a.change_from_baseline.tolist() == [0.0, -1.0, -4.0]
    assert a.cum_hip_sessions.tolist() == [1, 1, 2]
    assert set(a.baseline_focus) == {"hip"}
    assert set(a.n_sessions) == {3}
    post = ds[(ds.client_id == "A") & (ds.timing == "post")]
    assert post.change_from_baseline.tolist() == [-2.0]  # post vs the first session's pre value
    lefs = ds[ds.measure == "lefs"]
    assert lefs.baseline_value.tolist() == [40.0]
    assert ds.loc[ds.client_id == "A", "log_symptom_weeks"].iloc[0] == pytest.approx(0.0)


def test_same_day_sessions_ordered_by_id(tiny):
    ds = build_analysis_dataset(*tiny)
    b = ds[ds.client_id == "B"].set_index("session_id")
    assert b.loc["B1", "session_number"] == 1
    assert b.loc["B2", "session_number"] == 2
    assert b.loc["B2", "days_since_first"] == 0
    assert b.loc["B3", "baseline_focus"] == "knee"
    assert b.loc["B3", "cum_hip_sessions"] == 1


def test_orphan_measurement_raises(tiny):
    clients, sessions, measurements = tiny
    bad = pd.concat(
        [measurements, pd.DataFrame({"session_id": ["ZZ"], "measure": ["lefs"], "timing": ["pre"], "value": [1.0]})]
    )
    with pytest.raises(InputError, match="unknown sessions"):
        build_analysis_dataset(clients, sessions, bad)


def test_flow_counts_every_client(tiny):
    ds = build_analysis_dataset(*tiny)
    flow = exclusion_flow(ds, *tiny, FlowConfig(), received={"clients": 5, "sessions": 8, "measurements": 10})
    steps = flow.set_index("step")
    assert flow.clients.tolist()[:6] == [5, 4, 3, 3, 2, 2]
    # D has no sessions; C has baseline but no follow-up; A and B reach the comparison
    assert steps.loc["with at least one session", "excluded_clients"] == 1
    assert steps.loc["analysed: hip-focused", "clients"] == 1
    assert steps.loc["analysed: knee-focused", "clients"] == 1
    main = flow.iloc[:-2]
    # every exclusion is accounted: received minus the sum of exclusions = analysed
    assert main.clients.iloc[0] - main.excluded_clients.sum() == main.clients.iloc[-1]


def test_followup_window_respected(tiny):
    ds = build_analysis_dataset(*tiny)
    flow = exclusion_flow(ds, *tiny, FlowConfig(followup_weeks=0.5))
    # no client has a follow-up within half a week except B (same-day second session)
    assert flow.set_index("step").filter(like="follow-up", axis=0).clients.iloc[0] == 1


def test_cumulative_hip_sessions_follow_the_exposure_definition(tiny):
    # a clinic that counts only pure 'hip' sessions as hip-focused
    ds = build_analysis_dataset(*tiny, hip_foci=("hip",))
    a = ds[(ds.client_id == "A") & (ds.measure == "knee_pain_nprs") & (ds.timing == "pre")]
    assert a.cum_hip_sessions.tolist() == [1, 1, 1]
