"""The same bytes on any machine: the published-precision rule (analysis.store) and the named fonts
(analysis.report.render). The slow end-to-end check is ``make repro-check``, not a test."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib import font_manager

from analysis import store
from analysis.model.run import write_table
from analysis.report import render

PAGE = (
    "<html><head><meta name='dcterms.created' content='2025-09-30T00:00:00Z'><style>{css}</style></head>"
    "<body><h1>Hip − knee ≥ 1.0</h1><p>Plain, <b>bold</b>, <i>italic</i>, <code>code</code>, χ² ± 95% CI</p>"
    "<ol><li>a list</li></ol><table class='sortable'><tr><th data-dir='asc'>sorted</th></tr></table></body></html>"
).replace("{css}", render.stylesheet())  # the report CSS: its page-number box names a font of its own


def _pdf_fonts(pdf: bytes) -> set[str]:
    """Base font names (subset prefix dropped) in a PDF, looking inside its compressed streams too."""
    chunks = [pdf]
    for m in re.finditer(rb"stream\r?\n(.*?)endstream", pdf, re.S):
        with contextlib.suppress(zlib.error):
            chunks.append(zlib.decompress(m.group(1)))
    names = {n for c in chunks for n in re.findall(rb"/BaseFont\s*/([A-Za-z0-9+\-]+)", c)}
    return {n.split(b"+")[-1].decode() for n in names}


# ------------------------------------------------------------------------------------------ rounding


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (-0.9339887265338188, -0.933989),
        (-0.9339887284789762, -0.933989),  # the same fit under OPENBLAS_CORETYPE=Prescott (before the polish)
        (115.3461014, 115.346),
        (2.7781421898845646e-09, 2.77814e-09),
        (2986.218074659786, 2986.22),
        (1234567.0, 1234570.0),
        (0.0, 0.0),
        (12.0, 12.0),
    ],
)
def test_round_float_keeps_six_significant_digits(value, expected):
    assert store.SIGNIFICANT_DIGITS == 6
    assert store.round_float(value) == expected


def test_round_float_leaves_nan_and_inf():
    assert math.isnan(store.round_float(float("nan")))
    assert store.round_float(float("inf")) == float("inf")


def test_json_floats_are_rounded_everywhere_and_equal_results_give_equal_bytes():
    a = {"primary": {"estimate": -0.9339887265338188, "ci": [np.float64(-1.6720556240), 0.1]}, "n": 528}
    b = {"primary": {"estimate": -0.9339887284789762, "ci": [np.float64(-1.6720556157), 0.1]}, "n": 528}
    assert store.to_json_text(a) == store.to_json_text(b)
    assert json.loads(store.to_json_text(a)) == {"n": 528, "primary": {"ci": [-1.67206, 0.1], "estimate": -0.933989}}


def test_json_digits_none_keeps_every_digit_for_data():
    assert json.loads(store.to_json_text({"x": 3.226612583592973}, digits=None)) == {"x": 3.226612583592973}


def test_round_floats_rounds_float_columns_only():
    df = pd.DataFrame({"id": ["a", "b"], "n": [1, 2], "fitted": [1.23456789, -0.000123456789]})
    out = store.round_floats(df)
    assert out["fitted"].tolist() == [1.23457, -0.000123457]
    assert out["n"].tolist() == [1, 2] and out["id"].tolist() == ["a", "b"]
    assert df["fitted"].iloc[0] == 1.23456789  # input untouched


def test_results_tables_use_the_same_rule(tmp_path):
    path = tmp_path / "t.csv"
    write_table(path, pd.DataFrame({"term": ["hip"], "estimate": [-0.38276299093], "df": [115.3461014]}))
    assert path.read_text(encoding="utf-8") == "term,estimate,df\nhip,-0.382763,115.346\n"


# ------------------------------------------------------------------------------------------ fonts


def test_figures_use_the_dejavu_file_matplotlib_ships():
    assert render.RC["font.family"] == [render.FONT_FAMILY]
    assert render.RC["svg.fonttype"] == "path"  # glyphs as paths: the SVG needs no font on the viewer's side
    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    assert render.font_dir() == ttf
    assert render.font_file() == ttf / "DejaVuSans.ttf"
    with render.figure_style():
        assert Path(font_manager.findfont(font_manager.FontProperties())) == ttf / "DejaVuSans.ttf"


def test_pdf_font_css_names_existing_files_and_stays_out_of_html():
    css = render.pdf_font_css()
    for files in render.PDF_FONTS.values():
        for name, _, _ in files:
            assert (render.font_dir() / name).is_file()
            assert (render.font_dir() / name).as_uri() in css
    assert "file:" not in render.stylesheet()  # the CSS inlined in the HTML pages carries no local path


def test_pdf_is_the_same_when_fontconfig_offers_one_other_family(tmp_path):
    """A fontconfig exposing only Computer Modern (cmr10) gives the same PDF bytes: the fonts are files."""
    fonts = tmp_path / "fonts"
    fonts.mkdir()
    (fonts / "cmr10.ttf").write_bytes((render.font_dir() / "cmr10.ttf").read_bytes())
    conf = tmp_path / "fonts.conf"
    cache = tmp_path / "cache"
    conf.write_text(f"<fontconfig><dir>{fonts}</dir><cachedir>{cache}</cachedir></fontconfig>\n", encoding="utf-8")
    code = "import sys; from analysis.report.render import html_to_pdf as f; sys.stdout.buffer.write(f(sys.argv[1]))"
    env = {**os.environ, "FONTCONFIG_FILE": str(conf), "MPLCONFIGDIR": str(tmp_path / "mpl")}
    other = subprocess.run([sys.executable, "-c", code, PAGE], env=env, check=True, capture_output=True).stdout
    here = render.html_to_pdf(PAGE)
    assert other == here
    # every glyph from the two families of files, none from a system font (even one also named DejaVu)
    assert _pdf_fonts(here) == {"Report-Sans", "Report-Sans-Bold", "Report-Sans-Italic", "Report-Mono"}
    assert str(render.font_dir()).encode() not in here
