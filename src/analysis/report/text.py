"""Numbers as people read them. Text only: no plotting or templating imports, so the
summary and findings code that needs these does not load matplotlib."""

from __future__ import annotations

import math
from typing import Any


def fmt_num(value: Any, digits: int = 2) -> str:
    """A number for people: fixed decimals, a real minus sign, '—' for missing."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "—" if value in (None, "") else str(value)
    if math.isnan(v):
        return "—"
    text = f"{v:.{digits}f}"
    if text.startswith("-"):
        text = "−" + text[1:]
        if float(text[1:]) == 0:
            text = text[1:]
    return text


def fmt_p(value: Any) -> str:
    """A p-value: '<0.001' below that, else three decimals."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "—"
    if math.isnan(v):
        return "—"
    return "<0.001" if v < 0.001 else f"{v:.3f}"


def fmt_p_stat(value: Any) -> str:
    """A p-value as a statement: 'p < 0.001' or 'p = 0.041' ('p not available' when missing)."""
    text = fmt_p(value)
    if text == "—":
        return "p not available"
    return "p < 0.001" if text.startswith("<") else f"p = {text}"
