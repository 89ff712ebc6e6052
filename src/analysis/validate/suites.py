"""Great Expectations suites built from the contract.

Nothing here is written by hand per column: :func:`build_suites` walks
:data:`analysis.contract.TABLES` and the measures registry and turns every
rule into an expectation, so the suites, the templates and the data
dictionary cannot disagree. Each expectation carries ``meta`` with the
contract ``column`` it checks, the ``rule`` in words (the text a user sees)
and a ``severity`` (``error`` rejects the row, ``warning`` does not).
"""

from __future__ import annotations

import datetime as dt
import re
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from analysis.contract import DATE_PATTERN, EARLIEST_DATE, ID_PATTERN, ID_RULE, TABLES, Column, Registry, Table

if TYPE_CHECKING:  # pragma: no cover
    import great_expectations as gx
    from great_expectations.expectations.expectation import Expectation


# ASCII digits only: Python's \d also matches Arabic-Indic and other digits that the numeric conversion
# cannot read (full-width digits are turned into ASCII by load's NFKC step before these checks)
INTEGER_PATTERN = r"^[+-]?[0-9]+(?:\.0*)?$"  # "26" and "26.0" (spreadsheet exports) are whole numbers
NUMBER_PATTERN = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)$"  # no thousands separators, no decimal comma
NUM_SUFFIX = "__num"
DATE_SUFFIX = "__date"


def import_gx() -> Any:
    """Import great_expectations, hiding the deprecation warnings its own imports raise.

    GX 1.24 imports the deprecated stdlib modules ``sre_constants`` and
    ``sre_parse``; the warning is about GX's code, not ours, and would be an
    error under ``pytest -W error``.
    """
    # Lazy on purpose: GX takes ~7 s to import (measured), which `import analysis.validate` (and so
    # analysis.deidentify and `outcomes keygen`) would otherwise pay without running a suite.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"module 'sre_(constants|parse)' is deprecated", category=DeprecationWarning
        )
        import great_expectations as gx
    return gx


def multi_category_pattern(categories: tuple[str, ...]) -> str:
    """Regex for a ';'-separated list drawn from ``categories`` (spaces around ';' allowed)."""
    alt = "|".join(re.escape(c) for c in categories)
    return rf"^\s*(?:{alt})\s*(?:;\s*(?:{alt})\s*)*$"


def _meta(column: str, rule: str, severity: str = "error", condition: str | None = None) -> dict[str, str]:
    meta = {"column": column, "rule": rule, "severity": severity}
    if condition:
        meta["condition"] = condition
    return meta


