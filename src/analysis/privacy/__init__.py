"""Privacy: find identifying values, gate peer outputs, suppress small counts.

Pure functions, apart from the release ledger's reader and writer in :mod:`analysis.privacy.release`.

API (called by other stages)
----------------------------
:func:`scan_values` (``frame, file_label``) -> ``list[Problem]``
    Used by :mod:`analysis.validate` on every loaded contract table. Reports
    cells that look like an email address, a phone number, a postcode/ZIP code,
    a national id number or a person's name as ``Problem(severity="privacy")``
    with ``value=None``: the identifying value is never echoed.
:func:`check_peer_output` (``obj_or_text, *, forbidden_ids, min_cell``) -> ``list[str]``
    The final gate for anything meant for peers. Returns the reasons it is not
    safe (empty list = safe). :func:`assert_peer_safe` raises
    :class:`~analysis.errors.PrivacyError` with those reasons, so a report
    writer calls it just before writing and writes nothing if it raises.

    Conventions it enforces:

    * No client or session id appears anywhere, as a whole token (a token is
      a run of ``A-Z a-z 0-9 _ -``, the id charset), in text, JSON keys or
      JSON values. Reasons say where, never which id.
    * No count is below ``min_cell`` (counts of 0 are allowed: an empty cell
      identifies nobody). What is a count:

      - JSON (``dict``/``list``): the value of a key named ``n``, ``n_*``,
        ``*_n``, ``count``, ``count*`` or ``*_count`` (case-insensitive), and
        every number nested under such a key. A suppressed count is the string
        ``"<k"`` (see :func:`suppress_count`) or ``"*"`` (complementary
        suppression, see :func:`suppress_table`) and passes.
      - HTML/text (``str``): the value of every ``data-count="k"`` attribute.
        The report templates mark each count they show with it, e.g.
        ``<td data-count="12">12</td>``; a suppressed one is
        ``<td data-count="<5">&lt;5</td>`` (``data-count="&lt;5"`` and
        ``data-count="*"`` also pass).

:func:`suppress_count` and :func:`suppress_table`
    Small-cell suppression for peer tables, with complementary suppression so
    a hidden cell cannot be recovered from a row or column total.
:func:`k_anonymity`
    Size of the smallest group of clients sharing the quasi-identifiers.

Layout: ``scan`` (identifying values), ``gate`` (the peer-output gate), ``suppress`` (small cells,
complementary suppression, k-anonymity), ``audit`` (every client count of a release audited together by
linear programming; ACRO's dominance and residual-df rules), ``summaries`` (arm summaries of a 0-10 score
that cannot be inverted, by exhaustive enumeration), ``release`` (differencing against the clinic's earlier
releases, kept in a private ledger: the one module here that reads and writes files).
"""

from __future__ import annotations

from analysis.privacy.gate import SECONDARY_MARK, assert_peer_safe, check_peer_output, is_count_key
from analysis.privacy.scan import looks_identifying, scan_values
from analysis.privacy.suppress import (
    k_anonymity,
    km_for_peers,
    pinned_cells,
    responder_cells_small,
    suppress_count,
    suppress_table,
)

__all__ = [
    "SECONDARY_MARK",
    "assert_peer_safe",
    "check_peer_output",
    "is_count_key",
    "k_anonymity",
    "km_for_peers",
    "looks_identifying",
    "pinned_cells",
    "responder_cells_small",
    "scan_values",
    "suppress_count",
    "suppress_table",
]
