"""What an upload may cost is decided before its body is read (issue 19, finding 4).

Threat SRV-DOS: a release tar of a million members used to cost 28 s and
436 MiB of server memory, with a token scoped to another product, and
nothing bounded concurrent uploads. Every test here talks to the documented
production command (gunicorn) over real sockets.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from upload_support import (
    PRODUCT,
    Upload,
    gunicorn,
    make_token,
    member,
    member_headers,
    send_until_answered,
    upload_head,
)

from repo_support import RepoEnv
from server_support import ServerEnv

MILLION = 1_000_000
#: Members a bundle may have (signer.bundle.MAX_MEMBERS); the 65th header is refused.
MAX_MEMBERS = 64
MIB = 1 << 20
TAR = "application/x-tar"


def _peak_rss(pid: int) -> int:
    """The process's peak resident memory (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")


def _uploads(server_env: ServerEnv) -> list[Path]:
    root = server_env.data_dir / "uploads"
    return sorted(root.iterdir()) if root.exists() else []


def test_a_tar_of_a_million_members_is_refused_after_its_first_65_headers(
    server_env: ServerEnv,
) -> None:
    token = make_token(server_env, "release-engineer", (PRODUCT,))
    length = MILLION * 512 + 1024  # 488 MiB of headers
    with gunicorn(server_env, "--workers", "1", "--timeout", "120") as server:
        (worker,) = server.worker_pids()
        before = _peak_rss(worker)
        answer = send_until_answered(
            server.port, upload_head(token, length), member_headers(MILLION)
        )
        grown = _peak_rss(worker) - before
        log = server.output()
    # What the app read of the body (its log says): the headers up to the one refused.
    read = re.search(r"refused after (\d+) bytes", log)
    print(
        f"\nmillion-member tar: answered {answer.status} in {answer.seconds:.2f} s; the app "
        f"read {read.group(1) if read else '?'} bytes, the client sent {answer.sent} of "
        f"{length}; the worker's peak RSS grew {grown / MIB:.1f} MiB"
    )
    assert answer.status == 422, answer
    assert answer.body["error"]["message"] == f"bundle has more than {MAX_MEMBERS} members"
    assert read is not None, log
    assert int(read.group(1)) == (MAX_MEMBERS + 1) * 512
    # What the client got into the socket before the answer: the kernel's
    # buffers, not the 488 MiB (was: all of it, 28 s, 436 MiB).
    assert answer.sent < 32 * MIB, answer.sent
    assert answer.seconds < 10, answer.seconds
    assert grown < 16 * MIB, grown
    assert _uploads(server_env) == []


# case, (role, products) of the token (None: no token), query (None: the
# product), Content-Length (None: chunked), Content-Type, status, message
_REFUSED_BEFORE_THE_BODY = [
    ("token of another product", ("release-engineer", ("other-pump",)), None, 10 * MIB, TAR,
     403, "this token may not publish sigma-spectrum releases"),
    ("operator token", ("operator", ()), None, 10 * MIB, TAR, 403, "may not do this"),
    ("reviewer token", ("reviewer", ()), None, 10 * MIB, TAR, 403, "may not do this"),
    ("no token", None, None, 10 * MIB, TAR, 401, "an API token is required"),
    ("token of two products naming none", ("release-engineer", ("other-pump", PRODUCT)), "",
     10 * MIB, TAR, 400, "name the bundle's"),
    ("product not a name", ("release-engineer", (PRODUCT,)), "?product=..%2Fx", 10 * MIB, TAR,
     400, "product"),
    ("unknown parameter", ("release-engineer", (PRODUCT,)), f"?product={PRODUCT}&x=1",
     10 * MIB, TAR, 400, "unknown query parameter"),
    ("longer than the server takes", ("release-engineer", (PRODUCT,)), None, 3 << 30, TAR,
     413, "this server takes at most"),
    ("no length (chunked)", ("release-engineer", (PRODUCT,)), None, None, TAR, 411,
     "Content-Length"),
    ("not a tar", ("release-engineer", (PRODUCT,)), None, 10 * MIB, "application/json", 415,
     "application/x-tar"),
]  # fmt: skip


