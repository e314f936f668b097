"""``pumpguard vulndb``, ``sbom check``, ``sbom audit``, ``sbom vex``, ``sbom diff``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pumpguard.errors import PumpguardError
from repo_support import CliResult
from sbom import validate_sbom
from sbom.cli import vulndb
from sbom_support import audited_components

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def release_sbom(tmp_path: Path, make_sbom: Callable[..., bytes]) -> Callable[..., Path]:
    """Write the SBOM of a release; kwargs go to :func:`sbom_support.audited_components`."""

    def write(name: str = "old.cdx.json", version: str = "8.1.0", **kwargs: Any) -> Path:
        manifest = tmp_path / f"{name}.toml"
        manifest.write_text(audited_components(**kwargs), encoding="utf-8")
        path = tmp_path / name
        path.write_bytes(
            make_sbom(version=version, components_manifest=manifest, authors=["Acme firmware team"])
        )
        return path

    return write


# ---------------------------------------------------------------------- vulndb
def _vulndb(*args: str | Path) -> CliResult:
    """Run ``pumpguard vulndb ARGS`` as the umbrella's ``main`` would.

    Calls the group directly, so these tests do not depend on the umbrella's
    routing, which :func:`test_umbrella_routes_vulndb_to_the_sbom_package` checks.
    """
    result = CliRunner().invoke(vulndb, [str(a) for a in args])
    if isinstance(result.exception, PumpguardError):
        return CliResult(result.exception.exit_code, result.stdout, f"error: {result.exception}\n")
    return CliResult(result.exit_code, result.stdout, result.stderr)


def test_umbrella_routes_vulndb_to_the_sbom_package(run_cli: Callable[..., CliResult]) -> None:
    result = run_cli("vulndb", "--help")
    assert result.code == 0, "pumpguard/cli.py must map 'vulndb' to sbom.cli:vulndb"
    assert "Import vulnerability feeds" in result.out


def test_vulndb_import_and_status_report_digests(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    result = _vulndb(
        "import",
        FIXTURES / "osv",
        FIXTURES / "nvdcve-2.0-sample.json",
        FIXTURES / "known_exploited_vulnerabilities.json",
        "--db",
        db,
        "--json",
    )
    assert result.code == 0, result.err
    records = json.loads(result.out)
    assert [r["source"] for r in records] == ["osv", "nvd", "kev"]
    assert [r["advisories"] for r in records] == [3, 4, 0]
    assert records[2]["kev_entries"] == 2

    status = _vulndb("status", "--db", db, "--json")
    assert status.code == 0, status.err
    doc = json.loads(status.out)
    assert doc["counts"] == {"osv": 3, "nvd": 4, "kev": 2, "vex_analyses": 0}
    assert [i["sha256"] for i in doc["imports"]] == [r["sha256"] for r in records]


def test_vulndb_import_of_a_corrupt_zip_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "all.zip"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    db = tmp_path / "db.sqlite"
    result = _vulndb("import", bad, "--db", db)
    assert result.code == 2
    assert result.err.startswith(f"error: {bad}: corrupt zip archive")
    assert len(result.err.strip().splitlines()) == 1


def test_vulndb_status_of_a_missing_store_says_how_to_make_one(tmp_path: Path) -> None:
    result = _vulndb("status", "--db", tmp_path / "none.sqlite")
    assert result.code == 1
    assert "pumpguard vulndb import" in result.err


# ----------------------------------------------------------------------- check
def test_check_passes_a_complete_sbom(
    run_cli: Callable[..., CliResult], release_sbom: Callable[..., Path]
) -> None:
    sbom = release_sbom(busybox="1.36.1")
    result = run_cli("sbom", "check", sbom, "--today", "2025-01-01", "--horizon-days", "30")
    assert result.code == 0, result.out + result.err
    assert "policy fda passes" in result.out


def test_check_flags_components_past_or_near_end_of_support(
    run_cli: Callable[..., CliResult], release_sbom: Callable[..., Path]
) -> None:
    sbom = release_sbom()
    result = run_cli("sbom", "check", sbom, "--today", "2025-08-01", "--json")
    assert result.code == 5
    report = json.loads(result.out)
    assert not report["passed"]
    assert [(f["component"], f["element"]) for f in report["failures"]] == [
        ("busybox@1.35.0", "end of support")
    ]
    status = {s["component"]: s["status"] for s in report["support"]}
    assert status == {
        "zlib@1.2.11": "supported",
        "busybox@1.35.0": "ended",
        "golang.org/x/net@0.16.0": "supported",
    }
    assert "fails policy fda: 1 problem(s)" in result.err

    near = run_cli("sbom", "check", sbom, "--today", "2025-01-01", "--policy", "strict", "--json")
    assert near.code == 5
    assert {s["component"]: s["status"] for s in json.loads(near.out)["support"]}[
        "busybox@1.35.0"
    ] == "ending"
    # The same SBOM passes the NTIA policy: the elements are all there.
    assert run_cli("sbom", "check", sbom, "--today", "2025-08-01", "--policy", "ntia").code == 0


def test_check_lists_missing_ntia_elements_per_component(
    run_cli: Callable[..., CliResult],
    make_sbom: Callable[..., bytes],
    tmp_path: Path,
    example_manifest: Path,
) -> None:
    sbom = tmp_path / "sbom.cdx.json"
    sbom.write_bytes(make_sbom(components_manifest=example_manifest))
    result = run_cli("sbom", "check", sbom, "--policy", "ntia", "--json")
    assert result.code == 5
    missing = {(f["component"], f["element"]) for f in json.loads(result.out)["failures"]}
    assert missing == {
        ("mbedtls@3.6.2", "supplier"),
        ("mbedtls@3.6.2", "unique identifier"),
        ("infusion-control@8.1.0", "supplier"),
        ("infusion-control@8.1.0", "unique identifier"),
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not valid JSON"),
        (
            json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.4", "version": 1}).encode(),
            "specVersion is '1.4', pumpguard requires '1.6'",
        ),
        (
            json.dumps(
                {
                    "bomFormat": "CycloneDX",
                    "specVersion": "1.6",
                    "version": 1,
                    "components": [{"type": "gadget", "name": "x"}],
                }
            ).encode(),
            "not valid CycloneDX 1.6",
        ),
    ],
)
@pytest.mark.parametrize("command", ["check", "audit"])
def test_invalid_sboms_are_refused_with_exit_4(
    run_cli: Callable[..., CliResult],
    tmp_path: Path,
    vulndb_path: Path,
    content: bytes,
    message: str,
    command: str,
) -> None:
    sbom = tmp_path / "bad.cdx.json"
    sbom.write_bytes(content)
    extra = ["--db", vulndb_path] if command == "audit" else []
    result = run_cli("sbom", command, sbom, *extra)
    assert result.code == 4
    assert result.err.startswith(f"error: {sbom}: ")
    assert message in result.err


# ----------------------------------------------------------------------- audit
def test_audit_json_reports_findings_kev_and_the_store_imports(
    run_cli: Callable[..., CliResult], release_sbom: Callable[..., Path], vulndb_path: Path
) -> None:
    result = run_cli("sbom", "audit", release_sbom(), "--db", vulndb_path, "--json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert [(f["id"], f["component"]["name"], f["needs_triage"]) for f in doc["findings"]] == [
        ("CVE-2023-44487", "golang.org/x/net", True),  # KEV first
        ("CVE-2022-48174", "busybox", True),  # 9.8
        ("CVE-2018-25032", "zlib", True),  # 7.5
    ]
    first = doc["findings"][0]
    assert first["kev"]["date_added"] == "2023-10-10"
    assert first["fixed_versions"] == ["0.17.0"]
    assert doc["summary"]["needs_triage"] == 3
    assert [i["source"] for i in doc["store"]["imports"]] == ["osv", "nvd", "kev"]
    assert all(len(i["sha256"]) == 64 for i in doc["store"]["imports"])


def test_audit_of_a_fixed_release_reports_nothing(
    run_cli: Callable[..., CliResult], release_sbom: Callable[..., Path], vulndb_path: Path
) -> None:
    sbom = release_sbom(zlib="1.2.12", busybox="1.36.1")
    result = run_cli("sbom", "audit", sbom, "--db", vulndb_path, "--json")
    ids = [f["id"] for f in json.loads(result.out)["findings"]]
    assert ids == ["CVE-2023-44487"]  # only x/net is still old


@pytest.mark.parametrize(
    ("fail_on", "code"),
    [("none", 0), ("open", 5), ("kev", 5), ("critical", 5), ("low", 5)],
)
def test_audit_fail_on_gates_untriaged_findings(
    run_cli: Callable[..., CliResult],
    release_sbom: Callable[..., Path],
    vulndb_path: Path,
    fail_on: str,
    code: int,
) -> None:
    result = run_cli("sbom", "audit", release_sbom(), "--db", vulndb_path, "--fail-on", fail_on)
    assert result.code == code
    if code:
        assert f"fail --fail-on {fail_on}" in result.err


def test_audit_fail_on_passes_once_findings_are_analysed(
    run_cli: Callable[..., CliResult], release_sbom: Callable[..., Path], vulndb_path: Path
) -> None:
    sbom = release_sbom(zlib="1.2.12", busybox="1.36.1")
    assert run_cli("sbom", "audit", sbom, "--db", vulndb_path, "--fail-on", "kev").code == 5
    recorded = run_cli(
        "sbom",
        "vex",
        "record",
        sbom,
        "--db",
        vulndb_path,
        "--vuln",
        "CVE-2023-44487",
        "--component",
        "pkg:golang/golang.org/x/net@v0.16.0",
        "--state",
        "not_affected",
        "--justification",
        "code_not_reachable",
        "--detail",
        "no HTTP/2 server in the pump",
        "--author",
        "J. Reviewer",
    )
    assert recorded.code == 0, recorded.err
    assert run_cli("sbom", "audit", sbom, "--db", vulndb_path, "--fail-on", "kev").code == 0


# ------------------------------------------------------------------------- VEX
def _record(
    run_cli: Callable[..., CliResult], sbom: Path, db: Path, vuln: str, ref: str, *args: str
) -> None:
    result = run_cli(
        "sbom",
        "vex",
        "record",
        sbom,
        "--db",
        db,
        "--vuln",
        vuln,
        "--component",
        ref,
        "--author",
        "qa@acme",
        *args,
    )
    assert result.code == 0, result.err


def test_vex_round_trip_keeps_every_analysis_and_its_history(
    run_cli: Callable[..., CliResult],
    release_sbom: Callable[..., Path],
    vulndb_path: Path,
    tmp_path: Path,
) -> None:
    sbom = release_sbom()
    _record(
        run_cli,
        sbom,
        vulndb_path,
        "CVE-2018-25032",
        "component:zlib@1.2.11",
        "--state",
        "in_triage",
    )
    _record(
        run_cli,
        sbom,
        vulndb_path,
        "CVE-2018-25032",
        "component:zlib@1.2.11",
        "--state",
        "not_affected",
        "--justification",
        "code_not_reachable",
        "--detail",
        "the firmware never deflates",
    )
    _record(
        run_cli,
        sbom,
        vulndb_path,
        "CVE-2022-48174",
        "pkg:generic/busybox@1.35.0",
        "--state",
        "exploitable",
        "--response",
        "update",
        "--response",
        "workaround_available",
        "--detail",
        "ash reachable from the service port; fixed in 8.2.0",
    )
    vex = tmp_path / "vex.cdx.json"
    exported = run_cli("sbom", "vex", "export", sbom, "--db", vulndb_path, "--out", vex, "--json")
    assert exported.code == 0, exported.err
    assert json.loads(exported.out) == {"out": str(vex), "analyses": 2, "statements": 3}
    validate_sbom(vex.read_bytes())
    doc = json.loads(vex.read_bytes())
    zlib = next(v for v in doc["vulnerabilities"] if v["id"] == "CVE-2018-25032")
    assert zlib["analysis"]["state"] == "not_affected"
    assert zlib["analysis"]["justification"] == "code_not_reachable"
    assert zlib["affects"] == [{"ref": "component:zlib@1.2.11"}]

    other = tmp_path / "other.sqlite"
    imported = run_cli("sbom", "vex", "import", vex, "--db", other, "--json")
    assert imported.code == 0, imported.err
    assert json.loads(imported.out)["added"] == 3

    def history(db: Path) -> list[dict[str, Any]]:
        result = run_cli("sbom", "vex", "history", "--db", db, "--json")
        assert result.code == 0, result.err
        return sorted(
            json.loads(result.out), key=lambda a: (a["vuln_id"], a["timestamp"], a["state"])
        )

    assert history(other) == history(vulndb_path)
    # Importing again adds nothing.
    again = run_cli("sbom", "vex", "import", vex, "--db", other, "--json")
    assert json.loads(again.out)["added"] == 0


def test_vex_analyses_carry_forward_to_unchanged_components_only(
    run_cli: Callable[..., CliResult],
    release_sbom: Callable[..., Path],
    vulndb_path: Path,
    tmp_path: Path,
) -> None:
    old = release_sbom()
    # 8.2.0 ships the same components; 8.2.1 ships zlib 1.2.11 rebuilt (other hash).
    new = release_sbom("new.cdx.json", version="8.2.0")
    rebuilt = release_sbom("rebuilt.cdx.json", version="8.2.1", zlib_hash="00" * 32)
    _record(
        run_cli,
        old,
        vulndb_path,
        "CVE-2018-25032",
        "component:zlib@1.2.11",
        "--state",
        "not_affected",
        "--justification",
        "code_not_reachable",
    )
    _record(
        run_cli,
        old,
        vulndb_path,
        "CVE-2022-48174",
        "component:busybox@1.35.0",
        "--state",
        "resolved",
        "--detail",
        "patched",
    )

    vex = tmp_path / "new.vex.json"
    carried = run_cli("sbom", "vex", "carry", old, new, "--db", vulndb_path, "--out", vex, "--json")
    assert carried.code == 0, carried.err
    assert len(json.loads(carried.out)["carried"]) == 2
    validate_sbom(vex.read_bytes())
    audit = json.loads(run_cli("sbom", "audit", new, "--db", vulndb_path, "--json").out)
    states = {f["id"]: (f["analysis"] or {}).get("state") for f in audit["findings"]}
    assert states == {
        "CVE-2018-25032": "not_affected",
        "CVE-2022-48174": "resolved",
        "CVE-2023-44487": None,
    }

    changed = json.loads(
        run_cli("sbom", "vex", "carry", old, rebuilt, "--db", vulndb_path, "--json").out
    )
    assert [c["vuln_id"] for c in changed["not_carried"]] == ["CVE-2018-25032"]
    audit = json.loads(run_cli("sbom", "audit", rebuilt, "--db", vulndb_path, "--json").out)
    zlib = next(f for f in audit["findings"] if f["id"] == "CVE-2018-25032")
    assert zlib["analysis"] is None and zlib["needs_triage"]


def test_vex_file_analyses_apply_in_audit(
    run_cli: Callable[..., CliResult],
    release_sbom: Callable[..., Path],
    vulndb_path: Path,
    tmp_path: Path,
) -> None:
    sbom = release_sbom()
    store = tmp_path / "analyses.sqlite"
    _record(
        run_cli,
        sbom,
        store,
        "CVE-2022-48174",
        "component:busybox@1.35.0",
        "--state",
        "false_positive",
        "--detail",
        "ash is not built",
    )
    vex = tmp_path / "vex.json"
    assert run_cli("sbom", "vex", "export", sbom, "--db", store, "--out", vex).code == 0
    audit = run_cli("sbom", "audit", sbom, "--db", vulndb_path, "--vex", vex, "--json")
    states = {
        f["id"]: (f["analysis"] or {}).get("state") for f in json.loads(audit.out)["findings"]
    }
    assert states["CVE-2022-48174"] == "false_positive"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--component", "component:nope@1", "--state", "in_triage"], "is not a component"),
        (
            ["--component", "component:zlib@1.2.11", "--state", "not_affected"],
            "not_affected needs a justification or a detail",
        ),
        (
            [
                "--component",
                "component:zlib@1.2.11",
                "--state",
                "resolved",
                "--justification",
                "code_not_present",
            ],
            "only given with state not_affected",
        ),
    ],
)
def test_vex_record_refuses_bad_analyses(
    run_cli: Callable[..., CliResult],
    release_sbom: Callable[..., Path],
    tmp_path: Path,
    args: list[str],
    message: str,
) -> None:
    result = run_cli(
        "sbom",
        "vex",
        "record",
        release_sbom(),
        "--db",
        tmp_path / "db.sqlite",
        "--vuln",
        "CVE-2018-25032",
        "--author",
        "qa",
        *args,
    )
    assert result.code == 2
    assert message in result.err


# ------------------------------------------------------------------------ diff
def test_diff_lists_component_changes_and_vulnerabilities_fixed(
    run_cli: Callable[..., CliResult], release_sbom: Callable[..., Path], vulndb_path: Path
) -> None:
    old = release_sbom()
    new = release_sbom(
        "new.cdx.json", version="8.2.0", zlib="1.2.13", busybox="1.36.1", zlib_hash="11" * 32
    )
    result = run_cli("sbom", "diff", old, new, "--db", vulndb_path, "--json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["added"] == [] and doc["removed"] == []
    changes = {c["name"]: c["changes"] for c in doc["changed"]}
    assert changes["zlib"]["version"] == {"old": "1.2.11", "new": "1.2.13"}
    assert changes["zlib"]["hashes"]["new"] == {"SHA-256": "11" * 32}
    assert set(changes["busybox"]) == {"version"}
    assert doc["unchanged"] == 1
    fixed = {(f["id"], f["component"]["name"]) for f in doc["vulnerabilities"]["fixed"]}
    assert fixed == {("CVE-2018-25032", "zlib"), ("CVE-2022-48174", "busybox")}
    assert doc["vulnerabilities"]["introduced"] == []


def test_diff_reports_added_removed_and_introduced(
    run_cli: Callable[..., CliResult],
    release_sbom: Callable[..., Path],
    vulndb_path: Path,
    make_sbom: Callable[..., bytes],
    tmp_path: Path,
) -> None:
    new = release_sbom("new.cdx.json", version="8.2.0")
    manifest = tmp_path / "small.toml"
    manifest.write_text(
        '[[component]]\nname = "busybox"\nversion = "1.36.1"\n'
        'purl = "pkg:generic/busybox@1.36.1"\n'
        'cpe = "cpe:2.3:a:busybox:busybox:1.36.1:*:*:*:*:*:*:*"\n'
    )
    old = tmp_path / "old.cdx.json"
    old.write_bytes(make_sbom(components_manifest=manifest))
    result = run_cli("sbom", "diff", old, new, "--db", vulndb_path)
    assert result.code == 0, result.err
    assert "+ zlib@1.2.11" in result.out
    assert "~ busybox: version 1.36.1 -> 1.35.0; supplier changed; licenses changed" in result.out
    assert "vulnerability introduced: CVE-2022-48174 in busybox@1.35.0" in result.out


# ------------------------------------------------------------------------ help
@pytest.mark.parametrize(
    "command",
    [
        ["sbom", "check"],
        ["sbom", "audit"],
        ["sbom", "diff"],
        ["sbom", "verify"],
        ["sbom", "vex"],
        ["sbom", "vex", "record"],
        ["sbom", "vex", "export"],
        ["sbom", "vex", "import"],
        ["sbom", "vex", "carry"],
        ["sbom", "vex", "history"],
    ],
)
def test_every_command_has_help(run_cli: Callable[..., CliResult], command: list[str]) -> None:
    result = run_cli(*command, "--help")
    assert result.code == 0
    assert "Usage:" in result.out
    assert len(result.out.splitlines()) > 4


@pytest.mark.parametrize("command", [[], ["import"], ["status"]])
def test_every_vulndb_command_has_help(command: list[str]) -> None:
    result = _vulndb(*command, "--help")
    assert result.code == 0
    assert "Usage:" in result.out
    assert len(result.out.splitlines()) > 4
