"""The agent configuration: every wrong value is named when the file loads."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
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


# ------------------------------------------------ a slot that is another file
def _symlink(link: str, target: str) -> Callable[[Path], None]:
    return lambda d: (d / link).symlink_to(target)


def _hard_link(d: Path) -> None:
    (d / "slots/b.img").hardlink_to(d / "slots/a.img")


def _second_device_node(d: Path) -> None:
    # Two nodes of one partition (/dev/disk/by-partlabel/x copied with mknod).
    (d / "slots/a.img").unlink()
    try:
        for name in ("a.img", "b.img"):
            os.mknod(d / "slots" / name, stat.S_IFBLK | 0o600, os.makedev(7, 250))
    except PermissionError:
        pytest.skip("creating block device nodes needs CAP_MKNOD")


def _uboot_env(d: Path) -> None:
    env = d / "uboot-env.bin"
    (d / "fw_env.config").write_text(f"{env} 0x0 0x4000\n{env} 0x4000 0x4000\n")


_BOOTED = 'booted_slot = "file:state/booted"'
_UBOOT = (_BOOTED, _BOOTED + '\nbackend = "uboot"\nenv = "fw_env.config"')
_METADATA_DIR = ('root = "root.json"', 'root = "root.json"\nmetadata_dir = "tuf-cache"')

#: (case, slot b's value, other edit of GOOD or None, set-up of the folder or None)
ALIASES: list[tuple[str, str, tuple[str, str] | None, Callable[[Path], None] | None]] = [
    ("dot-dot-path-of-slot-a", "slots/../slots/a.img", None, None),
    ("symlink-to-slot-a", "slots/by-partlabel-b", None, _symlink("slots/by-partlabel-b", "a.img")),
    ("hard-link-to-slot-a", "slots/b.img", None, _hard_link),
    ("slot-a-through-a-symlinked-folder", "alias/a.img", None, _symlink("alias", "slots")),
    ("second-device-node-of-slot-a", "slots/b.img", None, _second_device_node),
    ("the-boot-env", "state/bootenv", None, None),
    ("the-device-key", "device.key", None, None),
    ("the-tuf-root", "root.json", None, None),
    ("the-therapy-status", "status.json", None, None),
    ("the-booted-slot-file", "state/booted", None, None),
    ("the-config-itself", "agent.toml", None, None),
    ("inside-the-state-dir", "state/b.img", None, None),
    ("inside-the-metadata-dir", "tuf-cache/b.img", _METADATA_DIR, None),
    ("the-u-boot-env-partition", "uboot-env.bin", _UBOOT, _uboot_env),
    ("a-directory", "slots", None, None),
]


@pytest.mark.parametrize(
    ("value", "edit", "setup"), [a[1:] for a in ALIASES], ids=[a[0] for a in ALIASES]
)
def test_a_slot_that_is_another_configured_file_is_refused(
    tmp_path: Path,
    value: str,
    edit: tuple[str, str] | None,
    setup: Callable[[Path], None] | None,
) -> None:
    """Every update overwrites the inactive slot: it must be nothing else."""
    (tmp_path / "slots").mkdir()
    (tmp_path / "state").mkdir()
    (tmp_path / "slots/a.img").write_bytes(b"factory image")
    for name in ("device.key", "root.json", "status.json", "state/bootenv", "state/booted"):
        (tmp_path / name).write_bytes(b"precious")
    if setup is not None:
        setup(tmp_path)
    text = GOOD.replace('b = "slots/b.img"', f'b = "{value}"')
    if edit is not None:
        text = text.replace(*edit)
    path = tmp_path / "agent.toml"
    path.write_text(text)
    with pytest.raises(AgentConfigError, match=r"\[slots\] [ab] = '.*' (is|lies) "):
        load_config(path)


# --------------------------------------------- values that defeat a defence
@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('url = "http://127.0.0.1:8080"', 'url = "http://[::1"', r"\[server\] url .*not a valid"),
        ('url = "http://127.0.0.1:8080"', 'url = "http://127.0.0.1:99999"', r"\[server\] url"),
        ('url = "http://127.0.0.1:8080"', 'url = "http://127.0.0.1:port"', r"\[server\] url"),
        ('url = "http://127.0.0.1:8080"', 'url = "http://127.0.0.1:0"', "port 0"),
        (
            'url = "http://127.0.0.1:8080"',
            'url = "http://127.0.0.1:8080"\nmetadata_url = "https://[fe80::1"',
            r"\[server\] metadata_url",
        ),
        ("[server]", "[server]\nmin_firmware_rate = 1", "min_firmware_rate"),
        ("[server]", "[server]\nmin_firmware_rate = 1023", "min_firmware_rate"),
        ("[safety]", "[safety]\nmax_status_age = 86400", "max_status_age"),
        ("[safety]", "[safety]\nmax_status_age = 301", "max_status_age"),
    ],
    ids=["unclosed-ipv6-host", "port-out-of-range", "port-not-a-number", "port-0",
         "bad-metadata-url", "firmware-rate-1-byte", "firmware-rate-below-1-kib",
         "status-a-day-old", "status-over-5-minutes-old"],
)  # fmt: skip
def test_a_value_that_defeats_a_defence_is_a_config_error_naming_the_key(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    path = tmp_path / "agent.toml"
    assert old in GOOD
    path.write_text(GOOD.replace(old, new, 1))
    with pytest.raises(AgentConfigError, match=message):
        load_config(path)
