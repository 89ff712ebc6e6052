"""The compared groups as people read them: one labelling for the model's tables, the reports and the plots."""

from __future__ import annotations


def group_label(group: object) -> str:
    """The group as shown to people: 'hip-focused', 'knee-focused' or the raw name.

    Accepts the model's keys (``hip_focused``, ``comparator``), the labels themselves and foci such as
    ``hip_and_knee``; anything else (e.g. ``other``) is returned as it is.
    """
    g = str(group).lower()
    if g == "comparator":
        return "knee-focused"
    if "hip" in g:
        return "hip-focused"
    if "knee" in g:
        return "knee-focused"
    return str(group)
