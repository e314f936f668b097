"""Errors of the ``device_agent`` package.

Every error the agent raises on purpose derives from :class:`AgentError`, itself
a :class:`pumpguard.errors.PumpguardError`, so the umbrella CLI prints it as one
line and exits with its code. The families say what an operator has to do:

* :class:`AgentConfigError`: the agent's configuration is wrong (fix the file).
* :class:`UpdateRefusedError`: the offered update failed verification, so it is
  never installed (TUF failure, wrong hardware, downgrade, bad target path).
* :class:`TransferError`: the server or network failed; the agent retries.
* :class:`SlotError` / :class:`BootControlError`: local storage or boot
  environment failed; the pump keeps running its committed image.
* :class:`PumpStatusError`: the therapy controller's status is unreadable, so
  the agent treats the pump as busy (fail safe).
"""

from __future__ import annotations

from pumpguard.contract import Reason, RefusalReason
from pumpguard.errors import ConfigError, PumpguardError

__all__ = [
    "AgentConfigError",
    "AgentError",
    "BootControlError",
    "PumpStatusError",
    "SlotError",
    "TransferError",
    "UpdateRefusedError",
]


class AgentError(PumpguardError):
    """Base of every error the ``device_agent`` package raises on purpose."""

    exit_code = 1


class AgentConfigError(AgentError, ConfigError):
    """The agent configuration file or an option is missing or invalid."""

    exit_code = 2


class UpdateRefusedError(AgentError):
    """An update failed verification and will not be installed.

    Attributes:
        reason: The machine-readable reason reported to the server
            (:class:`pumpguard.contract.RefusalReason`, or ``http-NNN``).
    """

    exit_code = 4

    def __init__(self, message: str, reason: Reason = RefusalReason.VERIFICATION) -> None:
        super().__init__(message)
        self.reason = reason


class TransferError(AgentError):
    """Metadata, firmware or a report could not be transferred; retry later.

    Attributes:
        reason: ``slow-retrieval``, ``http-<status>`` (:func:`pumpguard.
            contract.http_reason`) or ``network``, reported to the server so
            operators can tell a slow mirror from an outage.
    """

    exit_code = 1

    def __init__(self, message: str, reason: Reason = RefusalReason.NETWORK) -> None:
        super().__init__(message)
        self.reason = reason


class SlotError(AgentError):
    """A firmware slot could not be read or written."""

    exit_code = 1


class BootControlError(AgentError):
    """The boot environment could not be read or written."""

    exit_code = 1


class PumpStatusError(AgentError):
    """The therapy controller's status could not be read or is invalid."""

    exit_code = 1
