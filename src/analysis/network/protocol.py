"""The network analysis's messages and loop, independent of how they travel (Flower or in-process).

A network fit is a conversation between one *driver* (the network lead's algorithm, :mod:`.engine`)
and the clinics' *nodes* (:mod:`.clinic`). Each round the driver sends one :class:`Request` to every
clinic; every clinic answers with a flat float64 vector of the same length (sums over its own clients);
the transport hands the driver only the element-wise **sum** of the answers (with Flower's SecAgg+ the
server itself never sees one clinic's vector). The driver then sends the next request, or stops.

A transport is anything with ``ask(request) -> Total``: :class:`InProcess` (tests, one process) and
:class:`analysis.network.flower_transport.FlowerTransport` (real Flower nodes) both follow it, so the
numbers cannot depend on the transport.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class Request:
    """One round's question, the same for every clinic.

    Attributes
    ----------
    round : 0, 1, 2, ... (the clinic checks it against its own limit and logs it).
    kind : ``"summary"`` (round 0: counts and the data's constant sums) or ``"pieces"``
        (the profiled-REML pieces at each row of ``thetas``).
    spec : the analysis specification (JSON-ready: formula terms, harmonised levels, the common
        columns kept); every clinic builds its design from it.
    thetas : (k, m) covariance parameters to evaluate at; (0, m) for ``"summary"``.
    """

    round: int
    kind: str
    spec: dict[str, Any]
    thetas: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))


@dataclass(frozen=True)
class Total:
    """What a round gives the driver: the element-wise sum of the answers and who answered.

    ``clinics`` are the labels the clinics announced (never a folder or a path); ``n`` is their number.
    """

    vector: np.ndarray
    clinics: tuple[str, ...]

    @property
    def n(self) -> int:
        return len(self.clinics)


class Refusal(Exception):
    """A clinic will not answer a request; ``reason`` is one line for its console and the lead's log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ClinicLost(Exception):
    """One or more clinics did not give a usable answer in a round (refused, dropped, timed out, malformed).

    ``problems`` maps each clinic's label to one line saying what happened.
    """

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in sorted(problems.items())))
        self.problems = dict(problems)


class Node(Protocol):
    """A clinic's side: answers requests from its own records, or raises :class:`Refusal`."""

    label: str

    def answer(self, request: Request) -> np.ndarray: ...


class Transport(Protocol):
    """Carries one request to every clinic still in the network and returns the sum of their answers.

    ``ask`` raises :class:`ClinicLost` naming every clinic that gave no usable answer; ``drop`` takes
    clinics out of every later round (the runner's rule decides whether the fit goes on without them).
    """

    def ask(self, request: Request) -> Total: ...

    def drop(self, labels: set[str]) -> None: ...


class Driver(Protocol):
    """The network lead's algorithm: the first request, then the next one from each round's total."""

    def first(self) -> Request: ...

    def next(self, total: Total) -> Request | None: ...


def run(driver: Driver, transport: Transport) -> int:
    """Ask until the driver stops; returns the number of rounds. :class:`ClinicLost` propagates."""
    request: Request | None = driver.first()
    rounds = 0
    while request is not None:
        total = transport.ask(request)
        rounds += 1
        request = driver.next(total)
    return rounds


@dataclass
class InProcess:
    """The plain in-process transport: every node in this process, answers summed in order.

    Used by tests and as the reference the Flower transport must equal. ``log`` records, per round,
    the request's kind and number of thetas and the answer's length (what a real transport exchanges).
    """

    nodes: Sequence[Node]
    log: list[dict[str, Any]] = field(default_factory=list)
    dropped: set[str] = field(default_factory=set)

    def drop(self, labels: set[str]) -> None:
        self.dropped |= set(labels)

    def ask(self, request: Request) -> Total:
        answers: list[np.ndarray] = []
        problems: dict[str, str] = {}
        active = [n for n in self.nodes if n.label not in self.dropped]
        for node in active:
            try:
                vec = np.asarray(node.answer(request), dtype=float)
            except Refusal as exc:
                problems[node.label] = f"refused: {exc.reason}"
                continue
            if answers and vec.shape != answers[0].shape:
                problems[node.label] = f"malformed answer: length {vec.size}, expected {answers[0].size}"
                continue
            if not np.all(np.isfinite(vec)):
                problems[node.label] = "malformed answer: values that are not finite"
                continue
            answers.append(vec)
        if problems:
            raise ClinicLost(problems)
        total = np.sum(answers, axis=0)
        self.log.append(
            {
                "round": request.round,
                "kind": request.kind,
                "thetas": int(request.thetas.shape[0]),
                "values": int(total.size),
                "clinics": len(answers),
            }
        )
        return Total(vector=total, clinics=tuple(n.label for n in active))
