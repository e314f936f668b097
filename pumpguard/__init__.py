"""pumpguard: secure firmware updates and cybersecurity assurance for infusion pumps.

This package holds only the umbrella CLI and the small contract every component
shares: the release metadata schema, the error base class and crash-safe file
writing.
"""

from pumpguard.errors import ConfigError, PumpguardError, ReleaseContractError
from pumpguard.release import ReleaseInfo, SemVer

__all__ = ["ConfigError", "PumpguardError", "ReleaseContractError", "ReleaseInfo", "SemVer"]
__version__ = "0.1.0"
