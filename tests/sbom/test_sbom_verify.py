"""``pumpguard sbom verify``: the SBOM fetched through TUF is the published firmware's."""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pumpguard.release import ReleaseInfo
from repo_support import CliResult, RepoEnv
from sbom.binding import check_release_binding
from sbom.errors import SbomVerificationError
from signer.bundle import publish_bundle

RELEASE = "sigma-spectrum/1.0.0"


@pytest.fixture
def published(repo_env: RepoEnv) -> RepoEnv:
    publish_bundle(repo_env.bundle("1.0.0", 1), repo_env.repo, repo_env.online)
    return repo_env


def _root(env: RepoEnv) -> Path:
    # The root the verifier was given out of band: the repository's first.
    path = env.work / "trusted-root.json"
    path.write_bytes((env.path / "metadata" / "1.root.json").read_bytes())
    return path


def _sbom_target(env: RepoEnv) -> Path:
    (path,) = (env.path / "targets" / "sigma-spectrum" / "1.0.0").glob("*.sbom.cdx.json")
    return path


def test_verify_local_repository_through_tuf(
    published: RepoEnv, run_cli: Callable[..., CliResult]
) -> None:
    out = published.work / "verified.cdx.json"
    result = run_cli(
        "sbom",
        "verify",
        "--repo",
        published.path,
        "--release",
        RELEASE,
        "--root",
        _root(published),
        "--out",
        out,
        "--json",
    )
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    firmware = published.firmware("1.0.0").read_bytes()
    assert doc["verified"] is True
    assert doc["firmware_sha256"] == hashlib.sha256(firmware).hexdigest()
    assert out.read_bytes() == _sbom_target(published).read_bytes()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server(published: RepoEnv, tmp_path: Path) -> Iterator[str]:
    """Serves the repository at /tuf/metadata/ and /tuf/targets/, like the update server."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "tuf").symlink_to(published.path)
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_verify_over_http(
    published: RepoEnv, server: str, run_cli: Callable[..., CliResult]
) -> None:
    result = run_cli(
        "sbom", "verify", "--server", server, "--release", RELEASE, "--root", _root(published)
    )
    assert result.code == 0, result.err
    assert "verified through TUF" in result.out


@pytest.mark.parametrize(
    "tamper",
    [
        lambda data: data.replace(b'"rev-b"', b'"rev-x"', 1),  # same length, other hash
        lambda data: data + b" ",  # longer than signed
    ],
    ids=["changed", "appended"],
)
def test_tampered_sbom_target_fails_verification(
    published: RepoEnv, run_cli: Callable[..., CliResult], tamper: Callable[[bytes], bytes]
) -> None:
    target = _sbom_target(published)
    data = target.read_bytes()
    assert tamper(data) != data
    target.write_bytes(tamper(data))
    result = run_cli(
        "sbom", "verify", "--repo", published.path, "--release", RELEASE, "--root", _root(published)
    )
    assert result.code == 4
    assert result.err.startswith("error: TUF verification failed")


def test_a_root_the_repository_does_not_chain_to_is_refused(
    published: RepoEnv, run_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    from tuf.api.metadata import Metadata

    forged = Metadata.from_bytes(_root(published).read_bytes())
    forged.signed.version = 1
    forged.signatures.clear()
    forged.sign(published.signer("outsider"))
    root = tmp_path / "forged-root.json"
    root.write_bytes(forged.to_bytes())
    result = run_cli(
        "sbom", "verify", "--repo", published.path, "--release", RELEASE, "--root", root
    )
    assert result.code == 4


def test_an_unpublished_release_is_reported(
    published: RepoEnv, run_cli: Callable[..., CliResult]
) -> None:
    result = run_cli(
        "sbom",
        "verify",
        "--repo",
        published.path,
        "--release",
        "sigma-spectrum/9.9.9",
        "--root",
        _root(published),
    )
    assert result.code == 4
    assert "sigma-spectrum/9.9.9 is not published" in result.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--release", "sigma-spectrum"], "must be PRODUCT/VERSION"),
        (["--release", "sigma-spectrum/one"], "not a semantic version"),
    ],
)
def test_bad_release_names_are_refused(
    published: RepoEnv, run_cli: Callable[..., CliResult], args: list[str], message: str
) -> None:
    result = run_cli("sbom", "verify", "--repo", published.path, "--root", _root(published), *args)
    assert result.code == 1
    assert message in result.err


def test_verify_needs_exactly_one_of_repo_and_server(
    published: RepoEnv, run_cli: Callable[..., CliResult]
) -> None:
    result = run_cli("sbom", "verify", "--release", RELEASE, "--root", _root(published))
    assert result.code == 2
    assert "exactly one of --repo and --server" in result.err


def test_sbom_describing_other_firmware_is_refused(make_sbom: Callable[..., bytes]) -> None:
    sbom = make_sbom()
    release = ReleaseInfo(
        "sigma-spectrum", "8.1.0", 1, ("rev-c",), hashlib.sha256(sbom).hexdigest()
    )
    check_release_binding(
        release, json.loads(sbom)["metadata"]["component"]["hashes"][0]["content"], sbom
    )
    with pytest.raises(SbomVerificationError, match="describes firmware sha256"):
        check_release_binding(release, "0" * 64, sbom)
    with pytest.raises(SbomVerificationError, match="but the release names"):
        check_release_binding(release, "0" * 64, sbom + b" ")
