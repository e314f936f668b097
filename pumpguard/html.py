"""The one HTML layer of the reports and the assurance package.

Every page is rendered by Jinja2 with autoescaping on and undefined names an
error, from templates shipped as package data (``<package>/templates/*.html.j2``,
addressed as ``"<package>/<name>"``). Values handed to a template are escaped
there; a fragment already escaped (a table cell, an embedded SVG) is passed as
:func:`escaped`. The pages have no scripts.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, PrefixLoader, StrictUndefined
from markupsafe import Markup

__all__ = ["e", "escaped", "render", "table"]

_PACKAGES = ("pumpguard", "sbom", "threat_model")


@cache
def _environment() -> Environment:
    loader = PrefixLoader({p: PackageLoader(p, "templates") for p in _PACKAGES})
    return Environment(
        loader=loader,
        autoescape=True,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        auto_reload=False,
        finalize=_finalize,
    )


def _finalize(value: object) -> object:
    # One escaping everywhere: the templates' output matches :func:`e`.
    return value if isinstance(value, Markup) else escaped(e(value))


def escaped(fragment: str) -> Markup:
    """Mark ``fragment`` as HTML already escaped (built with :func:`e`, or a constant).

    The one place the layer trusts a string, so a reviewer checks the callers.
    """
    # Callers pass fragments escaped with e() or constants.
    return Markup(fragment)  # noqa: S704  # nosec B704


def e(value: object) -> str:
    """HTML-escape ``value`` (``None`` is the empty string), quotes included."""
    return html.escape("" if value is None else str(value), quote=True)


def render(template: str, **context: Any) -> str:
    """Render ``"<package>/<name>.html.j2"`` with ``context`` (escaped unless Markup)."""
    return _environment().get_template(template).render(**context)


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    css: str = "",
    *,
    sep: str = "",
) -> str:
    """An HTML table; ``headers`` and ``css`` are escaped here, cells must be escaped already.

    ``sep`` is written between rows (and around the body when not empty).
    """
    return render(
        "pumpguard/table.html.j2",
        headers=headers,
        rows=[[escaped(cell) for cell in row] for row in rows],
        css=css,
        sep=escaped(e(sep)),
    )
