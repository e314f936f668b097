"""CVSS 4.0-only advisories reach every severity gate; CPE 2.2 URIs match NVD's names."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from repo_support import CliResult
from sbom._cpe import parse_cpe, uri_to_formatted_string
from sbom._osv import parse_osv
from sbom.audit import audit
from sbom.feeds import read_feed
from sbom.model import SbomComponent
from sbom.vulndb import VulnDb

#: Critical (9.3) in CVSS 4.0; the record carries no other severity.
CVSS4_CRITICAL = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"


def _cvss4_only_record() -> dict[str, Any]:
    return {
        "schema_version": "1.6.0",
        "id": "GHSA-4444-4444-4444",
        "modified": "2025-01-10T00:00:00Z",
        "published": "2025-01-09T00:00:00Z",
        "aliases": ["CVE-2025-44444"],
        "summary": "Remote code execution in infusion-protocol",
        "severity": [{"type": "CVSS_V4", "score": CVSS4_CRITICAL}],
        "affected": [
            {
                "package": {"ecosystem": "npm", "name": "infusion-protocol"},
                "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "2.0.1"}]}],
            }
        ],
    }


def _store(tmp_path: Path, *records: dict[str, Any], name: str = "osv") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for record in records:
        (folder / f"{record['id']}.json").write_text(json.dumps(record), encoding="utf-8")
    path = tmp_path / f"{name}.sqlite"
    with VulnDb.open(path, create=True) as db:
        db.import_feed(read_feed(folder))
    return path


def _sbom(tmp_path: Path, make_sbom: Callable[..., bytes]) -> Path:
    manifest = tmp_path / "components.toml"
    manifest.write_text(
        """
[supplier]
name = "Acme Medical Devices"

