"""Boot control in U-Boot's redundant environment, driven by libubootenv's tools.

``fw_env.config`` must name two copies (two lines ``device offset envsize
[sectorsize [sectors]]``). The numbers are read as the tools read them, and
anything they could read differently from a person is refused:
libubootenv parses a line with ``sscanf("%ms %lli %zx %zx %lx")``, so the
offset is C's ``strtoll`` base 0 (``0x`` hex, a leading ``0`` octal, else
decimal) but envsize, sectorsize and sectors are *always hexadecimal*, with
or without ``0x``: ``8192`` is 0x8192 = 33170 bytes to ``fw_printenv``.
pumpguard therefore takes sizes only with a ``0x`` prefix (or a single digit,
the same in any base) and offsets in ``0x`` hex or decimal without leading
zeros; anything else is an error naming the field. ``fw_setenv`` loads the copy in force (valid CRC,
newest flag byte), applies the changes in memory, and writes the whole
environment once, in place, into the *other* copy with the flag byte
incremented, then fsyncs. A torn write fails that copy's CRC and both the
tools and U-Boot keep using the older copy: old or new, never a mix.

All three variables change in one ``fw_setenv -s SCRIPT`` run (one store).
libubootenv's script format is ``name=value`` per line; a line without ``=``
is silently ignored and an empty value deletes the variable, so every write
is read back and compared. ``fw_printenv`` prints ``name=`` for a variable
that does not exist, and, when both copies are bad, falls back to
``/etc/u-boot-initial-env`` if that exists, saying so only on stderr: that
message is treated as an error, never as an environment.

When the first copy's file does not exist, ``initialize`` builds the image
with ``mkenvimage -r -s ENVSIZE`` (optionally from a defaults file such as
``/etc/u-boot-initial-env``) and installs it as both copies through
:mod:`device_agent._durable`, the first copy's file last. Devices under ``/dev`` are never
created: on a real pump the environment partition exists and U-Boot writes it
with ``saveenv`` (docs/boot-control.md).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from device_agent import _durable
from device_agent.bootctl._base import BootEnv, EnvBootControl
from device_agent.bootctl._tools import TOOL_TIMEOUT, run_tool
from device_agent.bootctl._vars import VAR_NAMES, env_from_vars, env_vars
from device_agent.errors import BootControlError

__all__ = ["EnvCopy", "UBootBootControl", "read_fw_env_config"]

# A redundant copy's header (CRC32 and flag byte) plus room for pumpguard's
# variables; anything smaller is a typo in the config.
_MIN_ENV_SIZE = 5 + 64
# U-Boot's erased-flash pattern.
_ERASED = b"\xff"
# How libubootenv reads the numbers (see the module docstring): only the forms
# that mean the same to the tools and to a reader are accepted.
_HEX_RE = re.compile(r"0[xX][0-9a-fA-F]{1,16}")
_DECIMAL_RE = re.compile(r"0|[1-9][0-9]{0,18}")
_DIGIT_RE = re.compile(r"[0-9]")


@dataclass(frozen=True)
class EnvCopy:
    """One copy of the environment, as ``fw_env.config`` describes it.

    Attributes:
        device: The file or device holding it.
        offset: Byte offset of the copy in ``device``.
        size: The environment size (``envsize``) in bytes.
    """

    device: Path
    offset: int
    size: int


def read_fw_env_config(path: Path) -> tuple[EnvCopy, EnvCopy]:
    """Parse a ``fw_env.config`` that describes a redundant environment.

    Args:
        path: The configuration file.

    Returns:
        The two copies in the order the tools number them.

    Raises:
        BootControlError: The file is unreadable, a line is malformed, or it
            does not describe exactly two copies of the same size.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise BootControlError(f"cannot read U-Boot env config {path}: {e}") from e
    copies: list[EnvCopy] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if not 3 <= len(fields) <= 5:
            raise BootControlError(
                f"{path}:{number}: expected 'device offset envsize [sectorsize [sectors]]'"
            )
        where = f"{path}:{number}"
        offset = _offset(fields[1], where)
        size = _hex_number(fields[2], "envsize", where)
        for name, text in zip(("sectorsize", "sectors"), fields[3:], strict=False):
            _hex_number(text, name, where)
        if size < _MIN_ENV_SIZE:
            raise BootControlError(f"{where}: envsize {size:#x} is too small")
        copies.append(EnvCopy(Path(fields[0]), offset, size))
    if len(copies) != 2:
        raise BootControlError(
            f"{path} describes {len(copies)} environment copies; pumpguard needs a redundant "
            "environment (two lines), so a torn write can fall back to the other copy"
        )
    first, second = copies
    if first.size != second.size:
        raise BootControlError(f"{path}: the two copies differ in envsize")
    same_device = os.path.realpath(first.device) == os.path.realpath(second.device)
    if same_device and abs(first.offset - second.offset) < first.size:
        raise BootControlError(
            f"{path}: the two copies overlap (offsets {first.offset:#x} and "
            f"{second.offset:#x}, envsize {first.size:#x}): a torn write would lose both"
        )
    return first, second


