"""Values as people type them: dates in the mapping's formats, numbers with units or a decimal comma,
durations ("6 months"), onsets ("Nov 2022"), age bands, and which values may be echoed in a message.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.privacy import looks_identifying

UNITS_IN_WEEKS = {
    "day": 1 / 7,
    "week": 1.0,
    "wk": 1.0,
    "w": 1.0,
    "month": 52 / 12,
    "mth": 52 / 12,
    "mo": 52 / 12,
    "m": 52 / 12,
    "year": 52.0,
    "yr": 52.0,
    "y": 52.0,
}
_SHOWABLE = re.compile(r"^[A-Za-z0-9 +&/_.,'()-]{0,40}$")


def clean_text(s: pd.Series) -> pd.Series:
    return s.fillna("").astype("string").str.replace(r"\s+", " ", regex=True).str.strip()


def showable(value: str) -> str | None:
    if (
        _SHOWABLE.match(value)
        and not re.search(r"\d{1,4}[./-]\d{1,2}[./-]\d{1,4}", value)
        and not looks_identifying(value)
    ):
        return value
    return None


def parse_dates(values: pd.Series, formats: Sequence[str]) -> pd.Series:
    """Parse date strings with the mapping's formats (first that fits), ISO always accepted.

    Returns a datetime64 Series; NaT where no format fits.
    """
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    text = values.astype("string").str.strip()
    for fmt in (*formats, "%Y-%m-%d"):
        todo = out.isna() & text.ne("").fillna(False)
        if not todo.any():
            break
        parsed = pd.to_datetime(text[todo], format=fmt, errors="coerce")
        out.loc[todo] = parsed.astype("datetime64[ns]")
    return out


def parse_number(values: pd.Series) -> pd.Series:
    """Numbers as typed by people: decimal comma, trailing units ("45 min", "7.5h"). NaN if not a number."""
    text = values.astype("string").str.strip().str.replace(",", ".", regex=False)
    num = text.str.extract(r"^([-+]?\d+(?:\.\d+)?)\s*[A-Za-z/%.]*$", expand=False)
    return pd.to_numeric(num, errors="coerce").astype("float64")


def parse_duration_weeks(values: pd.Series, default_unit: str) -> pd.Series:
    """Durations such as "6 months", "12 wks", "1 year", "26" (default unit) -> whole weeks; NaN if unreadable."""
    text = values.astype("string").str.strip().str.lower().str.replace(",", ".", regex=False)
    parts = text.str.extract(r"^(\d+(?:\.\d+)?)\s*([a-z]*)\.?$")
    number = pd.to_numeric(parts[0], errors="coerce")
    unit = parts[1].fillna("").str.rstrip("s").replace("", default_unit)
    factor = unit.map(lambda u: UNITS_IN_WEEKS.get(u, np.nan)).astype("float64")
    return (number.astype("float64") * factor).round()


_MONTH_FORMATS = ("%b %Y", "%B %Y", "%Y-%m", "%m/%Y", "%m.%Y", "%b-%Y", "%b %y")


def parse_onset(values: pd.Series, date_formats: Sequence[str]) -> pd.Series:
    """An onset written as a month ("Nov 2022", "2022-11") or a date -> a datetime (NaT if neither).

    A month means its middle (the 15th), so the weeks before a visit are off by two weeks at most.
    """
    text = values.astype("string").str.strip().str.replace(r"(?i)^(since|from)\s*:?\s*", "", regex=True)
    out = parse_dates(text, date_formats)
    for fmt in _MONTH_FORMATS:
        todo = out.isna() & text.notna() & text.ne("")
        if not todo.any():
            break
        parsed = pd.to_datetime(text[todo], format=fmt, errors="coerce")
        out = out.where(~todo, parsed + pd.Timedelta(days=14))
    return out


def age_band(age: float) -> str | None:
    if np.isnan(age) or age < 18:
        return None
    if age >= 80:
        return "80+"
    lo = int(age // 10 * 10)
    return "18-29" if lo < 30 else f"{lo}-{lo + 9}"


def num_text(v: float) -> str:
    return np.format_float_positional(float(v), trim="-")
