"""The agent: one step at a time through the transition table of :mod:`state`.

:meth:`Agent.step` loads the persisted record, runs the action of the state it
finds and persists the next state before that state is acted on. Every action
is idempotent, so after a crash or power loss anywhere the agent simply runs
the recorded state's action again (DESIGN.md, Device agent):

* ``downloading`` resumes from the last fsynced checkpoint, and so does the
  next download of the same target after one was given up;
* ``installing`` re-verifies the slot and re-writes the same boot environment;
* ``verifying-boot`` asks the boot environment and the booted slot what has
  happened and carries on from there (reboot still pending, bootloader fell
  back, self-test due, commit half-done);
* ``rolling-back`` cancels the trial and reboots until the committed slot runs.

The agent never writes into the slot the bootloader would boot: downloads go
only into the slot that is neither committed nor under trial, and a slot is
made bootable (``start_trial``) only after its bytes were checked against the
signed TUF target (threats AGT-UNSIGNED, AGT-TAMPER).
"""

from __future__ import annotations

import logging
import random

# Bandit B404: the self-test and reboot commands come from the pump's own config.
import subprocess  # nosec B404
import threading
import time as _time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

from tuf.api.metadata import TargetFile

from device_agent._durable import make_dirs_durable
from device_agent.bootctl import BootControl, BootEnv, make_boot_control
from device_agent.config import AgentConfig
from device_agent.download import download_to_slot, verify_slot
from device_agent.errors import (
    AgentError,
    PumpStatusError,
    TransferError,
    UpdateRefusedError,
)
from device_agent.fetcher import AgentFetcher
from device_agent.httpclient import AgentHttp
from device_agent.policy import check_offered_release
from device_agent.reporting import (
    CheckinAnswer,
    Outbox,
    ServerClient,
    backoff_delay,
    load_device_key,
)
from device_agent.state import (
    AgentState,
    CounterStore,
    Outcome,
    PendingUpdate,
    ResumePoint,
    SlotImage,
    SlotRecords,
    StateRecord,
    StateStore,
)
from device_agent.status import (
    PumpStatus,
    SafetyDecision,
    StatusProvider,
    assess_safety,
    download_rate,
    make_status_provider,
)
from device_agent.tuf_client import TufClient
from pumpguard import __version__
from pumpguard.contract import (
    CheckinRequest,
    EventKind,
    LastUpdate,
    RefusalReason,
    SlotReport,
    SlotState,
    TherapyState,
    UpdateResult,
    parse_reason,
)

__all__ = ["Agent", "RebootRequested", "StepResult", "booted_slot"]

logger = logging.getLogger(__name__)

S = AgentState
_WAIT_POLL = 5.0


class RebootRequested(BaseException):
    """Raised when the agent asks for a reboot and the config says ``exit``.

    The simulator catches it, runs the simulated bootloader and starts the
    agent again; on a pump the configured reboot command is run instead.
    A BaseException so that no ``except Exception`` on the way swallows it.
    """


class StepResult(Enum):
    """What the caller of :meth:`Agent.step` should do next."""

    CONTINUE = "continue"  # step again now
    WAIT = "wait"  # deferred or retrying: step again after a short wait
    IDLE = "idle"  # nothing to do until the next poll


def booted_slot(config: AgentConfig) -> str:
    """Which slot the running system was booted from.

    The simulator's bootloader writes it to a file; a real bootloader passes
    ``pumpguard.slot=<name>`` on the kernel command line.

    Raises:
        AgentError: It cannot be determined or names no configured slot.
    """
    boot = config.boot
    try:
        if boot.booted_slot == "file" and boot.booted_slot_file is not None:
            name = boot.booted_slot_file.read_text(encoding="ascii").strip()
        else:
            words = Path("/proc/cmdline").read_text(encoding="ascii").split()
            found = [w.split("=", 1)[1] for w in words if w.startswith("pumpguard.slot=")]
            name = found[-1] if found else ""
    except (OSError, UnicodeDecodeError) as e:
        raise AgentError(f"cannot tell which slot was booted: {e}") from e
    if name not in config.slots:
        raise AgentError(f"the booted slot {name!r} is not a configured slot")
    return name


