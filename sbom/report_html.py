"""The reviewer's HTML report: one self-contained page, safe to open offline.

Everything shown comes from documents pumpguard did not write (component
names, advisory summaries, analysis details), so every value is HTML-escaped,
and the page loads nothing: its styles are inline, it has no scripts, and its
Content-Security-Policy forbids fetching anything. Pure: builds a string,
through the shared Jinja2 layer (:mod:`pumpguard.html`, ``sbom/templates``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pumpguard import html as _html
from sbom.audit import SEVERITIES, AuditResult, Finding
from sbom.check import CheckReport
from sbom.model import SbomComponent
from sbom.vulndb import ImportRecord

__all__ = ["render_report"]

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem; color: #1b1f24; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { margin-top: 2rem; font-size: 1.15rem; }
.meta { color: #57606a; }
table { border-collapse: collapse; width: 100%; margin-top: .5rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
.counts td { text-align: center; font-size: 1.1rem; }
.sev { font-weight: bold; text-transform: uppercase; font-size: .8rem; }
.critical { color: #fff; background: #8b0000; } .high { color: #fff; background: #d1242f; }
.medium { background: #f4c542; } .low { background: #c8e6c9; }
.none, .unknown { background: #eaeef2; }
.kev { color: #fff; background: #6f42c1; font-weight: bold; padding: 0 .3rem; }
.triage { color: #d1242f; font-weight: bold; }
.ended { color: #fff; background: #d1242f; } .ending { background: #f4c542; }
code { font-size: .85rem; word-break: break-all; }
"""


_CSP = "default-src 'none'; style-src 'unsafe-inline'"

_e = _html.e


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], css: str = "") -> str:
    return _html.table(headers, rows, css)


def render_report(
    *,
    title: str,
    subject: dict[str, Any],
    components: Sequence[SbomComponent],
    result: AuditResult,
    check: CheckReport | None,
    imports: Sequence[ImportRecord],
    generated: str,
) -> str:
    """Render the audit of one SBOM as an HTML page.

    Args:
        title: The page title, e.g. the SBOM's file name.
        subject: The SBOM's ``metadata.component`` (the firmware), or ``{}``.
        components: The SBOM's components.
        result: The audit.
        check: The SBOM's check (for support dates), if made.
        imports: The store's imports, so the reader knows what was matched against.
        generated: When the report was made, ISO 8601.

    Returns:
        The complete HTML document.
    """
    counts = result.counts()
    summary = _table(
        [
            "components",
            "findings",
            *SEVERITIES,
            "known exploited",
            "need triage",
            "not checked",
        ],
        [
            [
                _e(result.components),
                _e(counts["findings"]),
                *(_e(counts[s]) for s in SEVERITIES),
                _e(counts["kev"]),
                _e(counts["needs_triage"]),
                _e(len(result.unidentified)),
            ]
        ],
        "counts",
    )
    sources = _table(
        ["source", "file", "sha256", "advisories", "KEV entries", "imported"],
        [
            [
                _e(r.source),
                _e(r.name),
                f"<code>{_e(r.sha256)}</code>",
                _e(r.advisories),
                _e(r.kev_entries),
                _e(r.imported_at),
            ]
            for r in imports
        ],
    )
    # Fragments are escaped where they are built; the template escapes the rest.
    return _html.render(
        "sbom/report.html.j2",
        csp=_html.escaped(_CSP),
        css=_html.escaped(_CSS),
        title=title,
        name=subject.get("name", title),
        version=subject.get("version", ""),
        generated=generated,
        summary=_html.escaped(summary),
        findings=_html.escaped(_findings(result.findings)),
        support=None if check is None else _html.escaped(_support(check)),
        components=_html.escaped(_components(components, result)),
        sources=_html.escaped(sources),
    )


def _findings(findings: Sequence[Finding]) -> str:
    if not findings:
        return "<p>No known vulnerability affects these components.</p>"
    rows = []
    for f in findings:
        kev = ""
        if f.kev is not None:
            kev = f'<span class="kev">KEV</span> added {_e(f.kev.date_added)}'
            if f.kev.due_date:
                kev += f", due {_e(f.kev.due_date)}"
        analysis = '<span class="triage">needs triage</span>'
        if f.analysis is not None:
            a = f.analysis
            analysis = _e(a.state) + (f" ({_e(a.justification)})" if a.justification else "")
            if a.responses:
                analysis += "; response: " + _e(", ".join(a.responses))
            if a.detail:
                analysis += f"<br>{_e(a.detail)}"
            analysis += f"<br><small>{_e(a.author)} {_e(a.timestamp)}</small>"
            if f.needs_triage:
                analysis = '<span class="triage">needs triage</span><br>' + analysis
        score = "" if f.cvss_score is None else f"{f.cvss_score:.1f}"
        identifier = f.component.purl or f.component.cpe
        rows.append(
            [
                f'<span class="sev {_e(f.severity)}">{_e(f.severity)}</span> {_e(score)}'
                + (f"<br><code>{_e(f.cvss_vector)}</code>" if f.cvss_vector else ""),
                f"<b>{_e(f.vuln_id)}</b>"
                + (f"<br><small>{_e(', '.join(f.aliases))}</small>" if f.aliases else ""),
                kev,
                f"{_e(f.component.label)}<br><code>{_e(identifier)}</code>",
                _e(", ".join(f.fixed_versions)),
                _e(f.summary) + "".join(f"<br><small>note: {_e(n)}</small>" for n in f.notes),
                analysis,
            ]
        )
    return _table(
        [
            "severity",
            "vulnerability",
            "known exploited",
            "component",
            "fixed in",
            "summary",
            "analysis (VEX)",
        ],
        rows,
        "findings",
    )


def _support(check: CheckReport) -> str:
    flagged = [s for s in check.support if s.status in ("ended", "ending", "unknown")]
    if not flagged:
        return "<p>Every component is supported beyond the horizon.</p>"
    rows = []
    for s in sorted(flagged, key=lambda s: (s.days_left is None, s.days_left or 0)):
        days = "" if s.days_left is None else str(s.days_left)
        rows.append(
            [
                _e(s.component),
                f'<span class="{_e(s.status)}">{_e(s.status)}</span>',
                _e(s.end_of_support or "not stated"),
                _e(days),
                _e(s.support_level or "not stated"),
            ]
        )
    intro = (
        f"<p>Components whose support has ended, ends within {_e(check.horizon_days)} days "
        f"of {_e(check.today.isoformat())}, or is not known.</p>"
    )
    return intro + _table(
        ["component", "status", "end of support", "days left", "support level"], rows, "support"
    )


def _components(components: Sequence[SbomComponent], result: AuditResult) -> str:
    per_component: dict[str | None, int] = {}
    for f in result.findings:
        per_component[f.component.bom_ref] = per_component.get(f.component.bom_ref, 0) + 1
    unchecked = {id(c): why for c, why in result.not_checked()}
    rows = [
        [
            _e(c.name),
            _e(c.version or ""),
            _e(c.supplier or "not stated"),
            f"<code>{_e(c.purl or '')}</code><br><code>{_e(c.cpe or '')}</code>",
            _e(", ".join(c.licenses)),
            _e(c.support_level or "not stated"),
            _e(c.end_of_support or "not stated"),
            f"not checked ({_e(unchecked[id(c)])})"
            if id(c) in unchecked
            else _e(per_component.get(c.bom_ref, 0)),
        ]
        for c in components
    ]
    return _table(
        [
            "name",
            "version",
            "supplier",
            "identifiers",
            "licenses",
            "support level",
            "end of support",
            "findings",
        ],
        rows,
        "components",
    )
