"""The typed hand-off from ``model`` to ``report`` (and to the findings bundle): ``results.json``.

:func:`analysis.model.run.run_model` validates what the analyses produced into :class:`Results` and
writes it; :func:`read_results` reads it back through the same model, so the report works with named,
typed fields rather than string keys into a dict, and a results file that does not follow the model is
refused with one line. ``results.schema.json`` beside this module is generated from :class:`Results`
(``python -m analysis.results`` rewrites it; a test checks it is current).

The secondary analyses differ in what they estimate; :class:`SecondaryResult` types the fields every one
has (label, status, reason, method, notes) and, for those with one, the headline contrast
(:attr:`SecondaryResult.headline`); their other numbers stay as the analysis wrote them
(:attr:`SecondaryResult.numbers`), described in :mod:`analysis.model.secondary`.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from analysis.errors import InputError
from analysis.params_schema import ModelParams

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("results.schema.json")
FitStatus = Literal["ok", "fallback", "failed"]
SecondaryStatus = Literal["done", "not_estimable", "failed"]


class _Typed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Estimate(_Typed):
    """One contrast with its inference; ``df`` null means the normal approximation (Wald z)."""

    estimate: float
    se: float
    df: float | None
    ci_low: float
    ci_high: float
    p_value: float
    df_method: str


class Attempt(_Typed):
    model: str
    ok: bool
    reason: str


class RandomEffects(_Typed):
    variances: dict[str, float]
    covariance: dict[str, float]
    correlation: dict[str, float | None]
    residual_variance: float | None  # null when the fit failed


class Arm(_Typed):
    """Per-arm raw summaries of the primary outcome (baseline and change at the endpoint)."""

    n: int
    n_endpoint: int
    baseline_mean: float | None
    baseline_sd: float | None
    change_mean: float | None
    change_sd: float | None


class PrimaryResult(_Typed):
    """The pre-specified primary analysis; estimates are null when ``status`` is ``failed``."""

    estimand: str
    measure: str
    timing: str
    primary_week: float
    followup_weeks: float
    alpha: float
    formula: str
    re_formula: str | None
    planned_re_formula: str
    groups: str
    method: str
    df_method: str
    df_method_label: str
    estimate: float | None
    se: float | None
    df: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    slope_difference: Estimate | None
    change_by_group: dict[str, Estimate] | None
    n_clients: int
    n_clients_by_group: dict[str, int]
    n_observations: int
    converged: bool
    optimizer: str
    status: FitStatus
    reason: str
    checks: dict[str, Any]
    attempts: list[Attempt]
    fixed_effects: dict[str, Estimate]
    random_effects: RandomEffects | None
    reference_levels: dict[str, str]
    trajectory_method: str
    excluded: dict[str, int]
    arms: dict[str, Arm]
    notes: list[str]

    @property
    def ok(self) -> bool:
        """A trustworthy estimate exists (accepted fit or the pre-specified fallback) and is finite."""
        nums = (self.estimate, self.ci_low, self.ci_high)
        return self.status != "failed" and all(v is not None and math.isfinite(v) for v in nums)


class SecondaryResult(BaseModel):
    """One exploratory analysis: the fields all share, plus the analysis's own numbers."""

    model_config = ConfigDict(extra="allow", frozen=True)

    label: str
    exploratory: bool
    status: SecondaryStatus
    reason: str | None
    method: str
    notes: list[str]

    @property
    def numbers(self) -> dict[str, Any]:
        """The analysis's own fields (estimates, counts, formulas) beyond the shared ones."""
        return dict(self.model_extra or {})

    @property
    def done(self) -> bool:
        return self.status == "done"

    @property
    def headline(self) -> Estimate | None:
        """The analysis's estimate with CI and p, when it has one (finite estimate and CI)."""
        n = self.numbers
        keys = ("estimate", "ci_low", "ci_high")
        if not self.done or not all(isinstance(n.get(k), (int, float)) and math.isfinite(n[k]) for k in keys):
            return None
        nan = float("nan")
        se, p = n.get("se"), n.get("p_value")
        return Estimate(
            estimate=float(n["estimate"]),
            se=nan if se is None else float(se),
            df=n.get("df"),
            ci_low=float(n["ci_low"]),
            ci_high=float(n["ci_high"]),
            p_value=nan if p is None else float(p),
            df_method=str(n.get("df_method") or ""),
        )


class Window(_Typed):
    followup_weeks: float
    primary_week: float


class DataSummary(_Typed):
    n_clients_dataset: int
    n_clients_analysed: int
    n_clients_by_group: dict[str, int]
    n_observations: int
    excluded: dict[str, int]
    measure: str
    timing: str
    window: Window


class Results(_Typed):
    """``results.json``: everything the model step hands to the report and the findings bundle."""

    schema_version: Literal[1]
    exploratory_note: str
    primary: PrimaryResult
    secondary: dict[str, SecondaryResult]
    data: DataSummary
    params: ModelParams

    def secondary_entry(self, key: str) -> SecondaryResult | None:
        return self.secondary.get(key)


def schema() -> dict[str, Any]:
    """The JSON schema of ``results.json``, generated from :class:`Results`."""
    return Results.model_json_schema(by_alias=True)


def schema_text() -> str:
    return json.dumps(schema(), indent=2, sort_keys=True) + "\n"


def parse_results(raw: dict[str, Any], source: str = "results.json") -> Results:
    """Validate a results mapping; a mismatch is one line per problem naming the field."""
    try:
        return Results.model_validate(raw)
    except ValidationError as exc:
        lines = [
            f"{source}: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}; rerun `outcomes model`" for e in exc.errors()
        ]
        raise InputError("\n".join(lines[:20])) from None


def read_results(path: Path) -> Results:
    """Read and validate ``results.json`` written by ``outcomes model``."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg}); rerun `outcomes model`") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: not a results object; rerun `outcomes model`")
    return parse_results(raw, str(path))


if __name__ == "__main__":  # pragma: no cover - regenerates the committed schema
    SCHEMA_PATH.write_text(schema_text(), encoding="utf-8")
    sys.exit(0)
