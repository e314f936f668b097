"""A whole update system on loopback for agent tests.

A real repository (the project's own signer), a real update server (Flask on
a loopback socket, SQLite), simulated pumps enrolled through the API. The
agent under test talks to all of it over real HTTP.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import ssl
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.orm import sessionmaker

from device_agent.agent import Agent, RebootRequested
from device_agent.simulator import SimulatedPump, build_sim_firmware
from device_agent.state import AgentState
from repo_support import PASSPHRASE, PRODUCT, RepoEnv, make_repo_env
from server_support import live_server
from signer._upload import upload_bundle
from signer.bundle import create_release, sign_bundle
from signer.repository import Repository
from update_server import create_app
from update_server.auth import create_token
from update_server.datadir import init_data_dir
from update_server.db import dispose, engine_for

__all__ = ["LyingServer", "World", "run_pump", "set_selftest", "world_at"]

_http = urllib3.PoolManager()


class LyingServer:
    """WSGI middleware playing a compromised server: it rewrites check-in answers.

    With :attr:`assigned` set, every check-in is answered with that assignment
    instead of the server's own choice (threat SRV-COMPROMISE: the server may
    offer anything; the pump must verify everything itself). Fields in
    :attr:`fields` replace those of every check-in answer (e.g. a NaN
    ``poll_interval``).
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.assigned: dict[str, Any] | None = None
        self.fields: dict[str, Any] = {}

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        lying = self.assigned is not None or self.fields
        if not lying or not environ.get("PATH_INFO", "").endswith("/checkin"):
            return self.app(environ, start_response)
        captured: list[Any] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured.append((status, headers))
            return lambda data: None

        body = b"".join(self.app(environ, capture))
        status, headers = captured[0]
        if status.startswith("200"):
            doc = json.loads(body)
            if self.assigned is not None:
                doc["assigned"] = self.assigned
            doc.update(self.fields)
            body = json.dumps(doc).encode()  # NaN and Infinity as JS literals
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
        start_response(status, headers)
        return [body]


@dataclass
class World:
    """Repository, server and helpers to publish releases and enroll pumps."""

    repo: RepoEnv
    data_dir: Path
    base_url: str
    admin_token: str
    release_token: str
    work: Path
    liar: LyingServer
    pumps: dict[str, SimulatedPump] = field(default_factory=dict)

    def lie(self, product: str, version: str, counter: int, path: str | None = None) -> None:
        """Make the server assign this release to every pump, whatever it is."""
        self.liar.assigned = {
            "product": product,
            "version": version,
            "release_counter": counter,
            "firmware": {"path": path or f"{product}/{version}/firmware.img"},
            "sbom": {"path": f"{product}/{version}/sbom.cdx.json"},
        }

    @property
    def repo_env(self) -> RepoEnv:
        """The server's published repository with the test keys (to forge with)."""
        return RepoEnv(self.server_repo, self.repo.keys, self.work)

    @property
    def server_repo(self) -> Path:
        """The repository the server publishes (its /tuf files)."""
        return self.data_dir / "repo"

    @property
    def root(self) -> bytes:
        return (self.server_repo / "metadata" / "1.root.json").read_bytes()

    def publish(
        self,
        version: str,
        counter: int,
        *,
        behaviour: str = "ok",
        hardware_ids: tuple[str, ...] = ("rev-b",),
        size: int = 64 * 1024,
        product: str = PRODUCT,
    ) -> Path:
        """Sign (re1 + qa1) and publish a simulator release through the API."""
        image = self.work / f"fw-{product}-{version}.img"
        image.write_bytes(build_sim_firmware(version, behaviour, size))
        out = self.work / f"bundle-{product}-{version}"
        create_release(
            repo=Repository(self.server_repo),
            product=product,
            version=version,
            release_counter=counter,
            hardware_ids=hardware_ids,
            firmware=image,
            out=out,
            notes=f"release {version}",
        )
        for name in ("re1", "qa1"):
            sign_bundle(out, self.repo.signer(name))
        upload_bundle(out, self.base_url, self.release_token, progress=False)
        return image

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = _http.request(
            method,
            self.base_url + path,
            body=json.dumps(body).encode() if body is not None else None,
            headers={
                "Authorization": f"Bearer {self.admin_token}",
                "Content-Type": "application/json",
            },
        )
        if response.status >= 400:
            raise AssertionError(f"{method} {path}: {response.status} {response.data!r}")
        return json.loads(response.data)

    def new_pump(
        self,
        directory: Path,
        device_id: str,
        *,
        hardware_id: str = "rev-b",
        factory_version: str = "1.0.0",
        factory_counter: int = 1,
        backend: str = "file",
        enroll: bool = True,
        **options: Any,
    ) -> SimulatedPump:
        """Provision a simulated pump and enroll it with the server."""
        key = Ed25519PrivateKey.generate()
        if enroll:
            self.api(
                "POST",
                "/api/v1/devices",
                {
                    "device_id": device_id,
                    "hardware_id": hardware_id,
                    "product": PRODUCT,
                    "public_key": key.public_key().public_bytes_raw().hex(),
                },
            )
        pump = SimulatedPump.create(
            directory,
            server_url=self.base_url,
            root=self.root,
            device_id=device_id,
            product=PRODUCT,
            hardware_id=hardware_id,
            key_pem=key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            factory_version=factory_version,
            factory_counter=factory_counter,
            backend=backend,
            **options,
        )
        self.pumps[device_id] = pump
        return pump

    def events(self, device_id: str) -> list[dict[str, Any]]:
        """The pump's events the server stored, oldest first."""
        doc = self.api("GET", f"/api/v1/devices/{device_id}/events?limit=1000")
        return list(reversed(doc["events"]))

    def device(self, device_id: str) -> dict[str, Any]:
        return dict(self.api("GET", f"/api/v1/devices/{device_id}"))


