"""A tampered release tar is refused by `release verify` and `release publish` alike.

``bundle.json`` is not signed (issue 19, finding 6): each case starts from a
real, two-person-signed bundle tar, changes the tar, and runs both commands
against a local repository. Both must refuse with the same one-line reason and
leave the repository and the bundle's folder as they were (threats SRV-INPUT,
SGN-BUNDLE-TRAVERSAL, SGN-BUNDLE-SWAP).
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from repo_support import PRODUCT, CliResult, RepoEnv, publish_args
from signer.keys import load_public_key

Members = list[tuple[tarfile.TarInfo, bytes]]
Tamper = Callable[[RepoEnv, Members], Members]
Tree = Callable[[Path], dict[str, bytes]]

OTHER = "other-pump"
FIRMWARE = f"targets/{PRODUCT}/1.0.0/firmware.img"


def _read(tar_path: Path) -> Members:
    with tarfile.open(tar_path) as tar:
        out = []
        for info in tar.getmembers():
            f = tar.extractfile(info)
            out.append((info, f.read() if f else b""))
        return out


def _write(tar_path: Path, members: Members) -> None:
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if info.isfile():
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _manifest_of(members: Members) -> dict[str, object]:
    data = next(d for i, d in members if i.name == "bundle.json")
    manifest: dict[str, object] = json.loads(data)
    return manifest


def _with_manifest(members: Members, data: bytes) -> Members:
    return [(i, data if i.name == "bundle.json" else d) for i, d in members]


def manifest(**changes: object) -> Tamper:
    """bundle.json with ``changes`` applied."""

    def tamper(env: RepoEnv, members: Members) -> Members:
        edited = {**_manifest_of(members), **changes}
        return _with_manifest(members, json.dumps(edited).encode())

    return tamper


def raw_manifest(text: str) -> Tamper:
    """bundle.json replaced by ``text`` (``{m}`` is the original, without braces)."""

    def tamper(env: RepoEnv, members: Members) -> Members:
        original = json.dumps(_manifest_of(members))[1:-1]
        return _with_manifest(members, text.replace("{m}", original).encode())

    return tamper


def nested(depth: int) -> Tamper:
    """bundle.json with an extra field nested ``depth`` arrays deep."""
    return raw_manifest('{{m}, "x": ' + "[" * depth + "]" * depth + "}")


def renamed(old: str, new: str) -> Tamper:
    """Every member whose name starts with ``old`` renamed to start with ``new``."""

    def tamper(env: RepoEnv, members: Members) -> Members:
        for info, _ in members:
            if info.name.startswith(old):
                info.name = new + info.name[len(old) :]
        return members

    return tamper


def pax_path(member: str, path: str) -> Tamper:
    """``member`` renamed through a pax ``path`` record, as long names are."""

    def tamper(env: RepoEnv, members: Members) -> Members:
        for info, _ in members:
            if info.name == member:
                info.pax_headers = {"path": path}
        return members

    return tamper


def added(make: Callable[[], tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]]) -> Tamper:
    def tamper(env: RepoEnv, members: Members) -> Members:
        item = make()
        return [*members, item if isinstance(item, tuple) else (item, b"")]

    return tamper


def _link(kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(f"targets/{PRODUCT}/1.0.0/firmware.link")
    info.type = kind
    info.linkname = "firmware.img" if kind == tarfile.SYMTYPE else FIRMWARE
    return info


def both(*tampers: Tamper) -> Tamper:
    def tamper(env: RepoEnv, members: Members) -> Members:
        for t in tampers:
            members = t(env, members)
        return members

    return tamper


def metadata_text(old: bytes, new: bytes) -> Tamper:
    """The product metadata with ``old`` replaced by ``new`` (signatures untouched)."""

    def tamper(env: RepoEnv, members: Members) -> Members:
        name = f"metadata/{PRODUCT}.json"
        out = []
        for info, data in members:
            if info.name == name:
                assert old in data
                data = data.replace(old, new, 1)
            out.append((info, data))
        return out

    return tamper


def second_product(env: RepoEnv) -> None:
    """The repository delegates a second product to the same two people."""
    keys = [load_public_key(env.pub(n)) for n in ("re1", "qa1")]
    env.repo.add_product(OTHER, keys, 2, [env.signer("targets")], env.online)


@dataclass(frozen=True)
class Case:
    tamper: Tamper
    reason: str
    setup: Callable[[RepoEnv], None] | None = None


CASES: dict[str, Case] = {
    "version with a newline": Case(
        manifest(version="1.0.0\nINFO published sigma-spectrum 9.9.9"),
        "is not a semantic version",
    ),
    "version with a NUL": Case(manifest(version="1.0.0\x00"), "is not a semantic version"),
    "version with a backslash": Case(manifest(version="1.0.0\\..\\x"), "is not a semantic version"),
    "version other than the signed release": Case(
        manifest(version="1.0.1"), "outside sigma-spectrum/1.0.1/"
    ),
    "version other than the signed release, folders renamed": Case(
        both(manifest(version="1.0.1"), renamed(f"targets/{PRODUCT}/1.0.0/", "targets/x/")),
        "outside sigma-spectrum/1.0.1/",
    ),
    "version other than the signed release, files moved to it": Case(
        both(
            manifest(version="1.0.1"),
            renamed(f"targets/{PRODUCT}/1.0.0/", f"targets/{PRODUCT}/1.0.1/"),
        ),
        "the bundle names version '1.0.1', but its signed metadata adds sigma-spectrum 1.0.0",
    ),
    "product other than the signed role": Case(
        manifest(product=OTHER), f"bundle lacks metadata/{OTHER}.json", second_product
    ),
    "product other than the signed release, files moved to it": Case(
        both(
            manifest(product=OTHER),
            renamed(f"metadata/{PRODUCT}.json", f"metadata/{OTHER}.json"),
            renamed(f"targets/{PRODUCT}/", f"targets/{OTHER}/"),
        ),
        f"target '{PRODUCT}/1.0.0/firmware.img' is outside {OTHER}'s delegated paths",
        second_product,
    ),
    "second bundle.json member": Case(
        added(lambda: _file("bundle.json", b"{}")), "holds 'bundle.json' twice"
    ),
    "duplicate key in bundle.json": Case(
        raw_manifest('{"version": "9.9.9", {m}}'), "duplicate key 'version'"
    ),
    "bundle.json nested 100,000 deep": Case(nested(100_000), "bundle.json is larger than"),
    "bundle.json nested 10,000 deep": Case(nested(10_000), "nested more than 64 deep"),
    "unknown field in bundle.json": Case(manifest(signed=True), "unknown fields ['signed']"),
    "format_version true": Case(manifest(format_version=True), "format version True"),
    "format_version 1.0": Case(manifest(format_version=1.0), "format version 1.0"),
    "format_version '1'": Case(manifest(format_version="1"), "format version '1'"),
    "absolute member path": Case(
        renamed("bundle.json", "/bundle.json"), "absolute path: '/bundle.json'"
    ),
    "absolute member path in a pax header": Case(
        pax_path(FIRMWARE, "/" + FIRMWARE), f"absolute path: '/{FIRMWARE}'"
    ),
    "'..' member path that stays inside": Case(
        renamed(f"targets/{PRODUCT}/", f"targets/{PRODUCT}/../{PRODUCT}/"), "'..' component"
    ),
    # json keeps the last of two keys, so the signature still verifies; a
    # reader that keeps the first sees version 999.
    "duplicate key in the signed metadata": Case(
        metadata_text(b'"signed":{', b'"signed":{"version":999,'),
        f"metadata/{PRODUCT}.json is not TUF metadata: duplicate key 'version'",
    ),
    "symlink member": Case(
        added(lambda: _link(tarfile.SYMTYPE)), "is not a regular file or directory"
    ),
    "hard link member": Case(
        added(lambda: _link(tarfile.LNKTYPE)), "is not a regular file or directory"
    ),
}


def _refusal(r: CliResult) -> str:
    """The one reason a refused command gave (verify may give it in its report)."""
    assert "Traceback" not in r.out + r.err
    for line in r.out.splitlines():
        if line.startswith("publishable: NO - "):
            assert not r.err, r.err
            return line.removeprefix("publishable: NO - ")
    lines = r.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r
    return lines[0].removeprefix("error: ")


def _signed_tar(env: RepoEnv) -> Path:
    return env.bundle("1.0.0", 1, tar=True)


def test_untampered_rewritten_bundle_is_verified_and_published(
    repo_env: RepoEnv, run_cli: Callable[..., CliResult]
) -> None:
    """The harness itself: rewriting the tar unchanged keeps it publishable."""
    bundle = _signed_tar(repo_env)
    _write(bundle, _read(bundle))
    verified = run_cli("release", "verify", bundle, "--repo", repo_env.path)
    assert verified.code == 0, verified
    assert "publishable: yes" in verified.out
    published = run_cli(*publish_args(repo_env, bundle))
    assert published.code == 0, published
    assert [r.version for r in repo_env.repo.releases(PRODUCT)] == ["1.0.0"]


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_tampered_bundle_is_refused_by_verify_and_publish_alike(
    repo_env: RepoEnv, run_cli: Callable[..., CliResult], tree: Tree, case: Case
) -> None:
    env = repo_env
    if case.setup:
        case.setup(env)
    bundle = _signed_tar(env)
    _write(bundle, case.tamper(env, _read(bundle)))
    repo_before, work_before = tree(env.path), sorted(env.work.iterdir())

    verified = run_cli("release", "verify", bundle, "--repo", env.path)
    published = run_cli(*publish_args(env, bundle))

    # Exit 4: a verification or publish refusal (README, exit codes).
    assert (verified.code, published.code) == (4, 4), (verified, published)
    reason = _refusal(published)
    assert case.reason in reason
    assert _refusal(verified) == reason  # one decision, one reason
    assert tree(env.path) == repo_before
    assert sorted(env.work.iterdir()) == work_before  # nothing unpacked is left
    assert env.repo.releases(PRODUCT) == []