[[component]]
name = "infusion-protocol"
version = "2.0.0"
supplier = "Acme Medical Devices"
purl = "pkg:npm/infusion-protocol@2.0.0"
licenses = ["MIT"]
support_level = "supported"
end_of_support = 2031-01-01
""",
        encoding="utf-8",
    )
    path = tmp_path / "release.cdx.json"
    path.write_bytes(make_sbom(components_manifest=manifest, authors=["Acme firmware team"]))
    return path


def test_an_osv_record_with_only_a_cvss4_vector_is_rated_by_its_score() -> None:
    advisory = parse_osv(_cvss4_only_record(), "GHSA-4444-4444-4444.json")
    assert (advisory.cvss_score, advisory.severity) == (9.3, "critical")
    assert advisory.cvss_vector == CVSS4_CRITICAL
    assert advisory.cvss_version == "4.0"


def test_the_higher_of_a_v3_and_a_v4_score_is_kept() -> None:
    record = _cvss4_only_record()
    record["severity"].insert(
        0, {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"}
    )
    advisory = parse_osv(record, "GHSA-4444-4444-4444.json")
    assert (advisory.cvss_score, advisory.cvss_vector) == (9.3, CVSS4_CRITICAL)


@pytest.mark.parametrize("fail_on", ["critical", "high"])
def test_a_cvss4_only_critical_finding_fails_audit_fail_on_with_exit_5(
    run_cli: Callable[..., CliResult],
    make_sbom: Callable[..., bytes],
    tmp_path: Path,
    fail_on: str,
) -> None:
    db = _store(tmp_path, _cvss4_only_record())
    sbom = _sbom(tmp_path, make_sbom)
    result = run_cli("sbom", "audit", sbom, "--db", db, "--fail-on", fail_on)
    assert result.code == 5, result.out + result.err
    assert f"1 open finding(s) fail --fail-on {fail_on}" in result.err
    assert "CRITICAL 9.3 CVE-2025-44444 in infusion-protocol" in result.out


def test_a_store_imported_before_cvss4_scoring_rates_the_finding_when_read(
    run_cli: Callable[..., CliResult], make_sbom: Callable[..., bytes], tmp_path: Path
) -> None:
    db = _store(tmp_path, _cvss4_only_record())
    # What an import by the previous pumpguard left: the vector, no score.
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE advisories SET cvss_score = NULL, severity = 'unknown'")
    conn.close()
    sbom = _sbom(tmp_path, make_sbom)
    result = run_cli("sbom", "audit", sbom, "--db", db, "--fail-on", "high", "--json")
    assert result.code == 5
    [finding] = json.loads(result.out)["findings"]
    assert (finding["severity"], finding["cvss_score"]) == ("critical", 9.3)


# ------------------------------------------------------------------------ CPE
@pytest.mark.parametrize(
    ("uri", "formatted"),
    [
        (
            "cpe:/a:microsoft:visual_c%2b%2b:2015",
            "cpe:2.3:a:microsoft:visual_c\\+\\+:2015:*:*:*:*:*:*:*",
        ),
        # NISTIR 7695 section 6.1.3.5 examples (unbind), bound as in 6.2.2
        (
            "cpe:/a:microsoft:internet_explorer:8.0.6001:beta",
            "cpe:2.3:a:microsoft:internet_explorer:8.0.6001:beta:*:*:*:*:*:*",
        ),
        (
            "cpe:/a:microsoft:internet_explorer:8.%2a:sp%3f",
            "cpe:2.3:a:microsoft:internet_explorer:8.\\*:sp\\?:*:*:*:*:*:*",
        ),
        (
            "cpe:/a:microsoft:internet_explorer:8.%02:sp%01",
            "cpe:2.3:a:microsoft:internet_explorer:8.*:sp?:*:*:*:*:*:*",
        ),
        (
            "cpe:/a:hp:insight_diagnostics:7.4.0.1570::~~online~win2003~x64~",
            "cpe:2.3:a:hp:insight_diagnostics:7.4.0.1570:*:*:*:online:win2003:x64:*",
        ),
        (
            "cpe:/a:hp:openview_network_manager:7.51:-:~~~linux~~",
            "cpe:2.3:a:hp:openview_network_manager:7.51:-:*:*:*:linux:*:*",
        ),
        (
            "cpe:/a:foo%5cbar:big%24money_manager_2010",
            "cpe:2.3:a:foo\\\\bar:big\\$money_manager_2010:*:*:*:*:*:*:*:*",
        ),
        ("cpe:/a:Acme:Pump%7eOS:1.0", "cpe:2.3:a:acme:pump\\~os:1.0:*:*:*:*:*:*:*"),
        ("cpe:/a:acme:pump~os:1.0", "cpe:2.3:a:acme:pump\\~os:1.0:*:*:*:*:*:*:*"),
    ],
)
def test_cpe_uris_bind_to_the_formatted_string_nistir_7695_gives(uri: str, formatted: str) -> None:
    assert uri_to_formatted_string(uri) == formatted


@pytest.mark.parametrize(
    "uri",
    [
        "cpe:/a:foo:bar%07",  # not a form the URI binding uses
        "cpe:/a:microsoft:internet_explorer:8.%01x",  # %01 embedded
        "cpe:/a:microsoft:internet_explorer:8.%02.1",  # %02 embedded
        "cpe:/a:a:b:c:d:e:f:g",  # eight components
        "cpe:/a:hp:product:1.0::~online~win2003",  # a packed edition of three
        "cpe:2.3:a:zlib:zlib:1.2.11:*:*:*:*:*:*:*",  # not a URI
    ],
)
def test_malformed_cpe_uris_are_refused(uri: str) -> None:
    assert uri_to_formatted_string(uri) is None


def test_a_cpe_uri_parses_to_the_parts_of_its_formatted_string() -> None:
    uri = parse_cpe("cpe:/a:microsoft:visual_c%2b%2b:2015")
    formatted = parse_cpe("cpe:2.3:a:microsoft:visual_c\\+\\+:2015:*:*:*:*:*:*:*")
    assert uri == formatted
    assert uri is not None and uri.product == "visual_c\\+\\+"


def _nvd_feed(tmp_path: Path) -> Path:
    feed = {
        "format": "NVD_CVE",
        "version": "2.0",
        "timestamp": "2025-01-01T00:00:00.000",
        "vulnerabilities": [
            {
                "cve": {
                    "id": "CVE-2025-21171",
                    "published": "2025-01-14T18:15:00.000",
                    "lastModified": "2025-01-20T00:00:00.000",
                    "vulnStatus": "Analyzed",
                    "descriptions": [{"lang": "en", "value": "Visual C++ runtime flaw."}],
                    "metrics": {
                        "cvssMetricV31": [
                            {
                                "source": "nvd@nist.gov",
                                "type": "Primary",
                                "cvssData": {
                                    "version": "3.1",
                                    "vectorString": "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H",
                                    "baseScore": 7.8,
                                },
                            }
                        ]
                    },
                    "configurations": [
                        {
                            "nodes": [
                                {
                                    "operator": "OR",
                                    "negate": False,
                                    "cpeMatch": [
                                        {
                                            "vulnerable": True,
                                            "criteria": "cpe:2.3:a:microsoft:visual_c\\+\\+:2015"
                                            ":*:*:*:*:*:*:*",
                                        }
                                    ],
                                }
                            ]
                        }
                    ],
                }
            }
        ],
    }
    path = tmp_path / "nvdcve-2.0-vcpp.json"
    path.write_text(json.dumps(feed), encoding="utf-8")
    return path


def test_a_cpe22_uri_with_percent_escapes_matches_the_nvd_record(tmp_path: Path) -> None:
    db_path = tmp_path / "nvd.sqlite"
    with VulnDb.open(db_path, create=True) as db:
        db.import_feed(read_feed(_nvd_feed(tmp_path)))
    component = SbomComponent(
        bom_ref="vcredist@2015",
        type="library",
        name="Visual C++ Redistributable",
        version="2015",
        cpe="cpe:/a:microsoft:visual_c%2b%2b:2015",
    )
    with VulnDb.open(db_path, readonly=True) as db:
        result = audit([component], db)
    assert [(f.vuln_id, f.matched_by, f.severity) for f in result.findings] == [
        ("CVE-2025-21171", ("cpe",), "high")
    ]
