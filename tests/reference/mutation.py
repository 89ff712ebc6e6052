"""Do the reference tests catch a 0.1 % error? Perturb the engine and the pooling in-process, run the tests.

Each mutation monkeypatches one quantity by a factor 1.001 (a df, an SE, a variance component, tau^2,
...), runs the reference test file with ``pytest.main`` and records which tests fail. Every mutation must
make at least one test fail; the script exits non-zero if one does not. The first row (no mutation) must
have none. Prints a Markdown table (kept in tests/reference/README.md). R is not needed.

Run from the project root: ``PYTHONPATH=src .venv/bin/python tests/reference/mutation.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import analysis.model.lmm as lmm
from analysis.model.lmm import inference
from analysis.pool import meta

F = 1.001
TESTS = Path(__file__).resolve().parents[1]
LMM_TESTS = TESTS / "test_lmm_reference.py"
META_TESTS = TESTS / "test_pool_meta.py"


@contextlib.contextmanager
def patched(owner: Any, name: str, value: Any) -> Iterator[None]:
    """Set ``owner.name = value`` for the duration, then restore the original."""
    original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


def _scaled_method(owner: type, name: str) -> contextlib.AbstractContextManager[None]:
    original = getattr(owner, name)

    def scaled(self: Any, *args: Any, **kwargs: Any) -> Any:
        return original(self, *args, **kwargs) * F

    return patched(owner, name, scaled)


def _scaled_property(owner: type, name: str, factor: float) -> contextlib.AbstractContextManager[None]:
    """Replace a (cached) property by a plain property returning the original times ``factor``."""
    descriptor = owner.__dict__[name]
    getter = descriptor.func if hasattr(descriptor, "func") else descriptor.fget
    return patched(owner, name, property(lambda self: getter(self) * factor))


def kr_df() -> contextlib.AbstractContextManager[None]:
    return _scaled_method(inference.KenwardRoger, "df")


def satterthwaite_df() -> contextlib.AbstractContextManager[None]:
    return _scaled_method(inference.Satterthwaite, "df")


def fixed_effects() -> contextlib.AbstractContextManager[None]:
    original = lmm.LmmFit.__dict__["pls"].func

    def scaled(self: lmm.LmmFit) -> Any:
        s = original(self)
        return dataclasses.replace(s, beta=s.beta * F)

    return patched(lmm.LmmFit, "pls", property(scaled))


def fixed_effect_se() -> contextlib.AbstractContextManager[None]:
    # vcov x F^2: every SE x F (and the Satterthwaite df computed from it)
    return _scaled_property(lmm.LmmFit, "vcov", F**2)


def kr_se() -> contextlib.AbstractContextManager[None]:
    original = lmm.kenward_roger

    def scaled(d: Any, theta: np.ndarray) -> inference.KenwardRoger:
        kr = original(d, theta)
        return dataclasses.replace(kr, phi_adj=kr.phi_adj * F**2)

    return patched(lmm, "kenward_roger", scaled)


def theta() -> contextlib.AbstractContextManager[None]:
    # the optimiser returns theta x F: every quantity downstream moves (the stored criterion does not)
    original = lmm.optimize_theta

    def scaled(*args: Any, **kwargs: Any) -> Any:
        opt = original(*args, **kwargs)
        return dataclasses.replace(opt, theta=opt.theta * F)

    return patched(lmm, "optimize_theta", scaled)


def re_variances() -> contextlib.AbstractContextManager[None]:
    return _scaled_property(lmm.LmmFit, "cov_re", F)


def residual_variance() -> contextlib.AbstractContextManager[None]:
    return _scaled_property(lmm.LmmFit, "sigma2", F)


def tau2() -> contextlib.AbstractContextManager[None]:
    original = meta.estimate_tau2

    def scaled(*args: Any, **kwargs: Any) -> tuple[float, str, list[str]]:
        t, used, notes = original(*args, **kwargs)
        return t * F, used, notes

    return patched(meta, "estimate_tau2", scaled)


def pooled_se() -> contextlib.AbstractContextManager[None]:
    original = meta._interval

    def scaled(mu: float, se: float, df: float | None, alpha: float) -> meta.Interval:
        return original(mu, se * F, df, alpha)

    return patched(meta, "_interval", scaled)


def none() -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()


#: (label, patch, test file)
MUTATIONS: list[tuple[str, Callable[[], contextlib.AbstractContextManager[None]], Path]] = [
    ("none (lme4 tests)", none, LMM_TESTS),
    ("Kenward-Roger df × 1.001", kr_df, LMM_TESTS),
    ("Satterthwaite df × 1.001", satterthwaite_df, LMM_TESTS),
    ("fixed effects × 1.001", fixed_effects, LMM_TESTS),
    ("fixed-effect SE × 1.001 (vcov × 1.001²)", fixed_effect_se, LMM_TESTS),
    ("KR-adjusted SE × 1.001", kr_se, LMM_TESTS),
    ("theta × 1.001 (at the optimum)", theta, LMM_TESTS),
    ("random-effect variances × 1.001", re_variances, LMM_TESTS),
    ("residual variance × 1.001", residual_variance, LMM_TESTS),
    ("none (metafor tests)", none, META_TESTS),
    ("tau² × 1.001", tau2, META_TESTS),
    ("pooled SE × 1.001", pooled_se, META_TESTS),
]


class Recorder:
    """pytest plugin: the collected test ids and the ones that failed."""

    def __init__(self) -> None:
        self.collected: list[str] = []
        self.failed: list[str] = []

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.collected = [item.nodeid for item in session.items]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed and report.nodeid not in self.failed:
            self.failed.append(report.nodeid)


def run(path: Path) -> Recorder:
    rec = Recorder()
    with contextlib.redirect_stdout(io.StringIO()):
        pytest.main([str(path), "-q", "-p", "no:cacheprovider", "-W", "error"], plugins=[rec])
    return rec


def main() -> int:
    rows = ["| mutation | tests failed / total | example failing tests |", "|---|---|---|"]
    bad = []
    for label, patch, path in MUTATIONS:
        with patch():
            rec = run(path)
        examples = ", ".join(f"`{n.split('::', 1)[1]}`" for n in rec.failed[:3]) or "–"
        rows.append(f"| {label} | {len(rec.failed)} / {len(rec.collected)} ({path.name}) | {examples} |")
        caught = bool(rec.failed)
        if caught == label.startswith("none") or not rec.collected:
            bad.append(label)
        print(f"{label}: {len(rec.failed)} / {len(rec.collected)}", file=sys.stderr)
    print("\n".join(rows))
    if bad:
        print(f"NOT AS EXPECTED: {bad}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
