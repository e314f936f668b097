"""Which component a VEX statement is about, and VEX documents without times."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from repo_support import CliResult
from sbom.model import SbomComponent, component_identity, load_sbom
from sbom.vex import parse_vex
from sbom.vulndb import VulnDb


# ------------------------------------------- 5. purls without a version
@pytest.fixture
def zlib_release(tmp_path: Path, make_sbom: Callable[..., bytes]) -> Callable[[str, str], Path]:
    """The SBOM of a release shipping zlib VERSION with a versionless purl, as a manifest may."""

    def write(release: str, zlib: str) -> Path:
        manifest = tmp_path / f"components-{release}.toml"
        manifest.write_text(
            "[[component]]\n"
            'name = "zlib"\n'
            f'version = "{zlib}"\n'
            'supplier = "Jean-loup Gailly and Mark Adler"\n'
            'purl = "pkg:generic/zlib"\n'
            f'cpe = "cpe:2.3:a:zlib:zlib:{zlib}:*:*:*:*:*:*:*"\n',
            encoding="utf-8",
        )
        path = tmp_path / f"sbom-{release}.cdx.json"
        path.write_bytes(make_sbom(version=release, components_manifest=manifest))
        return path

    return write


def test_versionless_purl_analysis_does_not_carry_to_another_version(
    run_cli: Callable[..., CliResult],
    zlib_release: Callable[[str, str], Path],
    vulndb_path: Path,
) -> None:
    # Both zlib versions are affected by CVE-2018-25032 (before 1.2.12).
    old, new = zlib_release("8.1.0", "1.2.10"), zlib_release("8.2.0", "1.2.11")
    recorded = run_cli(
        "sbom",
        "vex",
        "record",
        old,
        "--db",
        vulndb_path,
        "--vuln",
        "CVE-2018-25032",
        "--component",
        "component:zlib@1.2.10",
        "--state",
        "not_affected",
        "--justification",
        "code_not_reachable",
        "--author",
        "J. Doe",
        "--json",
    )
    assert recorded.code == 0, recorded.err
    assert json.loads(recorded.out)["component"] == "pkg:generic/zlib@1.2.10"

    carried = run_cli("sbom", "vex", "carry", old, new, "--db", vulndb_path, "--json")
    assert carried.code == 0, carried.err
    doc = json.loads(carried.out)
    assert doc["carried"] == []
    assert [(c["vuln_id"], c["component"]) for c in doc["not_carried"]] == [
        ("CVE-2018-25032", "pkg:generic/zlib@1.2.10")
    ]

    def zlib_finding(sbom: Path) -> dict[str, Any]:
        result = run_cli("sbom", "audit", sbom, "--db", vulndb_path, "--json")
        assert result.code == 0, result.err
        (finding,) = json.loads(result.out)["findings"]
        assert finding["id"] == "CVE-2018-25032"
        return dict(finding)

    assert zlib_finding(old)["analysis"]["state"] == "not_affected"
    assert zlib_finding(new)["analysis"] is None
    assert zlib_finding(new)["needs_triage"]


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        (("pkg:generic/zlib", "1.2.11"), ("pkg:generic/zlib", "1.2.12"), False),
        (("pkg:generic/zlib", "1.2.11"), ("pkg:generic/zlib", "1.2.11"), True),
        # a versionless purl is the same component as the purl with that version
        (("pkg:generic/zlib", "1.2.11"), ("pkg:generic/zlib@1.2.11", "1.2.11"), True),
        (("pkg:generic/zlib?arch=armv7", "1.2.11"), ("pkg:generic/zlib?arch=armv7", "1.3"), False),
    ],
)
def test_versionless_purl_identity_includes_the_component_version(
    first: tuple[str, str], second: tuple[str, str], same: bool
) -> None:
    a, b = (SbomComponent("c", "library", "zlib", v, purl=p) for p, v in (first, second))
    assert (component_identity(a) == component_identity(b)) is same
    assert "@" in component_identity(a)[0]


# --------------------------------------------- 8. VEX without timestamps
#: A CycloneDX 1.6 VEX document as a supplier may send it: valid, and without
#: metadata.timestamp, firstIssued or lastUpdated (all optional in 1.6).
_UNDATED_VEX = {
    "bomFormat": "CycloneDX",
    "specVersion": "1.6",
    "serialNumber": "urn:uuid:0f6d4e1c-9b1a-4a5e-8a55-2d4b7e2f4a10",
    "version": 1,
    "components": [
        {
            "type": "library",
            "bom-ref": "zlib",
            "name": "zlib",
            "version": "1.2.11",
            "purl": "pkg:generic/zlib@1.2.11",
        }
    ],
    "vulnerabilities": [
        {
            "id": "CVE-2018-25032",
            "analysis": {
                "state": "not_affected",
                "justification": "code_not_reachable",
                "detail": "the firmware never deflates",
            },
            "affects": [{"ref": "zlib"}],
        }
    ],
}


def test_vex_without_timestamps_is_imported(
    run_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    data = json.dumps(_UNDATED_VEX).encode()
    doc = load_sbom(data, "supplier.vex.json")  # schema-valid CycloneDX 1.6
    now = datetime.datetime(2025, 3, 1, 12, 0, tzinfo=datetime.UTC)
    (analysis,) = parse_vex(doc, "supplier.vex.json", now=now)
    assert analysis.timestamp == "2025-03-01T12:00:00Z"
    assert analysis.undated
    assert analysis.statement()["undated"] is True

    vex = tmp_path / "supplier.vex.json"
    vex.write_bytes(data)
    store = tmp_path / "vulndb.sqlite"
    first = run_cli("sbom", "vex", "import", vex, "--db", store, "--json")
    assert first.code == 0, first.err
    assert json.loads(first.out)["added"] == 1
    # Importing again (at another time) does not record the statement twice.
    again = run_cli("sbom", "vex", "import", vex, "--db", store, "--json")
    assert json.loads(again.out)["added"] == 0

    history = run_cli("sbom", "vex", "history", "--db", store, "--json")
    (entry,) = json.loads(history.out)
    assert entry["undated"] is True
    assert entry["state"] == "not_affected"
    assert datetime.datetime.fromisoformat(entry["timestamp"]).tzinfo is not None


def test_undated_statement_stays_undated_through_export_and_import(
    run_cli: Callable[..., CliResult], make_sbom: Callable[..., bytes], tmp_path: Path
) -> None:
    manifest = tmp_path / "components.toml"
    manifest.write_text(
        '[[component]]\nname = "zlib"\nversion = "1.2.11"\npurl = "pkg:generic/zlib@1.2.11"\n',
        encoding="utf-8",
    )
    sbom = tmp_path / "sbom.cdx.json"
    sbom.write_bytes(make_sbom(components_manifest=manifest))
    vex = tmp_path / "supplier.vex.json"
    vex.write_text(json.dumps(_UNDATED_VEX), encoding="utf-8")
    store, other = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    assert run_cli("sbom", "vex", "import", vex, "--db", store).code == 0
    exported = tmp_path / "export.vex.json"
    assert run_cli("sbom", "vex", "export", sbom, "--db", store, "--out", exported).code == 0
    assert run_cli("sbom", "vex", "import", exported, "--db", other).code == 0
    with VulnDb.open(store, readonly=True) as a, VulnDb.open(other, readonly=True) as b:
        before, after = a.analyses(), b.analyses()
    assert [(x.key, x.statement()) for x in after] == [(x.key, x.statement()) for x in before]
    (statement,) = after
    assert statement.undated
