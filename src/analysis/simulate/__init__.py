"""Simulate: a synthetic clinic that follows the contract, with its ground truth.

The demo clinic in ``data/raw/demo`` and the self-check's simulated clinics
come from here. The data-generating model is the linear mixed model the
primary analysis fits, so its truth can be recovered:

    NPRS_pre(i, t) = b0 + covariates_i + u0_i
                     + (knee_slope + hip_i * (direct + moderation * (L_i - c))
                        + gamma * (ir_slope_i - ir_gain_knee) + u1_i) * t + e_it

with ``t`` the weeks since the client's first session, ``hip_i`` the focus of
the first session (hip or hip_and_knee = 1, knee = 0), ``L_i = ln(symptom_weeks
+ 1)``, ``c`` the mean of ``L`` over the compared clients (so the average
effect over the simulated clients equals the headline effect), and the hip
internal rotation (IR) slope ``ir_slope_i = ir_gain_knee + hip_i * ir_gain_hip
+ w_i`` carrying the mediated share of the effect (``gamma * ir_gain_hip``).
The latent value is then rounded and clipped to 0-10, as a clinician records
it; the floor at 0 attenuates observed slopes slightly (reported in
truth.json).

Dropout depends on observed progress only (missing at random): clients whose
recorded pain has not improved are more likely to stop, and so are those who
have recovered. The focus of the first session depends on sitting hours and
on running/cycling (confounding by indication); both also raise or lower
baseline pain.

Everything is vectorised over clients (a loop runs over the at most
``sessions_max`` session numbers only), so 20,000 clients take seconds.

Layout: ``config`` (parameters, the :class:`Clinic` result, random-draw helpers); the data-generating
model as named steps, each a pure function with a typed result: ``people`` (clients, exposure,
trajectories) and ``visits`` (calendar, session details, measurements, attendance); ``model`` (runs
the steps in order and assembles the tables); ``truth`` (the true effects, at the analysis's primary
week); ``write`` (CSV text and the I/O edge).
"""

from __future__ import annotations

from analysis.simulate.config import MEASURES, MODEL_VERSION, REQUIRED_KEYS, Clinic, resolve_config
from analysis.simulate.model import simulate_clinic
from analysis.simulate.write import format_tables, run_simulate

__all__ = [
    "MEASURES",
    "MODEL_VERSION",
    "REQUIRED_KEYS",
    "Clinic",
    "format_tables",
    "resolve_config",
    "run_simulate",
    "simulate_clinic",
]
