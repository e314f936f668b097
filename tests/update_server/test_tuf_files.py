"""Serving /tuf: validators, ranges, cache rules, and no way out of the repository."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from repo_support import RepoEnv
from server_support import ServerEnv, live_server
from signer.bundle import publish_bundle
from signer.repository import Repository
from update_server.tuf import IMMUTABLE, NOT_CACHED

FIRMWARE_SIZE = 4096


def _server_repo(server_env: ServerEnv) -> RepoEnv:
    """The server's repository, with the test keys (bundles are built against it)."""
    return RepoEnv(server_env.repo_dir, server_env.repo.keys, server_env.repo.work)


@pytest.fixture
def published(server_env: ServerEnv) -> Path:
    """Publish sigma-spectrum 1.0.0 into the server's repository; its firmware file."""
    env = _server_repo(server_env)
    publish_bundle(env.bundle("1.0.0", 1), env.repo, env.online)
    (firmware,) = (server_env.repo_dir / "targets/sigma-spectrum/1.0.0").glob("*.firmware.img")
    return firmware


def _url(path: Path, server_env: ServerEnv) -> str:
    return "/tuf/" + path.relative_to(server_env.repo_dir).as_posix()


def _current(server_env: ServerEnv) -> dict[str, int]:
    state = Repository(server_env.repo_dir).state()
    assert state.snapshot is not None and state.timestamp is not None
    return {
        "timestamp": state.timestamp.signed.version,
        "snapshot": state.snapshot.signed.version,
        "targets": state.targets.signed.version,
        **state.product_versions,
    }


def test_metadata_has_a_content_hash_etag_and_answers_304_when_unchanged(
    client: FlaskClient, server_env: ServerEnv, published: Path
) -> None:
    root = (server_env.repo_dir / "metadata/1.root.json").read_bytes()
    r = client.get("/tuf/metadata/1.root.json")
    assert r.status_code == 200
    assert r.data == root
    assert r.headers["ETag"] == f'"{hashlib.sha256(root).hexdigest()}"'
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["Accept-Ranges"] == "bytes"
    etag = r.headers["ETag"]

    for validator in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = client.get("/tuf/metadata/1.root.json", headers={"If-None-Match": validator})
        assert again.status_code == 304, validator
        assert again.data == b""
        assert again.headers["ETag"] == etag
    changed = client.get("/tuf/metadata/1.root.json", headers={"If-None-Match": '"stale"'})
    assert changed.status_code == 200
    assert changed.data == root


def test_replaced_timestamp_gets_a_new_etag_and_a_conditional_poll_sees_it(
    client: FlaskClient, server_env: ServerEnv, published: Path
) -> None:
    first = client.get("/tuf/metadata/timestamp.json")
    assert client.get(
        "/tuf/metadata/timestamp.json", headers={"If-None-Match": first.headers["ETag"]}
    ).status_code == 304  # fmt: skip
    env = _server_repo(server_env)
    publish_bundle(env.bundle("1.1.0", 2), env.repo, env.online)

    poll = client.get(
        "/tuf/metadata/timestamp.json", headers={"If-None-Match": first.headers["ETag"]}
    )
    assert poll.status_code == 200
    assert poll.data == (server_env.repo_dir / "metadata/timestamp.json").read_bytes()
    assert poll.headers["ETag"] == f'"{hashlib.sha256(poll.data).hexdigest()}"'
    assert poll.headers["ETag"] != first.headers["ETag"]


