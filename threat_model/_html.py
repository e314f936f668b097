"""Small helpers for the self-contained HTML pages of the reports and the package.

Every page is one file with inline styles, no scripts, and a
Content-Security-Policy that forbids fetching anything, so it opens offline
and safely from an unzipped package. Every value is HTML-escaped. Rendered
through the shared Jinja2 layer, :mod:`pumpguard.html`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from pumpguard import html as _html

__all__ = ["e", "inline_svg", "page", "table"]

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem; color: #1b1f24; max-width: 90rem; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { margin-top: 2rem; font-size: 1.15rem; }
nav { margin-bottom: 1rem; } nav a { margin-right: 1rem; }
.meta { color: #57606a; }
table { border-collapse: collapse; width: 100%; margin-top: .5rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
code { font-size: .85rem; word-break: break-all; }
.level { font-weight: bold; text-transform: uppercase; font-size: .8rem; padding: 0 .3rem; }
.high, .failed, .missing, .bad { color: #fff; background: #d1242f; }
.medium, .skipped, .warn { background: #f4c542; }
.low, .passed, .good { background: #c8e6c9; }
.not-run { background: #eaeef2; }
.diagram { overflow-x: auto; border: 1px solid #d0d7de; padding: .5rem; margin: .5rem 0; }
.diagram svg { max-width: 100%; height: auto; }
"""

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def e(value: object) -> str:
    """HTML-escape ``value`` (``None`` is the empty string), quotes included."""
    return _html.e(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], css: str = "") -> str:
    """An HTML table; ``headers`` are escaped here, cells must be escaped already."""
    return _html.table(headers, rows, css, sep="\n")


def page(title: str, body: str, nav: Sequence[tuple[str, str]] = ()) -> bytes:
    """A complete UTF-8 HTML document (template ``threat_model/page.html.j2``).

    Args:
        title: Page title (escaped here).
        body: The body's HTML, already escaped.
        nav: ``(href, text)`` links shown at the top (escaped here).
    """
    return _html.render(
        "threat_model/page.html.j2",
        title=title,
        body=_html.escaped(body),
        nav=list(nav),
        csp=_html.escaped(_CSP),
        css=_html.escaped(_CSS),
    ).encode("utf-8")


_PROLOG = re.compile(r"<\?xml[^>]*\?>|<!DOCTYPE[^>]*>|<!--.*?-->", re.DOTALL)


def inline_svg(svg: bytes) -> str:
    """An SVG document made fit to embed in HTML: XML prolog, doctype and comments dropped.

    The SVG comes from Graphviz, which escapes every label it writes.
    """
    return _PROLOG.sub("", svg.decode("utf-8")).strip()
