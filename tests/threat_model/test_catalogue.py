"""The catalogue: the system's parts, the threats the issues name, and their tests."""

from __future__ import annotations

import pytest

from threat_model.catalogue import ASSUMPTIONS, build_model
from threat_model.check import REPO_ROOT, cited_threat_ids, collect_node_ids
from threat_model.model import Category, ThreatModel

MODEL = build_model()


def _linked(model: ThreatModel, node_id: str) -> list[str]:
    """Controls whose tests cover ``node_id`` (exactly, or as one case of a base id)."""
    return [
        c.id
        for c in model.controls
        if any(node_id == t or node_id.startswith((t + "[", t + "::")) for t in c.tests)
    ]


@pytest.mark.parametrize(
    "element",
    [
        "E-RE-WS", "E-HSM", "E-SIGNER", "E-OFFLINE-REPO", "E-SERVER", "E-DB", "E-CDN",
        "E-HOSPITAL-NET", "E-AGENT", "E-PUMP-STORAGE", "E-BOOTLOADER", "E-THERAPY",
        "E-REVIEWER", "E-OPERATOR",
    ],
)  # fmt: skip
def test_the_system_s_parts_are_elements(element: str) -> None:
    assert MODEL.element(element).name


@pytest.mark.parametrize(
    ("flow", "boundaries"),
    [
        ("F-BUNDLE-UPLOAD", ("B-SIGNING", "B-SERVER")),
        ("F-TUF-DOWNLOAD", ("B-INTERNET", "B-PUMP")),
        ("F-CHECKIN", ("B-PUMP", "B-SERVER")),
        ("F-EVENTS", ("B-PUMP", "B-SERVER")),
        ("F-ENROLL", ("B-CORP", "B-SERVER")),
        ("F-OPERATOR-API", ("B-CORP", "B-SERVER")),
        ("F-BOOT-ENV", ("B-PUMP", "B-PUMP-BOOT")),
        ("F-NET-TRANSIT", ("B-HOSPITAL", "B-PUMP")),
    ],
)
def test_the_main_flows_cross_the_trust_boundaries(flow: str, boundaries: tuple[str, str]) -> None:
    f = next(f for f in MODEL.flows if f.id == flow)

    assert MODEL.crossing(f)
    assert (MODEL.element(f.source).boundary, MODEL.element(f.target).boundary) == boundaries


def test_every_category_and_every_element_and_flow_has_threats() -> None:
    targets = {t for threat in MODEL.threats for t in threat.targets}

    assert {t.category for t in MODEL.threats} == set(Category)
    assert {e.id for e in MODEL.elements} <= targets
    assert {f.id for f in MODEL.flows} <= targets


def test_every_threat_cited_in_the_code_is_in_the_model() -> None:
    cited = cited_threat_ids(REPO_ROOT)
    ids = {t.id for t in MODEL.threats}

    # The ids the code already cited when the model was written, at least.
    assert {
        "SRV-DEVICE-SPOOF", "TUF-ROLLBACK", "SRV-TOKEN-THEFT", "SRV-REPLAY", "SRV-DOS",
        "AGT-TAMPER", "TUF-MIX-AND-MATCH", "MED-INFUSION", "AGT-UNSIGNED", "TUF-ARBITRARY",
        "SRV-INPUT", "PWR-1", "AGT-WRONG-HW", "AGT-SLOW", "AGT-ROLLBACK", "MED-POWER",
        "SRV-COMPROMISE",
    } <= set(cited)  # fmt: skip
    assert set(cited) <= ids, {i: cited[i] for i in set(cited) - ids}


@pytest.mark.parametrize(
    "threat", ["MED-INFUSION", "MED-MASS-HARM", "MED-UNBOOTABLE", "MED-VULN-FIELD"]
)
def test_the_medical_hazards_of_the_issue_are_patient_safety_threats(threat: str) -> None:
    assert MODEL.threat(threat).category is Category.PATIENT_SAFETY


def test_every_case_of_the_agent_attack_matrix_is_linked() -> None:
    # Collected, so an attack added to the matrix later must be linked too.
    files = ["tests/device_agent/test_agent_attacks.py"]
    cases, problems = collect_node_ids(REPO_ROOT, files)

    assert problems == []
    assert len(cases) >= 19
    assert {c: _linked(MODEL, c) for c in sorted(cases) if not _linked(MODEL, c)} == {}


