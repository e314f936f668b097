"""The boot environment, the interface every backend offers, and their shared logic.

A backend stores three facts (:class:`BootEnv`) and changes them only through
the operations of :class:`BootControl`. :class:`EnvBootControl` implements
those operations once, on top of three storage primitives each backend
provides, so the rules (which slot may be tried, what commit means, when
nothing needs writing) cannot drift between backends.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

from device_agent.bootctl._bootloader import select_boot
from device_agent.errors import BootControlError

__all__ = [
    "MAX_ATTEMPTS",
    "SLOT_NAME",
    "BootControl",
    "BootEnv",
    "EnvBootControl",
    "check_slots",
    "make_env",
]

#: The most boot attempts a trial may get. Kept to one digit on purpose: GRUB
#: script has no arithmetic, so grub.cfg decrements through a short if-chain,
#: and U-Boot's ``setexpr`` computes in hexadecimal, which equals decimal only
#: below ten (docs/boot-control.md).
MAX_ATTEMPTS = 9

#: Slot names end up inside bootloader scripts (``run boot_${pg_trial}``), so
#: they are restricted to characters that need no quoting anywhere.
SLOT_NAME = re.compile(r"[A-Za-z0-9_]{1,32}")


@dataclass(frozen=True)
class BootEnv:
    """What the bootloader knows about the slots.

    Attributes:
        committed: Slot name of the last committed (known-good) slot, e.g. ``"a"``.
        trial: Slot under boot trial, or None.
        attempts_left: Boot attempts left for the trial slot (0 when no trial,
            and 0 after the trial's attempts ran out, while ``trial`` still
            names the slot so the agent can report the rollback).
    """

    committed: str
    trial: str | None
    attempts_left: int


@runtime_checkable
class BootControl(Protocol):
    """Reads and changes the boot environment; every change is one durable update.

    Attributes:
        slots: The configured slot names, e.g. ``("a", "b")``.
    """

    slots: tuple[str, ...]

    def initialize(self, committed: str) -> None:
        """Create the environment with ``committed`` as the good slot, if absent.

        A present and valid environment is left as it is.

        Raises:
            BootControlError: The environment is present but unreadable, or
                ``committed`` is not a configured slot.
        """
        ...

    def read(self) -> BootEnv:
        """Return the current environment.

        Raises:
            BootControlError: The environment is missing or corrupt.
        """
        ...

    def start_trial(self, slot: str, attempts: int) -> None:
        """Give ``slot`` ``attempts`` boot attempts; the committed slot is unchanged.

        Raises:
            BootControlError: ``slot`` is unknown or the committed slot, or
                ``attempts`` is outside 1..MAX_ATTEMPTS.
        """
        ...

    def commit(self, slot: str) -> None:
        """Make ``slot`` the committed slot and end any trial.

        Raises:
            BootControlError: ``slot`` is neither the committed slot nor the
                slot under trial.
        """
        ...

    def cancel_trial(self) -> None:
        """End any trial (rollback): the committed slot boots from now on."""
        ...

    def boot(self) -> str:
        """Run the bootloader's selection, persist its decrement, return the slot."""
        ...


def check_slots(slots: Sequence[str]) -> tuple[str, ...]:
    """Validate a configured slot list and return it as a tuple.

    Raises:
        BootControlError: Fewer than two slots, a duplicate, or a bad name.
    """
    if isinstance(slots, str):
        # A bare string is a sequence of one-letter slots; almost certainly a
        # configuration mistake ("ab" instead of ["a", "b"]).
        raise BootControlError(f"slots must be a list of names, not the string {slots!r}")
    result = tuple(slots)
    for slot in result:
        if not isinstance(slot, str) or not SLOT_NAME.fullmatch(slot):
            raise BootControlError(
                f"slot name {slot!r} is invalid: use 1-32 letters, digits or underscores"
            )
    if len(result) < 2:
        raise BootControlError(f"at least two slots are needed for A/B updates, got {result}")
    if len(set(result)) != len(result):
        raise BootControlError(f"slot names must be unique, got {result}")
    return result


def make_env(
    slots: tuple[str, ...],
    source: str,
    committed: object,
    trial: object,
    attempts: object,
    names: tuple[str, str, str],
) -> BootEnv:
    """Build a :class:`BootEnv` from values read back, refusing anything off.

    Args:
        slots: The configured slots.
        source: Names the file or tool the values came from, for errors.
        committed: The committed slot as read.
        trial: The trial slot as read (None for no trial).
        attempts: The attempts left as read (an int).
        names: How the three values are called in ``source``, for errors.

    Raises:
        BootControlError: Naming the variable that is wrong; a corrupt
            environment is never repaired silently.
    """
    n_committed, n_trial, n_attempts = names
    if not isinstance(committed, str) or committed not in slots:
        raise BootControlError(
            f"{source}: {n_committed}={committed!r} is not a configured slot {slots}"
        )
    if trial is not None and (not isinstance(trial, str) or trial not in slots):
        raise BootControlError(f"{source}: {n_trial}={trial!r} is not a configured slot {slots}")
    if trial == committed:
        raise BootControlError(
            f"{source}: {n_trial}={trial!r} is the committed slot; a trial needs another slot"
        )
    # bool is an int subclass; a JSON true must not pass as one attempt.
    if (
        not isinstance(attempts, int)
        or isinstance(attempts, bool)
        or not 0 <= attempts <= MAX_ATTEMPTS
    ):
        raise BootControlError(
            f"{source}: {n_attempts}={attempts!r} is not a number of attempts 0..{MAX_ATTEMPTS}"
        )
    if trial is None and attempts != 0:
        raise BootControlError(f"{source}: {n_attempts}={attempts} but no slot is under trial")
    return BootEnv(committed=committed, trial=trial, attempts_left=attempts)