def test_an_upload_the_server_would_refuse_is_answered_before_its_body_is_sent(
    server_env: ServerEnv,
) -> None:
    """The role, the product scope, the length and the media type are judged
    from the request head: a token of another product costs no body byte."""
    engineer = make_token(server_env, "release-engineer", (PRODUCT,))
    with gunicorn(server_env, "--workers", "1") as server:
        for case, who, query, length, ctype, status, message in _REFUSED_BEFORE_THE_BODY:
            token = make_token(server_env, *who) if who else None
            head = upload_head(
                token, length, f"?product={PRODUCT}" if query is None else query, ctype
            )
            # The head alone: not one byte of the body is ever sent.
            answer = send_until_answered(server.port, head, [], timeout=30)
            assert answer.sent == 0
            assert answer.status == status, (case, answer)
            assert message in answer.body["error"]["message"], (case, answer)
        # Control: the same head from an engineer of the product is not
        # answered: the server is waiting for the body it would read.
        waiting = Upload.start(server.port, upload_head(engineer, 10 * MIB), b"")
        try:
            waiting.sock.settimeout(2)
            with pytest.raises(TimeoutError):
                waiting.sock.recv(1)
        finally:
            waiting.close()


def _held(port: int, token: str) -> Upload:
    """An upload in flight: the header of a 64 MiB member and 1 MiB of it sent."""
    head = upload_head(token, 512 + 64 * MIB + 1024)
    return Upload.start(port, head, member("firmware.img", 64 * MIB) + bytes(MIB))


def _wait_for(predicate: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_uploads_beyond_the_bounds_get_429_per_token_and_503_in_all(
    server_env: ServerEnv,
) -> None:
    """Two uploads per token, four in all (update_server.releases), across five
    gunicorn worker processes; a slot is free again when its upload ends."""
    a, b, c = (make_token(server_env, "release-engineer", (PRODUCT,)) for _ in range(3))
    bundle = server_env.repo.bundle("1.0.0", 1, tar=True)
    held: list[Upload] = []
    with gunicorn(server_env, "--workers", "5", "--timeout", "120") as server:
        try:
            for token in (a, a):
                held.append(_held(server.port, token))
            _wait_for(lambda: len(_uploads(server_env)) == 2, "two uploads in flight")
            third = send_until_answered(server.port, upload_head(a, 10 * MIB), [], timeout=30)
            assert third.status == 429, third
            assert third.headers["retry-after"] == "30"
            assert "this token has 2 upload(s) in progress" in third.body["error"]["message"]

            for token in (b, b):
                held.append(_held(server.port, token))
            _wait_for(lambda: len(_uploads(server_env)) == 4, "four uploads in flight")
            fifth = send_until_answered(server.port, upload_head(c, 10 * MIB), [], timeout=30)
            assert fifth.status == 503, fifth
            assert fifth.headers["retry-after"] == "30"
            assert "the server has 4 uploads in progress" in fifth.body["error"]["message"]
            assert fifth.sent == third.sent == 0

            # Two uploads end (their clients give up): their slots are free.
            for upload in held[:2]:
                upload.close()
            _wait_for(lambda: len(_uploads(server_env)) == 2, "two uploads to end")
            data = bundle.read_bytes()
            r = send_until_answered(server.port, upload_head(c, len(data)), [data], timeout=60)
            assert r.status == 201, r
        finally:
            for upload in held:
                upload.close()
        _wait_for(lambda: _uploads(server_env) == [], "every upload to end")


def test_the_cli_upload_declares_its_product_and_hears_a_refusal_sent_before_the_body(
    server_env: ServerEnv,
) -> None:
    """``release publish --server`` names the bundle's product in the request, so
    a token of several products publishes, and a token of another product is
    told so (403, exit code 2) before the body is sent."""
    from signer._upload import UploadError, upload_bundle

    both = make_token(server_env, "release-engineer", ("other-pump", PRODUCT))
    other = make_token(server_env, "release-engineer", ("other-pump",))
    tar = server_env.repo.bundle("1.0.0", 1, tar=True)
    directory = server_env.repo.bundle("1.0.0", 1)
    with gunicorn(server_env, "--workers", "1") as server:
        for bundle in (tar, directory):
            with pytest.raises(UploadError) as refused:
                upload_bundle(bundle, server.base, other, progress=False)
            assert refused.value.status == 403
            assert refused.value.exit_code == 2
            assert "this token may not publish sigma-spectrum releases" in str(refused.value)
        assert upload_bundle(directory, server.base, both, progress=False)["version"] == "1.0.0"
        server_repo = RepoEnv(server_env.repo_dir, server_env.repo.keys, server_env.repo.work)
        newer = server_repo.bundle("1.1.0", 2, tar=True)
        assert upload_bundle(newer, server.base, both, progress=False)["version"] == "1.1.0"
    assert _uploads(server_env) == []
