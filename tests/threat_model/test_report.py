"""``threat_model.report``: DFD, threat table, traceability and the four architecture views."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path

import pytest

from threat_model.errors import ThreatModelError
from threat_model.report import write_report
from threat_model.trace import TraceResult, TraceRow
from tm_support import chromium_dom, require_tool, small_model

EXPECTED = {
    "dfd.dot",
    "dfd.svg",
    "threats.csv",
    "threats.html",
    "traceability.csv",
    "traceability.html",
    "traceability.json",
    "views.html",
    *(
        f"view-{slug}.{ext}"
        for slug in ("global-system", "multi-patient-harm", "updatability", "security-use-cases")
        for ext in ("dot", "svg")
    ),
}


@pytest.fixture
def report(tmp_path: Path) -> Path:
    require_tool("dot")
    out = tmp_path / "report"
    written = write_report(small_model(), out)
    assert [p.name for p in written] == sorted(EXPECTED)
    return out


def test_report_writes_every_file(report: Path) -> None:
    assert {p.name for p in report.iterdir()} == EXPECTED


def test_dfd_has_boundaries_as_clusters_and_highlights_crossing_flows(report: Path) -> None:
    dot = (report / "dfd.dot").read_text()
    for boundary in ("release", "cloud", "pump"):
        assert f'subgraph "cluster_{boundary}"' in dot
    lines = {
        line.split("id=")[1].split(",")[0]: line for line in dot.splitlines() if "flow-" in line
    }
    assert "#d1242f" in lines['"flow-F3"']  # signer -> server crosses a boundary
    assert "#d1242f" not in lines['"flow-F1"']  # engineer -> signer does not
    assert 'shape="cylinder"' in dot  # the database is a store
    assert 'shape="box3d"' in dot  # the HSM is a device


def test_dfd_svg_renders_in_headless_chromium(report: Path) -> None:
    dom = chromium_dom(report / "dfd.svg")
    assert "<svg" in dom
    for text in ("Release engineer", "trust boundary: Update service", "F5: TUF metadata"):
        assert text in dom
    assert 'id="el-agent"' in dom and 'id="boundary-pump"' in dom


def test_threat_table_escapes_text_and_lists_risks(tmp_path: Path) -> None:
    require_tool("dot")
    model = small_model()
    hostile = dataclasses.replace(
        model.threats[0], title='<script>alert("x")</script>', description="a & b"
    )
    model = dataclasses.replace(model, threats=(hostile, *model.threats[1:]))
    write_report(model, tmp_path)
    page = (tmp_path / "threats.html").read_text()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "a &amp; b" in page
    assert "Content-Security-Policy" in page
    rows = list(csv.DictReader(io.StringIO((tmp_path / "threats.csv").read_text())))
    assert [r["id"] for r in rows] == ["DB-LEAK", "SAFE-MANY", "TUF-ROLLBACK"]
    safe = rows[1]
    assert (safe["risk_before"], safe["level_before"]) == ("15", "high")
    assert (safe["risk_after"], safe["level_after"], safe["acceptable"]) == ("10", "medium", "no")
    assert safe["controls"] == "C-TWO-PERSON;C-STAGED"


def test_traceability_without_result_is_not_run(report: Path) -> None:
    doc = json.loads((report / "traceability.json").read_text())
    assert doc["source"] == "not-run" and doc["ok"] is None
    assert {r["status"] for r in doc["rows"]} == {"not-run"}
    assert len(doc["rows"]) == 6  # rollback 1, two-person 1 + staged 2, staged 2 again
    assert "Tests not run" in (report / "traceability.html").read_text()


def test_traceability_shows_outcomes_and_problems(tmp_path: Path) -> None:
    require_tool("dot")
    rows = (
        TraceRow("TUF-ROLLBACK", "C-ROLLBACK", ("device_agent.agent",), "tests/a.py::t1", "passed"),
        TraceRow("DB-LEAK", "C-STAGED", ("update_server",), "tests/b.py::t2", "failed"),
    )
    result = TraceResult(rows, ("tests/b.py::t2 failed",), "junit run.xml")
    write_report(small_model(), tmp_path, result)
    doc = json.loads((tmp_path / "traceability.json").read_text())
    assert doc["ok"] is False and doc["problems"] == ["tests/b.py::t2 failed"]
    assert [r["status"] for r in doc["rows"]] == ["failed", "passed"]  # sorted by threat
    assert doc["summary"]["passed"] == 1 and doc["summary"]["failed"] == 1
    page = (tmp_path / "traceability.html").read_text()
    assert "junit run.xml" in page and 'id="control-C-ROLLBACK"' in page
    lines = (tmp_path / "traceability.csv").read_text().splitlines()
    assert lines[0] == "threat,control,implemented_in,test,status"


def test_architecture_views_are_derived_from_the_model(report: Path) -> None:
    page = (report / "views.html").read_text()
    for title in (
        "Global system view",
        "Multi-patient harm view",
        "Updatability and patchability view",
        "Security use cases view",
    ):
        assert title in page
    harm = (report / "view-multi-patient-harm.dot").read_text()
    assert '"many-pumps"' in harm
    assert "C-TWO-PERSON" in harm and "C-ROLLBACK" in harm  # controls bounding the blast radius
    assert "check-in report" not in harm  # flows leaving the pump do not carry the release
    assert "waiting-for-safe-window" in (report / "view-updatability.dot").read_text()
    assert "<svg" in (report / "view-security-use-cases.svg").read_text()


def test_report_is_deterministic(tmp_path: Path) -> None:
    require_tool("dot")
    a, b = tmp_path / "a", tmp_path / "b"
    write_report(small_model(), a)
    write_report(small_model(), b)
    for name in EXPECTED:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_inconsistent_model_is_refused(tmp_path: Path) -> None:
    model = small_model()
    broken = dataclasses.replace(model.threats[0], controls=("C-NOWHERE",))
    with pytest.raises(ThreatModelError, match="C-NOWHERE"):
        write_report(dataclasses.replace(model, threats=(broken,)), tmp_path)


def test_report_of_the_real_catalogue(tmp_path: Path) -> None:
    """Smoke test of the project's own model (skipped until the catalogue exists)."""
    require_tool("dot")
    catalogue = pytest.importorskip("threat_model.catalogue")
    written = write_report(catalogue.build_model(), tmp_path)
    assert {p.name for p in written} == EXPECTED
    assert "<svg" in (tmp_path / "dfd.svg").read_text()
