"""Running the suites quietly: compact staged frames per table, an ephemeral GX context, one outcome per
expectation with the failing spreadsheet rows.

GX checks *staged* frames (:func:`stage_table`): the raw text of a column
(blank = missing) plus a parsed companion column for numbers and dates
(``<column>__num``, ``<column>__date``), so that format rules run on the
text and range rules on the parsed value, and a ``row`` column that GX
reports back for every failing row.

At network scale (millions of rows) GX does not see every row (:func:`run_table`): a rule about one value
(blank, pattern, set, range, date format) is checked once per *distinct* value - of the column together
with the column its row condition reads (``value`` with ``measure``) - and the failing values are mapped
back to every row that holds them; the millions of distinct ids of an id column are grouped further by
shape, and GX checks one id of each shape (:func:`_id_shapes`). A rule about several rows (unique, unique
together) is checked by GX on integer codes of the values (equal codes = equal values). Same rules, same
failing rows, same counts (``checked`` and ``failed`` are counted in rows), a small fraction of the time and
memory.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from analysis.contract import ID_PATTERN, Table
from analysis.load import ROW_INDEX, release_unused_memory
from analysis.validate.suites import DATE_SUFFIX, NUM_SUFFIX, NUMBER_PATTERN, import_gx, member

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
    for c in (c for c in table.columns if c.name in raw.columns):  # all, or the group run_table stages
        text = raw[c.name].astype(object)
        text = text.where(text.notna() & (text != ""), None)
        staged[c.name] = text.to_numpy(dtype=object)
        if c.kind in ("integer", "number", "value"):
            # parse only what the format rule accepts, so "1e3" or "0x10" never sneak through as numbers
            ok = text.str.fullmatch(NUMBER_PATTERN).fillna(False).astype(bool)
            staged[c.name + NUM_SUFFIX] = pd.to_numeric(text.where(ok), errors="coerce").astype("float64").to_numpy()
        elif c.kind == "date":
            staged[c.name + DATE_SUFFIX] = pd.to_datetime(text, format="%Y-%m-%d", errors="coerce").to_numpy()
    for name, flags in (links or {}).items():
        staged[name] = flags.to_numpy(dtype=object)
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
    context: Any, table: str, staged: pd.DataFrame, expectations: list[Expectation], gx_order: bool = False
) -> list[ExpectationOutcome]:
    """Validate ``staged`` against ``expectations`` and return one outcome per expectation, in their order
    (``gx_order``: in the order GX reports them, which groups them its own way).

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
    by_key: dict[str, ExpectationOutcome] = {}
    order: list[str] = []
    for r in result.results:
        cfg = r.expectation_config
        if r.exception_info and r.exception_info.get("raised_exception"):
            message = r.exception_info.get("exception_message")
            raise RuntimeError(f"GX could not evaluate {cfg.type} on {table}: {message}")
        meta = cfg.meta or {}
        rows = tuple(int(item[ROW_INDEX]) for item in r.result.get("unexpected_index_list") or [])
        order.append(_key(cfg))
        by_key[_key(cfg)] = ExpectationOutcome(
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
    if gx_order:
        return [by_key[k] for k in order]
    return [by_key[_key(e.configuration)] for e in expectations]


def _key(cfg: Any) -> str:
    """What identifies an expectation in GX's results (GX returns them in an order of its own)."""
    return repr((cfg.type, sorted((cfg.meta or {}).items())))  # the contract's meta names column, rule, condition


# GX expectation types whose verdict on a row depends on that row's value(s) only, and those comparing rows
VALUE_RULES = frozenset(
    {
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_match_regex",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_be_between",
        "expect_column_values_to_match_strftime_format",
    }
)
EQUALITY_RULES = frozenset({"expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique"})


def run_table(
    context: Any,
    table: Table,
    raw: pd.DataFrame,
    expectations: list[Expectation],
    links: dict[str, tuple[str, pd.Series]] | None = None,
) -> list[ExpectationOutcome]:
    """Every expectation of ``table`` on ``raw``, one outcome each, in the order given (see the module doc).

    ``links`` maps a helper column (:func:`~analysis.validate.suites.cross_table_links`) to the column whose
    ids it looks up and the pool they must be in. Expectations of any other type than :data:`VALUE_RULES`
    and :data:`EQUALITY_RULES` run on the whole staged table, as GX would check them on any frame.
    """
    links = links or {}
    groups: dict[tuple[str, ...], list[int]] = {}
    coded: list[int] = []
    whole: list[int] = []
    for i, e in enumerate(expectations):
        kind = e.expectation_type
        if kind in EQUALITY_RULES:
            coded.append(i)
        elif kind in VALUE_RULES:
            conditions: list[Any] = [
                getattr(x, "row_condition", None)
                for x in expectations
                if (x.meta or {})["column"] == (e.meta or {})["column"]
            ]
            names = [str((e.meta or {})["column"])] + [str(c.column.name) for c in conditions if c is not None]
            groups.setdefault(tuple(dict.fromkeys(names)), []).append(i)
        else:
            whole.append(i)
    found: dict[int, ExpectationOutcome] = {}
    for group, which in groups.items():
        cols = list(group)
        codes, first = _distinct(raw, list(cols))
        distinct = raw[cols].iloc[first].set_axis(pd.RangeIndex(len(first)))
        helpers = {h: member(distinct[c], pool) for h, (c, pool) in links.items() if c in cols}
        if _id_rules_only(table, cols, [expectations[i] for i in which], links):
            # millions of distinct ids, few shapes: GX checks one id of each shape (see _id_shapes)
            shape_codes, reps = _id_shapes(distinct[cols[0]], helpers)
            codes, first = shape_codes[codes], first[reps]
            distinct = distinct.iloc[reps].set_axis(pd.RangeIndex(len(reps)))
            helpers = {h: flags.iloc[reps].set_axis(distinct.index) for h, flags in helpers.items()}
        staged = stage_table(table, distinct, helpers)
        counts = np.bincount(codes, minlength=len(first))
        chosen = [expectations[i] for i in which]
        for i, o in zip(which, run_suite(context, table.name, staged, chosen), strict=True):
            found[i] = _to_rows(o, expectations[i], staged, codes, counts, raw.index)
    if coded:
        release_unused_memory()  # what the distinct-value checks freed: GX's uniqueness on a long table is the peak
        names = list(dict.fromkeys(c for i in coded for c in _columns(expectations[i])))
        frame = pd.DataFrame({ROW_INDEX: _row_numbers(raw.index), **{c: _codes(raw[c]) for c in names}})
        for i in coded:  # each rule on its own, in parts small enough for GX's memory (see _in_parts)
            found[i] = _in_parts(context, table.name, frame, expectations[i])
    if whole:
        helpers = {h: member(raw[c], pool) for h, (c, pool) in links.items()}
        chosen = [expectations[i] for i in whole]
        found.update(zip(whole, run_suite(context, table.name, stage_table(table, raw, helpers), chosen), strict=True))
    # the report lists the rules in the order GX gives them for the whole suite: asked of GX on one row
    probe = raw.iloc[:1]
    helpers = {h: member(probe[c], pool[:1]) for h, (c, pool) in links.items()}
    ordered = run_suite(context, table.name, stage_table(table, probe, helpers), expectations, gx_order=True)
    position = {(o.expectation, o.column, o.rule, o.row_condition): i for i, o in enumerate(ordered)}
    return sorted(found.values(), key=lambda o: position[(o.expectation, o.column, o.rule, o.row_condition)])


#: rows per part when GX checks a uniqueness rule on a long table (its duplicate search copies the frame)
UNIQUE_PART_ROWS = 2_000_000


def _in_parts(context: Any, table: str, frame: pd.DataFrame, e: Expectation) -> ExpectationOutcome:
    """A uniqueness rule checked by GX on parts of ``frame`` that cannot share a duplicate: rows are split by
    the code of the rule's first column, and equal values (or combinations) have equal codes, so every pair of
    equal rows lands in the same part. Rows checked and failed add up; the rule passes if every part does."""
    parts = -(-len(frame) // UNIQUE_PART_ROWS)
    if parts <= 1:
        return run_suite(context, table, frame, [e])[0]
    part = np.nan_to_num(frame[_columns(e)[0]].to_numpy(dtype="float64"), nan=0.0).astype("int64") % parts
    outs = [run_suite(context, table, frame[part == k], [e])[0] for k in range(parts)]
    first = outs[0]
    return ExpectationOutcome(
        table=first.table,
        expectation=first.expectation,
        column=first.column,
        rule=first.rule,
        severity=first.severity,
        element_count=sum(o.element_count for o in outs),
        unexpected_count=sum(o.unexpected_count for o in outs),
        success=all(o.success for o in outs),
        rows=tuple(sorted(r for o in outs for r in o.rows)),
        row_condition=first.row_condition,
    )


def _id_rules_only(table: Table, cols: list[str], chosen: list[Expectation], links: dict[str, Any]) -> bool:
    """True when ``chosen`` are one id column's value rules: required, the contract's id pattern, and
    membership through a link helper column - rules whose verdict :func:`_id_shapes` keeps."""
    if len(cols) != 1 or table.column(cols[0]).kind != "id":
        return False
    for e in chosen:
        if getattr(e, "row_condition", None) is not None:
            return False
        kind = e.expectation_type
        if kind == "expect_column_values_to_match_regex" and getattr(e, "regex", None) == ID_PATTERN:
            continue
        if kind == "expect_column_values_to_not_be_null" or (
            kind == "expect_column_values_to_be_in_set" and getattr(e, "column", None) in links
        ):
            continue
        return False
    return True


def _id_shapes(values: pd.Series, helpers: dict[str, pd.Series]) -> tuple[np.ndarray, np.ndarray]:
    """Group distinct ids by shape: each ASCII letter and digit read as ``a``, every other character kept,
    together with the id's link flags. The contract's :data:`~analysis.contract.ID_PATTERN` treats every
    ASCII letter and digit alike (one character class), so two ids of one shape pass or fail it together,
    as they do "required" and the membership rules (the flags are part of the shape). Returns the shape of
    each value (codes) and the position of the first value of each shape, whose real id GX checks.
    """
    text = pa.array(values.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
    shape = pc.replace_substring_regex(text, "[A-Za-z0-9]", "a").to_numpy(zero_copy_only=False)
    parts = pd.DataFrame({"shape": shape, **{h: flags.to_numpy(dtype=object) for h, flags in helpers.items()}})
    return _distinct(parts, list(parts.columns))


def _columns(e: Expectation) -> list[str]:
    return [c.strip() for c in str((e.meta or {})["column"]).split(",")]


def _row_numbers(index: pd.Index) -> np.ndarray:
    """Spreadsheet row numbers in 4 bytes each when they fit (they do, up to 2 billion rows)."""
    rows = index.to_numpy()
    return rows.astype("int32") if len(rows) and rows.max() < 2**31 else rows


def _blank_to_na(col: pd.Series) -> pd.Series:
    return col.where(col.notna() & (col != ""))


def _codes(col: pd.Series) -> np.ndarray:
    """Equal values get equal codes, blank gets NaN: what uniqueness rules compare, in 8 bytes a row."""
    codes, _ = pd.factorize(_blank_to_na(col))
    # float32 holds every whole number below 2**24 exactly: half the memory on a long table, same equalities
    out = codes.astype("float32" if len(codes) < 2**24 else "float64")
    out[codes < 0] = np.nan
    return out


def _distinct(raw: pd.DataFrame, cols: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Code of each row's combination of ``cols`` (blank = one value), and the first row of each code."""
    combined = np.zeros(len(raw), dtype=np.int64)
    for c in cols:
        codes, uniques = pd.factorize(_blank_to_na(raw[c]), use_na_sentinel=False)
        combined, _ = pd.factorize(combined * (len(uniques) + 1) + codes)  # renumbered: never overflows
    codes = combined
    # codes are numbered in order of first appearance: a row starts a code when it exceeds all before it
    seen = np.maximum.accumulate(np.concatenate([[-1], codes[:-1]]))
    return codes, np.flatnonzero(codes > seen)


def _to_rows(
    o: ExpectationOutcome, e: Expectation, staged: pd.DataFrame, codes: np.ndarray, counts: np.ndarray, rows: pd.Index
) -> ExpectationOutcome:
    """An outcome on distinct values, counted in rows: ``checked`` = rows checked, ``rows`` = failing rows."""
    checked = counts
    cond = getattr(e, "row_condition", None)
    if cond is not None:
        if cond.operator != "==":  # the suites use ==; anything else is a new kind of rule to map here
            raise RuntimeError(f"row condition {cond} is not supported on distinct values")
        checked = counts[(staged[cond.column.name] == cond.parameter).to_numpy()]
        if len(checked) != o.element_count:  # GX and this mapping must agree on which values were checked
            raise RuntimeError(f"row condition {cond}: {len(checked)} values, GX checked {o.element_count}")
    bad = rows[np.isin(codes, np.asarray(o.rows, dtype=np.int64))] if o.rows else rows[:0]
    return ExpectationOutcome(
        table=o.table,
        expectation=o.expectation,
        column=o.column,
        rule=o.rule,
        severity=o.severity,
        element_count=int(checked.sum()),
        unexpected_count=len(bad),
        success=o.success,
        rows=tuple(int(r) for r in bad),
        row_condition=o.row_condition,
    )
