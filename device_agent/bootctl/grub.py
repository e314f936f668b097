"""Boot control in GRUB's environment block, driven by ``grub-editenv``.

GRUB's ``grubenv`` is one 1 KiB block with a single copy, and ``grub-editenv``
rewrites it in place (``O_TRUNC``, write, fsync): power lost in between can
leave it empty or torn. So this backend never lets the tool touch the live
file. It copies the block to a private scratch file, runs ``grub-editenv
SCRATCH set pg_committed=.. pg_trial=.. pg_attempts=..`` (all variables in
one invocation), reads the result back through the tool to check it, and
installs it with :func:`device_agent._durable.atomic_write` (temp file,
fsync, rename, directory fsync). A crash leaves the old or the new block.

GRUB itself finds the block through the file's current block list at each
boot, so replacing the file by rename is invisible to it (docs/boot-control.md).

The configured file may be a symlink (``/boot/grub2/grubenv`` ->
``../efi/EFI/<os>/grubenv`` on EFI systems): GRUB loads the link's target
from its own partition and never sees the link. So the new block replaces the
link's *target* (the link stays), resolved at every write, as ``grub-editenv``
on the link would have written it too. Renaming over the link instead would
leave the variables in a file GRUB never reads.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path

from device_agent import _durable
from device_agent.bootctl._base import BootEnv, EnvBootControl
from device_agent.bootctl._tools import TOOL_TIMEOUT, run_tool
from device_agent.bootctl._vars import VAR_NAMES, env_from_vars, env_vars
from device_agent.errors import BootControlError

__all__ = ["GrubBootControl"]


class GrubBootControl(EnvBootControl):
    """Boot control in a GRUB environment block (``grubenv``).

    Other variables in the block (``saved_entry``...) are kept.

    Args:
        env_file: The environment block, e.g. ``/boot/grub/grubenv``.
        slots: The configured slot names.
        tool: The ``grub-editenv`` program.
        timeout: Seconds each tool run may take.
    """

    def __init__(
        self,
        env_file: Path,
        slots: Sequence[str],
        tool: str = "grub-editenv",
        timeout: float = TOOL_TIMEOUT,
    ) -> None:
        super().__init__(slots)
        self.env_file = Path(env_file)
        self.tool = tool
        self.timeout = timeout

    def _describe(self) -> str:
        return f"GRUB env {self.env_file}"

    def _list(self, path: Path) -> dict[str, str]:
        """The ``pg_*`` variables of the block at ``path``, as the tool lists them."""
        out, _ = run_tool([self.tool, str(path), "list"], self.timeout)
        values: dict[str, str] = {}
        for line in out.splitlines():
            name, sep, value = line.partition("=")
            if sep and name in VAR_NAMES:
                # Only a forged continuation line of another (multi-line)
                # variable can produce a second one; never pick either.
                if name in values:
                    raise BootControlError(f"{self._describe()}: {name} appears twice")
                values[name] = value
        return values

    def _load(self) -> BootEnv | None:
        # grub-editenv silently creates a missing file even for "list", so a
        # missing file must be caught here, not left to the tool.
        if not self.env_file.exists():
            return None
        return env_from_vars(self._list(self.env_file), self.slots, self._describe())

    def _create(self, env: BootEnv) -> None:
        # Also reached when a grubenv exists without pg_* variables (the one
        # grub-install made); its other variables are kept.
        self._write(env, create=True)

    def _store(self, env: BootEnv) -> None:
        self._write(env, create=False)

    def _write(self, env: BootEnv, *, create: bool) -> None:
        mode = 0o644
        with tempfile.TemporaryDirectory(prefix="pumpguard-grubenv-") as tmp:
            scratch = Path(tmp) / "grubenv"
            try:
                if self.env_file.exists():
                    mode = stat.S_IMODE(self.env_file.stat().st_mode)
                    shutil.copyfile(self.env_file, scratch)
                elif create:
                    run_tool([self.tool, str(scratch), "create"], self.timeout)
                else:
                    raise BootControlError(f"{self._describe()} disappeared")
            except OSError as e:
                raise BootControlError(f"cannot copy {self._describe()}: {e}") from e
            assignments = [f"{name}={value}" for name, value in env_vars(env).items()]
            _durable.crashpoint("bootenv grub set")
            run_tool([self.tool, str(scratch), "set", *assignments], self.timeout)
            # Check what the tool wrote before it can reach the live file.
            written = env_from_vars(self._list(scratch), self.slots, f"{self._describe()} (new)")
            if written != env:
                raise BootControlError(
                    f"{self.tool} wrote {written} to {self._describe()}, expected {env}"
                )
            data = scratch.read_bytes()
        # The file GRUB reads: the target of a symlinked env (see the module
        # docstring); os.path.realpath leaves a plain file as it is.
        target = Path(os.path.realpath(self.env_file))
        try:
            _durable.atomic_write(target, data, "bootenv grub", mode=mode)
        except OSError as e:
            raise BootControlError(f"cannot write {self._describe()}: {e}") from e
