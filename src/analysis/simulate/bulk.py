"""Many clinics at once: the named steps of :func:`analysis.simulate.simulate_clinic` run once over the
clients of a whole batch of clinics, each clinic keeping its own random stream and its own truth.

The self-check simulates thousands of clinics; one call of each step per clinic spends most of its time
in Python and pandas overhead, not in arithmetic. Here the steps of :mod:`.people` and :mod:`.visits`
run once on the clients of all the clinics stacked (clinic 1's clients, then clinic 2's, ...). Every
step is elementwise over clients except two, which are kept per clinic:

- the random draws: :class:`ClinicStreams` stands in for the random generator and answers each draw
  (``size`` with the batch's clients first) by drawing each clinic's block from that clinic's own
  ``numpy.random.default_rng(seed)``, in the same order and with the same shapes as
  :func:`~analysis.simulate.simulate_clinic` does; so clinic ``k`` of a batch is, value for value, the
  clinic that ``simulate_clinic(cfg, seeds[k])`` returns;
- the centre of the chronicity moderation (mean ln(symptom_weeks + 1) over the clinic's compared
  clients, :func:`~analysis.simulate.people.compared_centre`), computed per clinic and handed to the
  trajectories step.

:func:`clinic_of` cuts clinic ``k`` out of a batch as the typed step results, from which
:func:`~analysis.simulate.model.assemble_tables` and :func:`~analysis.simulate.truth.clinic_truth` give
exactly the tables and the truth of ``simulate_clinic`` (tests/test_bulk.py checks this).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np

from analysis.simulate.config import Clinic, expected_recorded, resolve_config
from analysis.simulate.model import assemble_tables
from analysis.simulate.people import (
    Clients,
    Exposure,
    Trajectories,
    compared_centre,
    draw_clients,
    draw_exposure,
    draw_trajectories,
)
from analysis.simulate.truth import clinic_truth
from analysis.simulate.visits import (
    Calendar,
    Measured,
    SessionDetails,
    draw_attendance,
    draw_calendar,
    draw_measurements,
    draw_session_details,
)

T = TypeVar("T")


class ClinicStreams:
    """The draws of many clinics, each from its own generator: a stand-in for ``numpy.random.Generator``.

    Every draw's ``size`` has the batch's clients first (an int, or a tuple whose first entry is the
    number of clients of the batch); clinic ``k``'s block of ``sizes[k]`` rows is drawn from
    ``default_rng(seeds[k])`` with its own shape, and the blocks are stacked in clinic order. Only the
    draws the simulation steps use are provided.
    """

    def __init__(self, seeds: Sequence[int], sizes: Sequence[int]) -> None:
        self.generators = [np.random.default_rng(int(s)) for s in seeds]
        self.sizes = [int(n) for n in sizes]
        self.total = sum(self.sizes)

    def _each(self, size: int | tuple[int, ...], draw: Callable[[np.random.Generator, Any], np.ndarray]) -> np.ndarray:
        shape = (size,) if isinstance(size, (int, np.integer)) else tuple(size)
        if shape[0] != self.total:
            raise ValueError(f"a batch draw needs the batch's {self.total} clients first, not size {size}")
        rest = shape[1:]
        blocks = [draw(g, n if not rest else (n, *rest)) for g, n in zip(self.generators, self.sizes, strict=True)]
        return np.concatenate(blocks, axis=0)

    def random(self, size: int | tuple[int, ...]) -> np.ndarray:
        return self._each(size, lambda g, s: g.random(s))

    def standard_normal(self, size: int | tuple[int, ...]) -> np.ndarray:
        return self._each(size, lambda g, s: g.standard_normal(s))

    def integers(self, low: int, high: int, size: int | tuple[int, ...]) -> np.ndarray:
        return self._each(size, lambda g, s: g.integers(low, high, s))

    def gamma(self, shape: float, scale: float, size: int | tuple[int, ...]) -> np.ndarray:
        return self._each(size, lambda g, s: g.gamma(shape, scale, s))

    def poisson(self, lam: float, size: int | tuple[int, ...]) -> np.ndarray:
        return self._each(size, lambda g, s: g.poisson(lam, s))

    def choice(self, a: int, size: int | tuple[int, ...], p: np.ndarray | None = None) -> np.ndarray:
        return self._each(size, lambda g, s: g.choice(a, size=s, p=p))


@dataclass(frozen=True)
class ClinicBatch:
    """Many simulated clinics, clients stacked in clinic order, as the steps' typed results.

    Attributes
    ----------
    p : the resolved simulate parameters (the first clinic's seed; see ``seeds``).
    seeds : each clinic's seed.
    bounds : clinic ``k``'s clients are rows ``bounds[k]:bounds[k + 1]`` of every array.
    clients, exposure, trajectories, calendar, details, measured : the steps' results over all clients
        (``trajectories.centre`` holds each client's clinic's centre).
    attend : which cells of the client x session-number grid are sessions.
    centres : each clinic's centre of the chronicity moderation.
    truth_recorded : each clinic's expected change difference at the primary week on the recorded
        scale (``truth["sample"]["change_difference_primary_week_recorded_scale"]``; NaN when no client is
        compared).
    primary_week : the analysis's primary week the truth is stated at.
    """

    p: dict[str, Any]
    seeds: tuple[int, ...]
    bounds: np.ndarray
    clients: Clients
    exposure: Exposure
    trajectories: Trajectories
    calendar: Calendar
    details: SessionDetails
    measured: Measured
    attend: np.ndarray
    centres: np.ndarray
    truth_recorded: np.ndarray
    primary_week: float

    @property
    def n_clinics(self) -> int:
        return len(self.seeds)

    def rows(self, k: int) -> slice:
        """Clinic ``k``'s rows (clients) in every array of the batch."""
        return slice(int(self.bounds[k]), int(self.bounds[k + 1]))


def simulate_clinics(
    cfg: dict[str, Any],
    seeds: Sequence[int],
    *,
    n_clients: int | None = None,
    effect: float | None = None,
    primary_week: float,
) -> ClinicBatch:
    """Simulate one clinic per seed in one pass of the named steps (see the module docstring).

    Parameters
    ----------
    cfg, n_clients, effect, primary_week : as for :func:`analysis.simulate.simulate_clinic`; every clinic
        of the batch has the same parameters and ``n_clients`` clients.
    seeds : one seed per clinic; clinic ``k`` is ``simulate_clinic(cfg, seeds[k], ...)``.

    Returns
    -------
    ClinicBatch

    Examples
    --------
    >>> from analysis.params import load_params
    >>> p = load_params()
    >>> batch = simulate_clinics(p.simulate, [1, 2, 3], n_clients=20, primary_week=p.model.primary_week)
    >>> batch.n_clinics, len(batch.clients.sex), batch.rows(1)
    (3, 60, slice(20, 40, None))
    """
    if len(seeds) == 0:
        raise ValueError("simulate_clinics needs at least one seed")
    p = resolve_config(cfg, int(seeds[0]), n_clients, effect)
    n, k_max = int(p["n_clients"]), int(p["sessions_max"])
    sizes = [n] * len(seeds)
    bounds = np.arange(len(seeds) + 1, dtype=np.int64) * n
    rng = cast(np.random.Generator, ClinicStreams(seeds, sizes))  # the subset of Generator the steps use
    total = n * len(seeds)
    # the same steps in the same order as simulate_clinic: each clinic's stream sees the same draws
    clients = draw_clients(rng, p, total)
    exposure = draw_exposure(rng, p, clients)
    spans = list(zip(bounds[:-1], bounds[1:], strict=True))
    centres = np.array([compared_centre(clients.log_sw[a:b], exposure.compared[a:b]) for a, b in spans])
    trajectories = draw_trajectories(rng, p, clients, exposure, centre=np.repeat(centres, sizes))
    calendar = draw_calendar(rng, p, total, k_max)
    details = draw_session_details(rng, p, exposure, k_max)
    measured = draw_measurements(rng, p, trajectories, calendar, details)
    attend = draw_attendance(rng, p, measured, calendar)
    week = float(primary_week)
    # truth.clinic_truth's recorded-scale difference, row by row, then averaged per clinic
    t = trajectories
    gap = expected_recorded(t.level + t.slope_hip_cf * week, p["residual_sd"]) - expected_recorded(
        t.level + t.slope_knee_cf * week, p["residual_sd"]
    )
    recorded = []
    for a, b in spans:
        compared = exposure.compared[a:b]
        recorded.append(float(gap[a:b][compared].mean()) if compared.any() else float("nan"))
    return ClinicBatch(
        p=p,
        seeds=tuple(int(s) for s in seeds),
        bounds=bounds,
        clients=clients,
        exposure=exposure,
        trajectories=trajectories,
        calendar=calendar,
        details=details,
        measured=measured,
        attend=attend,
        centres=centres,
        truth_recorded=np.array(recorded),
        primary_week=week,
    )


def _cut(obj: T, rows: slice, **replace: Any) -> T:
    """A step result with every per-client array (and each array of a tuple) cut to ``rows``."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        v = getattr(obj, f.name)
        if isinstance(v, np.ndarray):
            v = v[rows]
        elif isinstance(v, tuple):
            v = tuple(x[rows] for x in v)
        values[f.name] = v
    values.update(replace)
    return type(obj)(**values)


def clinic_of(batch: ClinicBatch, k: int) -> Clinic:
    """Clinic ``k`` of the batch as :func:`analysis.simulate.simulate_clinic` returns it (tables and truth)."""
    rows = batch.rows(k)
    p = {**batch.p, "seed": batch.seeds[k]}
    clients = _cut(batch.clients, rows)
    exposure = _cut(batch.exposure, rows)
    trajectories = _cut(batch.trajectories, rows, centre=float(batch.centres[k]))
    calendar = _cut(batch.calendar, rows)
    tables = assemble_tables(
        p, clients, calendar.days, _cut(batch.details, rows), _cut(batch.measured, rows), batch.attend[rows]
    )
    truth = clinic_truth(
        p,
        clients,
        exposure,
        trajectories,
        primary_week=batch.primary_week,
        n_sessions=len(tables["sessions"]),
        n_measurements=len(tables["measurements"]),
    )
    return Clinic(truth=truth, **tables)