#: Issue 4 (Must show) and issue 3 (Must show) item -> the test that shows it.
REQUIRED: list[tuple[str, str]] = [
    # TUF attacks on the pump (each in the attack matrix and its unit test)
    ("unsigned metadata", "test_agent_attacks.py::{m}[unsigned_product_metadata]"),
    ("wrongly signed metadata", "test_agent_attacks.py::{m}[badly_signed_timestamp]"),
    ("below threshold", "test_agent_attacks.py::{m}[below_threshold]"),
    ("rolled-back timestamp", "test_agent_attacks.py::{m}[rolled_back_timestamp]"),
    ("rolled-back snapshot", "test_agent_attacks.py::{m}[rolled_back_snapshot]"),
    ("rolled-back product metadata", "test_agent_attacks.py::{m}[rolled_back_product_metadata]"),
    ("expired metadata", "test_agent_attacks.py::{m}[expired_metadata]"),
    ("mix-and-match", "test_agent_attacks.py::{m}[mix_and_match]"),
    ("endless metadata", "test_agent_attacks.py::{m}[endless_metadata]"),
    ("endless firmware", "test_agent_attacks.py::{m}[endless_firmware]"),
    ("slow retrieval", "test_agent_attacks.py::test_slow_retrieval_is_abandoned_and_reported"),
    ("substituted firmware", "test_agent_attacks.py::{m}[substituted_firmware]"),
    ("truncated firmware", "test_agent_attacks.py::{m}[truncated_firmware]"),
    ("bit-flipped firmware", "test_agent_attacks.py::{m}[bit_flipped_firmware]"),
    ("other hardware id", "test_agent_attacks.py::{m}[other_hardware]"),
    ("release_counter downgrade", "test_agent_attacks.py::{m}[older_release]"),
    ("outside the delegation", "test_agent_attacks.py::{m}[outside_delegation]"),
    ("traversal", "test_agent_attacks.py::{m}[traversal]"),
    # power loss, SIGKILL, interlock, rollback
    # The enumeration runs in 4 shards per path; each shard is linked.
    *(
        (
            f"power loss, {path}, shard {k} of 4",
            f"test_power_loss.py::test_power_loss_at_every_durable_operation[{path}-{k}of4]",
        )
        for path in ("update", "rollback")
        for k in range(1, 5)
    ),
    (
        "power loss, every point in a shard",
        "test_power_loss.py::test_the_shards_together_take_every_crash_point",
    ),
    ("SIGKILL", "test_sigkill.py::test_sigkill_at_random_moments_never_bricks_the_pump"),
    (
        "interlock mid-infusion",
        "test_agent_update.py::test_update_assigned_mid_infusion_is_downloaded_but_installed_only_after",
    ),
    (
        "low battery, outside window",
        "test_agent_update.py::test_unsafe_conditions_defer_installing",
    ),
    (
        "rollback: self-test",
        "test_rollback.py::test_self_test_failure_rolls_back_and_is_not_retried",
    ),
    (
        "rollback: crash loop",
        "test_rollback.py::test_crash_loop_while_verifying_the_boot_rolls_back",
    ),
    (
        "rollback: attempts",
        "test_rollback.py::test_image_that_never_boots_falls_back_when_attempts_run_out",
    ),
    (
        "real grub-editenv",
        "test_agent_update.py::test_update_is_installed_committed_and_reported[grub]",
    ),
    (
        "real fw_setenv",
        "test_agent_update.py::test_update_is_installed_committed_and_reported[uboot]",
    ),
    # server access rules
    ("upload without token", "{s}test_upload_without_token_is_refused_and_repository_unchanged"),
    (
        "token of another product",
        "{s}test_upload_with_token_for_another_product_is_refused_and_repository_unchanged",
    ),
    ("token role", "{s}test_upload_with_a_token_of_a_role_that_does_not_publish_is_refused"),
    (
        "below threshold upload",
        "{s}test_release_below_threshold_is_refused_and_repository_unchanged",
    ),
    ("tampered file", "{s}test_tampered_firmware_is_refused_and_repository_unchanged"),
    ("replayed bundle", "{s}test_replayed_bundle_is_refused_as_stale"),
    (
        "concurrent publishes",
        "{s}test_concurrent_publishes_built_on_the_same_state_serialise_one_wins",
    ),
    ("replayed check-in", "{d}test_replayed_checkin_is_refused_and_changes_nothing"),
    ("unsigned check-in", "{d}test_unsigned_checkin_is_refused"),
    ("revoked device", "{d}test_revoked_device_is_refused"),
    ("one device for another", "{d}test_request_signed_by_one_device_for_another_is_refused"),
    ("enrollment roles", "{v}test_enrollment_needs_an_admin_or_operator_token"),
    ("revoked token", "{v}test_enrollment_with_a_revoked_token_is_refused"),
    (
        "expired timestamp re-signed",
        "update_server/test_refresh.py::"
        "test_expired_timestamp_is_resigned_at_start_after_a_long_stop",
    ),
    ("audit chain", "update_server/test_datadir.py::test_audit_chain_detects_tampering"),
    (
        "50 publishes",
        "e2e/test_server_publish_and_pump_update.py::"
        "test_pumps_polling_during_50_publishes_never_fail_verification",
    ),
    (
        "publish then ngclient",
        "e2e/test_server_publish_and_pump_update.py::"
        "test_two_person_release_published_through_the_api_is_installed_by_a_tuf_client",
    ),
]


def _node(short: str) -> str:
    expanded = short.format(
        m="test_attack_is_refused_before_anything_becomes_bootable",
        s="update_server/test_publish_api.py::",
        d="update_server/test_device_auth.py::",
        v="update_server/test_devices.py::",
    )
    if expanded.split("::")[0].count("/") == 0:
        expanded = "device_agent/" + expanded
    return "tests/" + expanded


@pytest.mark.parametrize("short", [r[1] for r in REQUIRED], ids=[r[0] for r in REQUIRED])
def test_every_attack_power_loss_case_and_access_rule_is_a_control_with_its_test(
    short: str,
) -> None:
    node = _node(short)
    controls = _linked(MODEL, node)

    assert controls, f"{node} is linked by no control"
    mitigating = {c for t in MODEL.threats for c in t.controls}
    assert set(controls) <= mitigating


def test_residual_risks_are_lower_and_acceptable_or_explicitly_accepted() -> None:
    for t in MODEL.threats:
        assert t.after.score <= t.before.score, t.id
    accepted = {t.id for t in MODEL.threats if t.acceptance}

    # Accepting a risk is a decision: a new one must be added here on purpose.
    assert accepted == {"MED-MASS-HARM", "MED-VULN-FIELD"}
    assert {t.id for t in MODEL.threats if not t.after.acceptable} == accepted


@pytest.mark.parametrize("words", ["offline", "threshold", "secure boot", "clock", "therapy"])
def test_the_assumptions_are_stated(words: str) -> None:
    assert any(words in a for a in ASSUMPTIONS)
    assert MODEL.assumptions == ASSUMPTIONS
