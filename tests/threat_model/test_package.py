"""``threat_model.package``: the assurance package of a release, reproducible."""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from repo_support import RepoEnv
from sbom.feeds import read_feed
from sbom.vulndb import VulnDb
from sbom_support import audited_components
from signer.bundle import create_release, publish_bundle, sign_bundle
from threat_model.package import PackageInputError, ReleaseVerificationError, build_package
from tm_support import chromium_dom, install_fake_check, require_tool, small_model, write_junit

RELEASE = "sigma-spectrum/1.0.0"
FEEDS = Path(__file__).parent.parent / "sbom" / "fixtures"
WHEN = "2026-01-15T10:00:00Z"


#: The small model's tests: two pass, one fails, one is absent from the run.
OUTCOMES = {
    "tests/device_agent/test_agent_attacks.py::test_rollback_refused": "passed",
    "tests/signer/test_bundle.py::test_threshold": "passed",
    "tests/update_server/test_rollout.py::test_stage": "failed",
}


@dataclass(frozen=True)
class Inputs:
    repo: Path
    root: Path
    db: Path
    junit: Path
    src: Path
    work: Path

    def build(self, out: str, **overrides: object) -> Path:
        args: dict[str, object] = {
            "release": RELEASE,
            "root": self.root,
            "db": self.db,
            "out": self.work / out,
            "repo": self.repo,
            "junit": self.junit,
            "recorded_at": WHEN,
            "model": small_model(),
            "sast_path": self.src,
        }
        args.update(overrides)
        return build_package(**args)  # type: ignore[arg-type]


