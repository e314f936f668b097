"""Server URLs an API token may be sent to (threat SRV-TOKEN-THEFT).

The URL is checked by the parser that opens the connection: a URL that
:func:`urllib.parse.urlsplit` and urllib3 read as different hosts must never
pass as loopback and then send the token in clear text elsewhere.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from pumpguard.device_cli import enroll_device
from pumpguard.errors import ConfigError
from pumpguard.http import check_server_url
from signer._upload import releases_endpoint, upload_bundle

# (case, URL, normalised URL it is accepted as)
ACCEPTED: list[tuple[str, str, str]] = [
    ("https-anywhere", "https://updates.example.org", "https://updates.example.org"),
    ("https-path-slash", "https://updates.example.org/pg/", "https://updates.example.org/pg"),
    ("https-port", "https://10.0.0.5:8443", "https://10.0.0.5:8443"),
    ("https-ipv6", "https://[2001:db8::1]:8443/", "https://[2001:db8::1]:8443"),
    ("https-service-name", "https://update_server:8443", "https://update_server:8443"),
    ("http-127.0.0.1", "http://127.0.0.1:8000/", "http://127.0.0.1:8000"),
    ("http-127.0.0.2", "http://127.0.0.2:8000", "http://127.0.0.2:8000"),
    ("http-localhost", "http://localhost:8000", "http://localhost:8000"),
    ("http-ipv6-loopback", "http://[::1]:8000/tuf/", "http://[::1]:8000/tuf"),
    ("case-folded", "HTTP://LocalHost:8000/Tuf", "http://localhost:8000/Tuf"),
    ("at-in-path", "http://127.0.0.1:8000/@x", "http://127.0.0.1:8000/@x"),
]

# (case, URL, fragment of the refusal)
REFUSED: list[tuple[str, str, str]] = [
    # urlsplit: host 127.0.0.1; urllib3: host EVIL, the rest is the path.
    ("backslash-trick", "http://EVIL:8000\\@127.0.0.1", "'\\\\'"),
    ("backslash-trick-https", "https://EVIL:8000\\@127.0.0.1", "'\\\\'"),
    ("backslash-in-path", "http://127.0.0.1:8000/a\\b", "'\\\\'"),
    ("userinfo", "http://EVIL:8000@127.0.0.1", "user info"),
    ("userinfo-password", "http://user:secret@127.0.0.1:8000", "user info"),
    ("userinfo-https", "https://user@updates.example.org", "user info"),
    ("encoded-backslash", "http://EVIL:8000%5C@127.0.0.1", "user info"),
    ("encoded-at", "http://evil%40127.0.0.1:8000", "valid host"),
    ("encoded-at-https", "https://evil%40127.0.0.1", "valid host"),
    ("encoded-loopback", "http://%31%32%37.0.0.1:8000", "valid host"),
    ("ipv6-zone", "http://[::1%25lo]:8000", "valid host"),
    ("space", "http://127.0.0.1:8000/a b", "' '"),
    ("tab-in-host", "http://127.0.0.1\t.evil.example", "'\\t'"),
    ("newline", "http://127.0.0.1:8000/\r\nX-Evil: 1", "'\\r'"),
    ("nul", "http://127.0.0.1\x00.evil.example", "'\\x00'"),
    ("non-ascii", "https://bücher.example", "'ü'"),
    ("query", "http://127.0.0.1:8000/?next=https://evil", "query"),
    ("empty-query", "https://updates.example.org/?", "query"),
    ("fragment", "http://127.0.0.1:8000/#@evil", "fragment"),
    ("plain-http-elsewhere", "http://updates.example.org", "use https"),
    ("plain-http-lan", "http://10.0.0.5:8000", "use https"),
    ("plain-http-short-loopback", "http://127.1:8000", "use https"),
    ("plain-http-mapped", "http://[::ffff:10.0.0.5]:8000", "use https"),
    ("no-scheme", "127.0.0.1:8000", "http(s) URL"),
    ("no-slashes", "https:updates.example.org", "http(s) URL"),
    ("ftp", "ftp://127.0.0.1", "http(s) URL"),
    ("no-host", "http:///api", "http(s) URL"),
    ("bad-port", "http://127.0.0.1:99999", "not a URL"),
    ("port-zero", "http://127.0.0.1:0", "port 0"),
]


@pytest.mark.parametrize(("url", "normalised"), [pytest.param(u, n, id=i) for i, u, n in ACCEPTED])
def test_safe_server_url_is_accepted_and_normalised(url: str, normalised: str) -> None:
    assert check_server_url(url) == normalised


@pytest.mark.parametrize(("url", "words"), [pytest.param(u, w, id=i) for i, u, w in REFUSED])
def test_ambiguous_or_clear_text_server_url_is_refused(url: str, words: str) -> None:
    with pytest.raises(ConfigError) as raised:
        check_server_url(url, "--server")
    assert words in str(raised.value)
    assert str(raised.value).startswith("--server ")


def test_release_endpoint_is_built_from_the_checked_url() -> None:
    assert releases_endpoint("HTTP://LOCALHOST:8000/") == "http://localhost:8000/api/v1/releases"


class _Listener:
    """A plain-HTTP server recording every request it receives."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                listener.requests.append(dict(self.headers))
                self.send_response(418)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _record  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _Listener:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def listener() -> Iterator[_Listener]:
    with _Listener() as running:
        yield running


def _enroll(server: str, tmp_path: Path) -> object:
    return enroll_device(
        server,
        "pgt_secret-token",
        device_id="pump-0001",
        hardware_id="rev-b",
        product="sigma-spectrum",
        public_key="ab" * 32,
    )


def _publish(server: str, tmp_path: Path) -> object:
    import tarfile

    (tmp_path / "x").write_text("x")
    tar = tmp_path / "bundle.tar"
    with tarfile.open(tar, "w") as t:
        t.add(tmp_path / "x", arcname="x")
    return upload_bundle(tar, server, "pgt_secret-token", progress=False, timeout=5)


@pytest.mark.parametrize("send", [_enroll, _publish], ids=["device-enroll", "release-publish"])
def test_backslash_url_never_sends_the_token_to_the_host_after_it(
    listener: _Listener, tmp_path: Path, send: Callable[[str, Path], object]
) -> None:
    # "127.1" is the listener to urllib3 but not loopback by the rule; the
    # part after the backslash is what urlsplit took for the host.
    server = f"http://127.1:{listener.port}\\@127.0.0.1/"
    with pytest.raises(ConfigError, match="must not contain"):
        send(server, tmp_path)
    assert listener.requests == []


def test_the_listener_is_reachable_so_the_test_above_means_something(
    listener: _Listener, tmp_path: Path
) -> None:
    with pytest.raises(Exception, match="418"):
        _enroll(f"http://127.0.0.1:{listener.port}", tmp_path)
    assert listener.requests[0]["Authorization"] == "Bearer pgt_secret-token"