def _target_file(update: PendingUpdate) -> TargetFile:
    # Rebuilt from the persisted record, which holds what the verified TUF
    # target said when the update was accepted.
    return TargetFile(update.length, dict(update.hashes), update.path)


class _GiveUpError(Exception):
    """An action started too often without finishing; :meth:`Agent.step` fails the update."""

    def __init__(
        self, record: StateRecord, error: UpdateRefusedError, next_state: AgentState
    ) -> None:
        super().__init__(str(error))
        self.record = record
        self.error = error
        self.next_state = next_state


def _remember(record: StateRecord, path: str) -> tuple[str, ...]:
    """The record's failed targets with ``path`` added (the newest 16)."""
    return tuple(dict.fromkeys((*record.failed_targets, path)))[-16:]


def _iso_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Runtime:
    """What the agent keeps in memory between steps (never needed after a crash)."""

    failures: int = 0
    poll_interval: float = 0.0
    last_checkin: float = 0.0
    # (target path, monotonic time) of the last failed download attempt: the
    # pause until the next one is charged to the download's time budget.
    retry: tuple[str, float] | None = None


class Agent:
    """The pump agent.

    Args:
        config: The loaded configuration.
        boot_control: Override the configured boot-control backend (tests).
        status: Override the configured pump-status provider (tests).
        progress: Called with (bytes done, total) while downloading.
        clock: Local wall-clock time source, for the maintenance window.
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        boot_control: BootControl | None = None,
        status: StatusProvider | None = None,
        progress: Callable[[int, int], None] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.config = config
        # Durably: what is written inside must not vanish with its directory.
        make_dirs_durable(config.state_dir, "state dir")
        make_dirs_durable(config.metadata_dir, "metadata dir")
        self.store = StateStore(config.state_dir)
        self.counter = CounterStore(config.state_dir)
        self.slot_records = SlotRecords(config.state_dir)
        self.outbox = Outbox(config.state_dir)
        self.boot = boot_control or make_boot_control(
            config.boot.backend, env=config.boot.env, slots=tuple(config.slots)
        )
        self.status = status or make_status_provider(config.safety)
        self.progress = progress
        self._clock = clock or (lambda: datetime.now().astimezone())
        # Bandit B311: poll jitter only; nothing secret depends on it.
        self._rng = random.Random()  # noqa: S311  # nosec B311
        self._runtime = _Runtime(poll_interval=config.server.poll_interval)
        server = config.server
        # One HTTP client for TUF, check-ins and events: one pool, one TLS
        # configuration, the same deadline and framing defences (AGT-SLOW).
        self.http = AgentHttp(
            ca_file=server.ca_file, client_cert=server.client_cert, client_key=server.client_key
        )
        self.fetcher = AgentFetcher(
            version=__version__,
            connect_timeout=server.timeout,
            read_timeout=server.timeout,
            deadline=server.metadata_deadline,
            min_rate=server.min_firmware_rate,
            http=self.http,
        )
        self.client = ServerClient(
            server.url,
            config.device_id,
            load_device_key(config.key),
            self.http,
            server.timeout,
            user_agent=self.fetcher.user_agent,
        )

    # ------------------------------------------------------------ plumbing

    def _tuf(self) -> TufClient:
        try:
            root = self.config.root.read_bytes()
        except OSError as e:
            raise AgentError(f"cannot read the trusted root {self.config.root}: {e}") from e
        return TufClient(
            self.config.metadata_dir,
            self.config.server.metadata_url,
            self.config.server.targets_url,
            root,
            self.fetcher,
        )

    def _read_status(self) -> tuple[PumpStatus | None, str | None]:
        try:
            return self.status.read(), None
        except PumpStatusError as e:
            return None, str(e)

    def safety(self) -> SafetyDecision:
        """Whether installing, rebooting or committing may happen now."""
        status, error = self._read_status()
        return assess_safety(
            status,
            self.config.safety,
            datetime.now(UTC),
            self._clock().time(),
            error=error,
        )

    def _begin(
        self,
        record: StateRecord,
        next_state: AgentState,
        give_up: Callable[[int], UpdateRefusedError],
        *,
        remember: str | None = None,
        exhausted: UpdateRefusedError | None = None,
    ) -> StateRecord:
        """Count a started attempt of the current state, durably, before acting.

        ``repeats`` counts the attempts that did not finish; downloading
        resets it whenever a checkpoint advances, so there it counts the
        attempts in a row that made no progress.

        Args:
            record: The persisted record.
            next_state: Where to go when the attempts are used up.
            give_up: The refusal to report, given the attempts interrupted.
            remember: A target to remember as failed when giving up.
            exhausted: The state's own budget is used up (a download's
                time): give up with this refusal, whatever the count.

        Raises:
            _GiveUpError: The state was started more than ``max_state_repeats``
                times without finishing, or ``exhausted`` was given;
                :meth:`step` fails the update.
        """
        started = replace(record, repeats=record.repeats + 1)
        self.store.save(started)
        if started.repeats > self.config.max_state_repeats or exhausted is not None:
            if remember is not None:
                started = replace(started, failed_targets=_remember(started, remember))
            raise _GiveUpError(started, exhausted or give_up(started.repeats - 1), next_state)
        return started

    def _reboot(self) -> None:
        command = self.config.boot.reboot_command
        logger.info("rebooting")
        if command is None:
            raise RebootRequested()
        try:
            # Bandit B603: a fixed argv from the pump's own config, no shell.
            subprocess.run(command, check=True, timeout=60)  # nosec B603
        except (OSError, subprocess.SubprocessError) as e:
            raise AgentError(f"reboot command {command[0]} failed: {e}") from e
        # The system is going down; give it time rather than acting further.
        _time.sleep(120)
        raise AgentError("the reboot command returned but the pump did not reboot")

    def _defer(self, record: StateRecord, decision: SafetyDecision) -> StepResult:
        if record.deferred != decision.reason:
            logger.info("deferred in %s: %s", record.state, decision.detail)
            self.outbox.append(
                EventKind.DEFERRED,
                {"state": str(record.state), "reason": decision.reason, "detail": decision.detail},
            )
            self.store.transition(record, record.state, deferred=decision.reason)
        self._maybe_checkin(record)
        return StepResult.WAIT

    def _maybe_checkin(self, record: StateRecord) -> None:
        # While waiting (maybe for hours, during an infusion) keep the fleet
        # view current; the assignment in the answer is not acted on here.
        if _time.monotonic() - self._runtime.last_checkin < self._runtime.poll_interval:
            return
        try:
            self._checkin(record)
            self.outbox.flush(self.client)
        except TransferError as e:
            logger.info("check-in while waiting failed: %s", e)

    def _report_transfer_error(self, error: TransferError, path: str) -> None:
        # Slow retrieval and HTTP errors say something about the server or
        # the network (threat AGT-SLOW); operators see them as error events.
        self.outbox.append(
            EventKind.ERROR, {"reason": error.reason, "error": str(error), "path": path}
        )

    def _fail(self, record: StateRecord, error: AgentError, next_state: AgentState) -> StepResult:
        reason = error.reason if isinstance(error, UpdateRefusedError) else RefusalReason.ERROR
        update = record.update
        logger.error("update refused or failed (%s): %s", reason, error)
        outcome = Outcome(
            result=UpdateResult.ROLLED_BACK
            if next_state is S.ROLLING_BACK
            else UpdateResult.FAILED,
            reason=reason,
            error=str(error),
            version=update.version if update else None,
            release_counter=update.release_counter if update else None,
            at=_iso_now(),
        )
        self.store.transition(record, next_state, outcome=outcome, deferred=None)
        return StepResult.CONTINUE

    # ------------------------------------------------------------ reports

    def _slot_states(self, env: BootEnv, booted: str | None) -> dict[str, SlotReport]:
        records = self.slot_records.read()
        out: dict[str, SlotReport] = {}
        for name in self.config.slots:
            image = records.get(name)
            if name == env.trial:
                state = SlotState.TRIAL
            elif name == env.committed:
                state = SlotState.ACTIVE
            elif image is not None:
                state = SlotState.INACTIVE
            else:
                state = SlotState.EMPTY
            entry: SlotReport = {"state": state}
            if image is not None:
                entry["version"] = image.version
                entry["release_counter"] = image.release_counter
                entry["sha256"] = image.sha256
            out[name] = entry
        return out

    def report(self, record: StateRecord | None = None) -> CheckinRequest:
        """The check-in body: what the pump runs and how its last update went."""
        record = record or self.store.load()
        env = self.boot.read()
        try:
            booted: str | None = booted_slot(self.config)
        except AgentError:
            booted = None
        records = self.slot_records.read()
        running = records.get(booted or env.committed) or records.get(env.committed)
        status, _ = self._read_status()
        report: CheckinRequest = {
            "product": self.config.product,
            "hardware_id": self.config.hardware_id,
            "version": running.version if running else "0.0.0",
            "release_counter": self.counter.read(),
            "slots": self._slot_states(env, booted),
            # An unreadable status counts as a programmed infusion (fail safe).
            "therapy": {"state": status.therapy if status else TherapyState.PROGRAMMED},
            # A check-in is what an idle agent does; the fleet view should
            # say idle, not the instant's "checking".
            "agent_state": S.IDLE if record.state is S.CHECKING else record.state,
        }
        outcome = record.outcome
        if outcome and outcome.version and outcome.release_counter is not None:
            last: LastUpdate = {
                "version": outcome.version,
                "release_counter": outcome.release_counter,
                "result": outcome.result,
                "at": outcome.at,
            }
            if outcome.error:
                last["error"] = f"{outcome.reason}: {outcome.error}"[:500]
            report["last_update"] = last
        elif record.update is not None:
            report["last_update"] = {
                "version": record.update.version,
                "release_counter": record.update.release_counter,
                "result": UpdateResult.IN_PROGRESS,
                "at": _iso_now(),
            }
        return report

    def _checkin(self, record: StateRecord) -> CheckinAnswer:
        answer = self.client.checkin(self.report(record))
        self._runtime.last_checkin = _time.monotonic()
        self._runtime.poll_interval = answer.poll_interval
        return answer

    # ------------------------------------------------------------ actions

    def step(self) -> StepResult:
        """Run the action of the persisted state once."""
        record = self.store.load()
        actions: dict[AgentState, Callable[[StateRecord], StepResult]] = {
            S.IDLE: self._do_idle,
            S.CHECKING: self._do_checking,
            S.DOWNLOADING: self._do_downloading,
            S.VERIFIED: self._do_verified,
            S.WAITING: self._do_waiting,
            S.INSTALLING: self._do_installing,
            S.REBOOTING: self._do_rebooting,
            S.VERIFYING_BOOT: self._do_verifying_boot,
            S.COMMITTED: self._do_committed,
            S.ROLLING_BACK: self._do_rolling_back,
            S.REPORTING: self._do_reporting,
        }
        try:
            return actions[record.state](record)
        except _GiveUpError as e:
            given_up = e.record
            if given_up.state is S.DOWNLOADING and given_up.update is not None:
                # Giving up ends the round (report, check in, maybe another
                # target), not the bytes: the same target resumes from here.
                given_up = replace(given_up, resume=ResumePoint.of(given_up.update))
            return self._fail(given_up, e.error, e.next_state)

    def _do_idle(self, record: StateRecord) -> StepResult:
        self.store.transition(record, S.CHECKING)
        return StepResult.CONTINUE

    def _do_checking(self, record: StateRecord) -> StepResult:
        try:
            self.outbox.flush(self.client)
            answer = self._checkin(record)
        except TransferError as e:
            self._runtime.failures += 1
            logger.warning("check-in failed (%d in a row): %s", self._runtime.failures, e)
            self.store.transition(record, S.IDLE)
            return StepResult.IDLE
        self._runtime.failures = 0
        assigned = answer.assigned
        env = self.boot.read()
        running = self.slot_records.read().get(env.committed)
        if assigned is None or (running is not None and running.path == assigned.path):
            self.store.transition(record, S.IDLE)
            return StepResult.IDLE
        if assigned.path in record.failed_targets:
            logger.info("not retrying %s: it failed on this pump before", assigned.path)
            self.store.transition(record, S.IDLE)
            return StepResult.IDLE
        pending = PendingUpdate(
            path=assigned.path,
            version=assigned.version,
            release_counter=assigned.release_counter,
            length=0,
            hashes={},
            url="",
            slot="",
        )
        record = replace(record, update=pending)
        self.outbox.append(EventKind.CHECK, {"path": assigned.path, "version": assigned.version})
        try:
            tuf = self._tuf()
            tuf.refresh()
            target = tuf.find_firmware(assigned.path, self.config.product)
            check_offered_release(
                target.release,
                product=self.config.product,
                hardware_id=self.config.hardware_id,
                anti_rollback_counter=self.counter.read(),
            )
        except UpdateRefusedError as e:
            return self._fail(record, e, S.REPORTING)
        except TransferError as e:
            self._runtime.failures += 1
            logger.warning("cannot fetch update metadata: %s", e)
            self._report_transfer_error(e, assigned.path)
            self.store.transition(record, S.IDLE, update=None)
            return StepResult.IDLE
        # The inactive slot: neither committed nor (defensively) under trial.
        if env.trial is not None:
            self.boot.cancel_trial()
        slot = next(name for name in self.config.slots if name != env.committed)
        info = target.target_file
        pending = replace(
            pending,
            version=target.release.version,
            release_counter=target.release.release_counter,
            length=info.length,
            hashes=dict(info.hashes),
            url=target.url,
            slot=slot,
        )
        resume = record.resume
        if resume is not None and resume.fits(pending):
            # The same signed bytes into the same slot: a download given up
            # earlier left them durable (the final hash check still decides).
            logger.info("resuming %s at byte %d", pending.path, resume.downloaded)
            pending = replace(pending, downloaded=resume.downloaded)
            self.outbox.append(
                EventKind.DOWNLOAD_START,
                {"path": pending.path, "slot": slot, "resume_from": resume.downloaded},
            )
        # Whatever else the slot held partially is overwritten from here on.
        self.store.transition(record, S.DOWNLOADING, update=pending, outcome=None, resume=None)
        return StepResult.CONTINUE

    def _rate_limit(self) -> Callable[[], float | None]:
        cache: dict[str, Any] = {"at": -1.0, "rate": None}

        def rate() -> float | None:
            now = _time.monotonic()
            if now - cache["at"] > 1.0:
                status, _ = self._read_status()
                cache["rate"] = download_rate(status, self.config.safety)
                cache["at"] = now
            value: float | None = cache["rate"]
            return value

        return rate

    def _do_downloading(self, record: StateRecord) -> StepResult:
        update = record.update
        if update is None:
            raise AgentError("agent state 'downloading' without an update")
        # The give-up rule (threat AGT-SLOW, TUF spec 5.7 slow retrieval):
        # * progress counts as progress: an attempt whose checkpoint advanced
        #   (at least MIN_CHECKPOINT_BYTES made durable) resets the counter
        #   of _begin, so a network that drops often, or a pump that loses
        #   power often, still gets the image through; only attempts in a
        #   row without progress (killed before a checkpoint, a server that
        #   sends nothing, or a byte per connection) use up max_state_repeats;
        # * a round of downloading is also bounded in time: the firmware's
        #   deadline (metadata_deadline + length / min_firmware_rate), which
        #   bounds one attempt, bounds the server time of all of them together
        #   with the pauses between them. Without it a server that hands out
        #   a little more per connection would keep the pump downloading and
        #   never checking in for a newer, fixed release;
        # * giving up ends the round, not the bytes (step keeps a resume
        #   point): the pump reports, checks in at its next poll and, if the
        #   same target is still assigned, resumes where it stopped with a
        #   fresh count and budget. No bound across rounds: each round ends,
        #   is reported and lets a new assignment take over, and a limit
        #   there would leave a pump on a poor link without the update for
        #   good.
        retry, self._runtime.retry = self._runtime.retry, None
        if retry is not None and retry[0] == update.path:
            paused = max(0.0, _time.monotonic() - retry[1])
            update = replace(update, transfer_seconds=update.transfer_seconds + paused)
            record = replace(record, update=update)
        budget = self.fetcher.file_deadline(update.length)
        exhausted = None
        if update.transfer_seconds >= budget:
            exhausted = UpdateRefusedError(
                f"{update.path}: {update.downloaded} of {update.length} bytes after "
                f"{update.transfer_seconds:.0f} s of downloading (deadline {budget:.0f} s); "
                "giving up for now, the next round resumes",
                RefusalReason.SLOW_RETRIEVAL,
            )
        last_error = update.last_error
        record = self._begin(
            record,
            S.REPORTING,
            lambda n: UpdateRefusedError(
                f"{n} download attempts in a row made no progress; giving up for now",
                parse_reason(last_error) if last_error else RefusalReason.LOOP,
            ),
            exhausted=exhausted,
        )
        self.slot_records.set(update.slot, None)
        if update.downloaded == 0:
            self.outbox.append(EventKind.DOWNLOAD_START, {"path": update.path, "slot": update.slot})
        holder = {"record": record}
        server_time = [update.transfer_seconds]

        def checkpoint(done: int) -> None:
            current = holder["record"]
            if current.update is None:
                return
            advanced = done > current.update.downloaded
            holder["record"] = replace(
                current,
                # Progress: this attempt no longer counts as one without.
                repeats=0 if advanced else current.repeats,
                update=replace(
                    current.update,
                    downloaded=done,
                    transfer_seconds=server_time[0],
                    last_error=None if advanced else current.update.last_error,
                ),
            )
            self.store.save(holder["record"])

        def on_server_time(seconds: float) -> None:
            server_time[0] += seconds

        try:
            download_to_slot(
                self.fetcher,
                (update.url, _target_file(update)),
                self.config.slots[update.slot],
                resume_from=update.downloaded,
                on_checkpoint=checkpoint,
                rate_limit=self._rate_limit(),
                progress=self.progress,
                checkpoint_seconds=self.config.checkpoint_interval,
                on_server_time=on_server_time,
            )
        except UpdateRefusedError as e:
            # Not the signed bytes (hash, length): nothing of them is kept.
            return self._fail(replace(holder["record"], resume=None), e, S.REPORTING)
        except TransferError as e:
            current = holder["record"]
            logger.warning("download interrupted, will resume: %s", e)
            self._report_transfer_error(e, update.path)
            # Stays in downloading with the loop counter as it is: counted at
            # the start, reset only by a checkpoint that advanced.
            current = replace(
                current,
                update=replace(
                    current.update or update, transfer_seconds=server_time[0], last_error=e.reason
                ),
            )
            self.store.save(current)
            # The mirror failing says nothing about the update server: tell it.
            self._maybe_checkin(current)
            # The pause from here to the next attempt counts towards the budget.
            self._runtime.retry = (update.path, _time.monotonic())
            return StepResult.WAIT
        record = holder["record"]
        self.slot_records.set(
            update.slot,
            SlotImage(
                version=update.version,
                release_counter=update.release_counter,
                length=update.length,
                sha256=update.hashes.get("sha256", ""),
                path=update.path,
            ),
        )
        self.outbox.append(EventKind.DOWNLOAD_DONE, {"path": update.path, "slot": update.slot})
        self.store.transition(record, S.VERIFIED, update=replace(update, downloaded=update.length))
        return StepResult.CONTINUE

    def _do_verified(self, record: StateRecord) -> StepResult:
        update = record.update
        self.outbox.append(EventKind.VERIFIED, {"path": update.path if update else None})
        self.store.transition(record, S.WAITING)
        return StepResult.CONTINUE

    def _do_waiting(self, record: StateRecord) -> StepResult:
        decision = self.safety()
        if not decision.safe:
            return self._defer(record, decision)
        self.store.transition(record, S.INSTALLING, deferred=None)
        return StepResult.CONTINUE

    def _do_installing(self, record: StateRecord) -> StepResult:
        update = record.update
        if update is None:
            raise AgentError("agent state 'installing' without an update")
        record = self._begin(
            record,
            S.ROLLING_BACK,
            lambda _: UpdateRefusedError("installing keeps failing", RefusalReason.LOOP),
        )
        slot_path = self.config.slots[update.slot]
        try:
            # The slot was verified when downloaded; check again right before
            # it becomes bootable, in case storage changed since (AGT-TAMPER).
            verify_slot(slot_path, _target_file(update))
        except UpdateRefusedError as e:
            self.slot_records.set(update.slot, None)
            return self._fail(record, e, S.REPORTING)
        self.outbox.append(EventKind.INSTALL, {"slot": update.slot, "version": update.version})
        self.boot.start_trial(update.slot, self.config.boot.attempts)
        self.store.transition(record, S.REBOOTING)
        return StepResult.CONTINUE

    def _do_rebooting(self, record: StateRecord) -> StepResult:
        decision = self.safety()
        if not decision.safe:
            return self._defer(record, decision)
        self.outbox.append(
            EventKind.REBOOT, {"slot": record.update.slot if record.update else None}
        )
        self.store.transition(record, S.VERIFYING_BOOT, deferred=None)
        self._reboot()
        return StepResult.CONTINUE

    def _do_verifying_boot(self, record: StateRecord) -> StepResult:
        update = record.update
        if update is None:
            raise AgentError("agent state 'verifying-boot' without an update")
        slot = update.slot
        env = self.boot.read()
        booted = booted_slot(self.config)
        if env.committed == update.slot:
            # The boot environment was committed before a crash; finish.
            return self._finish_commit(record, update)
        if booted != update.slot:
            if env.trial == update.slot and env.attempts_left > 0:
                # Persisted before the reboot, which has not happened yet:
                # the agent stopped first, or the reboot command failed. The
                # pump may be infusing by now (threat MED-INFUSION), so reboot only in a safe
                # window, and only so often: a bootloader that ignores the
                # trial would otherwise be rebooted forever (threat MED-UNBOOTABLE).
                decision = self.safety()
                if not decision.safe:
                    return self._defer(record, decision)
                record = self._begin(
                    record,
                    S.ROLLING_BACK,
                    lambda n: UpdateRefusedError(
                        f"rebooted {n} times without the bootloader starting slot {slot}",
                        RefusalReason.BOOT_NOT_TAKEN,
                    ),
                )
                self._reboot()
            return self._fail(
                record,
                UpdateRefusedError(
                    f"slot {update.slot} never completed a boot; the bootloader fell back "
                    f"to {env.committed}",
                    RefusalReason.BOOT_ATTEMPTS_EXHAUSTED,
                ),
                S.ROLLING_BACK,
            )
        if not update.selftest_passed:
            # Each self-test is counted before it runs: a new image that kills
            # the pump or the agent during it fails after max_state_repeats.
            # Waiting for a safe window afterwards is not counted: an
            # infusion may last hours, and that is not a crash.
            record = self._begin(
                record,
                S.ROLLING_BACK,
                lambda n: UpdateRefusedError(
                    f"verifying the new firmware was interrupted {n} times (crash loop)",
                    RefusalReason.CRASH_LOOP,
                ),
            )
            try:
                self._selftest(update)
            except UpdateRefusedError as e:
                self.outbox.append(EventKind.SELF_TEST_FAIL, {"slot": update.slot, "error": str(e)})
                return self._fail(record, e, S.ROLLING_BACK)
            self.outbox.append(EventKind.SELF_TEST_PASS, {"slot": update.slot})
            update = replace(update, selftest_passed=True)
            record = self.store.transition(record, S.VERIFYING_BOOT, update=update)
        decision = self.safety()
        if not decision.safe:
            return self._defer(record, decision)
        # Commit attempts are bounded too (a boot environment that cannot be
        # written): the image passed its self-test, but an uncommitted trial
        # must not linger.
        record = self._begin(
            record,
            S.ROLLING_BACK,
            lambda n: UpdateRefusedError(
                f"committing slot {slot} failed {n} times", RefusalReason.COMMIT_FAILED
            ),
        )
        self.boot.commit(update.slot)
        return self._finish_commit(record, update)

    def _finish_commit(self, record: StateRecord, update: PendingUpdate) -> StepResult:
        self.counter.raise_to(update.release_counter)
        outcome = Outcome(
            UpdateResult.COMMITTED, None, None, update.version, update.release_counter, _iso_now()
        )
        self.store.transition(record, S.COMMITTED, outcome=outcome, deferred=None)
        return StepResult.CONTINUE

    def _selftest(self, update: PendingUpdate) -> None:
        slot_path = self.config.slots[update.slot]
        argv = [
            a.replace("{slot}", update.slot)
            .replace("{slot_path}", str(slot_path))
            .replace("{version}", update.version)
            for a in self.config.selftest_command
        ]
        logger.info("running self-test %s", argv[0])
        try:
            # Bandit B603: argv from the pump's own config, no shell.
            done = subprocess.run(  # nosec B603
                argv,
                capture_output=True,
                timeout=self.config.selftest_timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            raise UpdateRefusedError(
                f"self-test timed out after {self.config.selftest_timeout:g} s",
                RefusalReason.SELF_TEST_FAILED,
            ) from e
        except OSError as e:
            raise UpdateRefusedError(
                f"self-test could not run: {e}", RefusalReason.SELF_TEST_FAILED
            ) from e
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise UpdateRefusedError(
                f"self-test failed (exit {done.returncode}) {tail[0]}".strip(),
                RefusalReason.SELF_TEST_FAILED,
            )

    def _do_committed(self, record: StateRecord) -> StepResult:
        self.store.transition(record, S.REPORTING)
        return StepResult.CONTINUE

    def _do_rolling_back(self, record: StateRecord) -> StepResult:
        update = record.update
        # Cancelled first: from here any reboot, a power loss included, starts
        # the committed slot, so the reboot itself can wait.
        self.boot.cancel_trial()
        env = self.boot.read()
        if booted_slot(self.config) != env.committed:
            # Never reboot during a therapy, not even to roll back: the image
            # that failed keeps running until the pump is safe to restart.
            decision = self.safety()
            if not decision.safe:
                return self._defer(record, decision)
            record = self._begin(
                record,
                S.REPORTING,
                lambda n: UpdateRefusedError(
                    f"rebooted {n} times to roll back, but the bootloader keeps starting "
                    f"{booted_slot(self.config)}, not {env.committed}",
                    RefusalReason.ROLLBACK_NOT_TAKEN,
                ),
                remember=update.path if update else None,
            )
            self._reboot()
        if update is not None:
            # The image failed on this pump: do not try it again (a new
            # release, or an operator, must fix it).
            failed = _remember(record, update.path)
            record = self.store.transition(record, S.ROLLING_BACK, failed_targets=failed)
        self.store.transition(record, S.REPORTING)
        return StepResult.CONTINUE

    def _do_reporting(self, record: StateRecord) -> StepResult:
        outcome = record.outcome
        if outcome is not None:
            kind = {
                UpdateResult.COMMITTED: EventKind.COMMITTED,
                UpdateResult.ROLLED_BACK: EventKind.ROLLED_BACK,
            }.get(outcome.result, EventKind.ERROR)
            self.outbox.append(
                kind,
                {
                    "version": outcome.version,
                    "release_counter": outcome.release_counter,
                    "reason": outcome.reason,
                    "error": outcome.error,
                },
            )
        record = self.store.transition(record, S.IDLE, update=None, deferred=None)
        # Deliver the events and check in right away so the fleet view shows
        # the result; the answer's assignment waits for the next poll, so a
        # refused release is not retried in a tight loop.
        try:
            self.outbox.flush(self.client)
            self._checkin(record)
        except TransferError as e:
            logger.info("report queued, server unreachable: %s", e)
        return StepResult.IDLE

    # ------------------------------------------------------------ loops

    def run_cycle(
        self, *, max_steps: int = 1000, sleep: Callable[[float], None] = _time.sleep
    ) -> AgentState:
        """Step until the agent is idle after a check-in (one poll cycle).

        Waits (deferred, retrying) sleep a few seconds between steps.

        Returns:
            The state the agent rests in.
        """
        checked = False
        for _ in range(max_steps):
            state = self.store.load().state
            if state is S.CHECKING:
                checked = True
            result = self.step()
            if result is StepResult.IDLE and checked:
                break
            if result is StepResult.WAIT:
                sleep(_WAIT_POLL)
        return self.store.load().state

    def next_poll_delay(self) -> float:
        """Seconds until the next poll (server interval, backoff and jitter)."""
        return backoff_delay(
            self._runtime.poll_interval,
            self._runtime.failures,
            self.config.server.max_backoff,
            self._rng,
        )

    def run_forever(self, stop: threading.Event | None = None) -> None:
        """Poll, update, report, for as long as the pump runs."""
        stop = stop or threading.Event()
        while not stop.is_set():
            result = self.step()
            if result is StepResult.IDLE:
                stop.wait(self.next_poll_delay())
            elif result is StepResult.WAIT:
                stop.wait(_WAIT_POLL)