class EnvBootControl(ABC):
    """The operations of :class:`BootControl`, on three storage primitives.

    Subclasses implement :meth:`_load` (None when the environment was never
    created), :meth:`_create` (first write) and :meth:`_store` (replace a
    present environment in one durable update).
    """

    slots: tuple[str, ...]

    def __init__(self, slots: Sequence[str]) -> None:
        self.slots = check_slots(slots)

    @abstractmethod
    def _describe(self) -> str:
        """Name the storage for messages (e.g. ``"GRUB env /boot/grub/grubenv"``)."""

    @abstractmethod
    def _load(self) -> BootEnv | None:
        """Read and validate the environment; None when it does not exist yet."""

    @abstractmethod
    def _create(self, env: BootEnv) -> None:
        """Create the environment holding ``env`` (it does not exist yet)."""

    @abstractmethod
    def _store(self, env: BootEnv) -> None:
        """Replace the present environment with ``env`` in one durable update."""

    def initialize(self, committed: str) -> None:
        """Create the environment with ``committed`` as the good slot, if absent.

        Args:
            committed: The slot the pump was provisioned with.

        Raises:
            BootControlError: The environment is present but unreadable, or
                ``committed`` is not a configured slot.
        """
        self._check_slot(committed)
        with self._os_errors():
            if self._load() is None:
                self._create(BootEnv(committed=committed, trial=None, attempts_left=0))

    def read(self) -> BootEnv:
        """Return the current environment.

        Raises:
            BootControlError: The environment is missing or corrupt.
        """
        with self._os_errors():
            env = self._load()
        if env is None:
            raise BootControlError(f"{self._describe()} is not initialized")
        return env

    def start_trial(self, slot: str, attempts: int) -> None:
        """Give ``slot`` ``attempts`` boot attempts; the committed slot is unchanged.

        Args:
            slot: The slot the new image was written to.
            attempts: Boot attempts before the bootloader falls back, 1..MAX_ATTEMPTS.

        Raises:
            BootControlError: ``slot`` is unknown or committed, or ``attempts``
                is out of range.
        """
        self._check_slot(slot)
        if (
            not isinstance(attempts, int)
            or isinstance(attempts, bool)
            or not 1 <= attempts <= MAX_ATTEMPTS
        ):
            raise BootControlError(f"boot attempts must be 1..{MAX_ATTEMPTS}, got {attempts!r}")

        def change(env: BootEnv) -> BootEnv:
            if slot == env.committed:
                raise BootControlError(
                    f"{self._describe()}: slot {slot!r} is the committed slot; "
                    "a trial needs the other slot"
                )
            return replace(env, trial=slot, attempts_left=attempts)

        self._update(change)

    def commit(self, slot: str) -> None:
        """Make ``slot`` the committed slot and end any trial.

        Args:
            slot: The slot that passed its self-test (or the committed slot
                itself, which only ends any trial).

        Raises:
            BootControlError: ``slot`` is neither committed nor under trial;
                committing a slot that was never tried would boot an image
                nobody selected.
        """
        self._check_slot(slot)

        def change(env: BootEnv) -> BootEnv:
            if slot not in (env.committed, env.trial):
                raise BootControlError(
                    f"{self._describe()}: slot {slot!r} is neither committed "
                    f"({env.committed!r}) nor under trial ({env.trial!r})"
                )
            return BootEnv(committed=slot, trial=None, attempts_left=0)

        self._update(change)

    def cancel_trial(self) -> None:
        """End any trial (rollback): the committed slot boots from now on."""
        self._update(lambda env: replace(env, trial=None, attempts_left=0))

    def boot(self) -> str:
        """Run the bootloader's selection on this environment.

        Returns:
            The slot the bootloader boots. The decrement of the trial's
            attempts is persisted before returning, as a bootloader does
            before it starts the kernel.
        """
        booted: list[str] = []

        def change(env: BootEnv) -> BootEnv:
            slot, after = select_boot(env)
            booted.append(slot)
            return after

        self._update(change)
        return booted[0]

    def _update(self, change: Callable[[BootEnv], BootEnv]) -> None:
        """Read, apply ``change`` and store the result, unless it is unchanged.

        Skipping the write when nothing changes makes every operation
        idempotent without wearing the flash on a repeat.
        """
        env = self.read()
        new = change(env)
        if new != env:
            with self._os_errors():
                self._store(new)

    @contextmanager
    def _os_errors(self) -> Iterator[None]:
        """Turn an OSError no backend anticipated (a full /tmp...) into a BootControlError."""
        try:
            yield
        except OSError as e:
            raise BootControlError(f"{self._describe()}: {e}") from e

    def _check_slot(self, slot: str) -> None:
        if slot not in self.slots:
            raise BootControlError(f"slot {slot!r} is not a configured slot {self.slots}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._describe()} slots={self.slots}>"
