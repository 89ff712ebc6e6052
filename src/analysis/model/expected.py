"""Expected recovery: each analysed client's expected trajectory under the primary model, with its spread.

Outcome systems for physical therapists (FOTO and the like) show a clinician where a client *like this
one* would usually be by now. Here that comes from the primary model itself
(:mod:`analysis.model.primary`)::

    y_ij = x_ij' beta + b0_i + b1_i week_ij + e_ij,   (b0_i, b1_i) ~ N(0, G),   e_ij ~ N(0, sigma^2)

where ``x_ij`` is the client's own design row: group (hip- or knee-focused first session), week,
their interaction, and the covariates (age band, sex, chronicity ``log_symptom_weeks``, sitting hours,
sport). For each analysed client and each whole week ``t`` of the follow-up window this module gives
the mean and the standard deviation of a *new observation* of that client at week ``t``.

Choice of band: conditional on the client's own first score
------------------------------------------------------------
A purely marginal prediction interval (fixed effects + the full between-client variance ``G`` +
residual) would be as wide as the spread of starting scores across the clinic (about +/- 2.3 NPRS
points at 80 %), and would flag clients simply for *starting* high. What a therapist asks is "given
where this client started, are they where similar clients are?". So the random effects are
conditioned on the client's **first observation only** (``y_i0``, week 0, before any treatment
effect): with ``z_t = (1, t)``, ``v0 = z_0' G z_0 + sigma^2`` and ``k_t = z_t' G z_0 / v0`` (the
regression of a week-``t`` score on the first score, through the shared random effects),

    expected_t = x_t' beta + k_t (y_i0 - x_0' beta) = (x_t - k_t x_0)' beta + k_t y_i0
    var_t      = (x_t - k_t x_0)' V_beta (x_t - k_t x_0)      (fixed-effect uncertainty)
               + z_t' G z_t - (z_t' G z_0)^2 / v0             (between-client spread left after y_i0)
               + sigma^2                                      (session-to-session variation)

Later scores are deliberately *not* conditioned on: a band that followed the client's own later
scores (their BLUP trajectory) would move with them and could never say that they fall behind.
``beta``, ``V_beta`` (``sigma^2 (X'V^-1 X)^-1``), ``G`` and ``sigma^2`` are the REML estimates
(plug-in: the uncertainty in ``G`` and ``sigma^2`` is not propagated, and the small correlation
between ``beta`` and the first score, which is one of the fitting observations, is ignored). After the
pre-specified random-intercept fallback ``G`` is 1 x 1 and ``z_t = 1``.

The report turns ``sd`` into a band at the level of params ``report.attention.expected_band`` (normal
quantiles), so the level is a report setting and the model step does not depend on it. Coverage of
the band on simulated clinics is tested (tests/test_expected.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.model.fit import MixedFit
from analysis.model.primary import SLOPE_TERM

EXPECTED_COLUMNS = ["client_id", "week", "expected", "sd"]


def expected_trajectories(fit: MixedFit, followup_weeks: float) -> pd.DataFrame:
    """Each analysed client's expected score and its prediction SD at weeks 0, 1, ..., ``followup_weeks``.

    Parameters
    ----------
    fit : the primary model's fit (:func:`analysis.model.primary.primary_analysis`); a failed fit gives an
        empty table (no band is drawn then).
    followup_weeks : the follow-up window (params ``model.followup_weeks``).

    Returns
    -------
    DataFrame with ``client_id``, ``week`` (whole weeks since the first session), ``expected`` (mean of a
    new observation of this client at that week, given their covariates, group and first score) and ``sd``
    (its standard deviation: fixed-effect + remaining between-client + residual variance; see the module
    docstring), sorted by client_id, week. Pseudonymous ids: therapist-only.

    Examples
    --------
    >>> from analysis.join import build_analysis_dataset
    >>> from analysis.model.prepare import primary_data
    >>> from analysis.model.primary import primary_analysis
    >>> from analysis.params import load_params
    >>> from analysis.simulate import simulate_clinic
    >>> params = load_params()
    >>> c = simulate_clinic(params.simulate, seed=1, n_clients=40, primary_week=params.model.primary_week)
    >>> pdata = primary_data(build_analysis_dataset(c.clients, c.sessions, c.measurements), params.model)
    >>> _, _, fit = primary_analysis(pdata, params.model)
    >>> e = expected_trajectories(fit, params.model.followup_weeks)
    >>> len(e) == 13 * pdata.n_clients, list(e.columns)
    (True, ['client_id', 'week', 'expected', 'sd'])
    """
    if not fit.ok or fit.result is None:
        return pd.DataFrame(columns=EXPECTED_COLUMNS)
    res = fit.result
    d = res.design
    names = list(d.fixed_names)
    first = np.flatnonzero(np.r_[True, d.group_codes[1:] != d.group_codes[:-1]])
    x0, y0, z0 = d.X[first], d.y[first], d.Z[first]  # (n, p), (n,), (n, q): each client's first observation
    beta, v_beta = res.pls.beta, res.vcov
    g, s2 = res.cov_re, float(res.sigma2)
    q = d.q
    v0 = np.einsum("nq,qr,nr->n", z0, g, z0) + s2
    resid0 = y0 - x0 @ beta
    i_week, i_hip, i_slope = names.index("week"), names.index("hip"), names.index(SLOPE_TERM)
    weeks = np.arange(0, int(np.floor(followup_weeks)) + 1, dtype=float)
    frames = []
    for t in weeks:
        xt = x0.copy()
        xt[:, i_week] = t
        xt[:, i_slope] = t * x0[:, i_hip]
        zt = np.array([1.0, t])[:q]
        c = z0 @ g @ zt  # (n,) cov of a week-t score with the first score, through the random effects
        k = c / v0
        a = xt - k[:, None] * x0
        var = (
            np.einsum("np,pr,nr->n", a, v_beta, a)  # fixed-effect uncertainty
            + float(zt @ g @ zt)
            - c**2 / v0  # between-client variance left after the first score
            + s2
        )
        frames.append(
            pd.DataFrame(
                {
                    "client_id": d.group_labels.astype(str),
                    "week": t,
                    "expected": xt @ beta + k * resid0,
                    "sd": np.sqrt(np.maximum(var, 0.0)),
                }
            )
        )
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["client_id", "week"], kind="mergesort").reset_index(drop=True)[EXPECTED_COLUMNS]
