"""The threat model's reports: DFD, threat table, traceability matrix, architecture views.

:func:`write_report` writes everything ``pumpguard threats report`` and the
assurance package show. The output is deterministic (sorted, no timestamps),
so building the reports twice from the same model gives the same bytes.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path

from pumpguard.fsutil import atomic_write_bytes
from threat_model._dot import attrs, quote, render_svg
from threat_model._html import e, inline_svg, page, table
from threat_model._views import build_views
from threat_model.errors import AssuranceError
from threat_model.model import ElementKind, Risk, ThreatModel
from threat_model.trace import TEST_STATUSES, TraceResult, TraceRow

__all__ = ["NAV", "planned_rows", "write_report"]

#: The report's pages, linked from the top of each one.
NAV = (
    ("threats.html", "Threats"),
    ("traceability.html", "Traceability"),
    ("views.html", "Architecture views"),
    ("dfd.svg", "Data-flow diagram"),
)

_NO_CONTROL = '<b class="bad">no control</b>'

_SHAPES = {
    ElementKind.ACTOR: {"shape": "box"},
    ElementKind.PROCESS: {"shape": "ellipse"},
    ElementKind.STORE: {"shape": "cylinder"},
    ElementKind.DEVICE: {"shape": "box3d"},
}


def write_report(model: ThreatModel, out: Path, result: TraceResult | None = None) -> list[Path]:
    """Write the threat model's reports into ``out``.

    Args:
        model: The threat model; it is validated first.
        out: The folder to write into (created if missing).
        result: The traceability check's outcome; without it every test is
            shown as ``not-run``.

    Returns:
        The files written, sorted.

    Raises:
        ThreatModelError: The model is inconsistent.
        AssuranceError: A file cannot be written or a diagram cannot be rendered.
    """
    model.validate()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise AssuranceError(f"cannot create {out}: {err.strerror or err}") from err
    files: dict[str, bytes] = {}
    dfd = dfd_dot(model)
    files["dfd.dot"] = dfd.encode("utf-8")
    files["dfd.svg"] = render_svg(dfd, "dfd.svg")
    files["threats.html"] = _threats_html(model, files["dfd.svg"])
    files["threats.csv"] = _threats_csv(model)
    rows = tuple(result.rows) if result is not None else planned_rows(model)
    files["traceability.json"] = _trace_json(model, rows, result)
    files["traceability.csv"] = _trace_csv(rows)
    files["traceability.html"] = _trace_html(model, rows, result)
    sections = []
    for view in build_views(model):
        svg = render_svg(view.dot, f"view-{view.slug}.svg")
        files[f"view-{view.slug}.dot"] = view.dot.encode("utf-8")
        files[f"view-{view.slug}.svg"] = svg
        sections.append(
            f'<h2 id="{e(view.slug)}">{e(view.title)}</h2>\n{view.text}\n'
            f'<div class="diagram">{inline_svg(svg)}</div>\n'
            f'<p><a href="view-{e(view.slug)}.svg">view-{e(view.slug)}.svg</a> · '
            f'<a href="view-{e(view.slug)}.dot">DOT source</a></p>'
        )
    files["views.html"] = page(
        f"Architecture views: {model.name}",
        f"<h1>Architecture views: {e(model.name)}</h1>\n" + "\n".join(sections),
        NAV,
    )
    written = []
    for name in sorted(files):
        path = out / name
        try:
            atomic_write_bytes(path, files[name])
        except OSError as err:
            raise AssuranceError(f"cannot write {path}: {err.strerror or err}") from err
        written.append(path)
    return written


def planned_rows(model: ThreatModel) -> tuple[TraceRow, ...]:
    """The traceability matrix before any test ran: every status ``not-run``.

    A threat without controls, or a control without tests, still gets a row
    (with an empty control or test), so the gap shows.
    """
    rows: list[TraceRow] = []
    for threat in model.threats:
        if not threat.controls:
            rows.append(TraceRow(threat.id, "", (), "", "not-run"))
        for cid in threat.controls:
            control = model.control(cid)
            if not control.tests:
                rows.append(TraceRow(threat.id, cid, control.implemented_in, "", "not-run"))
            rows += [
                TraceRow(threat.id, cid, control.implemented_in, test, "not-run")
                for test in control.tests
            ]
    return tuple(rows)


# --------------------------------------------------------------------- DFD
def dfd_dot(model: ThreatModel) -> str:
    """The data-flow diagram as DOT: boundaries as clusters, crossing flows in red."""
    lines = [
        "digraph dfd {",
        "  graph "
        + attrs(
            {
                "label": f"Data-flow diagram: {model.name}",
                "labelloc": "t",
                "fontname": "Helvetica",
                "fontsize": "14",
                "rankdir": "TB",
                "newrank": "true",
            }
        )
        + ";",
        '  node [fontname="Helvetica", fontsize="10"];',
        '  edge [fontname="Helvetica", fontsize="9"];',
    ]
    for b in sorted(model.boundaries, key=lambda x: x.id):
        members = sorted((el for el in model.elements if el.boundary == b.id), key=lambda x: x.id)
        lines.append(f"  subgraph {quote('cluster_' + b.id)} {{")
        lines.append(
            "    graph "
            + attrs(
                {
                    "label": f"trust boundary: {b.name}",
                    "tooltip": b.description,
                    "style": "dashed",
                    "color": "#6f42c1",
                    "id": f"boundary-{b.id}",
                }
            )
            + ";"
        )
        for el in members:
            values = {
                "label": f"{el.name}\n[{el.kind.value}]",
                "tooltip": el.description,
                "id": f"el-{el.id}",
                **_SHAPES[el.kind],
            }
            lines.append(f"    {quote('el-' + el.id)} {attrs(values)};")
        lines.append("  }")
    for f in sorted(model.flows, key=lambda x: x.id):
        label = f"{f.id}: {f.data}" + (f"\n({f.protocol})" if f.protocol else "")
        values = {"label": label, "id": f"flow-{f.id}"}
        if model.crossing(f):
            # Boundary-crossing flows are where attacks enter: drawn bold and red.
            values.update({"color": "#d1242f", "fontcolor": "#d1242f", "penwidth": "2.5"})
        lines.append(f"  {quote('el-' + f.source)} -> {quote('el-' + f.target)} {attrs(values)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------ threat table
def _risk(risk: Risk) -> str:
    return f'<span class="level {e(risk.level)}">{e(risk.level)}</span> {e(risk.score)}'


def _threats_html(model: ThreatModel, dfd_svg: bytes) -> bytes:
    threats = sorted(model.threats, key=lambda t: t.id)
    rows = []
    for t in threats:
        targets = "<br>".join(f"<code>{e(x)}</code>" for x in t.targets)
        controls = "<br>".join(
            f'<a href="traceability.html#control-{e(c)}">{e(c)}</a> {e(model.control(c).title)}'
            for c in t.controls
        )
        residual = _risk(t.after) + ("" if t.after.acceptable else ' <b class="bad">open</b>')
        cvss = f"<br><code>{e(t.cvss)}</code>" if t.cvss else ""
        rows.append(
            [
                f'<code id="threat-{e(t.id)}">{e(t.id)}</code>',
                e(t.category.value),
                targets,
                f"<b>{e(t.title)}</b><br>{e(t.description)}",
                _risk(t.before) + cvss,
                residual,
                controls,
            ]
        )
    counts = Counter(t.after.level for t in threats)
    open_ = [t for t in threats if not t.after.acceptable]
    body = [
        f"<h1>Threat model: {e(model.name)}</h1>",
        f'<p class="meta">{len(threats)} threats, {len(model.controls)} controls; residual '
        f"risk high {counts['high']}, medium {counts['medium']}, low {counts['low']}; "
        f"not acceptable: {len(open_)}</p>",
        "<p>Risk = exploitability &times; severity (1-25): high &ge; 15, medium &ge; 8. "
        "Residual risk is acceptable when low, or medium without a catastrophic severity.</p>",
        '<h2 id="dfd">Data-flow diagram</h2>',
        f'<div class="diagram">{inline_svg(dfd_svg)}</div>',
        '<p><a href="dfd.svg">dfd.svg</a> · <a href="dfd.dot">DOT source</a></p>',
        '<h2 id="threats">Threats</h2>',
        '<p><a href="threats.csv">threats.csv</a></p>',
        table(
            ["id", "category", "targets", "threat", "risk before", "residual risk", "controls"],
            rows,
            "threats",
        ),
    ]
    if model.assumptions:
        body.append('<h2 id="assumptions">Assumptions</h2>')
        body.append("<ul>" + "".join(f"<li>{e(a)}</li>" for a in model.assumptions) + "</ul>")
    return page(f"Threat model: {model.name}", "\n".join(body), NAV)


def _csv(header: list[str], rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _threats_csv(model: ThreatModel) -> bytes:
    return _csv(
        [
            "id",
            "title",
            "category",
            "targets",
            "description",
            "risk_before",
            "level_before",
            "risk_after",
            "level_after",
            "acceptable",
            "controls",
            "cvss",
        ],
        [
            [
                t.id,
                t.title,
                t.category.value,
                ";".join(t.targets),
                t.description,
                str(t.before.score),
                t.before.level,
                str(t.after.score),
                t.after.level,
                "yes" if t.after.acceptable else "no",
                ";".join(t.controls),
                t.cvss or "",
            ]
            for t in sorted(model.threats, key=lambda t: t.id)
        ],
    )


# ------------------------------------------------------------ traceability
def _sorted(rows: tuple[TraceRow, ...]) -> list[TraceRow]:
    return sorted(rows, key=lambda r: (r.threat, r.control, r.test))


def _trace_json(
    model: ThreatModel, rows: tuple[TraceRow, ...], result: TraceResult | None
) -> bytes:
    counts = Counter(r.status for r in rows)
    doc = {
        "model": model.name,
        "source": result.source if result is not None else "not-run",
        "ok": result.ok if result is not None else None,
        "problems": sorted(result.problems) if result is not None else [],
        "summary": {s: counts[s] for s in TEST_STATUSES},
        "rows": [
            {
                "threat": r.threat,
                "control": r.control,
                "implemented_in": list(r.implemented_in),
                "test": r.test,
                "status": r.status,
            }
            for r in _sorted(rows)
        ],
    }
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _trace_csv(rows: tuple[TraceRow, ...]) -> bytes:
    return _csv(
        ["threat", "control", "implemented_in", "test", "status"],
        [
            [r.threat, r.control, ";".join(r.implemented_in), r.test, r.status]
            for r in _sorted(rows)
        ],
    )


def _trace_html(
    model: ThreatModel, rows: tuple[TraceRow, ...], result: TraceResult | None
) -> bytes:
    counts = Counter(r.status for r in rows)
    anchored: set[str] = set()
    cells = []
    for r in _sorted(rows):
        anchor = ""
        if r.control and r.control not in anchored:
            anchored.add(r.control)
            anchor = f' id="control-{e(r.control)}"'
        cells.append(
            [
                f'<a href="threats.html#threat-{e(r.threat)}">{e(r.threat)}</a>',
                f"<code{anchor}>{e(r.control)}</code>" if r.control else _NO_CONTROL,
                "<br>".join(f"<code>{e(i)}</code>" for i in r.implemented_in),
                f"<code>{e(r.test)}</code>" if r.test else '<b class="bad">no test</b>',
                f'<span class="level {e(r.status)}">{e(r.status)}</span>',
            ]
        )
    if result is None:
        verdict = "<p><b>Tests not run</b>: no test results were given, so no outcome is known.</p>"
    elif result.ok:
        verdict = (
            f'<p><span class="level good">passes</span> (outcomes from {e(result.source)})</p>'
        )
    else:
        verdict = (
            f'<p><span class="level bad">fails</span> (outcomes from {e(result.source)}): '
            f"{len(result.problems)} problem(s)</p><ul>"
            + "".join(f"<li>{e(p)}</li>" for p in sorted(result.problems))
            + "</ul>"
        )
    summary = ", ".join(f"{e(s)} {counts[s]}" for s in TEST_STATUSES)
    body = "\n".join(
        [
            f"<h1>Traceability: {e(model.name)}</h1>",
            "<p>Threat → control → implementation → test → result.</p>",
            verdict,
            f'<p class="meta">{len(rows)} rows: {summary}</p>',
            '<p><a href="traceability.json">traceability.json</a> · '
            '<a href="traceability.csv">traceability.csv</a></p>',
            table(["threat", "control", "implemented in", "test", "result"], cells, "trace"),
        ]
    )
    return page(f"Traceability: {model.name}", body, NAV)