def _offset(text: str, where: str) -> int:
    """An offset as libubootenv reads it (``strtoll`` base 0), if unambiguous."""
    if _HEX_RE.fullmatch(text):
        return int(text, 16)
    if _DECIMAL_RE.fullmatch(text) or re.fullmatch(r"0{1,19}", text):
        return int(text)
    if re.fullmatch(r"0[0-7]+", text):
        raise BootControlError(
            f"{where}: offset {text!r} is octal to fw_printenv/fw_setenv "
            f"({int(text, 8):#x}); write it in hexadecimal with 0x"
        )
    raise BootControlError(
        f"{where}: offset {text!r} is not a number (0x hexadecimal or decimal, not negative)"
    )


def _hex_number(text: str, name: str, where: str) -> int:
    """A size as libubootenv reads it (always hexadecimal), written with ``0x``."""
    if _HEX_RE.fullmatch(text):
        return int(text, 16)
    if _DIGIT_RE.fullmatch(text):
        return int(text)  # one digit: the same in any base
    if re.fullmatch(r"[0-9a-fA-F]{1,16}", text):
        raise BootControlError(
            f"{where}: {name} {text!r} is ambiguous: fw_printenv and fw_setenv read it as "
            f"hexadecimal (0x{text} = {int(text, 16)} bytes); write it with 0x"
        )
    raise BootControlError(f"{where}: {name} {text!r} is not a number (write it as 0x...)")