def test_timestamp_is_never_cached_and_every_versioned_file_and_target_is_immutable(
    client: FlaskClient, server_env: ServerEnv, published: Path
) -> None:
    ts = client.get("/tuf/metadata/timestamp.json")
    assert ts.headers["Cache-Control"] == NOT_CACHED
    assert "immutable" not in ts.headers["Cache-Control"]
    v = _current(server_env)
    versioned = [
        "1.root.json",
        f"{v['snapshot']}.snapshot.json",
        f"{v['snapshot'] - 1}.snapshot.json",
        f"{v['targets']}.targets.json",
        f"{v['sigma-spectrum']}.sigma-spectrum.json",
    ]
    for name in versioned:
        r = client.get(f"/tuf/metadata/{name}")
        assert r.status_code == 200, name
        assert r.headers["Cache-Control"] == IMMUTABLE == "public, max-age=31536000, immutable"
    target = client.get(_url(published, server_env))
    assert target.status_code == 200
    assert target.headers["Cache-Control"] == IMMUTABLE
    # The target's name carries its sha256: it is the strong validator.
    assert target.headers["ETag"] == f'"{hashlib.sha256(target.data).hexdigest()}"'
    assert target.headers["Content-Type"] == "application/octet-stream"
    assert target.headers["X-Content-Type-Options"] == "nosniff"


def test_leftover_of_an_interrupted_publish_is_not_cached_as_immutable(
    client: FlaskClient, server_env: ServerEnv, published: Path
) -> None:
    """A version timestamp.json does not reach yet may still be rewritten by a retry."""
    v = _current(server_env)
    metadata = server_env.repo_dir / "metadata"
    for role in ("snapshot", "sigma-spectrum"):
        current = metadata / f"{v[role]}.{role}.json"
        (metadata / f"{v[role] + 1}.{role}.json").write_bytes(current.read_bytes())
        r = client.get(f"/tuf/metadata/{v[role] + 1}.{role}.json")
        assert r.status_code == 200
        assert r.headers["Cache-Control"] == NOT_CACHED, role
    # Once a publish makes it visible, the same name becomes immutable.
    env = _server_repo(server_env)
    publish_bundle(env.bundle("1.1.0", 2), env.repo, env.online)
    r = client.get(f"/tuf/metadata/{v['snapshot'] + 1}.snapshot.json")
    assert r.headers["Cache-Control"] == IMMUTABLE


def test_missing_files_are_404_json_that_no_cache_keeps(client: FlaskClient) -> None:
    for url in ("/tuf/metadata/2.root.json", "/tuf/targets/sigma-spectrum/9.9.9/x.img"):
        r = client.get(url)
        assert r.status_code == 404
        assert r.json is not None and r.json["error"]["code"] == "not_found"
        # A cached 404 of N+1.root.json would hide a root rotation from pumps.
        assert r.headers["Cache-Control"] == "no-store"


def test_single_byte_ranges_resume_a_download(
    client: FlaskClient, server_env: ServerEnv, published: Path
) -> None:
    url = _url(published, server_env)
    data = published.read_bytes()
    assert len(data) == FIRMWARE_SIZE
    for header, (start, end) in {
        "bytes=0-99": (0, 100),
        "bytes=100-": (100, FIRMWARE_SIZE),
        "bytes=4000-999999": (4000, FIRMWARE_SIZE),
        "bytes=-10": (FIRMWARE_SIZE - 10, FIRMWARE_SIZE),
        "bytes=-99999": (0, FIRMWARE_SIZE),
    }.items():
        r = client.get(url, headers={"Range": header})
        assert r.status_code == 206, header
        assert r.data == data[start:end], header
        assert r.headers["Content-Range"] == f"bytes {start}-{end - 1}/{FIRMWARE_SIZE}"
        assert r.headers["Content-Length"] == str(end - start)
        assert r.headers["ETag"] == f'"{hashlib.sha256(data).hexdigest()}"'

    # A resumed download only continues the same file (RFC 9110 If-Range).
    etag = f'"{hashlib.sha256(data).hexdigest()}"'
    same = client.get(url, headers={"Range": "bytes=10-19", "If-Range": etag})
    assert (same.status_code, same.data) == (206, data[10:20])
    other = client.get(url, headers={"Range": "bytes=10-19", "If-Range": '"other"'})
    assert (other.status_code, other.data) == (200, data)
    # Several ranges are answered with the whole file; other units are ignored.
    for header in ("bytes=0-1,5-6", "items=0-3"):
        r = client.get(url, headers={"Range": header})
        assert (r.status_code, r.data) == (200, data), header

    meta = client.get("/tuf/metadata/timestamp.json", headers={"Range": "bytes=0-9"})
    assert meta.status_code == 206
    assert meta.data == (server_env.repo_dir / "metadata/timestamp.json").read_bytes()[:10]


