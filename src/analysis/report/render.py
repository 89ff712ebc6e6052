"""Rendering: deterministic figures, the Jinja environment and the PDF.

Everything that could make two builds differ is pinned here, in one place:

* matplotlib runs on Agg with a fixed ``svg.hashsalt`` (element ids in SVG
  would otherwise be random), ``svg.fonttype = "path"`` and no ``Date`` /
  ``Creator`` / ``Software`` metadata. Glyphs are written as paths rather than
  text: the figure then looks the same on a tablet without DejaVu fonts and in
  WeasyPrint, and the bytes do not depend on which fonts the *viewer* has. The
  price (larger files, text in figures not selectable) is small for a report.
* Figures are embedded as ``data:image/svg+xml;base64`` images. Inline ``<svg>``
  would share one id namespace across figures (matplotlib reuses glyph and
  clip-path ids), and a clip path inside a closed ``<details>`` is not applied
  by every browser; an ``<img>`` keeps each figure isolated.
* Fonts are named files, never "whatever fontconfig offers": figures use the DejaVu Sans that
  matplotlib itself ships (``mpl-data/fonts/ttf``, pinned by requirements.lock; matplotlib's own
  fonts are found before system copies of the same name, and :func:`font_file` says which file), and
  the PDF gets the same files through an ``@font-face`` stylesheet handed to WeasyPrint at render time
  (:func:`pdf_font_css`). The HTML itself keeps a generic family stack: a page meant for peers must
  never carry a local path.
* The PDF's dates come from ``<meta name="dcterms.created">`` in the HTML
  (WeasyPrint reads it), which the templates fill from :func:`build_date`;
  WeasyPrint writes no random document id unless asked.

Pure apart from :func:`html_to_pdf` returning bytes (it writes nothing).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import io
import logging
import os
import warnings
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

# No backend is chosen here: figures are matplotlib.figure.Figure objects saved explicitly (any backend
# gives the same bytes), so a notebook keeps its inline backend and shows them; builds set MPLBACKEND=Agg.
import matplotlib
import matplotlib.pyplot as plt
import seaborn as sns
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from matplotlib.figure import Figure
from matplotlib.typing import RcKeyType

from analysis.report.text import fmt_num, fmt_p, fmt_p_stat  # the templates' filters

with warnings.catch_warnings():
    # WeasyPrint >= 66 warns at import when the optional libharfbuzz-subset0 is absent (it then
    # subsets fonts with fontTools, same output); the warning is about future versions only.
    warnings.filterwarnings("ignore", message="HarfBuzz-Subset will be required", category=DeprecationWarning)

SVG_HASHSALT = "hip-knee"
FONT_FAMILY = "DejaVu Sans"

RC: dict[RcKeyType, Any] = {
    "svg.hashsalt": SVG_HASHSALT,
    "svg.fonttype": "path",
    "font.family": [FONT_FAMILY],
    "font.sans-serif": [FONT_FAMILY],
    "mathtext.fontset": "dejavusans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "path.simplify": True,
}

#: the files of the PDF's two families (matplotlib's DejaVu): (file, CSS weight, CSS style)
PDF_FONTS = {
    "Report Sans": [
        ("DejaVuSans.ttf", "normal", "normal"),
        ("DejaVuSans-Bold.ttf", "bold", "normal"),
        ("DejaVuSans-Oblique.ttf", "normal", "italic"),
        ("DejaVuSans-BoldOblique.ttf", "bold", "italic"),
    ],
    "Report Mono": [
        ("DejaVuSansMono.ttf", "normal", "normal"),
        ("DejaVuSansMono-Bold.ttf", "bold", "normal"),
        ("DejaVuSansMono-Oblique.ttf", "normal", "italic"),
        ("DejaVuSansMono-BoldOblique.ttf", "bold", "italic"),
    ],
}

#: CSS page-margin boxes, which take fonts from their own rules, not from ``*``
MARGIN_BOXES = (
    "top-left-corner", "top-left", "top-center", "top-right", "top-right-corner",
    "left-top", "left-middle", "left-bottom", "right-top", "right-middle", "right-bottom",
    "bottom-left-corner", "bottom-left", "bottom-center", "bottom-right", "bottom-right-corner",
)  # fmt: skip

SVG_METADATA = {"Date": None, "Creator": None}
PNG_METADATA = {"Software": None}

# Colour-blind safe (Okabe-Ito) colours, fixed per group so every figure agrees.
GROUP_COLOURS = {"hip-focused": "#0072B2", "knee-focused": "#D55E00", "other": "#999999"}


def font_dir() -> Path:
    """The folder of the fonts matplotlib ships (``mpl-data/fonts/ttf`` of the installed, pinned matplotlib)."""
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def font_file(family: str = FONT_FAMILY) -> Path:
    """The file matplotlib draws ``family`` (regular) from; for DejaVu Sans a file in :func:`font_dir`."""
    from matplotlib import font_manager

    return Path(font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False))


def pdf_font_css(fonts: Path | None = None) -> str:
    """CSS for the PDF render only: ``@font-face`` rules on the font files and every element set to them.

    The URLs are local ``file:`` paths, so this never goes into an HTML page; :func:`html_to_pdf` passes
    it to WeasyPrint as an extra stylesheet. Code (``code``, ``pre``, ``kbd``, ``samp``) gets the mono face;
    ``@page`` is set too, for the page numbers in its margin boxes.
    """
    where = fonts or font_dir()
    faces = [
        f'@font-face {{ font-family: "{family}"; src: url("{(where / name).as_uri()}"); '
        f"font-weight: {weight}; font-style: {style}; }}"
        for family, files in PDF_FONTS.items()
        for name, weight, style in files
    ]
    rules = [
        # the page's margin boxes (page numbers) are not elements: ``*`` does not reach them
        "@page { " + " ".join(f'@{box} {{ font-family: "Report Sans" !important; }}' for box in MARGIN_BOXES) + " }",
        '*, *::before, *::after, *::marker { font-family: "Report Sans" !important; }',
        'code, pre, kbd, samp, code *, pre * { font-family: "Report Mono" !important; }',
    ]
    return "\n".join(faces + rules) + "\n"


@contextlib.contextmanager
def figure_style() -> Iterator[None]:
    """Context in which figures are drawn: seaborn theme plus the pinned rcParams."""
    with plt.rc_context():
        sns.set_theme(context="paper", style="whitegrid", font=FONT_FAMILY, rc=RC)
        plt.rcParams.update(RC)
        yield


def svg_bytes(fig: Figure, tight: bool = True) -> bytes:
    """The figure as SVG bytes, without timestamps; the figure is closed afterwards.

    ``tight=False`` skips the extra draw pass of ``bbox_inches="tight"`` (for large
    figures that set their own margins).
    """
    buf = io.BytesIO()
    with plt.rc_context(RC):
        fig.savefig(buf, format="svg", metadata=SVG_METADATA, bbox_inches="tight" if tight else None)
    plt.close(fig)
    return buf.getvalue()


def png_bytes(fig: Figure, dpi: int = 150) -> bytes:
    """The figure as PNG bytes, without the Software chunk; the figure is closed afterwards."""
    buf = io.BytesIO()
    with plt.rc_context(RC):
        fig.savefig(buf, format="png", metadata=PNG_METADATA, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def data_uri(data: bytes, mime: str = "image/svg+xml") -> str:
    """A ``data:`` URI for embedding an image in a self-contained HTML page."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def build_date(fallback: dt.date | None = None) -> dt.datetime:
    """The date stamped on reports: ``$SOURCE_DATE_EPOCH`` if set, else ``fallback`` (midnight UTC).

    Never the wall clock: a rebuild of the same inputs must give the same bytes.
    The fallback the builder passes is the last session date in the data, so the
    stamp says "data up to" rather than "built at".
    """
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch:
        try:
            return dt.datetime.fromtimestamp(int(epoch), tz=dt.UTC)
        except (ValueError, OverflowError, OSError):
            pass
    day = fallback or dt.date(2000, 1, 1)
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def environment() -> Environment:
    """Jinja environment over the packaged templates: autoescaping, undefined names are errors."""
    env = Environment(
        loader=PackageLoader("analysis.report", "templates"),
        autoescape=select_autoescape(["html", "j2"], default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["num"] = fmt_num
    env.filters["pval"] = fmt_p
    env.filters["pstat"] = fmt_p_stat
    env.filters["g"] = lambda v: "—" if v is None else f"{float(v):g}"
    return env


def stylesheet() -> str:
    """The report CSS (inlined in every page so it opens offline)."""
    return files("analysis.report").joinpath("templates", "report.css").read_text(encoding="utf-8")


def render(template: str, context: dict[str, Any]) -> str:
    """Render one template with the CSS available as ``css``."""
    env = environment()
    return env.get_template(template).render(css=stylesheet(), **context)


def html_to_pdf(html: str) -> bytes:
    """The PDF of a self-contained HTML page (A4; page rules come from the page's CSS).

    Text is set in matplotlib's DejaVu files (:func:`pdf_font_css`), whatever fonts the system has.
    WeasyPrint takes dates from the page's ``dcterms.created``/``dcterms.modified``
    meta tags and writes no random file identifier, so equal HTML gives equal bytes.
    No base URL: the page must not need any file or network resource.
    """
    import warnings

    with warnings.catch_warnings():
        # WeasyPrint >= 66 warns at import when the optional libharfbuzz-subset0 is absent (it then
        # subsets fonts with fontTools, same output); the warning is about future versions only.
        warnings.filterwarnings("ignore", message="HarfBuzz-Subset will be required", category=DeprecationWarning)
        from weasyprint import CSS, HTML
        from weasyprint.text.fonts import FontConfiguration

    # WeasyPrint logs every CSS property it ignores (e.g. screen-only rules) at WARNING level;
    # those are expected for a page that also serves browsers, so only errors are shown.
    logger = logging.getLogger("weasyprint")
    level = logger.level
    logger.setLevel(logging.ERROR)
    # Without libharfbuzz-subset, fonts are subset by fontTools, which stamps each subset's 'head'
    # table with the current time unless SOURCE_DATE_EPOCH is set (reproducible-builds convention).
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = epoch or "0"
    try:
        # pdf_tags: a tagged PDF (structure for screen readers, reading order), as WeasyPrint offers it
        fonts = FontConfiguration()
        pdf: bytes = HTML(string=html, base_url=None).write_pdf(
            stylesheets=[CSS(string=pdf_font_css(), font_config=fonts)],
            font_config=fonts,
            pdf_identifier=None,
            uncompressed_pdf=False,
            pdf_tags=True,
        )
        return pdf
    finally:
        logger.setLevel(level)
        if epoch is None:
            del os.environ["SOURCE_DATE_EPOCH"]