def set_selftest(pump: SimulatedPump, command: Iterable[str]) -> None:
    """Swap the pump's self-test command (e.g. /bin/true for fast harness runs)."""
    path = pump.config_path
    lines = path.read_text().splitlines()
    out = [
        f"command = {json.dumps(list(command))}" if line.startswith("command = ") else line
        for line in lines
    ]
    path.write_text("\n".join(out) + "\n")


@contextlib.contextmanager
def world_at(tmp: Path, key_dir: Path, tls: ssl.SSLContext | None = None) -> Iterator[World]:
    """Build a repository and a server in ``tmp``; serve it on loopback (HTTPS with ``tls``)."""
    os.environ.setdefault("PUMPGUARD_PASSPHRASE", PASSPHRASE)
    keys = tmp / "keys"
    shutil.copytree(key_dir, keys)
    work = tmp / "work"
    work.mkdir()
    env = make_repo_env(tmp / "repo", keys, work)
    data = tmp / "server"
    database_url = f"sqlite:///{tmp / 'server.db'}"
    _, admin = init_data_dir(
        data,
        repo=env.path,
        snapshot_key=str(env.key("snapshot")),
        timestamp_key=str(env.key("timestamp")),
        database_url=database_url,
    )
    engine = engine_for(database_url)
    try:
        with sessionmaker(engine).begin() as s:
            _, release_token = create_token(s, "carol", "release-engineer", [PRODUCT])
    finally:
        engine.dispose()
    app = create_app({"data_dir": data, "database_url": database_url, "refresh_interval": 0})
    liar = LyingServer(app)
    try:
        with live_server(liar, tls) as base:  # type: ignore[arg-type]
            yield World(env, data, base, admin, release_token, work, liar)
    finally:
        dispose(app)


def run_pump(pump: SimulatedPump, *, max_boots: int = 10, max_steps: int = 200) -> AgentState:
    """Power the pump on and run the agent through reboots until it rests.

    Returns the state the agent rests in (idle after a check-in, or a waiting
    state when ``max_steps`` ran out while deferred).
    """
    pump.power_on()
    for _ in range(max_boots):
        agent = Agent(pump.config())
        try:
            return agent.run_cycle(max_steps=max_steps, sleep=lambda s: None)
        except RebootRequested:
            pump.power_on()
    raise AssertionError(f"the pump rebooted more than {max_boots} times")
