"""The documented production command (gunicorn, 2 workers) serves the app."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from server_support import ServerEnv

GUNICORN = Path(sys.executable).with_name("gunicorn")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_documented_gunicorn_command_serves_tuf_and_api(server_env: ServerEnv) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "PUMPGUARD_DATA": str(server_env.data_dir),
        "PUMPGUARD_REFRESH_INTERVAL": "0",
    }
    # The command of docs/deployment.md.
    proc = subprocess.Popen(
        [str(GUNICORN), "--workers", "2", "--bind", f"127.0.0.1:{port}", "update_server.wsgi:app"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/v1/openapi.json", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    out = (
                        proc.stdout.read().decode()
                        if proc.stdout and proc.poll() is not None
                        else ""
                    )
                    raise AssertionError(f"gunicorn did not come up: {out}") from None
                time.sleep(0.2)
        with urllib.request.urlopen(f"{base}/tuf/metadata/timestamp.json", timeout=5) as r:
            assert r.status == 200
            assert (
                "no-store" in r.headers["Cache-Control"] or "no-cache" in r.headers["Cache-Control"]
            )
            assert r.read() == (server_env.repo_dir / "metadata" / "timestamp.json").read_bytes()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
