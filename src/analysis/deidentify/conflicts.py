"""Client-level fields that differ across a patient's visits: find every conflict, choose by one rule (pure).

An export repeats (or re-asks) a patient's sex, knee, sport, sitting hours and symptom duration on
several visits, and they do not always agree. Which value the client gets is ``privacy.conflict_rule``:

``latest``         the most recent visit's value (by real visit date; the default: the newest record wins)
``most_frequent``  the value recorded on most visits (a tie goes to the most recent of the tied values)
``refuse``         no choice: every conflict is a problem (file, row, column) and nothing is written

Every conflict is reported, whatever the rule: client pseudonym, field, the distinct values and the
one chosen. Values are contract categories or numbers, never the text as exported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

CONFLICT_RULES = ("latest", "most_frequent", "refuse")


@dataclass(frozen=True)
class Conflict:
    """One client-level field with more than one value across a client's visits."""

    client_id: str
    field: str
    column: str
    values: tuple[str, ...]
    chosen: str
    file: str
    row: int  # the most recent row whose value differs from the first visit's
    first_row: int

    def as_log(self, rule: str) -> dict[str, Any]:
        """The log entry: no file or row (they are export positions), only pseudonym, field and values."""
        d = asdict(self)
        return {k: d[k] for k in ("client_id", "field", "column")} | {
            "values": list(self.values),
            "chosen": self.chosen,
            "rule": rule,
        }


def pick(values: pd.Series, rule: str) -> Any:
    """The chosen value of one client's non-blank values (in real visit order) under ``rule``.

    Examples
    --------
    >>> s = pd.Series(["left", "right", "right", "left"])
    >>> pick(s, "latest"), pick(s, "most_frequent")
    ('left', 'left')
    """
    if rule == "most_frequent":
        counts = values.value_counts()
        top = set(counts.index[counts == counts.max()])
        return values[values.isin(top)].iloc[-1]
    return values.iloc[-1]


def resolve(
    rows: pd.DataFrame, columns: Mapping[str, str], rule: str, show: Callable[[Any], str] = str
) -> tuple[pd.DataFrame, list[Conflict]]:
    """One value per client and field, and every conflict.

    Parameters
    ----------
    rows
        One row per visit in real visit order, with ``client_id``, ``_file``, ``_row`` and one column
        per field (NA where the visit has no value).
    columns
        field -> the export column it comes from (named in conflicts).
    rule
        One of :data:`CONFLICT_RULES` (``refuse`` chooses as ``latest``; the caller stops the run).
    show
        How a value is written in a conflict (e.g. numbers without a trailing ``.0``).

    Returns
    -------
    (chosen, conflicts)
        ``chosen``: index client_id (sorted), one column per field (NA if no visit has a value);
        ``conflicts``: sorted by client, then field order.
    """
    if rule not in CONFLICT_RULES:
        raise ValueError(f"conflict rule {rule!r}: use one of {', '.join(CONFLICT_RULES)}")
    clients = pd.Index(sorted(rows["client_id"].unique()), name="client_id")
    chosen = pd.DataFrame(index=clients)
    conflicts: list[Conflict] = []
    for fld in columns:
        have = rows.loc[rows[fld].notna(), ["client_id", fld, "_file", "_row"]]
        grouped = have.groupby("client_id", sort=True)[fld]
        out = grouped.last() if rule != "most_frequent" else grouped.agg(lambda s: pick(s, rule))
        for cid in grouped.nunique().loc[lambda n: n > 1].index:
            g = have[have["client_id"] == cid]
            differ = g[g[fld] != g[fld].iloc[0]]
            conflicts.append(
                Conflict(
                    client_id=str(cid),
                    field=fld,
                    column=columns[fld],
                    values=tuple(sorted({show(v) for v in g[fld]})),
                    chosen=show(out.loc[cid]),
                    file=str(differ["_file"].iloc[-1]),
                    row=int(differ["_row"].iloc[-1]),
                    first_row=int(g["_row"].iloc[0]),
                )
            )
        chosen[fld] = out.reindex(clients)
    order = {f: i for i, f in enumerate(columns)}
    return chosen, sorted(conflicts, key=lambda c: (c.client_id, order[c.field]))
