"""The data-generating model, assembled: (params, seed) -> :class:`~.config.Clinic`.

:func:`simulate_clinic` runs the named steps of :mod:`.people` (clients, exposure, trajectories) and
:mod:`.visits` (calendar, session details, measurements, attendance) in a fixed order on one random
stream, then builds the three typed contract tables (:func:`assemble_tables`) and the truth
(:func:`analysis.simulate.truth.clinic_truth`). Pure: see the package docstring for the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis.contract import TABLES
from analysis.simulate.config import IR_LEFT, IR_RIGHT, LEFS, NPRS, Clinic, blank, ids, resolve_config
from analysis.simulate.people import Clients, draw_clients, draw_exposure, draw_trajectories
from analysis.simulate.truth import clinic_truth
from analysis.simulate.visits import (
    Measured,
    SessionDetails,
    draw_attendance,
    draw_calendar,
    draw_measurements,
    draw_session_details,
)


def simulate_clinic(
    cfg: dict[str, Any],
    seed: int,
    *,
    n_clients: int | None = None,
    effect: float | None = None,
    primary_week: float,
) -> Clinic:
    """Simulate one clinic from the ``simulate`` parameters.

    Parameters
    ----------
    cfg : dict[str, Any]
        The ``simulate`` section of params.yaml (every key of :data:`REQUIRED_KEYS`).
    seed : int
        Seed of the ``numpy.random.default_rng`` stream; same seed, same clinic.
    n_clients : int, optional
        Overrides ``cfg["n_clients"]``.
    effect : float, optional
        Overrides ``cfg["hip_slope_effect"]``: the true average difference in the
        NPRS slope (points per week), hip-focused minus knee-focused first session.
    primary_week : float
        The analysis's primary week (params ``model.primary_week``): the truth's change difference is
        stated at this week.

    Returns
    -------
    Clinic
        ``clients`` (client_id, clinic_id, sex, age_band, symptom_weeks,
        sitting_hours, activity, knee), ``sessions`` (session_id, client_id,
        session_date, therapist_id, focus, techniques, minutes),
        ``measurements`` (session_id, measure, timing, value) and ``truth``
        (``true_slope_difference``, ``true_change_difference_primary_week``, the model,
        the seed and the parameters used).

    Examples
    --------
    >>> from analysis.params import load_params
    >>> p = load_params()
    >>> c = simulate_clinic(p.simulate, seed=1, n_clients=20, primary_week=p.model.primary_week)
    >>> len(c.clients), c.truth["true_slope_difference"], c.truth["true_change_difference_primary_week"]
    (20, -0.15, -0.9)
    """
    p = resolve_config(cfg, seed, n_clients, effect)
    rng = np.random.default_rng(p["seed"])
    n, k_max = int(p["n_clients"]), int(p["sessions_max"])
    # the order of the steps is the order of the random draws: same seed, same clinic
    clients = draw_clients(rng, p, n)
    exposure = draw_exposure(rng, p, clients)
    trajectories = draw_trajectories(rng, p, clients, exposure)
    calendar = draw_calendar(rng, p, n, k_max)
    details = draw_session_details(rng, p, exposure, k_max)
    measured = draw_measurements(rng, p, trajectories, calendar, details)
    attend = draw_attendance(rng, p, measured, calendar)
    tables = assemble_tables(p, clients, calendar.days, details, measured, attend)
    truth = clinic_truth(
        p,
        clients,
        exposure,
        trajectories,
        primary_week=primary_week,
        n_sessions=len(tables["sessions"]),
        n_measurements=len(tables["measurements"]),
    )
    return Clinic(truth=truth, **tables)


def assemble_tables(
    p: dict[str, Any],
    c: Clients,
    days: np.ndarray,
    s: SessionDetails,
    m: Measured,
    attend: np.ndarray,
) -> dict[str, pd.DataFrame]:
    """The three typed contract tables from the grid: one session per attended cell, one measurement per
    attended and taken value; ids C0001.., S00001.. in client and session order."""
    n = c.n
    cw = max(4, len(str(n)))
    client_ids = ids("C", np.arange(1, n + 1), cw)
    clients = pd.DataFrame(
        {
            "client_id": pd.array(client_ids, dtype="str"),
            "clinic_id": pd.array(np.full(n, str(p["clinic_id"]), dtype=object), dtype="str"),
            "sex": pd.array(c.sex, dtype="str"),
            "age_band": pd.array(c.age, dtype="str"),
            "symptom_weeks": c.symptom_weeks.astype(np.int64),
            "sitting_hours": np.where(c.sitting_missing, np.nan, c.sitting).astype(np.float64),
            "activity": pd.array(c.activity, dtype="str"),
            "knee": pd.array(c.knee, dtype="str"),
        }
    )[TABLES["clients"].column_names]

    ci, ki = np.nonzero(attend)  # row-major: client by client, session by session
    n_sess = len(ci)
    sw_ids = max(5, len(str(n_sess)))
    session_ids = ids("S", np.arange(1, n_sess + 1), sw_ids)
    sessions = pd.DataFrame(
        {
            "session_id": pd.array(session_ids, dtype="str"),
            "client_id": pd.array(client_ids[ci], dtype="str"),
            "session_date": pd.to_datetime(days[ci, ki].astype("datetime64[D]")).astype("datetime64[ns]"),
            "therapist_id": pd.array(blank(s.therapist[ci, ki], s.therapist_missing[ci, ki]), dtype="str"),
            "focus": pd.array(s.focus[ci, ki], dtype="str"),
            "techniques": pd.array(blank(s.technique_text[ci, ki], s.techniques_missing[ci, ki]), dtype="str"),
            "minutes": s.minutes[ci, ki].astype(np.int64),
        }
    )[TABLES["sessions"].column_names]

    pieces = (  # (measure, timing, values grid, taken grid)
        (IR_LEFT, "pre", m.ir_pre[0], m.ir_left_taken),
        (IR_LEFT, "post", m.ir_post[0], m.ir_left_taken & m.post_taken),
        (IR_RIGHT, "pre", m.ir_pre[1], m.ir_right_taken),
        (IR_RIGHT, "post", m.ir_post[1], m.ir_right_taken & m.post_taken),
        (NPRS, "pre", m.nprs_pre, m.nprs_pre_taken),
        (NPRS, "post", m.nprs_post, m.nprs_pre_taken & m.post_taken),
        (LEFS, "pre", m.lefs, m.lefs_taken),
    )
    sess_index = np.full(attend.shape, -1, dtype=np.int64)
    sess_index[ci, ki] = np.arange(n_sess)
    rows_s, rows_p, rows_v = [], [], []
    for order, (_m, _t, values, taken) in enumerate(pieces):
        mask = attend & taken
        rows_s.append(sess_index[mask])
        rows_p.append(np.full(int(mask.sum()), order, dtype=np.int64))
        rows_v.append(values[mask])
    s_all, p_all, v_all = np.concatenate(rows_s), np.concatenate(rows_p), np.concatenate(rows_v)
    sort = np.lexsort((p_all, s_all))
    s_all, p_all, v_all = s_all[sort], p_all[sort], v_all[sort]
    measure_names = np.array([m for m, _, _, _ in pieces], dtype=object)
    timing_names = np.array([t for _, t, _, _ in pieces], dtype=object)
    measurements = pd.DataFrame(
        {
            "session_id": pd.array(session_ids[s_all], dtype="str"),
            "measure": pd.array(measure_names[p_all], dtype="str"),
            "timing": pd.array(timing_names[p_all], dtype="str"),
            "value": v_all.astype(np.float64),
        }
    )[TABLES["measurements"].column_names]
    return {"clients": clients, "sessions": sessions, "measurements": measurements}
