"""The typed params (pydantic): validated once by :func:`analysis.params.load_params`, then passed on.

This is the one place where each setting's type, range and default live. Every stage receives the
validated :class:`Params` object (or its section, e.g. :class:`ModelParams`) and reads attributes,
never the raw YAML dict, so a default is stated here and nowhere else.

Every stage section is checked strictly (``extra="forbid"``: a misspelt key is an error, not silently
ignored) and frozen (a stage cannot change another stage's settings; tests derive variants with
``model_copy(update=...)``). The ``simulate`` section is the synthetic generator's own configuration,
checked key by key by :func:`analysis.simulate.config.resolve_config`; only its type (a mapping) is
checked here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

#: the smallest count a peer output may show (report.min_cell may raise it, never lower it)
MIN_CELL_FLOOR = 5


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False, frozen=True, populate_by_name=True)


class DataParams(_Section):
    input: str
    registry: str = "config/measures.yaml"


class ValidateParams(_Section):
    out_dir: str
    report_dir: str
    allow_rejects: bool = False
    max_file_mb: float = Field(512, gt=0)
    #: refuse inputs whose validation would need more memory than this (MB); None: the memory available
    max_memory_mb: float | None = Field(None, gt=0)


class JoinParams(_Section):
    out: str
    flow: str
    primary_measure: str
    primary_timing: Literal["pre", "post"]
    followup_weeks: float = Field(gt=0)


class Exposure(_Section):
    hip_focused: list[str]
    comparator: list[str]
    excluded: list[str] = []


class Grid(_Section):
    from_: float = Field(alias="from", gt=0)
    to: float = Field(gt=0)
    points: int = Field(gt=1)


class ModelParams(_Section):
    out_dir: str
    measure: str
    timing: Literal["pre", "post"]
    followup_weeks: float = Field(gt=0)
    primary_week: float = Field(gt=0)
    exposure: Exposure
    covariates: list[str]
    df_method: Literal["satterthwaite", "kenward_roger", "z"] = "satterthwaite"
    singular_tol: float = Field(1e-4, gt=0)
    alpha: float = Field(0.05, gt=0, lt=1)
    seed: int
    n_imputations: int = Field(gt=1)
    iptw_trim: tuple[float, float]
    smd_target: float = Field(gt=0)
    chronicity_weeks: list[float]
    mediator: str
    mediation_boot: int = Field(gt=0)
    tipping_deltas: list[float]
    power: float = Field(gt=0, lt=1)
    target_difference: float = Field(gt=0)
    endpoint_window_weeks: float = Field(gt=0)
    min_level_n: int = Field(gt=0)
    mi_pmm_donors: int = Field(gt=0)
    mi_iterations: int = Field(gt=0)
    chronicity_grid: Grid
    # knots (weeks) of the piecewise-linear time trend of the time-trend sensitivity analysis; empty = one
    # knot at primary_week (analysis.model.specification)
    time_trend_knots: list[float] = []


class SelfcheckParams(_Section):
    n_clinics: int = Field(gt=0)
    n_clients: int = Field(gt=0)
    n_clients_small: int = Field(40, gt=0)
    workers: int = Field(0, ge=0)
    seed: int
    out_dir: str


class Attention(_Section):
    min_sessions: int = Field(4, gt=0)
    min_weeks: float = Field(4, gt=0)
    active_weeks: float = Field(4, gt=0)
    # level of the expected-recovery band (analysis.model.expected): a score beyond it = behind expected recovery
    expected_band: float = Field(0.8, gt=0, lt=1)


class ReportParams(_Section):
    therapist_dir: str
    peer_dir: str
    min_cell: int = 5  # the floor (5) is checked by _min_cell_floor
    attention: Attention = Attention()
    # outside the DVC outputs (git-ignored), so `dvc repro` keeps them: progress sheets, and (only when set,
    # e.g. in a clinic's params.local.yaml) the last build's clients.csv for the worklist's "new since the last
    # report" marks. Off by default: with it the therapist page depends on the previous build, so the same
    # inputs would no longer give the same bytes (the demo and its committed dvc.lock must).
    sheets_dir: str = "reports/sheets"
    history_dir: str | None = None
    clinic_label: str = ""
    clinic_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,32}$")
    signing_key: str | None = None  # Ed25519 key file that signs findings.json (else $OUTCOMES_SIGNING_KEY)
    # statements the peer paper prints as given; the defaults say what the clinic must fill in
    ethics_statement: str = (
        "[To be completed by the clinic: the ethics committee or institutional review board that approved or "
        "waived review of this analysis of routine records, with its reference number and date.]"
    )
    consent_statement: str = (
        "[To be completed by the clinic: how clients consented to the use of their routine records (or why "
        "consent was waived), and how they were informed.]"
    )
    data_availability: str = (
        "[To be completed by the clinic: who may obtain the de-identified data and under what conditions. "
        "The analysis code, the settings and the aggregate findings bundle (findings.json) are available "
        "with this report.]"
    )
    funding_statement: str = "[To be completed by the clinic: funding sources and competing interests, or none.]"

    # the private ledger of earlier peer releases (outside any repository); None: $HIPKNEE_RELEASE_LEDGER,
    # else ~/.config/hip-knee-outcomes/releases (analysis.privacy.release)
    release_ledger: str | None = None

    @field_validator("min_cell")
    @classmethod
    def _min_cell_floor(cls, value: int) -> int:
        if value < MIN_CELL_FLOOR:
            raise ValueError(
                f"must be at least {MIN_CELL_FLOOR}: a smaller count shown in a peer output could single out a "
                f"client; set it to {MIN_CELL_FLOOR} or more"
            )
        return value


class PrivacyParams(_Section):
    k_threshold: int = Field(gt=0)
    scan_max_rows_per_rule: int = Field(gt=0)
    pseudonym_chars: int = Field(ge=8, le=26)
    therapist_pseudonym_chars: int = Field(ge=4, le=26)
    date_shift_max_days: int = Field(ge=1)
    conflict_rule: Literal["latest", "most_frequent", "refuse"] = "latest"
    example_seed: int
    example_patients: int = Field(gt=0)


class Params(_Section):
    data: DataParams
    validate_: ValidateParams = Field(alias="validate")
    join: JoinParams
    model: ModelParams
    selfcheck: SelfcheckParams
    report: ReportParams
    simulate: dict[str, Any]
    privacy: PrivacyParams


def check_params(raw: dict[str, Any], source: str = "params.yaml") -> list[str]:
    """One line per problem (``params.yaml: model.df_method: ...``); empty when params are valid."""
    return parse_params(raw, source)[1]


def parse_params(raw: dict[str, Any], source: str = "params.yaml") -> tuple[Params | None, list[str]]:
    """The typed params, or None and one line per problem (``params.yaml: model.df_method: ...``)."""
    try:
        return Params.model_validate(raw), []
    except ValidationError as exc:
        lines = []
        for e in exc.errors():
            where = ".".join(str(p).rstrip("_") for p in e["loc"])
            if e["type"] == "extra_forbidden":
                msg = "unknown key (misspelt?); remove it or check the README"
            elif e["type"] == "missing":
                msg = "missing; add it (see the shipped params.yaml)"
            else:
                msg = e["msg"].removeprefix("Value error, ")  # our validators' own sentences
                if "input" in e and not isinstance(e["input"], (dict, list)):
                    msg += f" (got {e['input']!r})"
            lines.append(f"{source}: {where}: {msg}")
        return None, lines