def column_expectations(table: Table, column: Column, registry: Registry, today: dt.date) -> list[Expectation]:
    """The expectations for one contract column, in the order a user should read them."""
    gx = import_gx()
    from great_expectations.expectations.row_conditions import Column as GxColumn  # lazy: GX, see import_gx

    E = gx.expectations
    name = column.name
    out: list[Expectation] = []
    if column.required:
        out.append(
            E.ExpectColumnValuesToNotBeNull(column=name, meta=_meta(name, "required value is blank; fill it in"))
        )
    if column.kind == "id":
        out.append(
            E.ExpectColumnValuesToMatchRegex(
                column=name, regex=ID_PATTERN, meta=_meta(name, f"not a valid pseudonym ({ID_RULE})")
            )
        )
    elif column.kind == "category":
        out.append(
            E.ExpectColumnValuesToBeInSet(
                column=name,
                value_set=list(column.categories),
                meta=_meta(name, "unknown category; use one of " + ", ".join(column.categories)),
            )
        )
    elif column.kind == "multi_category":
        out.append(
            E.ExpectColumnValuesToMatchRegex(
                column=name,
                regex=multi_category_pattern(column.categories),
                meta=_meta(name, "not a ';'-separated subset of " + ", ".join(column.categories)),
            )
        )
    elif column.kind in ("integer", "number"):
        whole = column.kind == "integer"
        out.append(
            E.ExpectColumnValuesToMatchRegex(
                column=name,
                regex=INTEGER_PATTERN if whole else NUMBER_PATTERN,
                meta=_meta(name, "not a whole number" if whole else "not a number (use '.' for decimals)"),
            )
        )
        out.append(
            E.ExpectColumnValuesToBeBetween(
                column=name + NUM_SUFFIX,
                min_value=column.minimum,
                max_value=column.maximum,
                meta=_meta(name, f"outside the allowed range {column.minimum:g}-{column.maximum:g}"),
            )
        )
    elif column.kind == "date":
        out.append(
            E.ExpectColumnValuesToMatchRegex(
                column=name, regex=DATE_PATTERN, meta=_meta(name, "not a date written YYYY-MM-DD")
            )
        )
        out.append(
            E.ExpectColumnValuesToMatchStrftimeFormat(
                column=name, strftime_format="%Y-%m-%d", meta=_meta(name, "not a real calendar date")
            )
        )
        out.append(
            E.ExpectColumnValuesToBeBetween(
                column=name + DATE_SUFFIX,
                min_value=dt.datetime.combine(EARLIEST_DATE, dt.time()),
                meta=_meta(name, f"before {EARLIEST_DATE}; check the year"),
            )
        )
        out.append(
            E.ExpectColumnValuesToBeBetween(
                column=name + DATE_SUFFIX,
                max_value=dt.datetime.combine(today, dt.time()),
                meta=_meta(name, "in the future (after the day of validation); check the date"),
            )
        )
    elif column.kind == "measure":
        out.append(
            E.ExpectColumnValuesToBeInSet(
                column=name,
                value_set=registry.keys,
                meta=_meta(
                    name, "unknown measure; add it to the measures registry or use one of " + ", ".join(registry.keys)
                ),
            )
        )
    elif column.kind == "value":
        out.append(
            E.ExpectColumnValuesToMatchRegex(
                column=name, regex=NUMBER_PATTERN, meta=_meta(name, "not a number (use '.' for decimals)")
            )
        )
        for m in registry.measures.values():
            # row_condition: each measure's range applies only to its own rows
            is_measure = GxColumn("measure") == m.key
            where = f"measure == {m.key}"
            out.append(
                E.ExpectColumnValuesToBeBetween(
                    column=name + NUM_SUFFIX,
                    min_value=m.minimum,
                    max_value=m.maximum,
                    row_condition=is_measure,
                    meta=_meta(name, f"outside the range of {m.key} ({m.minimum:g}-{m.maximum:g})", condition=where),
                )
            )
            if m.integer:
                out.append(
                    E.ExpectColumnValuesToMatchRegex(
                        column=name,
                        regex=INTEGER_PATTERN,
                        row_condition=is_measure,
                        meta=_meta(name, f"{m.key} must be a whole number", condition=where),
                    )
                )
    if column.unique:
        out.append(
            E.ExpectColumnValuesToBeUnique(
                column=name, meta=_meta(name, f"{name} appears more than once; each must be unique")
            )
        )
    return out


def build_suites(registry: Registry, today: dt.date | None = None) -> dict[str, gx.ExpectationSuite]:
    """One expectation suite per contract table, derived from the contract and the registry.

    Parameters
    ----------
    registry : the measures registry (value ranges, whole-number rules, known measures).
    today : the latest allowed date (default: today's date).

    Returns
    -------
    dict table name -> ``gx.ExpectationSuite`` named ``<table>``. Cross-table
    rules need the other tables' ids and are added by :func:`cross_table_expectations`.
    """
    gx = import_gx()
    today = today or dt.date.today()
    suites = {}
    for table in TABLES.values():
        expectations = [e for c in table.columns for e in column_expectations(table, c, registry, today)]
        if table.unique_together:
            cols = list(table.unique_together)
            expectations.append(
                gx.expectations.ExpectCompoundColumnsToBeUnique(
                    column_list=cols,
                    meta=_meta(", ".join(cols), f"({', '.join(cols)}) appears more than once; keep one row"),
                )
            )
        suites[table.name] = gx.ExpectationSuite(name=table.name, expectations=expectations)
    return suites


