"""The Word copy of the peer paper (``reports/peer/report.docx``), made from the rendered peer HTML.

Journals and co-authors ask for an editable copy. :func:`html_to_docx` walks the peer HTML (headings,
paragraphs, lists, definition lists, tables, figure captions) and writes the same text with
python-docx, so the Word copy says exactly what the gated HTML says. Figures are SVG, which Word
cannot take from python-docx; each is replaced by its caption and a pointer to the PDF.

The bytes are the same on every build: the core properties (author, dates, revision) are fixed to the
report's date, and the zip is rewritten with fixed member timestamps (python-docx stamps the time of
saving otherwise).
"""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile

import docx
from docx.document import Document
from docx.shared import Pt
from lxml import html as lxml_html

#: zip member timestamp (the earliest a zip can hold), so the container does not depend on the build time
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_SKIP = {"style", "script", "svg", "head", "details"}
_WS = re.compile(r"\s+")


def _text(el: lxml_html.HtmlElement) -> str:
    return _WS.sub(" ", el.text_content()).strip()


def _table(doc: Document, el: lxml_html.HtmlElement) -> None:
    caption = el.find("caption")
    if caption is not None:
        doc.add_paragraph(_text(caption), style="Caption")
    rows = [tr for tr in el.iter("tr")]
    if not rows:
        return
    width = max(sum(int(c.get("colspan", "1")) for c in tr if c.tag in ("td", "th")) for tr in rows)
    table = doc.add_table(rows=len(rows), cols=width)
    table.style = "Table Grid"
    for i, tr in enumerate(rows):
        j = 0
        for cell in [c for c in tr if c.tag in ("td", "th")]:
            span = int(cell.get("colspan", "1"))
            target = table.cell(i, j)
            if span > 1:
                target = target.merge(table.cell(i, min(j + span - 1, width - 1)))
            target.text = _text(cell)
            if cell.tag == "th":
                for run in target.paragraphs[0].runs:
                    run.bold = True
            j += span


def _walk(doc: Document, el: lxml_html.HtmlElement) -> None:
    for child in el:
        tag = child.tag if isinstance(child.tag, str) else ""
        if tag in _SKIP or not tag:
            continue
        if tag in ("h1", "h2", "h3", "h4"):
            doc.add_heading(_text(child), level=0 if tag == "h1" else int(tag[1]) - 1)
        elif tag == "p":
            text = _text(child)
            if text:
                doc.add_paragraph(text)
        elif tag in ("ul", "ol"):
            style = "List Number" if tag == "ol" else "List Bullet"
            for li in child.findall("li"):
                doc.add_paragraph(_text(li), style=style)
        elif tag == "dl":
            for item in child:
                if item.tag == "dt":
                    doc.add_paragraph().add_run(_text(item)).bold = True
                elif item.tag == "dd":
                    doc.add_paragraph(_text(item))
        elif tag == "table":
            _table(doc, child)
        elif tag == "figure":
            cap = child.find(".//figcaption")
            words = _text(cap) if cap is not None else "Figure"
            doc.add_paragraph(f"{words} [Figure: see the PDF copy of this report.]", style="Caption")
        else:
            _walk(doc, child)


def fixed_zip(data: bytes) -> bytes:
    """The same zip with every member's timestamp fixed (:data:`ZIP_TIME`), order and contents kept."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=ZIP_TIME)
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o644 << 16
            dst.writestr(fixed, src.read(info.filename))
    return out.getvalue()


def html_to_docx(html: str, *, title: str, created: dt.datetime) -> bytes:
    """The peer paper's HTML as a Word document (bytes), deterministic for the same ``html`` and ``created``.

    Parameters
    ----------
    html : the rendered peer report (already through the privacy gate's checks of its text).
    title : the document title (core property).
    created : the report's date (core properties ``created``, ``modified``, ``last_printed``).
    """
    doc = docx.Document()
    style = doc.styles["Normal"]
    style.font.name = "Calibri"
    style.font.size = Pt(10.5)
    root = lxml_html.document_fromstring(html)
    main = root.find(".//main")
    _walk(doc, main if main is not None else root)
    props = doc.core_properties
    stamp = created.replace(tzinfo=None)
    props.author = "hip-knee-outcomes"
    props.last_modified_by = "hip-knee-outcomes"
    props.title = title
    props.comments = ""
    props.revision = 1
    props.created = stamp
    props.modified = stamp
    props.last_printed = stamp
    buf = io.BytesIO()
    doc.save(buf)
    return fixed_zip(buf.getvalue())


def docx_text(data: bytes) -> str:
    """All text of a Word document (paragraphs and table cells), for the privacy gate and tests."""
    d = docx.Document(io.BytesIO(data))
    parts = [p.text for p in d.paragraphs]
    for t in d.tables:
        for row in t.rows:
            parts.extend(c.text for c in row.cells)
    return "\n".join(parts)
