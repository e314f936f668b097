"""The base error every pumpguard package derives its own errors from.

Each component (``signer``, ``sbom``, ``device_agent`` ...) defines one base
error below :class:`PumpguardError` and families beneath that. The CLI catches
:class:`PumpguardError`, prints its message as one line and exits with the
error's :attr:`PumpguardError.exit_code`.
"""

from __future__ import annotations

__all__ = ["ConfigError", "PumpguardError", "ReleaseContractError"]


class PumpguardError(Exception):
    """Base of every error pumpguard raises on purpose.

    Attributes:
        exit_code: The process exit code the CLI uses for this error family.
    """

    exit_code: int = 1


class ConfigError(PumpguardError):
    """A configuration file or option is missing or invalid."""

    exit_code = 2


class ReleaseContractError(PumpguardError):
    """Release metadata does not follow the release contract."""

    exit_code = 3
