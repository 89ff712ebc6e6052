"""Join and prepare many simulated clinics at once: a batch's client x session grid -> each clinic's
primary-model data as arrays (:class:`ClinicData`, from which the fit's design is built), whose
:meth:`ClinicData.primary_data` is the :class:`~analysis.model.prepare.PrimaryData` the per-clinic
pipeline makes.

The per-clinic pipeline builds the contract tables (:func:`analysis.simulate.model.assemble_tables`),
joins them (:func:`analysis.join.build_analysis_dataset`) and selects the primary model's data
(:func:`analysis.model.prepare.primary_data`): three rounds of pandas merges, sorts and a loop over
clients, for a few hundred rows. On the simulated grid every step has a direct form, computed here
once for the whole batch and cut per clinic:

- a session is an attended cell, numbered client by client (``S00001``, ...); its session number is
  its column + 1 (attendance is contiguous) and its weeks since the first session are the
  calendar's ``weeks`` (the same ``days / 7.0``);
- the primary outcome (NPRS before treatment) is a taken pre value of an attended cell within the
  follow-up window; the baseline is the one at session 1;
- clients are excluded with the first reason that applies, in ``primary_data``'s order (no
  baseline, no follow-up within the window, baseline focus outside both groups; the simulator
  leaves no categorical covariate blank);
- the covariates follow ``primary_data``'s rules (a numeric covariate's gaps filled with the
  analysed clients' mean, with a missing indicator; a categorical's reference level the most common,
  ties alphabetical; constant covariates and ``clinic_id`` left out).

Only the primary outcome ``knee_pain_nprs``/``pre`` is supported (what the simulator records and the
self-check analyses). tests/test_bulk.py checks clinic by clinic that ``data``, ``excluded``,
``covariates`` and ``levels`` equal the per-clinic pipeline's exactly; ``notes`` are not made.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.join import HIP_FOCI as JOIN_HIP_FOCI
from analysis.model.prepare import DATA_COLUMNS, EXCLUDED_COLUMNS, PrimaryData
from analysis.params_schema import ModelParams
from analysis.simulate.bulk import ClinicBatch
from analysis.simulate.config import NPRS, ids

#: covariates the bulk path knows (the analysis dataset's client columns)
NUMERIC = ("log_symptom_weeks", "symptom_weeks", "sitting_hours")
CATEGORICAL = ("age_band", "sex", "activity", "clinic_id")


def _str(values: np.ndarray) -> pd.api.extensions.ExtensionArray:
    return pd.array(values.astype(object), dtype="str")


@dataclass(frozen=True)
class ClinicData:
    """One clinic's primary-model data as arrays, one entry per row of ``PrimaryData.data``.

    Attributes
    ----------
    columns : the columns of ``PrimaryData.data`` except ``session_id`` (numbers as numpy arrays, text
        and categorical covariates as object arrays of str).
    session_index : each row's session number within the clinic (1, 2, ... over its sessions,
        client by client); ``session_width`` the digits of its id (``S00001``).
    covariates, levels : as in :class:`~analysis.model.prepare.PrimaryData`.
    excluded : (client_id, reason) of each excluded client, in client order.
    """

    columns: dict[str, np.ndarray]
    session_index: np.ndarray
    session_width: int
    covariates: list[str]
    levels: dict[str, list[str]]
    excluded: list[tuple[str, str]]

    @property
    def n_clients(self) -> int:
        return len(np.unique(self.columns["client_id"]))

    def primary_data(self) -> PrimaryData:
        """As :func:`analysis.model.prepare.primary_data` returns it (``notes`` empty)."""
        data: dict[str, Any] = {}
        for name in DATA_COLUMNS:
            if name == "session_id":
                data[name] = _str(ids("S", self.session_index, self.session_width))
                continue
            values = self.columns[name]
            if name in self.levels:
                data[name] = pd.Categorical(values, categories=self.levels[name])
            elif values.dtype == object:
                data[name] = _str(values)
            else:
                data[name] = values
        excluded = pd.DataFrame(self.excluded, columns=EXCLUDED_COLUMNS)
        return PrimaryData(
            data=pd.DataFrame(data), excluded=excluded, covariates=self.covariates, levels=self.levels, notes=[]
        )


def primary_batch(batch: ClinicBatch, cfg: ModelParams) -> Iterator[ClinicData]:
    """Each clinic's primary-model data, in clinic order (see the module docstring).

    Parameters
    ----------
    batch : clinics from :func:`analysis.simulate.bulk.simulate_clinics`.
    cfg : params ``model`` section (``measure``, ``timing``, ``followup_weeks``, ``exposure``,
        ``covariates``).

    Yields
    ------
    ClinicData
        Clinic ``k``'s; its :meth:`~ClinicData.primary_data` equals
        ``primary_data(build_analysis_dataset(<clinic k's tables>), cfg)`` in ``data``, ``excluded``,
        ``covariates`` and ``levels``.
    """
    if (cfg.measure, cfg.timing) != (NPRS, "pre"):
        raise ValueError(f"the bulk path prepares {NPRS} (pre) only, not {cfg.measure} ({cfg.timing})")
    unknown = sorted(set(cfg.covariates) - set(NUMERIC) - set(CATEGORICAL))
    if unknown:
        raise ValueError(f"the bulk path does not prepare covariate(s) {unknown}")
    hip_foci, comparator = list(cfg.exposure.hip_focused), list(cfg.exposure.comparator)
    c, m, cal, s = batch.clients, batch.measured, batch.calendar, batch.details
    attend = batch.attend
    n_rows, k_max = attend.shape
    obs = attend & m.nprs_pre_taken & (cal.weeks <= cfg.followup_weeks)
    base_focus = s.focus[:, 0]
    in_groups = np.isin(base_focus, hip_foci + comparator)
    reason = np.full(n_rows, "", dtype=object)
    reason[~in_groups] = np.char.add("baseline focus ", base_focus[~in_groups].astype(str)).astype(object)
    reason[~obs[:, 1:].any(axis=1)] = f"no follow-up within {cfg.followup_weeks:g} weeks"
    reason[~obs[:, 0]] = "no baseline measurement"
    kept_all = reason == ""
    # sessions are numbered client by client within each clinic
    session_no = np.cumsum(attend.ravel()).reshape(attend.shape)
    cum_hip = np.cumsum(np.isin(s.focus, JOIN_HIP_FOCI), axis=1).astype(np.int64)
    hip = np.isin(base_focus, hip_foci).astype(np.int64)
    sw = c.symptom_weeks.astype(np.int64)
    client_columns = {
        "symptom_weeks": sw,
        "log_symptom_weeks": np.log(sw.astype(np.float64) + 1.0),
        "sitting_hours": np.where(c.sitting_missing, np.nan, c.sitting).astype(np.float64),
        "age_band": c.age,
        "sex": c.sex,
        "activity": c.activity,
    }
    clinic_id = str(batch.p["clinic_id"])
    for k in range(batch.n_clinics):
        rows = batch.rows(k)
        a, n = rows.start, rows.stop - rows.start
        client_ids = ids("C", np.arange(1, n + 1), max(4, len(str(n))))
        first_session = int(session_no[a - 1, -1]) if a > 0 else 0
        n_sessions = int(session_no[rows.stop - 1, -1]) - first_session
        kept = kept_all[rows]
        per_client = {name: v[rows][kept] for name, v in client_columns.items()}
        per_client["clinic_id"] = np.full(int(kept.sum()), clinic_id, dtype=object)
        terms, levels = _covariates(per_client, list(cfg.covariates))
        ci, ki = np.nonzero(obs[rows] & kept[:, None])  # row-major: client_id, then week and session number
        pos = (np.cumsum(kept) - 1)[ci]  # each row's client among the kept clients
        g = a + ci
        columns = {
            "client_id": client_ids[ci],
            "session_number": (ki + 1).astype(np.int64),
            "week": cal.weeks[g, ki].astype(np.float64),
            "y": m.nprs_pre[g, ki].astype(np.float64),
            "baseline_y": m.nprs_pre[g, 0].astype(np.float64),
            "hip": hip[g],
            "focus": s.focus[g, ki],
            "baseline_focus": base_focus[g],
            "cum_hip_sessions": cum_hip[g, ki],
            **{name: values[pos] for name, values in per_client.items()},
        }
        dropped = ~kept
        yield ClinicData(
            columns=columns,
            session_index=session_no[g, ki] - first_session,
            session_width=max(5, len(str(n_sessions))),
            covariates=terms,
            levels=levels,
            excluded=list(zip(client_ids[dropped], reason[rows][dropped], strict=True)),
        )


def _covariates(out: dict[str, np.ndarray], names: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """``primary_data``'s covariate rules on one clinic's analysed clients (``out`` updated in place)."""
    terms: list[str] = []
    levels: dict[str, list[str]] = {}
    missing = np.isnan(out["sitting_hours"])
    out["sitting_hours_missing"] = missing.astype(np.int64)
    for name in [*names, "clinic_id"]:
        col = out[name]
        if name in NUMERIC:
            gaps = np.isnan(col) if col.dtype.kind == "f" else np.zeros(len(col), dtype=bool)
            observed = col[~gaps].astype(np.float64)
            mean = float(pd.Series(observed, dtype="float64").mean()) if len(observed) else 0.0
            if len(np.unique(observed)) <= 1:
                out[name] = np.where(gaps, mean, col).astype(np.float64)
                continue
            terms.append(name)
            if gaps.any():
                out[name] = np.where(gaps, mean, col).astype(np.float64)
                out[f"{name}_missing"] = gaps.astype(np.int64)
                terms.append(f"{name}_missing")
        else:
            cats, counts = np.unique(col.astype(str), return_counts=True)  # sorted as Python sorts str
            if len(cats) <= 1:
                continue
            reference = str(cats[np.argmax(counts == counts.max())])
            levels[name] = [reference] + [str(v) for v in cats if v != reference]
            terms.append(f"C({name})")
    return terms, levels
