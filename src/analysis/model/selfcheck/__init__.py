"""Self-check: does the primary estimator recover a known truth? A simulation study.

Many clinics are simulated (:func:`analysis.simulate.simulate_clinic`, each
with its own seed drawn from params ``selfcheck.seed``), joined
(:func:`analysis.join.build_analysis_dataset`) and analysed exactly as a real
clinic is (:func:`analysis.model.prepare.primary_data`, the primary model's formula and
fit, :func:`analysis.model.fit.fit_mixed_with_fallback`). For speed they are simulated,
joined and prepared in chunks by equivalent bulk code that gives the same data, value
for value (``study``; tests/test_bulk.py). Each clinic's
headline (difference in change at the primary week) is computed from the same
fit with each df method -- Wald-z, Satterthwaite (lmerTest) and Kenward-Roger
(pbkrtest) -- so their coverage and type-I error are compared side by side.
Scenarios, at params ``selfcheck.n_clients`` clients (default 150) and at a
small one-therapist clinic (``selfcheck.n_clients_small``, default 40):

- ``effect``: the demo's true slope difference (params ``simulate.hip_slope_effect``)
  -> bias, empirical SE vs mean model SE, 95% CI coverage, power;
- ``no_effect``: a strict null -- no average difference *and* no chronicity
  moderation (``simulate.chronicity_moderation`` set to 0), so the hip effect
  is exactly 0 for every client and the rejection rate is a type-I error in
  the plain sense -> type-I error and coverage under the null. (With the
  moderation kept, the effect would vary around an average of 0 with symptom
  duration.) The label is not ``null`` because pandas reads that word in a CSV
  as a missing value.

``small_effect`` and ``small_no_effect`` repeat the two at the small size, where
the df correction matters. Clinics are analysed in parallel (one process per
core); results do not depend on the number of processes.

Each scenario's summary carries a plain-language ``interpretation``: every
operating characteristic is compared with its target using the Monte Carlo
error of the run (a departure is flagged beyond 2 Monte Carlo SEs).

The target is the declared estimand, ``true_change_difference_primary_week`` (=
primary_week x true slope difference, on the latent scale). NPRS is recorded
as whole points clipped to 0-10, which pulls estimates slightly towards 0; the
bias against the expected recorded-scale difference
(``truth.sample.change_difference_primary_week_recorded_scale``) is reported beside it.
Failed fits are counted, never dropped silently: the rates are over fitted
clinics and the number of failures is shown beside them.

Layout: ``study`` (simulate and fit the clinics), ``prepared`` (join and prepare a chunk of
simulated clinics at once), ``design`` (the primary model's matrices without patsy), ``summary``
(performance measures and their interpretation), ``run`` (the I/O edge and the figure).
"""

from __future__ import annotations

from analysis.model.selfcheck.run import run_selfcheck, selfcheck_figure
from analysis.model.selfcheck.study import RUN_COLUMNS, clinic_seeds, simulation_study
from analysis.model.selfcheck.summary import MC_FLAG, SUMMARY_COLUMNS, interpret, summarise

__all__ = [
    "MC_FLAG",
    "RUN_COLUMNS",
    "SUMMARY_COLUMNS",
    "clinic_seeds",
    "interpret",
    "run_selfcheck",
    "selfcheck_figure",
    "simulation_study",
    "summarise",
]
