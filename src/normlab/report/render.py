"""The report as a document: number formatting, a list of blocks, and its two renderings.

A report is a ``Doc`` (headings, paragraphs, tables, images, lists) rendered
twice: ``render_md`` (report.md, images beside it) and ``render_html`` (one
self-contained page, images inlined as base64 PNG, headings with the same
anchors as the Markdown ones so links work in both). Paths of this machine are
never printed: ``shown_path`` keeps relative paths and cuts absolute ones to
their file name.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePath

import numpy as np



def fmt_pct(vals: list[float]) -> str:
    """Fractions as percent with two decimals; mean ± sample std over seeds."""
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0] * 100:.2f}"
    return f"{np.mean(vals) * 100:.2f} ± {np.std(vals, ddof=1) * 100:.2f}"


def fmt_num(vals: list[float], digits: int = 2) -> str:
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{np.mean(vals):.{digits}f} ± {np.std(vals, ddof=1):.{digits}f}"


def fmt_count(v: float) -> str:
    """Counts (epochs, steps) as integers; NER's fractional epochs with two decimals."""
    return str(int(v)) if float(v).is_integer() else f"{v:.2f}"


def fmt_ints(vals: list[float]) -> str:
    """One value per seed, joined by '/'."""
    return "/".join(fmt_count(v) for v in vals) if vals else "–"


def pts(x: float) -> str:
    return f"{x:+.2f}"


# ----------------------------------------------------------------------------- document model
# A report is a list of blocks rendered twice: to Markdown and to HTML.


@dataclass
class Doc:
    blocks: list[tuple] = field(default_factory=list)

    def h(self, level: int, text: str):
        self.blocks.append(("h", level, text))

    def p(self, text: str):
        self.blocks.append(("p", text))

    def banner(self, text: str):
        self.blocks.append(("banner", text))

    def table(self, header: list[str], rows: list[list[str]]):
        self.blocks.append(("table", header, rows))

    def img(self, path: Path, alt: str):
        self.blocks.append(("img", Path(path), alt))

    def bullets(self, items: list[str]):
        self.blocks.append(("ul", items))


def render_md(doc: Doc) -> str:
    out = []
    for b in doc.blocks:
        if b[0] == "h":
            out.append("#" * b[1] + " " + b[2])
        elif b[0] == "p":
            out.append(b[1])
        elif b[0] == "banner":
            out.append("> **" + b[1].replace("\n", "\n> ") + "**")
        elif b[0] == "ul":
            out.append("\n".join(f"- {i}" for i in b[1]))
        elif b[0] == "table":
            header, rows = b[1], b[2]
            cell = lambda s: str(s).replace("|", "\\|")
            lines = ["| " + " | ".join(cell(h) for h in header) + " |",
                     "|" + "|".join("---" for _ in header) + "|"]
            lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
            out.append("\n".join(lines))
        elif b[0] == "img":
            out.append(f"![{b[2]}]({b[1].name})")
    return "\n\n".join(out) + "\n"


def _inline_html(text: str) -> str:
    s = html.escape(text)
    s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
    s = re.sub(r"`(.+?)`", r"<code>\1</code>", s)
    s = re.sub(r"\[([^\]]+)\]\(#([\w-]+)\)", r'<a href="#\2">\1</a>', s)  # links to sections
    return s


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;font-size:0.85em;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child,td:nth-child(2){text-align:left}
.banner{background:#fff3cd;border:2px solid #e0a800;padding:0.7em 1em;font-weight:bold;margin:1em 0}
img{max-width:100%;border:1px solid #eee}code{background:#f4f4f4;padding:0 3px}
"""


def render_html(doc: Doc, title: str) -> str:
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"]
    for b in doc.blocks:
        if b[0] == "h":
            out.append(f'<h{b[1]} id="{anchor(b[2])}">{_inline_html(b[2])}</h{b[1]}>')
        elif b[0] == "p":
            out.append(f"<p>{_inline_html(b[1])}</p>")
        elif b[0] == "banner":
            out.append(f'<div class="banner">{_inline_html(b[1])}</div>')
        elif b[0] == "ul":
            out.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in b[1]) + "</ul>")
        elif b[0] == "table":
            rows = ["<tr>" + "".join(f"<th>{_inline_html(h)}</th>" for h in b[1]) + "</tr>"]
            rows += ["<tr>" + "".join(f"<td>{_inline_html(str(c))}</td>" for c in r) + "</tr>" for r in b[2]]
            out.append("<table>" + "".join(rows) + "</table>")
        elif b[0] == "img":
            data = base64.b64encode(b[1].read_bytes()).decode("ascii")
            out.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(b[2])}">'
                       f"<figcaption>{html.escape(b[2])}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"




def anchor(title: str) -> str:
    """The anchor GitHub gives a Markdown heading (lower case, punctuation dropped, spaces to '-')."""
    s = title.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def shown_path(p) -> str:
    """A path as the report may print it: relative paths as they are, absolute ones as their file name."""
    s = str(p)
    return PurePath(s).name if PurePath(s).is_absolute() or re.match(r"^[A-Za-z]:[\\/]", s) else s


_ABS = re.compile(r"(?<![\w.~-])(?:/[\w.+@-]+)+/([\w.+@-]+)")


def scrub_paths(text: str) -> str:
    """Free text (a run's message) with every absolute path cut to its last component."""
    return _ABS.sub(r"\1", str(text))
