"""The umbrella CLI: help everywhere, one-line errors, meaningful exit codes."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import click
import pytest

from pumpguard.cli import cli
from repo_support import CliResult


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
