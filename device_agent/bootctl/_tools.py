"""Running the bootloader's own tools (grub-editenv, fw_printenv, fw_setenv, mkenvimage)."""

from __future__ import annotations

import os

# Only run_tool below uses subprocess, always with a fixed argument list.
import subprocess  # nosec B404
from collections.abc import Sequence

from device_agent.errors import BootControlError

__all__ = ["TOOL_TIMEOUT", "run_tool"]

#: Seconds a tool may take. They touch a few KiB; a hang means a stuck device.
TOOL_TIMEOUT = 10.0

# Only what the tools need: a fixed locale keeps their messages parseable, and
# nothing else of the agent's environment (proxies, LD_*) leaks into them.
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def run_tool(argv: Sequence[str], timeout: float = TOOL_TIMEOUT) -> tuple[str, str]:
    """Run a tool without a shell and return its standard output and error.

    Args:
        argv: The program and its arguments, a fixed list built by the caller.
        timeout: Seconds before the tool is killed.

    Returns:
        Standard output decoded as UTF-8, and standard error (some tools
        report a fallback there while exiting 0).

    Raises:
        BootControlError: The tool is missing, timed out, failed or printed
            undecodable output; the message names it and quotes its stderr.
    """
    tool = argv[0]
    env = {"PATH": os.environ.get("PATH", _DEFAULT_PATH), "LC_ALL": "C"}
    try:
        # B603: argv is a list built by this package (tool path from the agent
        # config, file paths, fixed options), never a shell string.
        done = subprocess.run(  # nosec B603
            list(argv), capture_output=True, timeout=timeout, check=False, env=env
        )
    except FileNotFoundError as e:
        raise BootControlError(f"{tool} is not installed or not on PATH") from e
    except PermissionError as e:
        raise BootControlError(f"{tool} cannot be executed: {e}") from e
    except subprocess.TimeoutExpired as e:
        raise BootControlError(f"{tool} did not finish within {timeout:g} s: {argv}") from e
    stderr = done.stderr.decode("utf-8", errors="replace").strip()
    if done.returncode != 0:
        detail = f": {stderr}" if stderr else ""
        raise BootControlError(f"{tool} failed with exit status {done.returncode}{detail}")
    try:
        return done.stdout.decode("utf-8"), stderr
    except UnicodeDecodeError as e:
        raise BootControlError(f"{tool} printed output that is not UTF-8") from e
