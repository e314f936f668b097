"""The umbrella CLI: help everywhere, one-line errors, meaningful exit codes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pytest

from pumpguard.cli import cli
from repo_support import CliResult
from tmpfs_support import fill, remount, tmpfs


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


ALL_COMMANDS = sorted(_commands(cli))


def test_every_component_group_is_listed() -> None:
    assert {c[0] for c in ALL_COMMANDS} >= {"keys", "repo", "release", "sbom"}


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=" ".join)
def test_every_command_has_help(
    command: tuple[str, ...], run_cli: Callable[..., CliResult]
) -> None:
    r = run_cli(*command, "--help")
    assert r.code == 0, r.err
    assert "Usage: " in r.out


def test_unknown_repository_is_one_clear_line(
    tmp_path: object, run_cli: Callable[..., CliResult]
) -> None:
    r = run_cli("repo", "status", "--repo", "/nonexistent/repo")
    assert r.code == 1
    assert (
        r.err == "error: /nonexistent/repo is not a pumpguard repository (no pumpguard-repo.json)\n"
    )


def test_usage_error_exits_2(run_cli: Callable[..., CliResult]) -> None:
    assert run_cli("release", "create").code == 2


def test_repository_error_naming_a_path_with_a_newline_stays_one_line(
    run_cli: Callable[..., CliResult],
) -> None:
    """A name from the command line or a bundle cannot add a forged line to the error."""
    r = run_cli("repo", "status", "--repo", "/nonexistent\nerror: forged")
    assert r.code == 1
    assert r.err == (
        "error: /nonexistent\\nerror: forged is not a pumpguard repository"
        " (no pumpguard-repo.json)\n"
    )


# ------------------------------------------------------------- system errors
# Each OSError comes from a real cause; the command is a real process, so its
# stderr is exactly what an operator sees (a traceback included, if any).

_FIRMWARE = ("agent", "simulate", "firmware", "--version", "1.0.0", "--size", "65536")


def _run(*args: str, as_nobody: bool = False) -> CliResult:
    prefix: list[str] = []
    if as_nobody:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            message = "setpriv (util-linux) is needed to run the CLI as another user"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
        prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    done = subprocess.run(
        [*prefix, sys.executable, "-m", "pumpguard", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd="/",
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


def _full(fs: Path) -> Path:
    fill(fs / "filler", leave_pages=2)  # 64 KiB of firmware needs sixteen
    return fs / "fw.img"


def _read_only(fs: Path) -> Path:
    remount(fs, "ro")
    return fs / "fw.img"


def _not_writable(fs: Path) -> Path:
    folder = fs / "root-only"
    folder.mkdir(mode=0o755)
    return folder / "fw.img"


def _too_long(fs: Path) -> Path:
    return fs / ("f" * 300)


def _under_a_file(fs: Path) -> Path:
    (fs / "file").write_bytes(b"")
    return fs / "file" / "fw.img"


def _missing_folder(fs: Path) -> Path:
    return fs / "missing" / "fw.img"


_OS_ERRORS = {
    "ENOSPC": (_full, False, "No space left on device", "free some space and try again"),
    "EROFS": (_read_only, False, "Read-only file system", "the file system is mounted read-only"),
    "EACCES": (
        _not_writable,
        True,
        "Permission denied",
        "check the owner and mode of the file and its folders",
    ),
    "ENAMETOOLONG": (_too_long, False, "File name too long", "use a shorter path"),
    "ENOTDIR": (_under_a_file, False, "Not a directory", None),
    "ENOENT": (_missing_folder, False, "No such file or directory", None),
}


@pytest.mark.parametrize("name", list(_OS_ERRORS))
def test_system_error_is_one_line_naming_the_command_and_the_reason(
    tmp_path: Path, name: str
) -> None:
    """ENOSPC, EROFS, EACCES ... from the OS: exit 1 and one line, never a traceback."""
    make, as_nobody, reason, hint = _OS_ERRORS[name]
    with tmpfs(tmp_path / "fs", size=256 * 1024) as fs:
        out = make(fs)
        r = _run(*_FIRMWARE, "--out", str(out), as_nobody=as_nobody)
        if name == "EROFS":
            remount(fs, "rw")  # so that the unmount and the listing below work alike
        leftovers = sorted(p.name for p in fs.iterdir())
    assert r.code == 1, r
    expected = f"error: agent simulate firmware failed: {reason}: {out}"
    assert r.err == expected + (f" ({hint})" if hint else "") + "\n"
    assert ".tmp" not in r.err  # the file asked for, not the temporary one
    assert not [n for n in leftovers if n.startswith(".")], leftovers