def link_column(column: str, parent: str) -> str:
    """Name of the staged helper column saying whether ``column``'s id exists in ``parent``."""
    return f"{column}__in_{parent}"


def cross_table_links(raw: dict[str, pd.DataFrame]) -> dict[str, dict[str, tuple[str, pd.Series]]]:
    """Foreign-key membership for every contract ``references``, plus "client has a session".

    The membership is computed with pandas (:func:`member`), and the rule itself is a GX expectation on
    the resulting helper column (see :func:`cross_table_expectations`): putting tens of thousands of ids
    into an expectation's ``value_set`` makes GX re-serialise them for every metric, which takes minutes on a
    large clinic.

    Parameters
    ----------
    raw : table name -> raw string frame (only tables that could be read).

    Returns
    -------
    dict table name -> {helper column name -> (the table's column whose ids are looked up, the pool of ids
    they must be in)}; :func:`member` turns a column's values into the helper column.
    """
    links: dict[str, dict[str, tuple[str, pd.Series]]] = {name: {} for name in raw}
    for table in TABLES.values():
        if table.name not in raw:
            continue
        for c in table.columns:
            if c.references and c.references[0] in raw:
                parent, key = c.references
                links[table.name][link_column(c.name, parent)] = (c.name, raw[parent][key])
    if "clients" in raw and "sessions" in raw:
        links["clients"][link_column("client_id", "sessions")] = ("client_id", raw["sessions"]["client_id"])
    return links


def member(values: pd.Series, pool: pd.Series) -> pd.Series:
    """True/False: is each value one of ``pool``'s; None where the value is blank (index kept)."""
    blank = values.isna() | (values == "")
    # in Arrow (C++): pandas' isin on Arrow-backed strings loops in Python
    text = arrow_text(values)
    ids = pc.unique(arrow_text(pool))
    found = np.asarray(pc.is_in(text, value_set=ids).to_numpy(zero_copy_only=False), dtype=bool)
    return pd.Series(found, index=values.index).astype(object).where(~blank, None)


def arrow_text(col: pd.Series) -> pa.Array:
    """A text column as one Arrow string array, missing = null (the fast reader's Arrow-backed columns are not
    copied into Python strings)."""
    data = col.array
    if hasattr(data, "__arrow_array__"):
        text = pa.array(data)
    else:
        text = pa.array(col.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
    text = text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text
    return text.cast(pa.string())


def cross_table_expectations(raw: dict[str, pd.DataFrame]) -> dict[str, list[Expectation]]:
    """GX expectations for the cross-table rules, on the columns of :func:`cross_table_links`.

    Returns
    -------
    dict table name -> extra expectations for that table's staged frame.
    """
    gx = import_gx()
    E = gx.expectations
    out: dict[str, list[Expectation]] = {name: [] for name in raw}
    for table in TABLES.values():
        if table.name not in raw:
            continue
        for c in table.columns:
            if c.references and c.references[0] in raw:
                parent, key = c.references
                out[table.name].append(
                    E.ExpectColumnValuesToBeInSet(
                        column=link_column(c.name, parent),
                        value_set=[True],
                        meta=_meta(c.name, f"not found in {parent}.{key}; add the {parent} row or fix the id"),
                    )
                )
    if "clients" in raw and "sessions" in raw:
        out["clients"].append(
            E.ExpectColumnValuesToBeInSet(
                column=link_column("client_id", "sessions"),
                value_set=[True],
                meta=_meta(
                    "client_id", "warning: client has no sessions; kept and counted in the exclusion flow", "warning"
                ),
            )
        )
    return out
