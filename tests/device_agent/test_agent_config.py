"""The agent configuration: every wrong value is named when the file loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_agent.config import load_config
from device_agent.errors import AgentConfigError

GOOD = """\
[device]
id = "pump-0001"
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
maintenance_window = "22:00-06:00"
"""


def test_good_config_resolves_paths_against_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(GOOD)
    config = load_config(path)
    assert config.slots["a"] == tmp_path / "slots/a.img"
    assert config.server.metadata_url == "http://127.0.0.1:8080/tuf/metadata"
    assert config.metadata_dir == tmp_path / "state/tuf"
    assert config.boot.reboot_command == ("systemctl", "reboot")
    assert str(config.safety.maintenance_window) == "22:00-06:00"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('url = "http://127.0.0.1:8080"', 'url = "http://updates.example.org"', "only to loopback"),
        ('url = "http://127.0.0.1:8080"', 'url = "ftp://x"', "not an http"),
        ('id = "pump-0001"', 'id = "../etc"', "not a valid device id"),
        ('product = "sigma-spectrum"', 'product = "Sigma"', r"\[device\]"),
        ('b = "slots/b.img"', 'b = "slots/a.img"', "different paths"),
        ('b = "slots/b.img"', "", "exactly two slots"),
        ('command = ["/bin/true"]', "command = []", "non-empty list"),
        ('status = "file:status.json"', 'status = "carrier-pigeon"', "file:PATH"),
        ('"22:00-06:00"', '"22:00-22:00"', "empty"),
        ('"22:00-06:00"', '"25:00-06:00"', "maintenance_window"),
        ("[slots]", "[slots]\nc_extra = 1", "valid slot name|must be a path"),
        ('booted_slot = "file:state/booted"', "attempts = 0", r"\[boot\] attempts"),
        ("[device]", "[gadget]\n[device]", "unknown section"),
        ('key = "device.key"', 'key = "device.key"\ncolour = "red"', "unknown key"),
    ],
)
def test_bad_config_names_what_is_wrong(tmp_path: Path, old: str, new: str, message: str) -> None:
    path = tmp_path / "agent.toml"
    assert old in GOOD
    path.write_text(GOOD.replace(old, new, 1))
    with pytest.raises(AgentConfigError, match=message):
        load_config(path)


def test_unreadable_and_non_toml_configs_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(AgentConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[device\n")
    with pytest.raises(AgentConfigError, match="not valid TOML"):
        load_config(bad)