@pytest.mark.parametrize(
    "header", ["bytes=4096-", "bytes=5000-6000", "bytes=10-5", "bytes=-0", "bytes=abc", "bytes=-"]
)
def test_unsatisfiable_range_is_416_with_the_length(
    client: FlaskClient, server_env: ServerEnv, published: Path, header: str
) -> None:
    r = client.get(_url(published, server_env), headers={"Range": header})
    assert r.status_code == 416
    assert r.headers["Content-Range"] == f"bytes */{FIRMWARE_SIZE}"
    assert r.json is not None and r.json["error"]["code"] == "range_not_satisfiable"


def test_416_is_not_stored_by_a_cache_and_carries_no_validator(
    client: FlaskClient, server_env: ServerEnv, published: Path
) -> None:
    """A shared cache keeping a 416 under the file's URL would serve it in place of the file."""
    for url, header in (
        (_url(published, server_env), f"bytes={FIRMWARE_SIZE}-"),
        (_url(published, server_env), "bytes=10-5"),
        ("/tuf/metadata/1.root.json", "bytes=999999-"),
        ("/tuf/metadata/timestamp.json", "bytes=-0"),
    ):
        r = client.get(url, headers={"Range": header})
        assert r.status_code == 416, (url, header)
        assert r.headers["Cache-Control"] == "no-store", (url, header)
        assert "ETag" not in r.headers, (url, header)
        assert r.headers["Content-Range"].startswith("bytes */"), (url, header)


# Python refuses int() of a string over 4300 digits (ValueError); RFC 9110
# 14.1.1 makes such positions valid and tells servers to expect them.
HUGE = "9" * 5000
ZEROS = "0" * 5000


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        # first-pos past any end: unsatisfiable.
        (f"bytes={HUGE}-", None),
        (f"bytes={HUGE}-{HUGE}", None),
        # last-pos past the end: to the end.
        (f"bytes=0-{HUGE}", (0, FIRMWARE_SIZE)),
        (f"bytes=100-{HUGE}", (100, FIRMWARE_SIZE)),
        # suffix-length past the size: the whole file.
        (f"bytes=-{HUGE}", (0, FIRMWARE_SIZE)),
        # Leading zeros do not make a number big.
        (f"bytes={ZEROS}100-{ZEROS}199", (100, 200)),
        (f"bytes=-{ZEROS}10", (FIRMWARE_SIZE - 10, FIRMWARE_SIZE)),
        (f"bytes=-{ZEROS}", None),
    ],
    ids=[
        "huge-first",
        "huge-first-and-last",
        "huge-last",
        "huge-last-after-100",
        "huge-suffix",
        "zero-padded-first-and-last",
        "zero-padded-suffix",
        "zero-padded-zero-suffix",
    ],
)
def test_range_positions_with_thousands_of_digits_are_answered_per_rfc_9110(
    client: FlaskClient,
    server_env: ServerEnv,
    published: Path,
    header: str,
    expected: tuple[int, int] | None,
) -> None:
    data = published.read_bytes()
    with client.get(_url(published, server_env), headers={"Range": header}) as r:
        if expected is None:
            assert r.status_code == 416
            assert r.headers["Content-Range"] == f"bytes */{FIRMWARE_SIZE}"
        else:
            start, end = expected
            assert r.status_code == 206
            assert r.data == data[start:end]
            assert r.headers["Content-Range"] == f"bytes {start}-{end - 1}/{FIRMWARE_SIZE}"


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _flood(client: FlaskClient, urls: list[str], header: str, times: int) -> set[int]:
    """``times`` rounds of GETs of ``urls`` with ``header``; the statuses seen."""
    statuses = set()
    for _ in range(times):
        for url in urls:
            with client.get(url, headers={"Range": header}) as r:
                statuses.add(r.status_code)
    return statuses


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
@pytest.mark.parametrize(
    "header",
    [f"bytes={HUGE}-", f"bytes=0-{HUGE}", f"bytes=-{HUGE}"],
    ids=["huge-first", "huge-last", "huge-suffix"],
)
def test_flood_of_huge_range_numbers_leaks_no_file_descriptors(
    app: Flask, server_env: ServerEnv, published: Path, header: str
) -> None:
    """Unauthenticated: each leaked descriptor took the worker closer to 404ing every file."""
    app.config["PROPAGATE_EXCEPTIONS"] = False  # answer 500 as in production
    client = app.test_client()
    urls = [_url(published, server_env), "/tuf/metadata/timestamp.json"]
    _flood(client, urls, header, 5)  # warm up lazily opened descriptors
    before = _open_fds()
    statuses = _flood(client, urls, header, 100)
    assert _open_fds() <= before
    assert statuses <= {206, 416}, statuses
    ts = client.get("/tuf/metadata/timestamp.json")
    assert ts.status_code == 200
    ts.close()