@pytest.fixture
def inputs(repo_env: RepoEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Inputs:
    require_tool("dot")
    install_fake_check(monkeypatch)
    manifest = tmp_path / "components.toml"
    manifest.write_text(audited_components(zlib_hash=None), encoding="utf-8")
    bundle = repo_env.work / "bundle"
    create_release(
        repo=repo_env.repo,
        product="sigma-spectrum",
        version="1.0.0",
        release_counter=1,
        hardware_ids=("rev-b",),
        firmware=repo_env.firmware("1.0.0"),
        out=bundle,
        components=manifest,
    )
    for name in ("re1", "qa1"):
        sign_bundle(bundle, repo_env.signer(name))
    publish_bundle(bundle, repo_env.repo, repo_env.online)
    root = tmp_path / "trusted-root.json"
    root.write_bytes((repo_env.path / "metadata" / "1.root.json").read_bytes())
    db = tmp_path / "vulndb.sqlite"
    with VulnDb.open(db, create=True) as store:
        for feed in ("osv", "nvdcve-2.0-sample.json", "known_exploited_vulnerabilities.json"):
            store.import_feed(read_feed(FEEDS / feed))
    src = tmp_path / "src" / "app"
    src.mkdir(parents=True)
    (src / "main.py").write_text(
        "# Bandit B404: fixed argv only.\nimport subprocess  # nosec B404\n", encoding="utf-8"
    )
    junit = write_junit(tmp_path / "junit.xml", OUTCOMES)
    return Inputs(repo_env.path, root, db, junit, src.parent, tmp_path)


def _read(package: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(package) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def test_package_contents_manifest_and_open_risks(inputs: Inputs) -> None:
    files = _read(inputs.build("package.zip"))
    for name in (
        "index.html",
        "manifest.json",
        "summary.json",
        "sbom/sbom.cdx.json",
        "sbom/verification.json",
        "sbom/check.json",
        "sbom/check.txt",
        "vulnerabilities/audit.json",
        "vulnerabilities/audit.html",
        "vulnerabilities/vex.cdx.json",
        "threat-model/dfd.svg",
        "threat-model/threats.html",
        "threat-model/traceability.json",
        "threat-model/views.html",
        "sast/bandit.json",
        "sast/bandit.sarif",
        "sast/nosec.json",
        "sast/nosec.md",
        "tests/junit.xml",
        "tests/summary.json",
    ):
        assert name in files, name
    manifest = json.loads(files["manifest.json"])
    assert manifest["recorded_at"] == WHEN and manifest["release"] == RELEASE
    listed = {f["path"]: f for f in manifest["files"]}
    assert set(listed) == set(files) - {"manifest.json"}
    for name, entry in listed.items():
        assert entry["sha256"] == hashlib.sha256(files[name]).hexdigest()
        assert entry["size"] == len(files[name])
    verification = json.loads(files["sbom/verification.json"])
    assert verification["sbom_sha256"] == hashlib.sha256(files["sbom/sbom.cdx.json"]).hexdigest()
    risks = json.loads(files["summary.json"])["open_risks"]
    assert [t["id"] for t in risks["threats_not_acceptable"]] == ["SAFE-MANY"]
    assert any(f["kev"] for f in risks["findings_need_triage"])  # CVE-2023-44487 in x/net
    assert [c["component"] for c in risks["components_past_end_of_support"]] == ["busybox@1.35.0"]
    statuses = {(r["test"], r["status"]) for r in risks["tests"]["not_passed"]}
    assert ("tests/update_server/test_rollout.py::test_stage", "failed") in statuses
    assert ("tests/update_server/test_rollout.py::test_halt", "missing") in statuses
    assert risks["sast"]["blocking_findings"] == []
    trace = json.loads(files["threat-model/traceability.json"])
    assert trace["source"].startswith("junit ") and trace["ok"] is False
    assert json.loads(files["tests/summary.json"])["failed"] == 1


def test_package_is_reproducible(inputs: Inputs) -> None:
    first = inputs.build("a.zip")
    second = inputs.build("b.zip")
    assert first.read_bytes() == second.read_bytes()
    later = inputs.build("c.zip", recorded_at="2026-01-15T18:30:00+02:00")
    a, c = _read(first), _read(later)
    assert sorted(a) == sorted(c)
    differing = sorted(name for name in a if a[name] != c[name])
    assert differing == ["index.html", "manifest.json"]
    assert json.loads(c["manifest.json"])["recorded_at"] == "2026-01-15T16:30:00Z"
    with zipfile.ZipFile(first) as archive:
        infos = archive.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.external_attr >> 16 for i in infos} == {0o100644}


def test_index_renders_in_chromium_and_every_link_resolves(inputs: Inputs, tmp_path: Path) -> None:
    package = inputs.build("package.zip")
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(package) as archive:
        archive.extractall(unpacked)
    dom = chromium_dom(unpacked / "index.html")
    assert "Premarket cybersecurity assurance package: sigma-spectrum/1.0.0" in dom
    assert 'id="open-risks"' in dom and WHEN in dom
    assert "SAFE-MANY" in dom and "busybox@1.35.0" in dom
    for page in sorted(unpacked.rglob("*.html")):
        links = re.findall(r'href="([^"]+)"', page.read_text(encoding="utf-8"))
        assert links or page.name == "audit.html"
        for link in links:
            target = link.split("#")[0]
            if not target:
                continue
            assert "://" not in target, f"{page}: external link {link}"
            assert (page.parent / target).is_file(), f"{page.name}: {link} does not resolve"
    index_links = re.findall(r'href="([^"#]+)', (unpacked / "index.html").read_text())
    assert {str(p.relative_to(unpacked)) for p in unpacked.rglob("*") if p.is_file()} <= {
        *index_links,
        "index.html",
    }


def test_without_junit_no_test_outcome_is_known(inputs: Inputs) -> None:
    files = _read(inputs.build("package.zip", junit=None))
    assert "tests/junit.xml" not in files
    risks = json.loads(files["summary.json"])["open_risks"]
    assert risks["tests"]["results_given"] is False
    assert json.loads(files["threat-model/traceability.json"])["source"] == "not-run"


def test_unknown_release_is_refused(inputs: Inputs) -> None:
    with pytest.raises(ReleaseVerificationError, match=r"sigma-spectrum/9\.9\.9.*not published"):
        inputs.build("x.zip", release="sigma-spectrum/9.9.9")
    assert not (inputs.work / "x.zip").exists()


@pytest.mark.parametrize(
    ("junit_text", "message"),
    [
        (None, "cannot read JUnit file"),
        ("<testsuites><testcase name='x'>", "not well-formed XML"),
        ("<html></html>", "root element is <html>"),
        (
            '<!DOCTYPE x [<!ENTITY a "aaaa">]><testsuites>&a;</testsuites>',
            "declares a DOCTYPE",
        ),
    ],
)
def test_bad_junit_is_refused(inputs: Inputs, junit_text: str | None, message: str) -> None:
    junit = inputs.work / "bad-junit.xml"
    if junit_text is not None:
        junit.write_text(junit_text, encoding="utf-8")
    with pytest.raises(PackageInputError, match=message) as err:
        inputs.build("x.zip", junit=junit)
    assert str(junit) in str(err.value) and err.value.exit_code == 2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"release": "sigma-spectrum"}, "--release"),
        ({"recorded_at": "2026-01-15T10:00:00"}, "no time zone"),
        ({"recorded_at": "yesterday"}, "not an ISO 8601 time"),
        ({"db": Path("/nonexistent/vulndb.sqlite")}, "--db"),
    ],
)
def test_bad_input_is_refused(inputs: Inputs, override: dict[str, object], message: str) -> None:
    with pytest.raises(PackageInputError, match=message):
        inputs.build("x.zip", **override)
