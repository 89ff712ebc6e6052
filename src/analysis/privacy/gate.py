"""The peer-output gate: nothing a peer receives may hold a client or session id, a count below the
threshold, a local path or an identifying value; :func:`assert_peer_safe` refuses with the reasons.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from analysis.errors import PrivacyError

# ----------------------------------------------------------------------------- peer-output gate

_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
_DATA_COUNT = re.compile(r"""data-count\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.IGNORECASE)
_COUNT_KEY = re.compile(r"^(?:n|n_.+|.+_n|count.*|.+_count)$", re.IGNORECASE)
_SUPPRESSED = re.compile(r"^\s*(?:(?:<|&lt;)\s*\d+|\*)\s*$")
SECONDARY_MARK = "*"  # a cell hidden only so that a small count cannot be worked out from a total


def is_count_key(key: object) -> bool:
    """True if a JSON key names a count: ``n``, ``n_*``, ``*_n``, ``count*``, ``*_count``."""
    return isinstance(key, str) and bool(_COUNT_KEY.match(key))


def _small(value: Any, min_cell: int) -> bool:
    """True if ``value`` is a count (number) in 1..min_cell-1."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    v = float(value)
    return not math.isnan(v) and 0 < v < min_cell


# An absolute local path: /home/..., /Users/..., /root/..., /tmp/..., /mnt/..., C:\..., \\server\...
_LOCAL_PATH = re.compile(
    r"(?<![\w/.:-])(?:/(?:home|Users|root|tmp|mnt|media|srv|var|opt|private|data|work)/[^\s\"'<>]+"
    r"|[A-Za-z]:\\[^\s\"'<>]+|\\\\[^\s\"'<>]+)"
)


def check_peer_output(obj_or_text: Any, *, forbidden_ids: Iterable[str], min_cell: int) -> list[str]:
    """Reasons why an output meant for peers is not safe; an empty list means safe.

    Parameters
    ----------
    obj_or_text
        Peer HTML/text (``str``) or a JSON-like object (``dict``/``list``, e.g. findings.json).
    forbidden_ids
        Client and session ids (and any other pseudonym) that must not appear, as whole tokens.
    min_cell
        Smallest count that may be shown (params ``report.min_cell``); counts of 0 may be shown.

    Returns
    -------
    list of str
        One reason per problem kind and place; reasons never contain the forbidden id.
    """
    forbidden = {str(i) for i in forbidden_ids if str(i)}
    reasons: list[str] = []
    if isinstance(obj_or_text, (bytes, bytearray)):
        obj_or_text = obj_or_text.decode("utf-8", errors="replace")
    if isinstance(obj_or_text, str):
        text = obj_or_text
        n_ids = sum(1 for tok in _TOKEN.findall(text) if tok in forbidden)
        if n_ids:
            reasons.append(f"text contains a client or session id {n_ids} time(s); show aggregates only")
        n_paths = len(_LOCAL_PATH.findall(text))
        if n_paths:
            reasons.append(
                f"text contains {n_paths} local file path(s) (a folder name can hold a user's or "
                "clinic's name); show paths relative to the project, or not at all"
            )
        for m in _DATA_COUNT.finditer(text):
            raw = next(g for g in m.groups() if g is not None).strip()
            line = text.count("\n", 0, m.start()) + 1
            if _SUPPRESSED.match(raw):
                continue
            try:
                value = float(raw)
            except ValueError:
                reasons.append(
                    f"line {line}: data-count is not a number or '<{min_cell}'; mark counts as data-count=\"k\""
                )
                continue
            if _small(value, min_cell):
                reasons.append(
                    f"line {line}: count {value:g} is below {min_cell}; show it as '<{min_cell}' "
                    "(suppress_count) with complementary suppression (suppress_table)"
                )
        return reasons
    _walk(obj_or_text, "$", False, forbidden, min_cell, reasons)
    n_paths = len(_LOCAL_PATH.findall(json.dumps(obj_or_text, default=str)))
    if n_paths:
        reasons.append(f"contains {n_paths} local file path(s); show paths relative to the project, or not at all")
    return reasons


def _walk(obj: Any, path: str, in_count: bool, forbidden: set[str], min_cell: int, reasons: list[str]) -> None:
    if isinstance(obj, dict):
        for key, value in obj.items():
            sub = f"{path}.{key}"
            if isinstance(key, str) and any(tok in forbidden for tok in _TOKEN.findall(key)):
                reasons.append(f"{path}: a key is a client or session id; show aggregates only")
                sub = f"{path}.<key>"
            _walk(value, sub, in_count or is_count_key(key), forbidden, min_cell, reasons)
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _walk(value, f"{path}[{i}]", in_count, forbidden, min_cell, reasons)
    elif isinstance(obj, pd.DataFrame):
        _walk(obj.to_dict(orient="list"), path, in_count, forbidden, min_cell, reasons)
    elif isinstance(obj, str):
        if any(tok in forbidden for tok in _TOKEN.findall(obj)):
            reasons.append(f"{path}: contains a client or session id; show aggregates only")
    elif in_count and _small(obj, min_cell):
        reasons.append(
            f"{path}: count {float(obj):g} is below {min_cell}; "
            f"write '<{min_cell}' (suppress_count) with complementary suppression"
        )


def assert_peer_safe(
    obj_or_text: Any, *, forbidden_ids: Iterable[str], min_cell: int, label: str = "peer output"
) -> None:
    """Raise :class:`PrivacyError` listing every reason ``obj_or_text`` is not safe for peers.

    Call it just before writing a peer output; if it raises, write nothing.
    """
    reasons = check_peer_output(obj_or_text, forbidden_ids=forbidden_ids, min_cell=min_cell)
    if reasons:
        shown = reasons[:10]
        more = f"; and {len(reasons) - 10} more" if len(reasons) > 10 else ""
        raise PrivacyError(f"{label} not written: " + "; ".join(shown) + more)
