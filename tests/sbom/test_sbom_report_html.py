"""The reviewer's HTML report: self-contained, escaped, and readable in a real browser."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest

from repo_support import CliResult

EVIL = "<script>alert(1)</script>"

MANIFEST = f"""
[[component]]
name = "busybox"
version = "1.35.0"
supplier = "{EVIL}"
cpe = "cpe:2.3:a:busybox:busybox:1.35.0:*:*:*:*:*:*:*"
support_level = "limited"
end_of_support = 2020-01-01

[[component]]
name = "nghttp2{EVIL}"
version = "1.56.0"
cpe = "cpe:2.3:a:nghttp2:nghttp2:1.56.0:*:*:*:*:*:*:*"

[[component]]
name = "zlib"
version = "1.2.12"
cpe = "cpe:2.3:a:zlib:zlib:1.2.12:*:*:*:*:*:*:*"
support_level = "supported"
end_of_support = 2099-01-01

[[component]]
name = "infusion-control"
version = "8.1.0"
"""


@pytest.fixture
def report(
    run_cli: Callable[..., CliResult],
    make_sbom: Callable[..., bytes],
    write_manifest: Callable[[str], Path],
    vulndb_path: Path,
    tmp_path: Path,
) -> Path:
    sbom = tmp_path / "sbom.cdx.json"
    sbom.write_bytes(make_sbom(components_manifest=write_manifest(MANIFEST)))
    out = tmp_path / "report.html"
    result = run_cli("sbom", "audit", sbom, "--db", vulndb_path, "--html", out)
    assert result.code == 0, result.err
    return out


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_report_loads_nothing_and_runs_nothing(report: Path) -> None:
    parser = _Elements()
    parser.feed(report.read_text(encoding="utf-8"))
    tags = {tag for tag, _ in parser.tags}
    assert not tags & {"script", "link", "img", "iframe", "object", "embed"}
    assert not [attrs for _, attrs in parser.tags if "src" in attrs or "href" in attrs]
    csp = [a for t, a in parser.tags if t == "meta" and a.get("http-equiv")]
    assert csp and "default-src 'none'" in (csp[0]["content"] or "")


def test_untrusted_names_are_escaped(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    assert EVIL not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def _chromium(ci: bool) -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if ci:
        pytest.fail("chromium is missing (scripts/install-test-deps.sh installs it)")
    pytest.skip("chromium is not installed (scripts/install-test-deps.sh installs it)")


def test_findings_are_visible_in_headless_chromium(report: Path, ci: bool, tmp_path: Path) -> None:
    browser = _chromium(ci)
    env = {**os.environ, "HOME": str(tmp_path)}  # chromium writes its profile there
    dom = subprocess.run(
        [browser, "--headless", "--disable-gpu", "--no-sandbox", "--dump-dom", report.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=env,
    ).stdout

    findings = re.search(r'<table class="findings">(.*?)</table>', dom, re.S)
    assert findings is not None, dom[:2000]
    rows = re.findall(r"<tr>(.*?)</tr>", findings.group(1), re.S)[1:]
    ids = [re.search(r"<b>(CVE-[\d-]+)</b>", row).group(1) for row in rows]  # type: ignore[union-attr]
    # Known-exploited first, then by score; the fixed zlib is not there.
    assert ids == ["CVE-2023-44487", "CVE-2022-48174"]
    assert 'class="kev"' in rows[0]
    assert "needs triage" in rows[1]
    assert "<script>" not in dom  # the escaped names stayed text
    support = re.search(r'<table class="support">(.*?)</table>', dom, re.S)
    assert support is not None and "busybox@1.35.0" in support.group(1)
    assert "ended" in support.group(1)
    assert "not checked (no purl or CPE)" in dom
