"""The GRUB and U-Boot backends against the real tools: what only they do."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bootctl_support import SLOTS, make_backend, require_tool, write_fw_env_config
from device_agent.bootctl import BootEnv, GrubBootControl, UBootBootControl
from device_agent.bootctl.uboot import read_fw_env_config
from device_agent.errors import BootControlError


def _script(path: Path, body: str) -> str:
    """An executable stand-in for a tool."""
    path.write_text("#!/bin/sh\n" + body + "\n", encoding="utf-8")
    path.chmod(0o755)
    return str(path)


def _grub_list(env_file: Path) -> str:
    done = subprocess.run(
        ["grub-editenv", str(env_file), "list"], check=True, capture_output=True, text=True
    )
    return done.stdout


def _fw_printenv(config: Path, *names: str) -> str:
    done = subprocess.run(
        ["fw_printenv", "-c", str(config), *names], check=True, capture_output=True, text=True
    )
    return done.stdout


@pytest.fixture
def grub(tmp_path: Path) -> GrubBootControl:
    boot = make_backend("grub", tmp_path)
    assert isinstance(boot, GrubBootControl)
    return boot


@pytest.fixture
def uboot(tmp_path: Path) -> UBootBootControl:
    boot = make_backend("uboot", tmp_path)
    assert isinstance(boot, UBootBootControl)
    return boot


# --- GRUB ----------------------------------------------------------------------------


def test_grub_initialize_adds_variables_to_an_existing_block_and_keeps_others(
    grub: GrubBootControl,
) -> None:
    subprocess.run(["grub-editenv", str(grub.env_file), "create"], check=True)
    subprocess.run(["grub-editenv", str(grub.env_file), "set", "saved_entry=pump"], check=True)
    grub.initialize("a")
    grub.start_trial("b", 3)
    assert grub.read() == BootEnv("a", "b", 3)
    listing = _grub_list(grub.env_file)
    assert "saved_entry=pump\n" in listing
    assert "pg_committed=a\npg_trial=b\npg_attempts=3\n" in listing


def test_grub_updates_replace_the_block_by_rename_not_in_place(grub: GrubBootControl) -> None:
    # grub-editenv itself truncates and rewrites the live file; the backend
    # runs it on a scratch copy and renames the result into place instead.
    grub.initialize("a")
    inode = grub.env_file.stat().st_ino
    grub.start_trial("b", 3)
    assert grub.env_file.stat().st_ino != inode
    assert grub.env_file.stat().st_size == 1024
    assert list(grub.env_file.parent.glob(".grubenv.*")) == []


def test_grub_keeps_the_mode_of_the_block(grub: GrubBootControl) -> None:
    grub.initialize("a")
    grub.env_file.chmod(0o640)
    grub.start_trial("b", 3)
    assert grub.env_file.stat().st_mode & 0o777 == 0o640


def test_grub_partial_variables_are_an_error(grub: GrubBootControl) -> None:
    subprocess.run(["grub-editenv", str(grub.env_file), "set", "pg_committed=a"], check=True)
    with pytest.raises(BootControlError, match="pg_attempts is not set"):
        grub.read()
    with pytest.raises(BootControlError, match="pg_attempts is not set"):
        grub.initialize("a")


def test_grub_a_variable_forged_by_a_multiline_value_is_an_error(grub: GrubBootControl) -> None:
    grub.initialize("a")
    subprocess.run(
        ["grub-editenv", str(grub.env_file), "set", "note=x\npg_committed=b"], check=True
    )
    with pytest.raises(BootControlError, match="pg_committed appears twice"):
        grub.read()


# --- U-Boot --------------------------------------------------------------------------


def test_uboot_initialize_creates_a_redundant_env_with_mkenvimage(
    uboot: UBootBootControl,
) -> None:
    uboot.initialize("b")
    first, second = read_fw_env_config(uboot.config_file)
    one, two = first.device.read_bytes(), second.device.read_bytes()
    assert len(one) == len(two) == first.size
    assert one == two  # both copies valid from the start
    assert one[4] == 1  # mkenvimage -r: the flag byte of a redundant copy
    # the tools read it; an empty pg_trial is absent, as fw_setenv would leave it
    assert _fw_printenv(uboot.config_file) == "pg_attempts=0\npg_committed=b\n"


def test_uboot_initialize_takes_other_variables_from_a_defaults_file(tmp_path: Path) -> None:
    require_tool("fw_setenv")
    defaults = tmp_path / "u-boot-initial-env"
    defaults.write_text("bootcmd=run pg_select\nbootdelay=0\npg_committed=b\n", encoding="utf-8")
    boot = UBootBootControl(write_fw_env_config(tmp_path), SLOTS, defaults=defaults)
    boot.initialize("a")
    boot.start_trial("b", 2)
    assert boot.read() == BootEnv("a", "b", 2)
    assert _fw_printenv(boot.config_file, "bootcmd", "bootdelay") == (
        "bootcmd=run pg_select\nbootdelay=0\n"
    )


def test_uboot_initialize_adds_variables_to_an_existing_env_and_keeps_others(
    tmp_path: Path, uboot: UBootBootControl
) -> None:
    source = tmp_path / "env.txt"
    source.write_text("bootcmd=boot\n", encoding="utf-8")
    first, second = read_fw_env_config(uboot.config_file)
    argv = ["mkenvimage", "-r", "-s", str(first.size), "-o", str(first.device), str(source)]
    subprocess.run(argv, check=True)
    second.device.write_bytes(first.device.read_bytes())
    uboot.initialize("a")
    assert uboot.read() == BootEnv("a", None, 0)
    assert _fw_printenv(uboot.config_file, "bootcmd") == "bootcmd=boot\n"


def test_uboot_sets_all_variables_in_one_store(uboot: UBootBootControl) -> None:
    uboot.initialize("a")
    first, second = read_fw_env_config(uboot.config_file)
    before = first.device.read_bytes(), second.device.read_bytes()
    uboot.start_trial("b", 3)
    after = first.device.read_bytes(), second.device.read_bytes()
    # one copy rewritten with all three changes, the other untouched
    assert sum(b != a for b, a in zip(before, after, strict=True)) == 1
    assert uboot.read() == BootEnv("a", "b", 3)


def test_uboot_works_with_both_copies_in_one_file(tmp_path: Path) -> None:
    require_tool("fw_setenv")
    config = tmp_path / "fw_env.config"
    env = tmp_path / "uboot.env"
    config.write_text(f"{env} 0x0 0x2000\n{env} 0x2000 0x2000\n", encoding="utf-8")
    boot = UBootBootControl(config, SLOTS)
    boot.initialize("a")
    assert env.stat().st_size == 0x4000
    boot.start_trial("b", 2)
    assert boot.boot() == "b"
    assert boot.read() == BootEnv("a", "b", 1)


def test_uboot_a_missing_second_copy_is_an_error(uboot: UBootBootControl) -> None:
    uboot.initialize("a")
    read_fw_env_config(uboot.config_file)[1].device.unlink()
    with pytest.raises(BootControlError, match=r"uboot-env\.1 is missing"):
        uboot.read()


def test_uboot_a_crash_between_the_two_files_leaves_the_env_uninitialized(
    uboot: UBootBootControl,
) -> None:
    # The first copy's file is created last: with only the second present the
    # env counts as absent, and initialize runs again from scratch.
    uboot.initialize("a")
    read_fw_env_config(uboot.config_file)[0].device.unlink()
    with pytest.raises(BootControlError, match="not initialized"):
        uboot.read()
    uboot.initialize("b")
    assert uboot.read() == BootEnv("b", None, 0)


def test_uboot_never_creates_a_device_node(tmp_path: Path) -> None:
    require_tool("mkenvimage")
    config = tmp_path / "fw_env.config"
    config.write_text(
        "/dev/pumpguard-no-such-env 0x0 0x4000\n/dev/pumpguard-no-such-env 0x4000 0x4000\n",
        encoding="utf-8",
    )
    with pytest.raises(BootControlError, match="never device nodes"):
        UBootBootControl(config, SLOTS).initialize("a")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("/tmp/env 0x0 0x4000\n", "describes 1 environment copies"),
        ("# nothing\n", "describes 0 environment copies"),
        ("/tmp/env 0x0\n/tmp/env2 0x0 0x4000\n", "expected 'device offset envsize"),
        ("/tmp/env 0x0 big\n/tmp/env2 0x0 0x4000\n", "not a number"),
        ("/tmp/env 0x0 0x10\n/tmp/env2 0x0 0x10\n", "too small"),
        ("/tmp/env 0x0 0x4000\n/tmp/env2 0x0 0x2000\n", "differ in envsize"),
        ("/tmp/env 0x0 0x4000\n/tmp/env 0x2000 0x4000\n", "overlap"),
    ],
)
def test_uboot_a_bad_fw_env_config_is_an_error(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "fw_env.config"
    config.write_text(text, encoding="utf-8")
    with pytest.raises(BootControlError, match=message):
        UBootBootControl(config, SLOTS).read()


def test_uboot_a_missing_fw_env_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(BootControlError, match="cannot read U-Boot env config"):
        UBootBootControl(tmp_path / "fw_env.config", SLOTS).read()


def test_uboot_a_default_environment_is_never_taken_for_the_real_one(
    tmp_path: Path, uboot: UBootBootControl
) -> None:
    # With both copies bad, fw_printenv falls back to /etc/u-boot-initial-env
    # when that exists, exits 0 and only says so on stderr.
    uboot.initialize("a")
    fake = _script(
        tmp_path / "fw_printenv",
        'echo "Cannot read environment, using default" >&2\n'
        'printf "pg_committed=a\\npg_trial=\\npg_attempts=0\\n"',
    )
    boot = UBootBootControl(uboot.config_file, SLOTS, printenv=fake)
    with pytest.raises(BootControlError, match="both copies are unreadable"):
        boot.read()


def test_uboot_a_setenv_that_ignores_the_script_is_detected(
    tmp_path: Path, uboot: UBootBootControl
) -> None:
    # libubootenv's fw_setenv exits 0 for script lines it does not understand
    # (e.g. U-Boot's "name value" format), so every write is read back.
    uboot.initialize("a")
    fake = _script(tmp_path / "fw_setenv", "exit 0")
    boot = UBootBootControl(uboot.config_file, SLOTS, setenv=fake)
    with pytest.raises(BootControlError, match="fw_setenv left"):
        boot.start_trial("b", 3)


# --- both tool backends ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "option"),
    [
        ("grub", "tool"),
        ("uboot", "printenv"),
        ("uboot", "setenv"),
        ("uboot", "mkenvimage"),
    ],
)
def test_a_missing_tool_is_an_error_naming_it(tmp_path: Path, kind: str, option: str) -> None:
    ready = make_backend(kind, tmp_path / "env")
    if option != "mkenvimage":
        ready.initialize("a")
    missing = str(tmp_path / f"no-such-{option}")
    boot: GrubBootControl | UBootBootControl
    if isinstance(ready, GrubBootControl):
        boot = GrubBootControl(ready.env_file, SLOTS, tool=missing)
    elif option == "printenv":
        boot = UBootBootControl(ready.config_file, SLOTS, printenv=missing)
    elif option == "setenv":
        boot = UBootBootControl(ready.config_file, SLOTS, setenv=missing)
    else:
        boot = UBootBootControl(ready.config_file, SLOTS, mkenvimage=missing)
    with pytest.raises(BootControlError, match=f"no-such-{option} is not installed"):
        boot.initialize("a")  # reads (and, for mkenvimage, creates)
        boot.start_trial("b", 3)  # writes


@pytest.mark.parametrize("kind", ["grub", "uboot"])
def test_a_hanging_tool_times_out(tmp_path: Path, kind: str) -> None:
    ready = make_backend(kind, tmp_path / "env")
    ready.initialize("a")
    hang = _script(tmp_path / "hang", "exec sleep 30")
    if kind == "grub":
        boot: GrubBootControl | UBootBootControl = GrubBootControl(
            tmp_path / "env" / "grubenv", SLOTS, tool=hang, timeout=0.2
        )
    else:
        assert isinstance(ready, UBootBootControl)
        boot = UBootBootControl(ready.config_file, SLOTS, printenv=hang, timeout=0.2)
    with pytest.raises(BootControlError, match=r"did not finish within 0\.2 s"):
        boot.read()


@pytest.mark.parametrize("kind", ["grub", "uboot"])
def test_a_failing_tool_is_reported_with_its_stderr(tmp_path: Path, kind: str) -> None:
    ready = make_backend(kind, tmp_path / "env")
    ready.initialize("a")
    bad = _script(tmp_path / "bad", 'echo "device on fire" >&2\nexit 3')
    if kind == "grub":
        boot: GrubBootControl | UBootBootControl = GrubBootControl(
            tmp_path / "env" / "grubenv", SLOTS, tool=bad
        )
    else:
        assert isinstance(ready, UBootBootControl)
        boot = UBootBootControl(ready.config_file, SLOTS, printenv=bad)
    with pytest.raises(BootControlError, match="bad failed with exit status 3: device on fire"):
        boot.read()


# --- what the tools read, and a symlinked grubenv -------------------------------------


def test_grub_writes_through_a_symlinked_env_to_the_file_grub_loads(tmp_path: Path) -> None:
    """/boot/grub2/grubenv -> ../efi/EFI/<os>/grubenv: GRUB reads the link's target."""
    require_tool("grub-editenv")
    (tmp_path / "esp").mkdir()
    (tmp_path / "boot").mkdir()
    target = tmp_path / "esp" / "grubenv"
    subprocess.run(["grub-editenv", str(target), "create"], check=True)
    subprocess.run(["grub-editenv", str(target), "set", "saved_entry=pump"], check=True)
    link = tmp_path / "boot" / "grubenv"
    link.symlink_to("../esp/grubenv")
    boot = GrubBootControl(link, SLOTS)
    boot.initialize("a")
    boot.start_trial("b", 3)
    assert link.is_symlink()
    assert _grub_list(target) == "saved_entry=pump\npg_committed=a\npg_trial=b\npg_attempts=3\n"
    assert boot.read() == BootEnv("a", "b", 3)


