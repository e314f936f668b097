"""The package's ``summary.json`` (open risks) and ``index.html`` (what a reviewer opens)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from threat_model._evidence import POLICY, SbomEvidence
from threat_model._html import e, page, table
from threat_model._junit import JunitSummary
from threat_model.model import ThreatModel
from threat_model.sast import SastResult
from threat_model.trace import TraceResult

__all__ = ["DESCRIPTIONS", "count_open", "open_risks", "render_index"]

#: What each file of the package is, for the index.
DESCRIPTIONS = {
    "manifest.json": "sha256 and size of every file, and the recorded time",
    "summary.json": "the open risks below, as JSON",
    "sbom/sbom.cdx.json": "the release's SBOM (CycloneDX 1.6), verified through TUF",
    "sbom/verification.json": "how the SBOM was verified: TUF root, firmware binding",
    "sbom/check.json": f"SBOM check (NTIA minimum elements, FDA support facts; policy {POLICY})",
    "sbom/check.txt": "SBOM check, as text",
    "vulnerabilities/audit.html": "vulnerability audit, reviewer's report",
    "vulnerabilities/audit.json": "vulnerability audit, JSON",
    "vulnerabilities/vex.cdx.json": "VEX: the store's analyses for this SBOM (CycloneDX 1.6)",
    "threat-model/threats.html": "threat model: data-flow diagram and threat table",
    "threat-model/threats.csv": "threat table, CSV",
    "threat-model/traceability.html": "traceability: threat, control, implementation, test, result",
    "threat-model/traceability.json": "traceability matrix, JSON",
    "threat-model/traceability.csv": "traceability matrix, CSV",
    "threat-model/views.html": "architecture views: global system, multi-patient harm, "
    "updatability and patchability, security use cases",
    "threat-model/dfd.svg": "data-flow diagram with trust boundaries (SVG)",
    "threat-model/dfd.dot": "data-flow diagram, Graphviz source",
    "sast/bandit.json": "static analysis (bandit), JSON",
    "sast/bandit.sarif": "static analysis (bandit), SARIF 2.1.0",
    "sast/nosec.md": "register of # nosec suppressions with rule and reason",
    "sast/nosec.json": "register of # nosec suppressions, JSON",
    "tests/junit.xml": "the test run's JUnit XML report",
    "tests/summary.json": "test results summary",
}


def open_risks(
    *,
    model: ThreatModel,
    trace: TraceResult | None,
    evidence: SbomEvidence,
    sast: SastResult,
    junit: JunitSummary | None,
) -> dict[str, Any]:
    """Everything a reviewer must look at, as JSON (deterministic, sorted)."""
    findings = evidence.audit.findings
    # Only a passed test is evidence: failed, missing, skipped and not-run all leave
    # their control unproven.
    traced = [] if trace is None else [r for r in trace.rows if r.status != "passed"]
    return {
        "threats_not_acceptable": [
            {"id": t.id, "title": t.title, "level": t.after.level, "score": t.after.score}
            for t in sorted(model.threats, key=lambda t: t.id)
            if not t.after.acceptable
        ],
        "findings_need_triage": [
            {
                "id": f.vuln_id,
                "component": f.component.label,
                "severity": f.severity,
                "kev": f.kev is not None,
            }
            for f in findings
            if f.needs_triage
        ],
        "known_exploited": [
            {
                "id": f.vuln_id,
                "component": f.component.label,
                "state": "needs triage"
                if f.needs_triage or f.analysis is None
                else f.analysis.state,
            }
            for f in findings
            if f.kev is not None
        ],
        "components_past_end_of_support": [
            {"component": s.component, "end_of_support": s.end_of_support}
            for s in evidence.check.support
            if s.status == "ended"
        ],
        "sbom_policy_failures": [
            {"component": p.component or "document", "element": p.element, "message": p.message}
            for p in evidence.check.failures(POLICY)
        ],
        "tests": {
            "results_given": junit is not None,
            "not_passed": [
                {"threat": r.threat, "control": r.control, "test": r.test, "status": r.status}
                for r in sorted(traced, key=lambda r: (r.threat, r.control, r.test))
            ],
            "traceability_problems": [] if trace is None else sorted(trace.problems),
            "junit_not_passed": []
            if junit is None
            else [
                {"test": c.test, "status": c.status}
                for c in junit.not_passed
                if c.status != "skipped"
            ],
        },
        "sast": {
            "blocking_findings": [f.to_json() for f in sast.blocking],
            "unexplained_suppressions": [s.to_json() for s in sast.unexplained],
            "not_scanned": list(sast.errors),
            "low_findings": sum(1 for f in sast.findings if not f.blocking),
        },
    }


def count_open(risks: Mapping[str, Any]) -> dict[str, int]:
    """How many open risks of each kind (missing test results count as one)."""
    tests = risks["tests"]
    sast = risks["sast"]
    return {
        "threats_not_acceptable": len(risks["threats_not_acceptable"]),
        "findings_need_triage": len(risks["findings_need_triage"]),
        "known_exploited": len(risks["known_exploited"]),
        "components_past_end_of_support": len(risks["components_past_end_of_support"]),
        "sbom_policy_failures": len(risks["sbom_policy_failures"]),
        "tests_not_passed": len(tests["not_passed"])
        + len(tests["junit_not_passed"])
        + (0 if tests["results_given"] else 1),
        "sast_problems": len(sast["blocking_findings"])
        + len(sast["unexplained_suppressions"])
        + len(sast["not_scanned"]),
    }


def render_index(
    *,
    release: str,
    recorded_at: str,
    generator: str,
    facts: Mapping[str, str],
    risks: Mapping[str, Any],
    files: Mapping[str, bytes],
) -> bytes:
    """The package's front page: what it is, the open risks, and a link to every file."""
    counts = count_open(risks)
    overview = [
        [
            e(label),
            _badge(counts[key]),
            f'<a href="{e(href)}">{e(href)}</a>',
        ]
        for key, label, href in (
            ("threats_not_acceptable", "threats with unacceptable residual risk",
             "threat-model/threats.html"),
            ("findings_need_triage", "vulnerability findings needing triage",
             "vulnerabilities/audit.html"),
            ("known_exploited", "known exploited vulnerabilities (CISA KEV)",
             "vulnerabilities/audit.html"),
            ("components_past_end_of_support", "components past end of support",
             "sbom/check.txt"),
            ("sbom_policy_failures", f"SBOM {POLICY} policy failures", "sbom/check.txt"),
            ("tests_not_passed", "tests failed, missing or not run",
             "threat-model/traceability.html"),
            ("sast_problems", "static analysis problems", "sast/nosec.md"),
        )
    ]  # fmt: skip
    body = [
        f"<h1>Premarket cybersecurity assurance package: {e(release)}</h1>",
        f'<p class="meta">recorded at <time id="recorded-at">{e(recorded_at)}</time> '
        f"&middot; built by {e(generator)}</p>",
        table(["", ""], [[e(k), f"<code>{e(v)}</code>"] for k, v in facts.items()]),
        '<h2 id="open-risks">Open risks</h2>',
        "<p>Read these first. Each line links to the evidence.</p>",
        table(["open risk", "count", "evidence"], overview, "risks"),
        _details(risks),
        '<h2 id="contents">Contents</h2>',
        '<p>Every file of the package; <a href="manifest.json">manifest.json</a> lists '
        "each one's sha256 and size.</p>",
        table(
            ["file", "what it is", "size", "sha256"],
            [
                [
                    f'<a href="{e(name)}">{e(name)}</a>',
                    e(_describe(name)),
                    e(len(data)),
                    f"<code>{hashlib.sha256(data).hexdigest()}</code>",
                ]
                for name, data in sorted(files.items())
            ],
        ),
    ]
    return page(f"Assurance package: {release}", "\n".join(body))


