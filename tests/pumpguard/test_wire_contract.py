"""The wire contract agrees with itself in all three places: agent, server, OpenAPI.

One table of device ids goes through the agent's configuration check, the
server's check and the OpenAPI document's pattern, and all three must give
the contract's verdict (threats SRV-INPUT, SRV-DEVICE-SPOOF). The
vocabularies the server and the document use are the contract's enums, and
docs/agent.md's table of refusal reasons names exactly the enum's reasons.
The real agent's bodies are checked in tests/device_agent/test_agent_wire_contract.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from device_agent.config import load_config
from device_agent.errors import AgentConfigError
from pumpguard import contract
from pumpguard.contract import (
    AgentState,
    EventKind,
    RefusalReason,
    SlotState,
    TherapyState,
    UpdateResult,
    http_reason,
    parse_reason,
)
from pumpguard.errors import ReleaseContractError
from update_server import devices
from update_server.device_auth import validate_device_id
from update_server.errors import BadRequestError
from update_server.openapi import SPEC

_DOCS = Path(__file__).resolve().parents[2] / "docs" / "agent.md"

_CONFIG = """\
[device]
id = {device_id}
product = "sigma-spectrum"
hardware_id = "rev-b"
key = "device.key"

[server]
url = "http://127.0.0.1:8080"

[tuf]
root = "root.json"

[slots]
a = "slots/a.img"
b = "slots/b.img"

[boot]
booted_slot = "file:state/booted"

[selftest]
command = ["/bin/true"]

