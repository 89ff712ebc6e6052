"""Running the suites quietly: a staged frame per table, an ephemeral GX context, one outcome per
expectation with the failing spreadsheet rows.

GX checks a *staged* frame (:func:`stage_table`): the raw text of every
column (blank = missing) plus a parsed companion column for numbers and
dates (``<column>__num``, ``<column>__date``), so that format rules run on
the text and range rules on the parsed value, and a spreadsheet ``row``
column that GX reports back for every failing row.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from analysis.contract import Table
from analysis.load import ROW_INDEX
from analysis.validate.suites import DATE_SUFFIX, NUM_SUFFIX, NUMBER_PATTERN, import_gx

if TYPE_CHECKING:  # pragma: no cover
    from great_expectations.expectations.expectation import Expectation


def stage_table(table: Table, raw: pd.DataFrame, links: dict[str, pd.Series] | None = None) -> pd.DataFrame:
    """The frame GX checks: raw text (blank -> None), parsed companions, and ``row``.

    Returns
    -------
    DataFrame with ``row`` (spreadsheet line), every contract column as text
    or None, ``<col>__num`` (float, NaN if blank/not a number) for integer,
    number and value columns and ``<col>__date`` (datetime, NaT if not a real
    YYYY-MM-DD date) for date columns, and the cross-table membership
    columns from ``links`` (see :func:`cross_table_links`).
    """
    staged = {ROW_INDEX: raw.index.to_numpy()}
    for c in table.columns:
        text = raw[c.name].astype(object)
        text = text.where(text.notna() & (text != ""), None)
        staged[c.name] = text.to_numpy(dtype=object)
        if c.kind in ("integer", "number", "value"):
            # parse only what the format rule accepts, so "1e3" or "0x10" never sneak through as numbers
            ok = text.str.fullmatch(NUMBER_PATTERN).fillna(False).astype(bool)
            staged[c.name + NUM_SUFFIX] = pd.to_numeric(text.where(ok), errors="coerce").astype("float64").to_numpy()
        elif c.kind == "date":
            staged[c.name + DATE_SUFFIX] = pd.to_datetime(text, format="%Y-%m-%d", errors="coerce").to_numpy()
    for name, member in (links or {}).items():
        staged[name] = member.to_numpy(dtype=object)
    return pd.DataFrame(staged)


@contextlib.contextmanager
def quiet_gx() -> Iterator[None]:
    """Keep GX logging out of the terminal while a validation runs (restored afterwards).

    Progress bars are switched off through the context config in :func:`make_context`.
    """
    logger = logging.getLogger("great_expectations")
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.CRITICAL)
    logger.propagate = False
    try:
        yield
    finally:
        logger.setLevel(level)
        logger.propagate = propagate


def make_context() -> Any:
    """An in-memory GX context: no files, no analytics, no progress bars."""
    gx = import_gx()
    from great_expectations.data_context.types.base import (  # lazy: GX, see suites.import_gx
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        analytics_enabled=False,
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation's result: which rule, how many rows checked and failed, which rows."""

    table: str
    expectation: str
    column: str
    rule: str
    severity: str
    element_count: int
    unexpected_count: int
    success: bool
    rows: tuple[int, ...]
    row_condition: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "expectation": self.expectation,
            "column": self.column,
            "rule": self.rule,
            "severity": self.severity,
            "row_condition": self.row_condition,
            "checked": self.element_count,
            "failed": self.unexpected_count,
            "success": self.success,
        }


def run_suite(
    context: Any, table: str, staged: pd.DataFrame, expectations: list[Expectation]
) -> list[ExpectationOutcome]:
    """Validate ``staged`` against ``expectations`` and return one outcome per expectation.

    Raises RuntimeError if GX could not evaluate an expectation (a bug, never a data problem).
    """
    gx = import_gx()
    suite = gx.ExpectationSuite(name=f"{table}-run", expectations=list(expectations))
    source = context.data_sources.add_or_update_pandas(f"inputs-{table}")
    batch = (
        source.add_dataframe_asset(table)
        .add_batch_definition_whole_dataframe("all")
        .get_batch(batch_parameters={"dataframe": staged})
    )
    with quiet_gx():
        result = batch.validate(
            suite, result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [ROW_INDEX]}
        )
    outcomes = []
    for r in result.results:
        cfg = r.expectation_config
        if r.exception_info and r.exception_info.get("raised_exception"):
            message = r.exception_info.get("exception_message")
            raise RuntimeError(f"GX could not evaluate {cfg.type} on {table}: {message}")
        meta = cfg.meta or {}
        rows = tuple(int(item[ROW_INDEX]) for item in r.result.get("unexpected_index_list") or [])
        outcomes.append(
            ExpectationOutcome(
                table=table,
                expectation=cfg.type,
                column=meta.get("column", ""),
                rule=meta.get("rule", cfg.type),
                severity=meta.get("severity", "error"),
                element_count=int(r.result.get("element_count") or 0),
                unexpected_count=int(r.result.get("unexpected_count") or 0),
                success=bool(r.success),
                rows=tuple(sorted(set(rows))),
                row_condition=meta.get("condition"),
            )
        )
    return outcomes