def test_any_error_while_answering_closes_the_file(
    app: Flask, server_env: ServerEnv, published: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A future bug after the file was opened must cost a 500, not a descriptor."""
    import update_server.tuf

    def broken(header: str | None, size: int) -> tuple[int, int] | None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(update_server.tuf, "_byte_range", broken)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    client = app.test_client()
    urls = [_url(published, server_env), "/tuf/metadata/timestamp.json"]
    _flood(client, urls, "bytes=0-9", 5)
    before = _open_fds()
    statuses = _flood(client, urls, "bytes=0-9", 100)
    assert statuses == {500}
    assert _open_fds() <= before


def test_head_answers_headers_without_a_body(
    client: FlaskClient, server_env: ServerEnv, published: Path
) -> None:
    for url in (_url(published, server_env), "/tuf/metadata/timestamp.json"):
        get = client.get(url)
        head = client.head(url)
        assert head.status_code == 200
        assert head.data == b""
        for name in ("ETag", "Cache-Control", "Content-Length", "Accept-Ranges", "Content-Type"):
            assert head.headers[name] == get.headers[name], name
        assert head.headers["Content-Length"] == str(len(get.data))
        cond = client.head(url, headers={"If-None-Match": get.headers["ETag"]})
        assert cond.status_code == 304
    assert client.head("/tuf/metadata/7.root.json").status_code == 404


def _plant_secrets(server_env: ServerEnv) -> None:
    """Things next to and inside the repository that must never be served."""
    metadata = server_env.repo_dir / "metadata"
    targets = server_env.repo_dir / "targets"
    # A half-written file of an atomic write in progress.
    (metadata / ".timestamp.json.x1y2.tmp").write_bytes(b"partial")
    (targets / "sigma-spectrum").mkdir(exist_ok=True)
    (targets / "sigma-spectrum" / ".fw.img.tmp").write_bytes(b"partial")
    # Symbolic links pointing at the online keys.
    key = server_env.data_dir / "keys" / "snapshot.key"
    (targets / "sigma-spectrum" / "key.img").symlink_to(key)
    (metadata / "9.key.json").symlink_to(key)
    (targets / "escape").symlink_to(server_env.data_dir)


TRAVERSALS = [
    "/tuf/metadata/..",
    "/tuf/metadata/.",
    "/tuf/metadata/%2e%2e",
    "/tuf/metadata/..%2Fpumpguard-repo.json",
    "/tuf/metadata/..%2F..%2Fserver.toml",
    "/tuf/metadata/%2e%2e%2f%2e%2e%2fkeys%2fsnapshot.key",
    "/tuf/metadata/..%5C..%5Cserver.toml",
    "/tuf/metadata/.timestamp.json.x1y2.tmp",
    "/tuf/metadata/9.key.json",
    "/tuf/metadata/timestamp.json%00.png",
    "/tuf/targets/../pumpguard-repo.json",
    "/tuf/targets/../../server.toml",
    "/tuf/targets/%2e%2e/%2e%2e/keys/snapshot.key",
    "/tuf/targets/sigma-spectrum/..%2F..%2F..%2Fserver.toml",
    "/tuf/targets/sigma-spectrum/%2E%2E/%2E%2E/.lock",
    "/tuf/targets//etc/passwd",
    "/tuf/targets/%2Fetc%2Fpasswd",
    "/tuf/targets/sigma-spectrum/..\\..\\..\\server.toml",
    "/tuf/targets/sigma-spectrum/.fw.img.tmp",
    "/tuf/targets/sigma-spectrum/key.img",
    "/tuf/targets/escape/server.toml",
    "/tuf/targets/escape/keys/snapshot.key",
    "/tuf/targets/sigma-spectrum",
    "/tuf/targets/sigma-spectrum/",
    "/tuf/targets/",
    "/tuf/targets/a%00b",
]


def test_traversal_hidden_files_links_and_directories_are_404(
    client: FlaskClient, server_env: ServerEnv, published: Path
) -> None:
    _plant_secrets(server_env)
    for url in TRAVERSALS:
        r = client.get(url)
        assert r.status_code == 404, url
        assert r.json is not None and r.json["error"]["code"] == "not_found", url
        assert b"PRIVATE" not in r.data and b"database_url" not in r.data, url


def test_traversal_over_real_http_with_raw_paths_is_404(
    app: Flask, server_env: ServerEnv, published: Path
) -> None:
    """No client-side normalisation: the raw request line reaches the server."""
    _plant_secrets(server_env)
    with live_server(app) as base:
        parts = urlsplit(base)
        assert parts.hostname is not None and parts.port is not None
        for url in TRAVERSALS:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
            conn.putrequest("GET", url, skip_accept_encoding=True)
            conn.endheaders()
            response = conn.getresponse()
            body = response.read()
            conn.close()
            # 308 is werkzeug folding "//" into "/" inside /tuf/targets (still inside).
            assert response.status in (404, 400, 308), url
            if response.status == 308:
                assert response.headers["Location"].startswith(f"{base}/tuf/targets/")
            assert b"PRIVATE" not in body and b"database_url" not in body, url
            if response.status == 404:
                assert json.loads(body)["error"]["code"] == "not_found"


def test_served_bytes_are_the_published_files(
    client: FlaskClient, server_env: ServerEnv, published: Path
) -> None:
    for path in sorted((server_env.repo_dir / "metadata").iterdir()):
        if path.name.startswith("."):
            continue
        r = client.get(f"/tuf/metadata/{path.name}")
        assert r.status_code == 200, path.name
        assert r.data == path.read_bytes()
    for path in sorted((server_env.repo_dir / "targets").rglob("*")):
        if path.is_file():
            r = client.get(_url(path, server_env))
            assert r.status_code == 200
            assert r.data == path.read_bytes()
            assert os.path.basename(path).split(".", 1)[0] in r.headers["ETag"]


def test_published_files_are_readable_by_a_static_server_running_as_another_user(
    server_env: ServerEnv, published: Path
) -> None:
    """nginx or a sync to an object store must be able to read every published file."""
    for folder in ("metadata", "targets"):
        for path in (server_env.repo_dir / folder).rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                assert path.stat().st_mode & 0o004, f"{path} is not world-readable"