[safety]
status = "file:status.json"
"""

#: (device id, whether the contract takes it).
DEVICE_IDS = [
    pytest.param("pump-0001", True, id="plain"),
    pytest.param("a", True, id="one-character"),
    pytest.param("0", True, id="one-digit"),
    pytest.param("pump:0001", True, id="colon"),
    pytest.param("PUMP.0001_b-c", True, id="dot-underscore-hyphen-upper-case"),
    pytest.param("acme:sigma:SN-000123", True, id="udi-like"),
    pytest.param("p" * 64, True, id="64-characters"),
    pytest.param("p" * 65, True, id="65-characters"),
    pytest.param("p" * 100, True, id="100-characters"),
    pytest.param("p" * 128, True, id="128-characters"),
    pytest.param("p" * 129, False, id="129-characters"),
    pytest.param("", False, id="empty"),
    pytest.param("pump-0001\n", False, id="trailing-newline"),
    pytest.param("\npump-0001", False, id="leading-newline"),
    pytest.param("pump-0001 ", False, id="trailing-space"),
    pytest.param("pump 0001", False, id="inner-space"),
    pytest.param("pump\t0001", False, id="tab"),
    pytest.param(".", False, id="dot"),
    pytest.param("..", False, id="dot-dot"),
    pytest.param("../etc", False, id="traversal"),
    pytest.param("pump/0001", False, id="slash"),
    pytest.param("pump%2F0001", False, id="percent"),
    pytest.param("pump?0001", False, id="question-mark"),
    pytest.param("pump#0001", False, id="hash"),
    pytest.param("-a", False, id="leading-hyphen"),
    pytest.param(".a", False, id="leading-dot"),
    pytest.param("_a", False, id="leading-underscore"),
    pytest.param(":a", False, id="leading-colon"),
    pytest.param("pump-\u0661\u0662", False, id="arabic-indic-digits"),
    pytest.param("pump-\uff11", False, id="fullwidth-digit"),
    pytest.param("\u0661", False, id="only-a-unicode-digit"),
    pytest.param("pump\u00e9", False, id="latin-letter-with-accent"),
    pytest.param("pump\u212a", False, id="kelvin-sign"),
    pytest.param("pump\u200b", False, id="zero-width-space"),
]


def _agent_takes(tmp_path: Path, device_id: str) -> bool:
    path = tmp_path / "agent.toml"
    # A JSON string (non-ASCII kept) is a valid TOML basic string.
    path.write_text(_CONFIG.format(device_id=json.dumps(device_id, ensure_ascii=False)))
    try:
        config = load_config(path)
    except AgentConfigError as e:
        assert "[device] id" in str(e), e
        return False
    assert config.device_id == device_id
    return True


def _server_takes(device_id: str) -> bool:
    try:
        assert validate_device_id(device_id) == device_id
    except BadRequestError:
        return False
    return True


def _schemas() -> dict[str, dict[str, Any]]:
    """Every place the OpenAPI document states a device id."""
    out = {
        "enrollment body": SPEC["components"]["schemas"]["Enrollment"]["properties"]["device_id"],
        "device answer": SPEC["components"]["schemas"]["Device"]["properties"]["device_id"],
    }
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            parameters = operation if method == "parameters" else operation.get("parameters", ())
            for parameter in parameters:
                if parameter.get("name") == "device_id":
                    out[f"{method} {path}"] = parameter["schema"]
    return out


def _openapi_takes(device_id: str) -> dict[str, bool]:
    return {
        where: Draft202012Validator(schema).is_valid(device_id)
        for where, schema in _schemas().items()
    }


def _contract_takes(device_id: str) -> bool:
    try:
        contract.validate_device_id(device_id)
    except ReleaseContractError:
        return False
    return True


@pytest.mark.parametrize(("device_id", "valid"), DEVICE_IDS)
def test_device_id_table_agrees_in_agent_config_server_and_openapi(
    tmp_path: Path, device_id: str, valid: bool
) -> None:
    assert contract.is_device_id(device_id) is valid
    assert _contract_takes(device_id) is valid
    assert _agent_takes(tmp_path, device_id) is valid, "agent config"
    assert _server_takes(device_id) is valid, "server"
    verdicts = _openapi_takes(device_id)
    assert len(verdicts) >= 4  # enrollment, answer and the per-device paths
    assert verdicts == dict.fromkeys(verdicts, valid), "OpenAPI"


def test_device_id_table_covers_both_ends_of_the_length_rule() -> None:
    lengths = {len(p.values[0]): p.values[1] for p in DEVICE_IDS}
    assert lengths[contract.MAX_DEVICE_ID_LENGTH] is True
    assert lengths[contract.MAX_DEVICE_ID_LENGTH + 1] is False


def test_server_vocabularies_are_the_contract_enums() -> None:
    assert tuple(EventKind) == devices.EVENT_KINDS
    assert tuple(TherapyState) == devices.THERAPY_STATES
    assert tuple(SlotState) == devices.SLOT_STATES
    assert tuple(UpdateResult) == devices.UPDATE_RESULTS
    assert tuple(AgentState) == devices.AGENT_STATES


def test_openapi_vocabularies_and_limits_are_the_contract() -> None:
    schemas = SPEC["components"]["schemas"]
    checkin = schemas["Checkin"]["properties"]
    assert checkin["therapy"]["properties"]["state"]["enum"] == list(TherapyState)
    assert checkin["agent_state"]["enum"] == [*AgentState, None]
    assert checkin["slots"]["additionalProperties"]["properties"]["state"]["enum"] == list(
        SlotState
    )
    assert checkin["slots"]["maxProperties"] == contract.MAX_SLOTS
    last = checkin["last_update"]["anyOf"][1]["properties"]
    assert last["result"]["enum"] == list(UpdateResult)
    assert last["error"]["maxLength"] == contract.MAX_ERROR_TEXT
    assert checkin["release_counter"]["maximum"] == contract.MAX_COUNTER
    assert checkin["version"]["maxLength"] == contract.MAX_VERSION_LENGTH
    events = schemas["Events"]["properties"]["events"]
    assert events["maxItems"] == contract.MAX_EVENTS
    assert events["items"]["properties"]["kind"]["enum"] == list(EventKind)
    assert events["items"]["properties"]["at"]["maxLength"] == contract.MAX_TIME_LENGTH


def test_agent_state_machine_uses_the_contract_states() -> None:
    from device_agent import state, status

    assert state.AgentState is AgentState
    assert tuple(TherapyState) == status.THERAPY_STATES


def _documented_reasons() -> set[str]:
    text = _DOCS.read_text(encoding="utf-8")
    section = text.split("## What the agent refuses, and the reason it reports", 1)[1]
    section = section.split("\n## ", 1)[0]
    reasons: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            reasons.update(re.findall(r"`([^`]+)`", first_cell))
    return reasons


def test_every_refusal_reason_is_documented_and_every_documented_reason_exists() -> None:
    documented = _documented_reasons()
    # http-NNN is the documented form of http_reason(status), not a member.
    assert documented - {"http-NNN"} == {r.value for r in RefusalReason}
    assert "http-NNN" in documented


@pytest.mark.parametrize("status", [301, 404, 503])
def test_http_reasons_read_back_as_reported(status: int) -> None:
    reason = http_reason(status)
    assert reason == f"http-{status}"
    assert parse_reason(reason) == reason


@pytest.mark.parametrize("text", ["http-1000", "http-99", "tuf-verification", "Loop", ""])
def test_unknown_reasons_are_not_read_back(text: str) -> None:
    with pytest.raises(ValueError, match=r"not a valid RefusalReason"):
        parse_reason(text)
