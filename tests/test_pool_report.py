"""The pooled report (analysis.pool.report): the forest plot's geometry and the sentences of pooled.html."""

from __future__ import annotations

import numpy as np
import pytest
from markupsafe import escape
from matplotlib.collections import PathCollection
from matplotlib.patches import Polygon

from analysis.pool.report import forest_figure, render_outputs
from analysis.pool.run import pool
from analysis.report.render import figure_style
from test_pool import bundle

AGREE4 = [("k-a", -0.58, 0.30), ("k-b", -0.60, 0.35), ("k-c", -0.61, 0.40), ("k-d", -0.62, 0.50)]


@pytest.fixture(scope="module")
def agree4() -> dict:
    return pool([bundle(c, e, s) for c, e, s in AGREE4])


def test_forest_squares_have_area_proportional_to_weight(agree4):
    with figure_style():
        fig = forest_figure(agree4)
    ax = fig.axes[0]
    squares = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(squares) == 4
    areas = np.array([c.get_sizes()[0] for c in squares])  # scatter sizes are areas in points^2
    weights = np.array(agree4["primary"]["weights"])
    np.testing.assert_allclose(areas / areas.max(), weights / weights.max(), rtol=1e-12)
    assert [tuple(c.get_offsets()[0]) for c in squares] == [(e, 4 + 2.3 - i) for i, (_, e, _) in enumerate(AGREE4)]


def test_forest_has_diamond_prediction_line_zero_line_and_text_columns(agree4):
    with figure_style():
        fig = forest_figure(agree4)
    ax = fig.axes[0]
    p = agree4["primary"]
    (diamond,) = [a for a in ax.patches if isinstance(a, Polygon)]
    xy = diamond.get_xy()
    assert xy[:, 0].min() == pytest.approx(p["pooled"]["ci_low"]) and xy[:, 0].max() == pytest.approx(
        p["pooled"]["ci_high"]
    )
    lines = [tuple(line.get_xdata()) for line in ax.get_lines()]
    assert (p["prediction"]["pi_low"], p["prediction"]["pi_high"]) in lines
    assert (0.0, 0.0) in lines
    texts = {t.get_text() for t in ax.texts}
    assert {"Weight", "Estimate [95% CI]", "37.6%", "100%", "\u22120.58 [\u22121.18, 0.02]"} <= texts
    assert "\u22120.60 [\u22121.18, \u22120.01]" in texts  # the pooled row: modified Knapp-Hartung CI


def test_not_pooled_forest_has_no_weights():
    r = pool([bundle("k-a", -1.1, 0.4)])
    with figure_style():
        fig = forest_figure(r)
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert not any(t.endswith("%") for t in texts) and not fig.axes[0].patches


def test_html_states_the_ci_method_and_why_and_the_clinic_df_choice(agree4):
    html = render_outputs(agree4)["html_text"]
    assert agree4["primary"]["ci_method"] == "knha_modified"
    assert escape(agree4["primary"]["ci_method_reason"]) in html
    assert "standard error is treated as known when pooling" in html
    assert "does not show that the clinics agree, only that 4 clinics" in html
    assert "the prediction interval is no wider than the CI" in html
    assert "very wide" not in html and "are wide" not in html