class UBootBootControl(EnvBootControl):
    """Boot control in a redundant U-Boot environment via ``fw_printenv``/``fw_setenv``.

    Other variables in the environment (``bootcmd``...) are kept.

    Args:
        config_file: The ``fw_env.config`` naming the two copies (``-c``).
        slots: The configured slot names.
        printenv: The ``fw_printenv`` program.
        setenv: The ``fw_setenv`` program.
        mkenvimage: The ``mkenvimage`` program (u-boot-tools), used only to
            create missing environment files.
        defaults: Optional ``key=value`` file (e.g. ``/etc/u-boot-initial-env``)
            whose variables go into a newly created environment.
        timeout: Seconds each tool run may take.
    """

    def __init__(
        self,
        config_file: Path,
        slots: Sequence[str],
        printenv: str = "fw_printenv",
        setenv: str = "fw_setenv",
        mkenvimage: str = "mkenvimage",
        defaults: Path | None = None,
        timeout: float = TOOL_TIMEOUT,
    ) -> None:
        super().__init__(slots)
        self.config_file = Path(config_file)
        self.printenv = printenv
        self.setenv = setenv
        self.mkenvimage = mkenvimage
        self.defaults = None if defaults is None else Path(defaults)
        self.timeout = timeout

    def _describe(self) -> str:
        return f"U-Boot env ({self.config_file})"

    def _copies(self) -> tuple[EnvCopy, EnvCopy]:
        # Read on every use: the config is tiny and may be provisioned later
        # than the agent object is built.
        return read_fw_env_config(self.config_file)

    def _load(self) -> BootEnv | None:
        first, second = self._copies()
        # The first copy's file is created last (see _create), so its absence
        # means "never initialized", even after a crash half-way through.
        if not first.device.exists():
            return None
        if not second.device.exists():
            raise BootControlError(
                f"{self._describe()}: environment copy {second.device} is missing"
            )
        out, err = run_tool([self.printenv, "-c", str(self.config_file), *VAR_NAMES], self.timeout)
        self._refuse_default(self.printenv, err)
        lines = out.splitlines()
        if len(lines) != len(VAR_NAMES):
            raise BootControlError(
                f"{self.printenv} printed {len(lines)} lines for {len(VAR_NAMES)} variables"
            )
        values: dict[str, str] = {}
        for name, line in zip(VAR_NAMES, lines, strict=True):
            if not line.startswith(f"{name}="):
                raise BootControlError(f"{self.printenv} printed {line!r} for {name}")
            values[name] = line[len(name) + 1 :]
        return env_from_vars(values, self.slots, self._describe())

    def _refuse_default(self, tool: str, stderr: str) -> None:
        # Both copies bad: the tools fall back to a default environment file
        # and exit 0. Booting decisions must never rest on that.
        if "using default" in stderr.lower():
            raise BootControlError(
                f"{self._describe()}: both copies are unreadable ({tool}: {stderr})"
            )

    def _create(self, env: BootEnv) -> None:
        copies = self._copies()
        if copies[0].device.exists():
            # An existing U-Boot environment without pg_* variables.
            self._store(env)
            return
        image = self._image(env, copies[0].size)
        # Second copy's file first, first copy's last: until the last rename
        # the environment counts as absent (see _load), so a crash in between
        # leaves "not initialized" and initialize simply runs again.
        for device in reversed(list(dict.fromkeys(c.device for c in copies))):
            self._install(device, copies, image)

    def _install(self, device: Path, copies: Sequence[EnvCopy], image: bytes) -> None:
        """Create ``device`` as a file holding ``image`` at each of its copies' offsets."""
        if device.is_absolute() and device.parts[1:2] == ("dev",):
            raise BootControlError(
                f"{self._describe()}: device {device} does not exist; pumpguard only creates "
                "environment files, never device nodes"
            )
        mine = [c for c in copies if c.device == device]
        if any(c.offset < 0 for c in mine):
            raise BootControlError(
                f"{self._describe()}: cannot create {device} at a negative offset"
            )
        # Gaps before and between copies get U-Boot's erased-flash pattern.
        content = bytearray(_ERASED * max(c.offset + c.size for c in mine))
        for c in mine:
            content[c.offset : c.offset + c.size] = image
        try:
            _durable.atomic_write(device, bytes(content), f"bootenv uboot {device.name}", 0o644)
        except OSError as e:
            raise BootControlError(f"cannot create {device}: {e}") from e

    def _image(self, env: BootEnv, size: int) -> bytes:
        """A redundant-format environment image of ``size`` bytes holding ``env``."""
        lines: list[str] = []
        if self.defaults is not None:
            try:
                text = self.defaults.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise BootControlError(f"cannot read U-Boot defaults {self.defaults}: {e}") from e
            # pumpguard's own variables come from env, never from the defaults.
            lines = [ln for ln in text.splitlines() if ln.partition("=")[0] not in VAR_NAMES]
        # An empty value would be stored as "pg_trial=", where fw_setenv
        # deletes the variable instead; leave it out so both look the same.
        lines += [f"{name}={value}" for name, value in env_vars(env).items() if value]
        with tempfile.TemporaryDirectory(prefix="pumpguard-ubootenv-") as tmp:
            source, output = Path(tmp) / "env.txt", Path(tmp) / "env.img"
            source.write_text("\n".join(lines) + "\n", encoding="utf-8")
            run_tool(
                [self.mkenvimage, "-r", "-s", f"{size:#x}", "-o", str(output), str(source)],
                self.timeout,
            )
            image = output.read_bytes()
        if len(image) != size:
            raise BootControlError(f"{self.mkenvimage} made {len(image)} bytes, expected {size}")
        return image

    def _store(self, env: BootEnv) -> None:
        script = "".join(f"{name}={value}\n" for name, value in env_vars(env).items())
        with tempfile.TemporaryDirectory(prefix="pumpguard-ubootenv-") as tmp:
            path = Path(tmp) / "script"
            path.write_text(script, encoding="utf-8")
            _durable.crashpoint("bootenv uboot set")
            _, err = run_tool(
                [self.setenv, "-c", str(self.config_file), "-s", str(path)], self.timeout
            )
        self._refuse_default(self.setenv, err)
        # fw_setenv exits 0 even for script lines it did not understand.
        written = self._load()
        if written != env:
            raise BootControlError(f"{self.setenv} left {written} in {self._describe()}, not {env}")