def _describe(name: str) -> str:
    if name in DESCRIPTIONS:
        return DESCRIPTIONS[name]
    if name.startswith("vulnerabilities/vex-inputs/"):
        return "VEX document given as input to the audit"
    if name.startswith("threat-model/view-"):
        return "architecture view diagram"
    return ""


def _badge(count: int) -> str:
    css = "good" if count == 0 else "bad"
    return f'<span class="level {css}">{count}</span>'


def _details(risks: Mapping[str, Any]) -> str:
    parts = []

    def section(title: str, items: list[str]) -> None:
        if items:
            parts.append(
                f"<h3>{e(title)}</h3><ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"
            )

    section(
        "Threats with unacceptable residual risk",
        [
            f'<a href="threat-model/threats.html#threat-{e(t["id"])}">{e(t["id"])}</a> '
            f"{e(t['title'])}: {e(t['level'])} ({e(t['score'])})"
            for t in risks["threats_not_acceptable"]
        ],
    )
    section(
        "Known exploited vulnerabilities",
        [f"{e(f['id'])} in {e(f['component'])}: {e(f['state'])}" for f in risks["known_exploited"]],
    )
    section(
        "Findings needing triage",
        [
            f"{e(f['id'])} in {e(f['component'])} ({e(f['severity'])})"
            for f in risks["findings_need_triage"]
        ],
    )
    section(
        "Components past end of support",
        [
            f"{e(c['component'])}: ended {e(c['end_of_support'])}"
            for c in risks["components_past_end_of_support"]
        ],
    )
    tests = risks["tests"]
    items = (
        [] if tests["results_given"] else ["no test results were given: no test outcome is known"]
    )
    items += [
        f"{e(r['status'])}: <code>{e(r['test'] or '(none)')}</code> for {e(r['control'])} "
        f"({e(r['threat'])})"
        for r in tests["not_passed"]
    ]
    items += [f"{e(c['status'])}: <code>{e(c['test'])}</code>" for c in tests["junit_not_passed"]]
    items += [e(p) for p in tests["traceability_problems"]]
    section("Tests", items)
    sast = risks["sast"]
    section(
        "Static analysis",
        [
            f"{e(f['rule'])} {e(f['severity'])} at <code>{e(f['file'])}:{e(f['line'])}</code>: "
            f"{e(f['message'])}"
            for f in sast["blocking_findings"]
        ]
        + [
            f"unexplained # nosec at <code>{e(s['file'])}:{e(s['line'])}</code>: "
            f"{e('; '.join(s['problems']))}"
            for s in sast["unexplained_suppressions"]
        ]
        + [f"not scanned: {e(x)}" for x in sast["not_scanned"]],
    )
    return "\n".join(parts)
