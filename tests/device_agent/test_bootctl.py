"""Boot control: the behaviour every backend shares, run on each with the real tools."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bootctl_support import (
    KINDS,
    SLOTS,
    Crash,
    crash_at,
    env_copies,
    flip_byte,
    make_backend,
    raw_set,
    snapshot,
)
from device_agent import _durable
from device_agent.bootctl import (
    MAX_ATTEMPTS,
    BootControl,
    BootEnv,
    FileBootControl,
    GrubBootControl,
    UBootBootControl,
    make_boot_control,
)
from device_agent.errors import AgentError, BootControlError

REDUNDANT = ("file", "uboot")  # the backends that keep two copies


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def backend(kind: str, tmp_path: Path) -> BootControl:
    """A backend of each kind, initialized with slot a committed."""
    boot = make_backend(kind, tmp_path / "env")
    boot.initialize("a")
    return boot


# --- lifecycle --------------------------------------------------------------


def test_initialize_creates_an_env_with_the_committed_slot(kind: str, tmp_path: Path) -> None:
    boot = make_backend(kind, tmp_path)
    boot.initialize("b")
    assert boot.read() == BootEnv("b", None, 0)
    assert isinstance(boot, BootControl)
    assert boot.slots == SLOTS


def test_initialize_leaves_a_valid_env_alone(backend: BootControl) -> None:
    backend.start_trial("b", 3)
    before = snapshot(backend)
    backend.initialize("b")
    assert backend.read() == BootEnv("a", "b", 3)
    assert snapshot(backend) == before


def test_read_of_a_missing_env_is_an_error(kind: str, tmp_path: Path) -> None:
    boot = make_backend(kind, tmp_path)
    with pytest.raises(BootControlError, match="not initialized"):
        boot.read()
    # Reading must not create anything (grub-editenv would, given the chance).
    assert snapshot(boot) == {}


def test_boot_control_error_is_an_agent_error() -> None:
    assert issubclass(BootControlError, AgentError)


def test_start_trial_sets_trial_and_keeps_committed(backend: BootControl) -> None:
    backend.start_trial("b", 3)
    assert backend.read() == BootEnv("a", "b", 3)


def test_trial_boots_the_new_slot_then_commit_makes_it_the_default(backend: BootControl) -> None:
    backend.start_trial("b", 3)
    assert backend.boot() == "b"
    assert backend.read() == BootEnv("a", "b", 2)
    backend.commit("b")
    assert backend.read() == BootEnv("b", None, 0)
    assert [backend.boot() for _ in range(3)] == ["b", "b", "b"]


def test_trial_falls_back_to_committed_when_attempts_run_out(backend: BootControl) -> None:
    backend.start_trial("b", 2)
    assert [backend.boot() for _ in range(4)] == ["b", "b", "a", "a"]
    # trial stays visible with 0 attempts, so the agent can report the rollback
    assert backend.read() == BootEnv("a", "b", 0)


def test_cancel_trial_rolls_back_to_committed(backend: BootControl) -> None:
    backend.start_trial("b", 3)
    backend.boot()
    backend.cancel_trial()
    assert backend.read() == BootEnv("a", None, 0)
    assert backend.boot() == "a"


def test_boot_without_trial_does_not_write(backend: BootControl) -> None:
    before = snapshot(backend)
    assert backend.boot() == "a"
    assert snapshot(backend) == before


def test_commit_after_the_last_attempt_was_used_is_accepted(backend: BootControl) -> None:
    backend.start_trial("b", 1)
    assert backend.boot() == "b"
    backend.commit("b")
    assert backend.read() == BootEnv("b", None, 0)


def test_a_second_update_cycle_runs_on_the_other_slot(backend: BootControl) -> None:
    backend.start_trial("b", 3)
    backend.boot()
    backend.commit("b")
    backend.start_trial("a", 2)
    assert backend.boot() == "a"
    backend.commit("a")
    assert backend.read() == BootEnv("a", None, 0)


# --- idempotence --------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        pytest.param(lambda b: b.start_trial("b", 3), BootEnv("a", "b", 3), id="start_trial"),
        pytest.param(lambda b: b.commit("b"), BootEnv("b", None, 0), id="commit"),
        pytest.param(lambda b: b.cancel_trial(), BootEnv("a", None, 0), id="cancel_trial"),
        pytest.param(lambda b: b.initialize("b"), BootEnv("a", "b", 3), id="initialize"),
    ],
)
def test_repeating_an_operation_changes_nothing(
    backend: BootControl, operation: Callable[[BootControl], None], expected: BootEnv
) -> None:
    backend.start_trial("b", 3)
    operation(backend)
    assert backend.read() == expected
    before = snapshot(backend)
    operation(backend)
    assert backend.read() == expected
    assert snapshot(backend) == before  # no second write either


# --- refusals -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "message"),
    [
        pytest.param(lambda b: b.start_trial("a", 3), "committed slot", id="trial-of-committed"),
        pytest.param(lambda b: b.start_trial("c", 3), "not a configured slot", id="unknown-slot"),
        pytest.param(lambda b: b.start_trial("b", 0), "attempts", id="zero-attempts"),
        pytest.param(
            lambda b: b.start_trial("b", MAX_ATTEMPTS + 1), "attempts", id="too-many-attempts"
        ),
        pytest.param(lambda b: b.start_trial("b", True), "attempts", id="bool-attempts"),
        pytest.param(lambda b: b.commit("c"), "not a configured slot", id="commit-unknown"),
        pytest.param(lambda b: b.commit("b"), "neither committed", id="commit-b"),
    ],
)
def test_invalid_requests_are_refused_without_writing(
    backend: BootControl, operation: Callable[[BootControl], None], message: str
) -> None:
    before = snapshot(backend)
    with pytest.raises(BootControlError, match=message):
        operation(backend)
    assert snapshot(backend) == before
    assert backend.read() == BootEnv("a", None, 0)


def test_initialize_refuses_an_unknown_committed_slot(kind: str, tmp_path: Path) -> None:
    boot = make_backend(kind, tmp_path)
    with pytest.raises(BootControlError, match="'c' is not a configured slot"):
        boot.initialize("c")
    assert snapshot(boot) == {}


@pytest.mark.parametrize(
    ("slots", "message"),
    [
        (("a",), "at least two slots"),
        (("a", "a"), "unique"),
        (("a", "b c"), "invalid"),
        (("a", ""), "invalid"),
        ("ab", "not the string"),
    ],
)
def test_bad_slot_configuration_is_refused(
    kind: str, tmp_path: Path, slots: tuple[str, ...], message: str
) -> None:
    with pytest.raises(BootControlError, match=message):
        make_backend(kind, tmp_path, slots=slots)


# --- corrupt environments ----------------------------------------------------------

# (committed, trial, attempts) as stored raw, and the field the error must name
# (file backend name, bootloader variable name).
CORRUPT = [
    pytest.param("z", "", "0", ("committed", "pg_committed"), id="unknown-committed"),
    pytest.param("", "b", "2", ("committed", "pg_committed"), id="empty-committed"),
    pytest.param("a", "z", "2", ("trial", "pg_trial"), id="unknown-trial"),
    pytest.param("a", "a", "2", ("trial", "pg_trial"), id="trial-is-committed"),
    pytest.param("a", "b", "x", ("attempts_left", "pg_attempts"), id="attempts-not-a-number"),
    pytest.param("a", "b", "-1", ("attempts_left", "pg_attempts"), id="attempts-negative"),
    pytest.param("a", "b", "10", ("attempts_left", "pg_attempts"), id="attempts-too-many"),
    pytest.param("a", "", "2", ("attempts_left", "pg_attempts"), id="attempts-without-trial"),
]


@pytest.mark.parametrize(("committed", "trial", "attempts", "names"), CORRUPT)
def test_a_corrupt_env_is_an_error_naming_the_variable(
    backend: BootControl, committed: str, trial: str, attempts: str, names: tuple[str, str]
) -> None:
    raw_set(backend, committed, trial, attempts)
    name = names[0] if isinstance(backend, FileBootControl) else names[1]
    with pytest.raises(BootControlError, match=name):
        backend.read()


@pytest.mark.parametrize(
    "operation",
    [
        pytest.param(lambda b: b.start_trial("b", 3), id="start_trial"),
        pytest.param(lambda b: b.commit("a"), id="commit"),
        pytest.param(lambda b: b.cancel_trial(), id="cancel_trial"),
        pytest.param(lambda b: b.boot(), id="boot"),
        pytest.param(lambda b: b.initialize("a"), id="initialize"),
    ],
)
def test_a_corrupt_env_is_never_silently_fixed(
    backend: BootControl, operation: Callable[[BootControl], None]
) -> None:
    raw_set(backend, "a", "b", "x")
    before = snapshot(backend)
    with pytest.raises(BootControlError, match="attempts"):
        operation(backend)
    assert snapshot(backend) == before


@pytest.mark.parametrize("kind", REDUNDANT)
@pytest.mark.parametrize("damaged", [0, 1])
def test_one_corrupt_copy_is_survived(kind: str, tmp_path: Path, damaged: int) -> None:
    boot = make_backend(kind, tmp_path)
    boot.initialize("a")
    copy = env_copies(boot)[damaged]
    flip_byte(copy.path, copy.offset + 40)
    assert boot.read() == BootEnv("a", None, 0)
    # and the next update goes to the damaged copy, repairing the redundancy
    boot.start_trial("b", 2)
    flip_byte(env_copies(boot)[1 - damaged].path, env_copies(boot)[1 - damaged].offset + 40)
    assert boot.read() == BootEnv("a", "b", 2)


@pytest.mark.parametrize("kind", REDUNDANT)
def test_both_copies_corrupt_is_an_error(kind: str, tmp_path: Path) -> None:
    boot = make_backend(kind, tmp_path)
    boot.initialize("a")
    for copy in env_copies(boot):
        flip_byte(copy.path, copy.offset + 40)
    with pytest.raises(BootControlError, match=r"corrupt|unreadable|Cannot read"):
        boot.read()
    with pytest.raises(BootControlError):
        boot.initialize("a")  # present but unreadable: provisioning must not paper over it


def test_a_corrupt_grub_block_is_an_error(tmp_path: Path) -> None:
    boot = make_backend("grub", tmp_path)
    boot.initialize("a")
    assert isinstance(boot, GrubBootControl)
    flip_byte(boot.env_file, 3)  # the "# GRUB Environment Block" signature
    with pytest.raises(BootControlError, match="invalid environment block"):
        boot.read()


# --- power loss ---------------------------------------------------------------------

# operation, env before (None: absent), env after
OPERATIONS = [
    pytest.param(lambda b: b.initialize("a"), None, BootEnv("a", None, 0), id="initialize"),
    pytest.param(
        lambda b: b.start_trial("b", 3),
        BootEnv("a", None, 0),
        BootEnv("a", "b", 3),
        id="start_trial",
    ),
    pytest.param(
        lambda b: b.boot(), BootEnv("a", "b", 3), BootEnv("a", "b", 2), id="boot-decrement"
    ),
    pytest.param(lambda b: b.commit("b"), BootEnv("a", "b", 2), BootEnv("b", None, 0), id="commit"),
    pytest.param(
        lambda b: b.cancel_trial(), BootEnv("a", "b", 2), BootEnv("a", None, 0), id="cancel_trial"
    ),
]


def _prepare(boot: BootControl, env: BootEnv | None) -> None:
    """Bring a fresh backend to ``env`` through the public operations."""
    if env is None:
        return
    boot.initialize(env.committed)
    if env.trial is not None:
        boot.start_trial(env.trial, 3)
        for _ in range(3 - env.attempts_left):
            boot.boot()
    assert boot.read() == env


def _state(boot: BootControl) -> BootEnv | None:
    try:
        return boot.read()
    except BootControlError as e:
        assert "not initialized" in str(e), e
        return None


@pytest.mark.parametrize(("operation", "old", "new"), OPERATIONS)
def test_a_crash_at_any_durable_step_leaves_the_old_or_the_new_env(
    kind: str,
    tmp_path: Path,
    operation: Callable[[BootControl], None],
    old: BootEnv | None,
    new: BootEnv,
) -> None:
    crashes = 0
    for n in range(1, 50):
        directory = tmp_path / f"crash-{n}"
        _prepare(make_backend(kind, directory), old)
        labels: list[str] = []
        try:
            with _durable.crash_hook(crash_at(n, labels)):
                operation(make_backend(kind, directory))
        except Crash:
            crashes += 1
        else:
            assert len(labels) == n - 1, "the operation finished before crash point n"
            break
        # After the power loss: a restarted agent finds the old or the new env ...
        restarted = make_backend(kind, directory)
        state = _state(restarted)
        assert state in (old, new), f"crash at {labels[-1]!r}"
        # ... and, if it was the old one, running the operation again reaches
        # the new one (not repeated otherwise: boot() is a decrement).
        if state == old:
            operation(restarted)
            assert restarted.read() == new
    assert crashes >= 1, "the operation passed no crash point"


@pytest.mark.parametrize("kind", REDUNDANT)
@pytest.mark.parametrize(("operation", "old", "new"), OPERATIONS[1:])
def test_a_torn_write_of_the_new_copy_falls_back_to_the_old_env(
    kind: str,
    tmp_path: Path,
    operation: Callable[[BootControl], None],
    old: BootEnv,
    new: BootEnv,
) -> None:
    boot = make_backend(kind, tmp_path)
    _prepare(boot, old)
    before = snapshot(boot)
    operation(boot)
    after = snapshot(boot)
    changed = [p for p in after if after[p] != before[p]]
    assert len(changed) == 1, "an update writes exactly one copy"
    path = changed[0]
    old_bytes, new_bytes = before[path], after[path]
    diff = [i for i in range(len(new_bytes)) if old_bytes[i] != new_bytes[i]]
    # Power lost half-way through the write: the first half of the changed
    # range is new, the rest still old.
    middle = (diff[0] + diff[-1] + 1) // 2
    path.write_bytes(new_bytes[:middle] + old_bytes[middle:])
    assert boot.read() == old


# --- factory -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "location", "cls"),
    [
        ("file", "path", FileBootControl),
        ("grub", "env_file", GrubBootControl),
        ("uboot", "config_file", UBootBootControl),
    ],
)
@pytest.mark.parametrize("use_env_alias", [False, True])
def test_make_boot_control_builds_each_backend(
    kind: str, location: str, cls: type, use_env_alias: bool, tmp_path: Path
) -> None:
    key = "env" if use_env_alias else location
    boot = make_boot_control(kind, **{key: str(tmp_path / "env"), "slots": ["a", "b"]})
    assert isinstance(boot, cls)
    assert boot.slots == ("a", "b")


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("lilo", {"env": "x", "slots": ["a", "b"]}, "unknown boot control 'lilo'"),
        ("file", {"slots": ["a", "b"]}, r"missing options \['path'\]"),
        ("file", {"path": "x", "slots": ["a", "b"], "tool": "t"}, r"unknown options \['tool'\]"),
        ("grub", {"env": "x", "env_file": "y", "slots": ["a", "b"]}, "not both"),
        ("grub", {"env_file": 3, "slots": ["a", "b"]}, "must be a path"),
        ("grub", {"env_file": "x", "slots": "ab"}, "list of names"),
        ("grub", {"env_file": "x", "slots": ["a", "b"], "timeout": 0}, "positive seconds"),
        ("uboot", {"config_file": "x", "slots": ["a", "b"], "setenv": ""}, "must be a string"),
    ],
)
def test_make_boot_control_refuses_bad_options(
    kind: str, options: dict[str, object], message: str
) -> None:
    with pytest.raises(BootControlError, match=message):
        make_boot_control(kind, **options)
