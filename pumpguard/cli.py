"""The umbrella ``pumpguard`` command.

Each component owns its own click group in its ``cli`` module; this module only
loads the one a command line names, so that ``pumpguard agent ...`` on a pump
never imports Flask or the signer's key tooling (DESIGN.md, Layout).
"""

from __future__ import annotations

import errno
import importlib
import logging
import os
import sys
from typing import Any

import click

from pumpguard import __version__
from pumpguard.errors import PumpguardError

__all__ = ["EXTRA_MODULES", "main", "missing_extra"]

#: Command name -> "module:attribute" of the component's click group.
_COMPONENTS: dict[str, tuple[str, str]] = {
    "keys": ("signer.cli:keys", "Generate and inspect signing keys."),
    "repo": ("signer.cli:repo", "Create and maintain the TUF repository."),
    "release": ("signer.cli:release", "Create, sign, verify and publish releases."),
    "sbom": ("sbom.cli:sbom", "Generate, check, audit, diff and verify CycloneDX SBOMs."),
    "vulndb": ("sbom.cli:vulndb", "Import vulnerability feeds into the offline store."),
    "agent": ("device_agent.cli:agent", "Run the pump agent or a simulated pump."),
    "server": ("update_server.cli:server", "Create, run and administer the update server."),
    "device": ("pumpguard.device_cli:device", "Make device keys and enroll pumps."),
    "threats": ("threat_model.cli:threats", "Check, list and report the threat model."),
    "assurance": (
        "threat_model.assurance_cli:assurance",
        "Static analysis and the premarket assurance package.",
    ),
}


#: Top-level module -> the extra that installs it, for the hint on a base install.
EXTRA_MODULES: dict[str, str] = {
    "flask": "server",
    "werkzeug": "server",
    "sqlalchemy": "server",
    "alembic": "server",
    "psycopg": "server",
    "psycopg_pool": "server",
    "gunicorn": "server",
    "waitress": "server",
    "nacl": "server",
    "pkcs11": "pkcs11",
    "asn1crypto": "pkcs11",
}


def missing_extra(error: ModuleNotFoundError) -> str | None:
    """The extra whose absence ``error`` reports, if it is one of ours.

    Args:
        error: Raised by an import.

    Returns:
        The extra's name (``server``, ``pkcs11``), or None for another module.
    """
    return EXTRA_MODULES.get((error.name or "").partition(".")[0])


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMPONENTS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _COMPONENTS:
            return None
        module_name, attr = _COMPONENTS[cmd_name][0].split(":")
        command = getattr(importlib.import_module(module_name), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{module_name}:{attr} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Describe the groups without importing them, so --help stays fast.
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_) for name, (_, help_) in sorted(_COMPONENTS.items())])


@click.group(cls=_LazyGroup)
@click.version_option(__version__, prog_name="pumpguard")
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """pumpguard: secure firmware updates for networked infusion pumps."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


#: What to do about the system errors an operator can fix, by errno.
_OS_ERROR_HINTS: dict[int, str] = {
    errno.ENOSPC: "free some space and try again",
    errno.EDQUOT: "free some space or raise the quota and try again",
    errno.EROFS: "the file system is mounted read-only",
    errno.EACCES: "check the owner and mode of the file and its folders",
    errno.EPERM: "check the owner and mode of the file and its folders",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n)",
    errno.ENFILE: "the system's open-file table is full",
    errno.EIO: "the storage may be failing",
    errno.ENAMETOOLONG: "use a shorter path",
}


def _operation(argv: list[str]) -> str:
    """The command an argument list names, e.g. ``release publish``.

    Only the top-level group takes options, and those are flags, so the
    command path is the leading words that name subcommands.
    """
    names: list[str] = []
    command: click.Command = cli
    for arg in argv:
        if arg.startswith("-"):
            continue
        if not isinstance(command, click.Group):
            break
        try:
            sub = command.get_command(click.Context(command), arg)
        except (ImportError, OSError):  # the import itself failed: name what is known
            break
        if sub is None:
            break
        names.append(arg)
        command = sub
    return " ".join(names) or "pumpguard"


def _one_line(text: str) -> str:
    # A file name or a bundle's field may hold a newline or a terminal escape;
    # the error stays one line that nobody can forge a second line into.
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _os_error_message(operation: str, e: OSError) -> str:
    parts = [e.strerror or str(e)]
    if e.filename is not None:
        parts.append(os.fsdecode(e.filename))
    if e.filename2 is not None:
        parts.append(os.fsdecode(e.filename2))
    hint = _OS_ERROR_HINTS.get(e.errno) if e.errno is not None else None
    return _one_line(f"{operation} failed: {': '.join(parts)}" + (f" ({hint})" if hint else ""))


def main(argv: list[str] | None = None) -> Any:
    """Run the CLI; a :class:`PumpguardError` or an OSError becomes one line on stderr.

    Exit codes: 0 success, 1 a refused or failed operation (an OSError such as
    a full disk included), 2 bad usage or configuration, 3 release contract
    violation, 4 verification failure (signatures, hashes, threshold), 5 a
    policy check failed (SBOM check or audit findings above the chosen
    threshold), 130 interrupted. A command that needs an extra the
    installation lacks exits 2 with the ``pip install`` line that adds it.
    """
    args = sys.argv[1:] if argv is None else argv
    try:
        rv = cli.main(args=args, standalone_mode=False)
    except ModuleNotFoundError as e:
        extra = missing_extra(e)
        if extra is None:
            raise
        click.echo(
            f"error: this command needs the {extra} extra ({e}): pip install 'pumpguard[{extra}]'",
            err=True,
        )
        sys.exit(2)
    except PumpguardError as e:
        click.echo(f"error: {_one_line(str(e))}", err=True)
        sys.exit(e.exit_code)
    except OSError as e:
        # The system refused (ENOSPC, EROFS, EACCES ...): one line naming the
        # command and the reason, not a traceback. Only OSError: anything else
        # is a bug and keeps its traceback. (Click itself ends a command whose
        # stdout reader went away, EPIPE, with a silent exit 1.)
        click.echo(f"error: {_os_error_message(_operation(args), e)}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    # standalone_mode=False returns ctx.exit()'s code instead of exiting.
    if isinstance(rv, int) and rv:
        sys.exit(rv)
    return rv
