"""The vocabularies of the wire contract: states, event kinds, refusal reasons."""

import re
from enum import StrEnum
from typing import NewType

__all__ = [
    "AgentState",
    "EventKind",
    "HttpStatusReason",
    "Reason",
    "RefusalReason",
    "SlotState",
    "TherapyState",
    "UpdateResult",
    "http_reason",
    "parse_reason",
]

# ------------------------------------------------------------ vocabularies


class EventKind(StrEnum):
    """Update event kinds a pump may report."""

    CHECK = "check"
    DOWNLOAD_START = "download-start"
    DOWNLOAD_DONE = "download-done"
    VERIFIED = "verified"
    DEFERRED = "deferred"
    INSTALL = "install"
    REBOOT = "reboot"
    # The word "pass" is a self-test verdict, not a password.
    SELF_TEST_PASS = "self-test-pass"  # noqa: S105  # nosec B105
    SELF_TEST_FAIL = "self-test-fail"
    COMMITTED = "committed"
    ROLLED_BACK = "rolled-back"
    ERROR = "error"


class TherapyState(StrEnum):
    """Therapy (infusion) states; the agent never installs unless ``idle``."""

    IDLE = "idle"
    RUNNING = "running"
    PROGRAMMED = "programmed"


class SlotState(StrEnum):
    """States of one firmware slot."""

    ACTIVE = "active"
    INACTIVE = "inactive"
    TRIAL = "trial"
    EMPTY = "empty"
    BAD = "bad"


class UpdateResult(StrEnum):
    """Outcomes of the last update attempt."""

    COMMITTED = "committed"
    ROLLED_BACK = "rolled-back"
    FAILED = "failed"
    IN_PROGRESS = "in-progress"


class AgentState(StrEnum):
    """The agent's states (DESIGN.md, Device agent), in the order an update passes them."""

    IDLE = "idle"
    CHECKING = "checking"
    DOWNLOADING = "downloading"
    VERIFIED = "verified"
    WAITING = "waiting-for-safe-window"
    INSTALLING = "installing"
    REBOOTING = "rebooting"
    VERIFYING_BOOT = "verifying-boot"
    COMMITTED = "committed"
    ROLLING_BACK = "rolling-back"
    REPORTING = "reporting"


class RefusalReason(StrEnum):
    """Why the agent refused or gave up an update, as reported to the server.

    docs/agent.md ("What the agent refuses, and the reason it reports") has
    one row per reason; tests/pumpguard/test_wire_contract.py checks the table
    and this enum name the same reasons. An HTTP status is reported as
    ``http-NNN`` (:func:`http_reason`), not a member.
    """

    TUF_UNSIGNED_METADATA = "tuf-unsigned-metadata"
    TUF_BAD_VERSION_NUMBER = "tuf-bad-version-number"
    TUF_EXPIRED_METADATA = "tuf-expired-metadata"
    TUF_LENGTH_OR_HASH_MISMATCH = "tuf-length-or-hash-mismatch"
    TUF_DOWNLOAD_LENGTH_MISMATCH = "tuf-download-length-mismatch"
    TUF_REPOSITORY = "tuf-repository"
    TARGET_PATH = "target-path"
    TARGET_NOT_FOUND = "target-not-found"
    RELEASE_CONTRACT = "release-contract"
    PRODUCT = "product"
    HARDWARE_ID = "hardware-id"
    ROLLBACK = "rollback"
    LENGTH = "length"
    HASH_MISMATCH = "hash-mismatch"
    HASH_ALGORITHM = "hash-algorithm"
    SELF_TEST_FAILED = "self-test-failed"
    BOOT_ATTEMPTS_EXHAUSTED = "boot-attempts-exhausted"
    CRASH_LOOP = "crash-loop"
    BOOT_NOT_TAKEN = "boot-not-taken"
    COMMIT_FAILED = "commit-failed"
    ROLLBACK_NOT_TAKEN = "rollback-not-taken"
    SLOW_RETRIEVAL = "slow-retrieval"
    NETWORK = "network"
    LOOP = "loop"
    VERIFICATION = "verification"
    ERROR = "error"


#: A reason ``http-NNN`` for an HTTP status; made only by :func:`http_reason`.
HttpStatusReason = NewType("HttpStatusReason", str)
#: Every reason the agent reports.
Reason = RefusalReason | HttpStatusReason

_HTTP_REASON_RE = re.compile(r"http-[1-5][0-9]{2}", re.ASCII)


def http_reason(status: int) -> HttpStatusReason:
    """The reason reported for an HTTP status: ``http-<status>``.

    Raises:
        ValueError: ``status`` is not an HTTP status code (100-599).
    """
    if isinstance(status, bool) or not 100 <= status <= 599:
        raise ValueError(f"{status!r} is not an HTTP status")
    return HttpStatusReason(f"http-{status}")


def parse_reason(text: str) -> Reason:
    """A reported reason read back (from the agent's state file).

    Raises:
        ValueError: ``text`` is no reason of the contract.
    """
    if _HTTP_REASON_RE.fullmatch(text):
        return HttpStatusReason(text)
    return RefusalReason(text)