@pytest.mark.parametrize("size", ["4000", "8192", "16384"])
def test_uboot_a_size_without_0x_is_refused_because_the_tools_read_it_as_hex(
    tmp_path: Path, size: str
) -> None:
    """libubootenv reads envsize with %zx: "8192" is 0x8192 = 33170 bytes to the tools."""
    require_tool("fw_printenv")
    tools_size = int(size, 16)
    source = tmp_path / "env.txt"
    source.write_text("pg_committed=a\npg_attempts=0\n", encoding="utf-8")
    copies = [tmp_path / "uboot-env.0", tmp_path / "uboot-env.1"]
    for copy in copies:
        argv = ["mkenvimage", "-r", "-s", hex(tools_size), "-o", str(copy), str(source)]
        subprocess.run(argv, check=True)
    config = tmp_path / "fw_env.config"
    config.write_text("".join(f"{c} 0 {size}\n" for c in copies), encoding="utf-8")
    # The tools take the bare number as hexadecimal: they read these copies.
    assert _fw_printenv(config, "pg_committed") == "pg_committed=a\n"
    with pytest.raises(BootControlError, match=f"envsize '{size}' is ambiguous.*0x{size}"):
        read_fw_env_config(config)
    # Written with 0x, pumpguard and the tools agree on the layout.
    config.write_text("".join(f"{c} 0 0x{size}\n" for c in copies), encoding="utf-8")
    assert read_fw_env_config(config)[0].size == tools_size
    assert UBootBootControl(config, SLOTS).read() == BootEnv("a", None, 0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # The review's layout: decimal-looking sizes, copies 0x8192 long 8192 apart.
        ("{env} 0 8192\n{env} 8192 8192\n", r"envsize '8192' is ambiguous"),
        ("{env} 0x0 0x4000\n{link} 0x2000 0x4000\n", r"the two copies overlap \(offsets"),
        ("{env} 010 0x4000\n{env} 0x4000 0x4000\n", r"offset '010' is octal"),
        ("{env} -0x4000 0x4000\n{env} 0x4000 0x4000\n", r"offset '-0x4000' is not a number"),
        ("{env} 0x0 0x4000 1000\n{env} 0x4000 0x4000 1000\n", r"sectorsize '1000' is ambiguous"),
        ("{env} 0x0 0x4000z\n{env} 0x4000 0x4000\n", r"envsize '0x4000z' is not a number"),
    ],
    ids=["decimal-sizes", "overlap-through-a-symlink", "octal-offset", "negative-offset",
         "decimal-sectorsize", "trailing-junk"],
)  # fmt: skip
def test_uboot_an_ambiguous_or_overlapping_env_config_is_refused(
    tmp_path: Path, text: str, message: str
) -> None:
    env = tmp_path / "uboot.env"
    (tmp_path / "link.env").symlink_to(env)
    config = tmp_path / "fw_env.config"
    config.write_text(text.format(env=env, link=tmp_path / "link.env"), encoding="utf-8")
    with pytest.raises(BootControlError, match=message):
        UBootBootControl(config, SLOTS).read()
