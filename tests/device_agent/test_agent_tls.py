"""The agent over HTTPS: a pinned CA and the pump's client certificate (mutual TLS)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_support import World, run_pump, world_at
from device_agent.agent import Agent
from device_agent.state import AgentState
from pki_support import make_pki, server_context


@pytest.fixture
def tls_world(
    key_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[World, Path]]:
    pki = make_pki(tmp_path / "pki")
    # The release engineer's and operator's tools trust the test CA through
    # the standard variable; the pump is configured explicitly.
    monkeypatch.setenv("SSL_CERT_FILE", str(pki / "ca.crt"))
    with world_at(tmp_path / "world", key_dir, server_context(pki, ssl.CERT_OPTIONAL)) as w:
        yield w, pki


def _use_tls(config: Path, ca: Path, cert: Path, key: Path) -> None:
    text = config.read_text().replace(
        "timeout = 10\n",
        f'timeout = 10\nca_file = "{ca}"\nclient_cert = "{cert}"\nclient_key = "{key}"\n',
    )
    config.write_text(text)


def test_update_over_mutual_tls_with_a_pinned_ca(
    tls_world: tuple[World, Path], tmp_path: Path
) -> None:
    world, pki = tls_world
    assert world.base_url.startswith("https://")
    image = world.publish("2.0.0", 2)
    pump = world.new_pump(tmp_path / "pump", "pump-0001")
    _use_tls(pump.config_path, pki / "ca.crt", pki / "pump.crt", pki / "pump.key")

    assert run_pump(pump) is AgentState.IDLE
    assert pump.booted_image() == ("b", image.read_bytes())
    assert world.device("pump-0001")["version"] == "2.0.0"


def test_server_with_a_certificate_from_another_ca_is_refused(
    tls_world: tuple[World, Path], tmp_path: Path
) -> None:
    world, _ = tls_world
    world.publish("2.0.0", 2)
    other = make_pki(tmp_path / "other-pki")
    pump = world.new_pump(tmp_path / "pump", "pump-0001")
    _use_tls(pump.config_path, other / "ca.crt", other / "pump.crt", other / "pump.key")

    assert run_pump(pump, max_steps=5) is AgentState.IDLE
    agent = Agent(pump.config())
    assert agent.boot.read().trial is None
    assert pump.config().slots["b"].read_bytes() == b""
    assert world.device("pump-0001")["last_seen"] is None  # never reached the server
