"""The network fit's page (``federated.html``), beside the two-stage pooled report.

Built from ``federated.json`` only (no record, no per-clinic number: the network fit has none), with the
same stylesheet and filters as the other reports; optionally side by side with the two-stage pooled
estimate and the generating truth (the demo network).
"""

from __future__ import annotations

from typing import Any

from analysis.report.render import render


def render_page(result: dict[str, Any], comparison: dict[str, Any] | None = None) -> str:
    """The HTML page; ``comparison`` (demo only) holds the two-stage pooled estimate and the truth."""
    return render("network.html.j2", {"r": result, "cmp": comparison})
