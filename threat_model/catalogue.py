"""The threat model of pumpguard: elements, boundaries, flows, threats, controls.

One function, :func:`build_model`, returns the model of *this* system as data;
:mod:`threat_model.check` proves it against the code and the test results and
:mod:`threat_model.report` draws it. The vocabulary is :mod:`threat_model.model`.

Organisation (see ``docs/threat-model.md``):

- Threat ids are ``AREA-NAME``: ``TUF-`` attacks on the update metadata (any
  client), ``AGT-`` the pump agent, ``SRV-`` the update server, ``SGN-`` the
  offline signing environment, ``NET-`` the networks, ``BOOT-`` the pump's boot
  path, ``SBOM-``/``REV-`` what the security reviewer relies on, ``MED-`` the
  patient-safety hazards, ``PWR-`` power loss outside the pump. Ids cited in code
  comments (``threat AGT-ROLLBACK``) must exist here; the check enforces it.
- Control ids are ``C-NAME``. A control names where it is implemented
  (``module`` or ``module:qualname``) and the pytest node ids that prove it;
  several threats may share a control.
- Risks are :class:`~threat_model.model.Risk` ratings (exploitability x
  severity) before and after the controls.
"""

from __future__ import annotations

from threat_model.model import (
    Boundary,
    Category,
    Control,
    Element,
    ElementKind,
    Exploitability,
    Flow,
    Risk,
    Severity,
    Threat,
    ThreatModel,
)

__all__ = ["ASSUMPTIONS", "build_model"]

# ------------------------------------------------------------------ test ids


def _n(module: str, *names: str) -> tuple[str, ...]:
    """Node ids ``tests/<module>.py::<name>`` for each of ``names``."""
    return tuple(f"tests/{module}.py::{name}" for name in names)


def _cases(module: str, name: str, *params: str) -> tuple[str, ...]:
    """Node ids of chosen parametrized cases of one test."""
    return tuple(f"tests/{module}.py::{name}[{p}]" for p in params)


def _attack(*cases: str) -> tuple[str, ...]:
    """Cases of the agent's attack matrix (issue 4, Must show)."""
    return _cases(
        "device_agent/test_agent_attacks",
        "test_attack_is_refused_before_anything_becomes_bootable",
        *cases,
    )


def _refusal(*cases: str) -> tuple[str, ...]:
    """Cases of the signer's publish refusals (each leaves the repository unchanged)."""
    return _cases(
        "signer/test_publish_refusals", "test_refused_publish_leaves_repository_unchanged", *cases
    )


_TUF_CLIENT = "device_agent/test_tuf_client"
_FETCHER = "device_agent/test_fetcher"
_DOWNLOAD = "device_agent/test_download"
_INTERLOCK = "device_agent/test_interlock"
_STATE = "device_agent/test_state_machine"
_REBOOT = "device_agent/test_reboot_interlock"
_BOOTCTL = "device_agent/test_bootctl"
_BOOT_TOOLS = "device_agent/test_bootctl_tools"
_REPORTING = "device_agent/test_reporting"
_DEVICE_AUTH = "update_server/test_device_auth"
_DEVICES = "update_server/test_devices"
_PUBLISH_API = "update_server/test_publish_api"
_TUF_FILES = "update_server/test_tuf_files"
_NGCLIENT = "e2e/test_ngclient_over_http"
_E2E = "e2e/test_server_publish_and_pump_update"
_REPOSITORY = "signer/test_repository"

# ------------------------------------------------------------------- diagram

_BOUNDARIES = (
    Boundary(
        "B-SIGNING",
        "Offline signing environment",
        "Release engineers' and QA's workstations, the HSM and the offline repository "
        "with the root and targets keys; not reachable from the internet.",
    ),
    Boundary(
        "B-CORP",
        "Manufacturer office",
        "Fleet operators and security reviewers with their API tokens and reports.",
    ),
    Boundary(
        "B-SERVER",
        "Server zone",
        "The update server, its database and data folder with the online snapshot and "
        "timestamp keys.",
    ),
    Boundary(
        "B-INTERNET",
        "Internet / CDN",
        "Static file hosts and CDNs serving the published TUF files; vulnerability feeds.",
    ),
    Boundary(
        "B-HOSPITAL",
        "Hospital network",
        "The clinical network the pumps sit on; shared with other hosts and visitors.",
    ),
    Boundary(
        "B-PUMP",
        "Pump",
        "The pump's application processor: the agent, its storage and the therapy "
        "controller's status interface.",
    ),
    Boundary(
        "B-PUMP-BOOT",
        "Pump trusted boot",
        "The bootloader, verified by the hardware's secure boot, and the slot it chooses.",
    ),
)

_ELEMENTS = (
    Element(
        "E-RE-WS",
        "Release engineer / QA workstation",
        ElementKind.ACTOR,
        "B-SIGNING",
        "Where a firmware build is turned into a release bundle and each of the two "
        "people signs it.",
    ),
    Element(
        "E-HSM",
        "HSM",
        ElementKind.DEVICE,
        "B-SIGNING",
        "PKCS#11 token holding signing keys that never leave it (SoftHSM2 in tests).",
    ),
    Element(
        "E-SIGNER",
        "Signer (pumpguard keys/repo/release)",
        ElementKind.PROCESS,
        "B-SIGNING",
        "Key generation, the TUF repository tooling, release bundles and threshold signing.",
    ),
    Element(
        "E-OFFLINE-REPO",
        "Offline repository",
        ElementKind.STORE,
        "B-SIGNING",
        "Root and targets metadata, delegations, encrypted key files and bundles.",
    ),
    Element(
        "E-SERVER",
        "Update server (Flask app)",
        ElementKind.PROCESS,
        "B-SERVER",
        "Verified publish API, TUF file serving, devices, signed check-ins and events, "
        "online-role refresher, audit log.",
    ),
    Element(
        "E-DB",
        "Server database",
        ElementKind.STORE,
        "B-SERVER",
        "SQLite or PostgreSQL: token hashes, devices, nonces, events, release index, "
        "audit chain, publish lock.",
    ),
    Element(
        "E-SERVER-FILES",
        "Server data folder",
        ElementKind.STORE,
        "B-SERVER",
        "The published TUF repository (metadata and targets) and the online keys.",
    ),
    Element(
        "E-CDN",
        "Static file host / CDN",
        ElementKind.PROCESS,
        "B-INTERNET",
        "Serves the published TUF files to pumps; untrusted for integrity.",
    ),
    Element(
        "E-VULN-FEEDS",
        "Vulnerability feeds",
        ElementKind.ACTOR,
        "B-INTERNET",
        "OSV, NVD and CISA KEV downloads imported into the offline vulnerability store.",
    ),
    Element(
        "E-HOSPITAL-NET",
        "Hospital network",
        ElementKind.ACTOR,
        "B-HOSPITAL",
        "Routers, proxies and other hosts between the pumps and the server; the "
        "adjacent attacker's position.",
    ),
    Element(
        "E-AGENT",
        "Pump agent",
        ElementKind.PROCESS,
        "B-PUMP",
        "Polls, verifies through TUF, downloads into the inactive slot, waits for a safe "
        "window, installs, self-tests, commits or rolls back, reports.",
    ),
    Element(
        "E-PUMP-STORAGE",
        "Pump storage",
        ElementKind.STORE,
        "B-PUMP",
        "A/B slots, agent state, anti-rollback counter, slot records, outbox, TUF "
        "metadata cache, the built-in root.json and the device key.",
    ),
    Element(
        "E-THERAPY",
        "Therapy controller",
        ElementKind.DEVICE,
        "B-PUMP",
        "Runs the infusion; publishes therapy, mains and battery status to the agent.",
    ),
    Element(
        "E-BOOTLOADER",
        "Bootloader",
        ElementKind.DEVICE,
        "B-PUMP-BOOT",
        "Chooses the slot to boot from the boot environment (trial, attempts, committed).",
    ),
    Element(
        "E-REVIEWER",
        "Security reviewer",
        ElementKind.ACTOR,
        "B-CORP",
        "Audits SBOMs and vulnerabilities, reads the threat model and traceability.",
    ),
    Element(
        "E-OPERATOR",
        "Fleet operator",
        ElementKind.ACTOR,
        "B-CORP",
        "Enrolls and revokes pumps, watches the fleet, assigns releases.",
    ),
)

_FLOWS = (
    Flow("F-BUILD-INPUT", "E-RE-WS", "E-SIGNER", "firmware build, SBOM manifest, commands", "CLI"),
    Flow("F-HSM-SIGN", "E-SIGNER", "E-HSM", "payload to sign; signature back", "PKCS#11"),
    Flow(
        "F-OFFLINE-METADATA",
        "E-SIGNER",
        "E-OFFLINE-REPO",
        "root/targets metadata, delegations, bundles, encrypted keys",
        "local files",
    ),
    Flow(
        "F-BUNDLE-UPLOAD",
        "E-SIGNER",
        "E-SERVER",
        "two-person-signed release bundle",
        "HTTPS POST /api/v1/releases, release-engineer token",
    ),
    Flow(
        "F-ROOT-INSTALL",
        "E-OFFLINE-REPO",
        "E-SERVER-FILES",
        "offline-signed root and targets metadata (init, rotations)",
        "operator copy",
    ),
    Flow(
        "F-SERVER-DB",
        "E-SERVER",
        "E-DB",
        "tokens, devices, nonces, events, release index, audit chain, publish lock",
        "SQL",
    ),
    Flow(
        "F-SERVER-FILES",
        "E-SERVER",
        "E-SERVER-FILES",
        "published metadata and targets; online keys read",
        "local files",
    ),
    Flow("F-CDN-SYNC", "E-SERVER-FILES", "E-CDN", "static TUF files", "HTTPS / object store"),
    Flow(
        "F-TUF-DOWNLOAD",
        "E-CDN",
        "E-AGENT",
        "TUF metadata and firmware targets",
        "HTTPS GET /tuf/... over the internet and the hospital network",
    ),
    Flow(
        "F-CHECKIN",
        "E-AGENT",
        "E-SERVER",
        "signed check-in (state, slots, counter); assigned target path back",
        "HTTPS, Ed25519 request signature with nonce",
    ),
    Flow("F-EVENTS", "E-AGENT", "E-SERVER", "signed event batches", "HTTPS, Ed25519 signature"),
    Flow(
        "F-NET-TRANSIT",
        "E-HOSPITAL-NET",
        "E-AGENT",
        "every packet to and from the pump",
        "IP",
    ),
    Flow(
        "F-ENROLL",
        "E-OPERATOR",
        "E-SERVER",
        "enrollment: device id, public key, product, hardware id",
        "HTTPS, operator token",
    ),
    Flow(
        "F-OPERATOR-API",
        "E-OPERATOR",
        "E-SERVER",
        "token-authenticated API: devices, revocation, events, releases",
        "HTTPS, API token",
    ),
    Flow(
        "F-REVIEW",
        "E-CDN",
        "E-REVIEWER",
        "published SBOMs verified through TUF",
        "HTTPS GET /tuf/...",
    ),
    Flow(
        "F-VULN-FEEDS",
        "E-VULN-FEEDS",
        "E-REVIEWER",
        "OSV, NVD and KEV data",
        "HTTPS download, offline import",
    ),
    Flow(
        "F-THERAPY-STATUS",
        "E-THERAPY",
        "E-AGENT",
        "therapy, on mains, battery percent, updated at",
        "file replaced atomically or Unix socket",
    ),
    Flow(
        "F-AGENT-STORAGE",
        "E-AGENT",
        "E-PUMP-STORAGE",
        "slot data, state, counter, slot records, outbox, TUF cache",
        "durable writes (fsync, rename)",
    ),
    Flow(
        "F-BOOT-ENV",
        "E-AGENT",
        "E-BOOTLOADER",
        "boot environment: committed slot, trial slot, attempts left",
        "redundant env file, grub-editenv, fw_setenv",
    ),
    Flow("F-BOOT-IMAGE", "E-PUMP-STORAGE", "E-BOOTLOADER", "the chosen slot's image", "flash"),
    Flow(
        "F-PROVISION",
        "E-OFFLINE-REPO",
        "E-PUMP-STORAGE",
        "built-in root.json (version 1) and the agent configuration",
        "manufacturing",
    ),
)

# ------------------------------------------------------------------ controls

_CONTROLS = (
    # --- TUF on the pump (issue 4 attack matrix)
    Control(
        "C-TUF-SIGNATURES",
        "Every TUF role is verified against its keys before it is used",
        "The agent's TUF client (python-tuf ngclient) verifies root, timestamp, snapshot, "
        "targets and the product's delegated metadata against the keys and threshold of "
        "the delegating role; unsigned or wrongly signed metadata is refused "
        "(tuf-unsigned-metadata) before any target is looked up.",
        ("device_agent.tuf_client:TufClient.refresh", "device_agent.tuf_client:refusal_reason"),
        _attack("unsigned_product_metadata", "badly_signed_timestamp")
        + _n(
            _TUF_CLIENT,
            "test_rejects_badly_signed_product_metadata",
            "test_rejects_timestamp_signed_by_wrong_key",
            "test_refusal_reasons_name_the_tuf_error",
        ),
    ),
    Control(
        "C-TUF-THRESHOLD",
        "A threshold of keys must sign each role",
        "Signatures below a role's threshold do not count, for root rotations as for the "
        "product roles (two-person rule on the pump side too).",
        ("device_agent.tuf_client:TufClient.refresh",),
        _attack("below_threshold")
        + _n(_NGCLIENT, "test_pump_rejects_root_signed_by_one_key_below_threshold"),
    ),
    Control(
        "C-TUF-BOOTSTRAP",
        "Built-in root, never trust on first use",
        "The pump ships root.json and passes it as ngclient's bootstrap; a cached root "
        "never replaces it and an invalid one is a configuration error.",
        ("device_agent.tuf_client:TufClient",),
        _n(
            _TUF_CLIENT,
            "test_cached_root_does_not_replace_bootstrap",
            "test_invalid_bootstrap_root_is_a_config_error",
        ),
    ),
    Control(
        "C-TUF-VERSION-ROLLBACK",
        "Metadata versions only move forward",
        "A timestamp, snapshot or product metadata with a lower version than the trusted "
        "one is refused (tuf-bad-version-number).",
        ("device_agent.tuf_client:TufClient.refresh",),
        _attack("rolled_back_timestamp", "rolled_back_snapshot", "rolled_back_product_metadata")
        + _n(
            _TUF_CLIENT,
            "test_rejects_rolled_back_timestamp",
            "test_rejects_rolled_back_snapshot",
            "test_rejects_rolled_back_product_metadata",
        )
        + _n(_NGCLIENT, "test_pump_rejects_replayed_older_timestamp"),
    ),
    Control(
        "C-TUF-DURABLE-CACHE",
        "The trusted metadata survives a power loss",
        "ngclient's metadata cache is written through the agent's durable writer (fsync, "
        "rename, fsync of the directory), so a power loss cannot make the pump forget "
        "the newest timestamp and accept a rolled-back one.",
        ("device_agent.tuf_client:_AgentUpdater._persist_file", "device_agent._durable"),
        _n(_TUF_CLIENT, "test_metadata_cache_is_written_durably"),
    ),
    Control(
        "C-TUF-EXPIRY",
        "Expired metadata is refused",
        "Metadata past its expiry is refused (tuf-expired-metadata), so a frozen "
        "repository is noticed within the timestamp's lifetime (1 day by default).",
        ("device_agent.tuf_client:TufClient.refresh",),
        _attack("expired_metadata") + _n(_TUF_CLIENT, "test_rejects_expired_metadata"),
    ),
    Control(
        "C-TUF-SNAPSHOT",
        "Snapshot pins every metadata version",
        "The product metadata must be the version the snapshot names, so files from "
        "different repository states cannot be mixed.",
        ("device_agent.tuf_client:TufClient.refresh",),
        _attack("mix_and_match") + _n(_TUF_CLIENT, "test_rejects_mix_and_match"),
    ),
    Control(
        "C-FETCH-LENGTH-CAPS",
        "Every download is capped at its known length",
        "Metadata is read up to ngclient's per-role limits and firmware up to the signed "
        "length; an announced or actual oversize stops the transfer.",
        ("device_agent.fetcher:AgentFetcher.stream", "device_agent.download:download_to_slot"),
        _attack("endless_metadata", "endless_firmware")
        + _n(
            _FETCHER, "test_rejects_endless_data", "test_rejects_announced_oversize_before_reading"
        )
        + _n(_TUF_CLIENT, "test_rejects_oversized_metadata")
        + _cases(_DOWNLOAD, "test_rejects_corrupt_firmware", "endless-length", "oversized-length")
        + _n(
            _FETCHER,
            "test_a_response_not_framed_by_content_length_is_refused_within_the_deadline",
            "test_a_malformed_content_length_fails_the_metadata_transfer",
            "test_an_unexpected_error_of_the_http_stack_is_a_download_error",
        )
        + _n(_DOWNLOAD, "test_a_malformed_content_length_is_a_transfer_error_not_a_crash"),
    ),
    Control(
        "C-FETCH-DEADLINE",
        "Every file has a deadline, trickling servers are dropped",
        "A deadline per file (from its length and a minimum rate) covers headers and "
        "body; slow retrieval ends the transfer and is reported as an error event. "
        "Check-ins and event posts go through the same client (one watchdog per "
        "request, framing and size checks), so a server dripping its answer cannot "
        "hold the agent.",
        ("device_agent.fetcher:AgentFetcher.file_deadline", "device_agent.httpclient:AgentHttp"),
        _n(
            "device_agent/test_agent_attacks",
            "test_slow_retrieval_is_abandoned_and_reported",
        )
        + _n(
            _FETCHER,
            "test_rejects_trickling_server_within_deadline",
            "test_rejects_server_trickling_response_headers",
            "test_deadline_ignores_time_the_caller_spends",
        )
        + _n(
            _TUF_CLIENT,
            "test_slow_metadata_is_a_reported_transfer_error",
            "test_slow_firmware_is_a_reported_transfer_error",
        )
        + _n(_DOWNLOAD, "test_slow_retrieval_is_a_reported_transfer_error")
        + _n(_FETCHER, "test_the_watchdog_cuts_a_read_that_outlasts_its_deadline")
        + _n(
            "device_agent/test_reporting_hostile_server",
            "test_a_server_dripping_its_answer_cannot_hold_the_agent",
            "test_a_hostile_answer_to_a_report_is_a_transfer_error_within_the_deadline",
            "test_a_report_over_mutual_tls_to_a_dripping_server_fails_within_the_deadline",
            "test_the_agent_talks_to_the_server_through_one_shared_http_client",
        ),
    ),
    Control(
        "C-SLOT-HASH-STREAM",
        "Firmware is hashed while it is written to the inactive slot",
        "The one pass that writes the inactive slot checks the signed length and every "
        "signed hash; a mismatch refuses the release before the slot is made bootable, "
        "and an unknown hash algorithm is refused before the first byte.",
        ("device_agent.download:download_to_slot",),
        _attack("substituted_firmware", "truncated_firmware", "bit_flipped_firmware")
        + _cases(
            _DOWNLOAD,
            "test_rejects_corrupt_firmware",
            "substituted-hash-mismatch",
            "bit-flipped-hash-mismatch",
            "truncated-length",
        )
        + _n(
            _DOWNLOAD,
            "test_streams_into_new_slot_checking_every_hash",
            "test_unknown_hash_algorithm_is_refused_before_any_byte",
            "test_overwrites_longer_slot_without_truncating_first",
        )
        + _n(_TUF_CLIENT, "test_rejects_corrupt_firmware"),
    ),
    Control(
        "C-SLOT-REVERIFY",
        "The slot is re-verified right before it is made bootable",
        "Before start_trial the slot is hashed again against the signed target, and a "
        "resumed download re-checks the prefix it continues from.",
        ("device_agent.download:verify_slot",),
        _n(
            _DOWNLOAD,
            "test_verify_slot_detects_a_flipped_bit",
            "test_resume_over_tampered_prefix_is_refused",
            "test_resume_of_complete_image_only_verifies",
        ),
    ),
    Control(
        "C-AGT-POLICY",
        "The pump checks product and hardware id of the signed release itself",
        "The signed release contract must name the pump's product and list its hardware "
        "revision; the server's assignment is only a path.",
        ("device_agent.policy:check_offered_release", "pumpguard.release:ReleaseInfo.runs_on"),
        _attack("other_hardware")
        + _n("device_agent/test_policy", "test_offered_release_is_refused_for_the_right_reason")
        + _n("pumpguard/test_release_contract", "test_runs_on_only_listed_hardware"),
    ),
    Control(
        "C-ANTI-ROLLBACK-COUNTER",
        "The pump's anti-rollback counter only moves up",
        "An offered release must carry a release_counter above the pump's persisted "
        "counter, which moves up only on commit; a compromised server cannot downgrade.",
        ("device_agent.policy:check_offered_release", "device_agent.state:CounterStore.raise_to"),
        _attack("older_release")
        + _n(_STATE, "test_anti_rollback_counter_only_moves_up")
        + _n("device_agent/test_policy", "test_offered_release_is_refused_for_the_right_reason"),
    ),
    Control(
        "C-TARGET-PATH",
        "Only <own product>/<semver>/firmware.img is looked up",
        "The assigned path is parsed strictly before TUF sees it: no traversal, absolute "
        "path, other product, other file, NUL or backslash.",
        ("device_agent.tuf_client:TufClient.find_firmware", "pumpguard.release:split_target_path"),
        _attack("traversal")
        + _n(_TUF_CLIENT, "test_rejects_malicious_target_path")
        + _n(
            "pumpguard/test_release_contract",
            "test_split_target_path_rejects_other_shapes",
            "test_rejects_release_metadata_under_another_target_path",
            "test_semver_rejects_newlines_and_non_ascii_digits",
            "test_product_rejects_newlines_and_non_ascii_digits",
            "test_hardware_id_rejects_newlines_and_non_ascii_digits",
            "test_custom_field_with_newline_or_non_ascii_digit_is_refused",
        ),
    ),
    Control(
        "C-DELEGATION-PATHS",
        "Each product role may sign only its own paths",
        "Targets delegates P/*/* to product P, terminating; the pump ignores a target a "
        "role lists outside its delegation and publishing refuses one.",
        ("signer.repository:Repository.add_product", "signer.verification:verify_release_update"),
        _attack("outside_delegation")
        + _n(_TUF_CLIENT, "test_rejects_target_outside_product_delegation")
        + _n(_REPOSITORY, "test_product_delegation_is_terminating_and_path_restricted")
        + _refusal(
            "path outside delegation-PathOutsideDelegationError-outside sigma-spectrum's delegated"
        ),
    ),
    # --- release and publishing
    Control(
        "C-TWO-PERSON",
        "Two people (release engineer and QA) must sign every release",
        "verify_release_update counts only signatures by distinct keys of the product's "
        "delegation and requires its threshold; the server runs the same check, so a "
        "stolen upload token or one stolen key publishes nothing.",
        (
            "signer.verification:verify_release_update",
            "signer.verification:signature_report",
            "update_server.publishing:publish",
        ),
        _n(
            "signer/test_two_person_rule",
            "test_one_signature_is_refused_two_publish_and_an_outsider_never_counts",
        )
        + _refusal(
            "one signature-ThresholdError-signed by 1 of the 2 required keys",
            "outsider as second signer-ThresholdError-keys the delegation does not name",
        )
        + _n("signer/test_publish_refusals", "test_signing_twice_with_one_key_counts_once")
        + _n(
            _PUBLISH_API,
            "test_release_below_threshold_is_refused_and_repository_unchanged",
            "test_signature_by_a_key_outside_the_delegation_does_not_count",
            "test_two_person_release_is_published_indexed_audited_and_listed",
        )
        + _n(
            _E2E, "test_two_person_release_published_through_the_api_is_installed_by_a_tuf_client"
        ),
    ),
    Control(
        "C-PUBLISH-MONOTONIC",
        "A release must be newer than every published one",
        "Publishing refuses a metadata version that is not the next one and a release "
        "whose version or release_counter does not exceed every listed release; a "
        "replayed bundle is stale.",
        ("signer.verification:verify_release_update", "signer.bundle:create_release"),
        _refusal(
            "release counter not greater-RollbackError-release_counter 1 is not greater than 1",
            "version not greater-RollbackError-version 0.9.0 is not greater than published",
            "stale metadata version-RollbackError-is not the next version",
        )
        + _n("signer/test_publish_refusals", "test_create_refuses_rollback_before_anyone_signs")
        + _n(_PUBLISH_API, "test_replayed_bundle_is_refused_as_stale"),
    ),
    Control(
        "C-SERVER-ASSIGNMENT",
        "The server assigns only newer releases for the pump's product and hardware",
        "choose_release never points a pump at an older or same counter, another product "
        "or another hardware revision (defence in depth; the pump checks again).",
        ("update_server.assignment:choose_release",),
        _cases(
            _DEVICES,
            "test_choose_release",
            "older-counter",
            "same-counter",
            "hardware-mismatch",
            "other-product",
            "counter-not-semver-decides",
        )
        + _n(_DEVICES, "test_checkin_assigns_only_newer_releases_for_the_pumps_hardware"),
    ),
    Control(
        "C-BUNDLE-INTACT",
        "Nobody signs or publishes other bytes than the bundle's",
        "release sign checks the bundle first; publish checks every file against the "
        "signed lengths and hashes and refuses extra files or changed published targets.",
        ("signer.bundle:Bundle.check_intact", "signer.bundle:sign_bundle"),
        _n("signer/test_two_person_rule", "test_signing_refuses_an_altered_bundle")
        + _refusal(
            "firmware altered-HashMismatchError-does not match the length and sha256",
            "extra file-BundleError-files its metadata does not add",
            "published target changed-PublishRefusedError-changes the published target",
        )
        + _n(_PUBLISH_API, "test_tampered_firmware_is_refused_and_repository_unchanged")
        + _cases(
            "signer/test_publish_copy",
            "test_file_swapped_after_verification_is_not_published",
            "same-length",
            "other-length",
        )
        + _n("signer/test_publish_copy", "test_each_release_file_is_read_once"),
    ),
    Control(
        "C-BUNDLE-SAFE-UNPACK",
        "Tar bundles are read as a stream, front to back, and bounded per header",
        "One streaming reader (the CLI's and the server's): members counted and sizes "
        "checked as each header is read, so a million-member tar costs 65 headers; links, "
        "devices, sparse files, absolute or .. paths and repeated names are refused, never "
        "stripped; the private folder it unpacks into is removed on every exit.",
        (
            "signer.bundle:open_bundle_stream",
            "signer._tarstream:unpack_tar",
            "signer.bundle:open_bundle",
        ),
        _n(
            "signer/test_publish_refusals",
            "test_refuses_tar_bundle_with_path_traversal",
            "test_refuses_tar_bundle_with_too_many_members",
        )
        + _n(_REPOSITORY, "test_publish_from_tar_bundle")
        + _n(
            "signer/test_bundle_stream",
            "test_hostile_tar_is_refused_while_streaming_and_leaves_nothing",
            "test_open_bundle_refuses_a_hostile_tar_file_as_the_stream_reader_does",
            "test_million_member_tar_is_refused_after_reading_max_members_plus_one_headers",
            "test_header_only_tar_is_a_real_tar",
            "test_member_limit_counts_every_member",
            "test_signed_bundle_streams_into_a_private_directory_removed_afterwards",
            "test_directory_is_removed_when_the_block_fails",
            "test_full_disk_while_unpacking_is_an_os_error_naming_no_path",
        )
        + _n(
            "update_server/test_upload_bounds",
            "test_a_tar_of_a_million_members_is_refused_after_its_first_65_headers",
        ),
    ),
    Control(
        "C-BUNDLE-SIGNED-DECISION",
        "A bundle is judged by what is signed; verify and publish decide alike",
        "bundle.json is strict JSON with exactly its four fields, typed exactly; the "
        "version and product it names must be the release the signed metadata adds, and "
        "no file outside that release is read. release verify and release publish run "
        "one decision (check_bundle), so verify never says 'not publishable' of what "
        "publish publishes.",
        ("signer.bundle:check_bundle", "signer.verification:verify_release_update"),
        _n(
            "signer/test_hostile_bundles",
            "test_tampered_bundle_is_refused_by_verify_and_publish_alike",
            "test_untampered_rewritten_bundle_is_verified_and_published",
        ),
    ),
    Control(
        "C-ATOMIC-PUBLISH",
        "Published files are immutable; timestamp.json is replaced last and atomically",
        "A pump polling during a publish, or after a crash in the middle of one, sees the "
        "old or the new repository, never a mixture.",
        (
            "signer.repository:Repository.publish",
            "pumpguard.fsutil:write_immutable",
            "signer._journal:WriteJournal",
        ),
        _n(
            _REPOSITORY,
            "test_published_files_are_immutable_and_timestamp_is_the_only_replaced_file",
        )
        + _n(_E2E, "test_pumps_polling_during_50_publishes_never_fail_verification")
        + _n(_TUF_FILES, "test_leftover_of_an_interrupted_publish_is_not_cached_as_immutable")
        + _n(
            "pumpguard/test_fsutil", "test_write_immutable_is_idempotent_but_refuses_other_content"
        )
        + _n(
            "signer/test_publish_enospc",
            "test_publish_out_of_space_fails_in_one_line_and_leaves_the_repository_as_it_was",
            "test_publish_out_of_inodes_removes_the_folders_it_made",
            "test_failed_publish_keeps_the_leftovers_of_an_earlier_killed_publish",
            "test_failure_after_timestamp_was_replaced_removes_nothing",
            "test_other_repository_writes_out_of_space_leave_the_repository_as_it_was",
        ),
    ),
    Control(
        "C-ATOMIC-WRITE",
        "Crash-safe file writes (temp, fsync, rename, fsync directory)",
        "Every file the signer and the server must keep is entirely old or entirely new "
        "after a power loss.",
        ("pumpguard.fsutil:atomic_write_bytes", "pumpguard.fsutil:make_dirs"),
        _n(
            "pumpguard/test_fsutil",
            "test_atomic_write_failure_keeps_old_content",
            "test_atomic_write_replaces_whole_file_and_leaves_no_temporaries",
        )
        + _n("signer/test_publish_copy", "test_new_target_directories_are_fsynced"),
    ),
    Control(
        "C-PUBLISH-LOCK",
        "Publishes and re-signing are serialised by the database lock",
        "The publish_lock row (PostgreSQL row lock, SQLite single writer) plus the "
        "repository's file lock: concurrent publishes built on one state, one wins.",
        ("update_server.publishing:publish_lock", "pumpguard.fsutil:exclusive_lock"),
        _n(
            _PUBLISH_API,
            "test_concurrent_publishes_built_on_the_same_state_serialise_one_wins",
            "test_concurrent_publishes_serialise_on_the_database_lock_alone",
            "test_publish_waits_for_a_held_publish_lock",
            "test_release_published_but_not_recorded_is_indexed_at_the_next_start",
            "test_publish_that_fails_in_the_database_leaves_the_repository_unchanged",
            "test_publish_that_fails_in_the_repository_leaves_no_index_row_or_audit_entry",
            "test_release_whose_commit_fails_after_publishing_is_indexed_at_once",
            "test_release_published_but_not_recorded_is_indexed_by_the_next_refresher_tick",
            "test_overlong_version_is_refused_before_anything_is_written",
            "test_database_failure_answers_a_generic_500_and_logs_the_statement",
        )
        + _n("update_server/test_refresh", "test_refresh_waits_for_a_publish_in_progress"),
    ),
    Control(
        "C-ONLINE-REFRESH",
        "Snapshot and timestamp are re-signed before they expire, also after an outage",
        "A scheduler thread, a start-up check and `server refresh` for cron re-sign the "
        "online roles inside their refresh windows; an expired timestamp is re-signed at "
        "the next start.",
        (
            "update_server.refresher:refresh_online_roles",
            "update_server.refresher:RefreshScheduler",
            "signer.repository:Repository.refresh",
        ),
        _n(
            "update_server/test_refresh",
            "test_expired_timestamp_is_resigned_at_start_after_a_long_stop",
            "test_refresh_for_cron_resigns_when_due_and_is_a_noop_when_fresh",
            "test_scheduler_thread_resigns_when_the_timestamp_enters_its_window",
        )
        + _n(
            _REPOSITORY,
            "test_refresh_resigns_online_roles_only_when_due",
            "test_status_warns_within_refresh_window_and_flags_expiry",
        )
        + _n(
            "update_server/test_refresh",
            "test_startup_refresh_runs_even_when_reconcile_fails",
            "test_scheduler_tick_refreshes_even_when_reconcile_fails",
        ),
    ),
    Control(
        "C-ONLINE-KEY-CHECK",
        "Online keys are checked against root before use",
        "The server refuses snapshot/timestamp keys that root does not name, also HSM keys.",
        ("update_server.datadir:load_online_signers", "signer._signing:require_signer"),
        _n("update_server/test_server_cli", "test_init_refuses_online_keys_that_root_does_not_name")
        + _n(
            "signer/test_pkcs11_cli",
            "test_hsm_key_as_online_timestamp_key_is_checked_against_root",
        )
        + _refusal("wrong online key-KeyLoadError-is not a snapshot key"),
    ),
    # --- keys
    Control(
        "C-ENCRYPTED-KEYS",
        "Signing key files are encrypted; secrets are never printed",
        "PKCS#8 with the best available scheme; passphrase from the environment or a "
        "prompt; an unencrypted key only with an explicit flag; never overwritten.",
        ("signer.keys:generate_keypair", "signer.keys:load_signer"),
        _n(
            "signer/test_keys",
            "test_generated_key_is_encrypted_private_and_signs",
            "test_refuses_unencrypted_key_without_explicit_flag",
            "test_cli_refuses_unencrypted_key_with_exit_code_2",
            "test_encrypted_key_without_passphrase_and_terminal_is_refused",
            "test_wrong_passphrase_is_a_clear_error_without_the_secret",
            "test_refuses_to_overwrite_existing_key",
        ),
    ),
    Control(
        "C-HSM-KEYS",
        "Signing keys can live in an HSM and never leave it",
        "PKCS#11 signer (RFC 7512 URIs), key generation inside the token, PIN from the "
        "environment, never echoed.",
        ("signer._pkcs11:Pkcs11Signer", "signer._pkcs11:generate_pkcs11_key"),
        _n(
            "signer/test_pkcs11",
            "test_generated_private_key_stays_in_token",
            "test_sign_tuf_metadata",
            "test_wrong_pin",
            "test_pin_value_rejected_without_echo",
        )
        + _n("signer/test_pkcs11_cli", "test_release_engineer_signs_with_hsm_key_through_the_cli"),
    ),
    Control(
        "C-KEYID-CHECK",
        "A key counts once, under its canonical keyid",
        "Public key files whose keyid is not the canonical one, or whose key is not written "
        "in its one standard form, are rejected; roles refuse one key under two keyids, "
        "and publishing counts distinct keys, so one key cannot be listed twice to meet a "
        "threshold.",
        (
            "signer.keys:load_public_key",
            "signer._keymaterial:key_material",
            "signer.verification:verify_release_update",
        ),
        _n(
            "signer/test_keys",
            "test_public_key_with_forged_keyid_is_rejected",
            "test_malformed_public_key_file_is_a_clear_error",
        )
        + _n("signer/test_publish_refusals", "test_signing_twice_with_one_key_counts_once")
        + _cases(
            "signer/test_key_aliases",
            "test_public_key_written_another_way_is_rejected",
            "ed25519-upper-hex",
            "ed25519-extra-field",
            "ecdsa-compressed",
            "ecdsa-rewrapped",
        )
        + _n(
            "signer/test_key_aliases",
            "test_one_key_under_two_keyids_cannot_make_a_product_threshold",
            "test_delegation_that_lists_one_key_twice_cannot_publish_with_one_person",
            "test_root_cannot_list_one_key_twice",
        ),
    ),
    Control(
        "C-ROOT-ROTATION",
        "Root rotation needs the old and the new threshold",
        "Root N+1 is signed by a threshold of the old and of the new root keys, so a "
        "compromised key set is rotated out and pumps in the field follow.",
        ("signer.repository:Repository.rotate_root",),
        _n(
            _REPOSITORY,
            "test_rotate_root_needs_old_and_new_thresholds",
            "test_rotate_root_refuses_threshold_above_key_count",
            "test_init_refuses_signers_below_root_threshold",
        )
        + _n(_NGCLIENT, "test_pump_follows_root_rotation"),
    ),
    Control(
        "C-PRODUCT-KEY-ROTATION",
        "A product's keys can be replaced without breaking pumps",
        "rotate-product re-signs the product's metadata with the new keys in the same step.",
        ("signer.repository:Repository.rotate_product",),
        _n(_REPOSITORY, "test_rotate_product_without_new_key_signatures_changes_nothing")
        + _n(_NGCLIENT, "test_pump_follows_product_key_rotation"),
    ),
    # --- server access rules (issue 3)
    Control(
        "C-API-AUTHN",
        "Every API change needs a valid token",
        "Uploads and enrollment without a token are 401 and change nothing.",
        ("update_server.auth:require", "update_server.auth:current_caller"),
        _n(_PUBLISH_API, "test_upload_without_token_is_refused_and_repository_unchanged")
        + _n(_DEVICES, "test_enrollment_needs_an_admin_or_operator_token"),
    ),
    Control(
        "C-API-ROLES",
        "Token roles: admin, operator, release-engineer, reviewer",
        "Only release engineers (and admins) publish; only operators (and admins) enroll "
        "and revoke pumps; reviewers only read.",
        ("update_server.auth:require", "update_server.auth:ROLES"),
        _n(
            _PUBLISH_API,
            "test_upload_with_a_token_of_a_role_that_does_not_publish_is_refused",
        )
        + _n(
            _DEVICES,
            "test_enrollment_needs_an_admin_or_operator_token",
            "test_revocation_is_audited_once_and_needs_operator",
        ),
    ),
    Control(
        "C-API-SCOPE",
        "A release engineer's token is scoped to its products",
        "A token for product A cannot publish product B; the repository stays unchanged.",
        ("update_server.auth:Caller.may_publish", "update_server.releases:publish_release"),
        _n(
            _PUBLISH_API,
            "test_upload_with_token_for_another_product_is_refused_and_repository_unchanged",
            "test_upload_by_a_token_of_several_products_must_declare_one",
        )
        + _n(
            "update_server/test_upload_bounds",
            "test_an_upload_the_server_would_refuse_is_answered_before_its_body_is_sent",
            "test_the_cli_upload_declares_its_product_and_hears_a_refusal_sent_before_the_body",
        ),
    ),
    Control(
        "C-TOKEN-LIFECYCLE",
        "Tokens are random, stored as sha256, written 0600, revocable",
        "32 random bytes, shown once, passed through PUMPGUARD_TOKEN (never a command "
        "line); a revoked token is refused.",
        ("update_server.auth:create_token", "update_server.auth:revoke_token"),
        _n(
            "update_server/test_datadir",
            "test_init_creates_admin_token_stored_only_as_hash",
        )
        + _n(
            "update_server/test_server_cli",
            "test_init_writes_admin_token_to_a_private_file_and_never_prints_it",
            "test_token_lifecycle_through_the_cli",
        )
        + _n(_DEVICES, "test_enrollment_with_a_revoked_token_is_refused"),
    ),
    Control(
        "C-TLS",
        "TLS everywhere beyond loopback",
        "Clients refuse clear-text http to other hosts (tokens, check-ins) and servers of "
        "an unknown CA; the agent supports mutual TLS.",
        ("pumpguard.http:check_server_url", "device_agent.fetcher:AgentFetcher"),
        _n(
            _FETCHER,
            "test_tls_refuses_server_of_unknown_ca",
            "test_refuses_clear_text_beyond_loopback",
            "test_mutual_tls_with_client_certificate",
            "test_mutual_tls_refuses_client_without_certificate",
        )
        + _n(_TUF_CLIENT, "test_clear_text_to_remote_host_is_a_config_error")
        + _n(
            "device_agent/test_agent_tls",
            "test_update_over_mutual_tls_with_a_pinned_ca",
            "test_server_with_a_certificate_from_another_ca_is_refused",
        )
        + _n(_E2E, "test_publish_command_checks_its_options_before_uploading")
        + _n(_DEVICES, "test_enroll_cli_refuses_bad_options")
        + _n(
            "pumpguard/test_http",
            "test_safe_server_url_is_accepted_and_normalised",
            "test_ambiguous_or_clear_text_server_url_is_refused",
            "test_release_endpoint_is_built_from_the_checked_url",
            "test_backslash_url_never_sends_the_token_to_the_host_after_it",
            "test_the_listener_is_reachable_so_the_test_above_means_something",
        ),
    ),
    Control(
        "C-DEVICE-SIGNATURE",
        "Check-ins and events are signed by the pump's enrolled key",
        "Ed25519 over device id, method, path with query, sha256(body), timestamp and "
        "nonce; unsigned, wrongly signed, tampered or malformed requests are refused.",
        (
            "update_server.device_auth:authenticate_device",
            "pumpguard.device_auth:verify_request_signature",
            "device_agent.reporting:ServerClient",
        ),
        _n(
            _DEVICE_AUTH,
            "test_signed_checkin_is_accepted",
            "test_unsigned_checkin_is_refused",
            "test_checkin_signed_with_another_key_is_refused",
            "test_tampered_checkin_is_refused",
            "test_query_string_is_part_of_the_signature",
            "test_checkin_missing_a_signature_header_is_refused",
            "test_checkin_with_malformed_signature_headers_is_refused",
        ),
    ),
    Control(
        "C-DEVICE-KEY-VALIDITY",
        "Device keys are prime-order Ed25519 points",
        "A small-order key (32 zero bytes among them) lets anyone sign with S = 0; a "
        "non-canonical or mixed-order key is no key an honest pump makes. libsodium's "
        "point check refuses them at enrollment and again on every signed request, and "
        "migration 0003 names any already enrolled.",
        (
            "update_server.device_keys:check_public_key",
            "update_server.devices:enroll",
            "update_server.device_auth:load_public_key",
        ),
        _n(
            "update_server/test_device_keys",
            "test_the_small_order_table_is_exactly_the_eight_torsion_points",
            "test_libsodium_refuses_every_case_of_the_table",
            "test_small_order_keys_let_anyone_forge_a_signature_with_s_zero",
            "test_check_public_key_names_what_is_wrong",
            "test_check_public_key_refuses_a_key_of_another_length",
            "test_check_public_key_accepts_generated_keys",
            "test_a_stored_unusable_key_loads_as_an_authentication_failure",
            "test_enrollment_refuses_an_unusable_key_and_writes_nothing",
            "test_generated_keys_still_enroll_and_check_in",
            "test_a_check_in_forged_for_a_stored_zero_key_is_refused_over_http",
        )
        + _n(
            "update_server/test_device_key_migration",
            "test_upgrade_refuses_devices_enrolled_with_unusable_keys_and_names_them",
            "test_upgrade_from_0001_stops_at_a_whole_revision_and_resumes_after_the_remedy",
            "test_upgrade_passes_once_the_named_devices_are_revoked",
            "test_upgrade_to_0003_of_a_clean_database_changes_nothing",
        ),
    ),
    Control(
        "C-DEVICE-BINDING",
        "A pump's key speaks only for that pump",
        "The signed device id must be the one in the URL; unknown devices are refused.",
        ("update_server.device_auth:authenticate_device",),
        _n(
            _DEVICE_AUTH,
            "test_request_signed_by_one_device_for_another_is_refused",
            "test_unknown_device_is_refused",
        ),
    ),
    Control(
        "C-DEVICE-REVOCATION",
        "Revoked pumps are refused",
        "An operator revokes a lost or compromised pump; its signed requests are refused, "
        "on the next request in every server process: the check-in's write re-checks "
        "the revocation even when the pump's enrollment is cached.",
        (
            "update_server.devices:revoke",
            "update_server.device_auth:IdentityCache",
            "update_server.devices:_write_checkin",
        ),
        _n(
            _DEVICE_AUTH,
            "test_revoked_device_is_refused",
            "test_device_revoked_while_its_checkin_is_processed_is_refused_and_nothing_is_written",
            "test_revoked_device_is_refused_although_its_enrollment_is_cached",
            "test_a_key_changed_in_the_database_replaces_the_cached_one_after_one_refusal",
        )
        + _n(_DEVICES, "test_revocation_is_audited_once_and_needs_operator"),
    ),
    Control(
        "C-ENROLLMENT",
        "Only operators enroll pumps, once, with checked facts",
        "Enrollment needs an operator token, refuses duplicates and malformed keys, "
        "product or hardware ids; the device key is written readable by its owner only.",
        ("update_server.devices:enroll",),
        _n(
            _DEVICES,
            "test_enrollment_needs_an_admin_or_operator_token",
            "test_duplicate_enrollment_is_a_conflict",
            "test_bad_enrollment_is_refused_with_a_message",
            "test_enroll_through_the_cli_over_http",
            "test_keygen_writes_a_private_key_only_the_owner_can_read",
            "test_a_second_spelling_of_an_enrolled_key_cannot_enroll_a_twin_pump",
            "test_an_enrollment_overtaken_by_a_committed_twin_is_a_conflict_naming_key_or_id",
            "test_concurrent_enrollments_of_one_key_under_two_ids_cannot_both_succeed",
            "test_the_database_refuses_a_second_device_with_an_enrolled_key",
        )
        + _n(
            "update_server/test_device_key_migration",
            "test_upgrade_refuses_devices_sharing_a_key_and_names_them",
            "test_upgrade_stores_keys_canonically_so_a_second_spelling_is_refused",
        ),
    ),
    Control(
        "C-NONCE",
        "Each nonce is accepted once per pump",
        "A unique row per device and nonce, kept as long as the timestamp window; "
        "replays, also concurrent ones, are refused and change nothing.",
        (
            "update_server.device_auth:authenticate_device",
            "update_server.device_auth:prune_nonces",
            "update_server.models:DeviceNonce",
        ),
        _n(
            _DEVICE_AUTH,
            "test_replayed_checkin_is_refused_and_changes_nothing",
            "test_nonce_reused_with_a_new_signature_is_still_a_replay",
            "test_concurrent_replays_cannot_both_pass",
            "test_same_nonce_from_two_devices_is_not_a_replay",
            "test_prune_keeps_nonces_while_a_replay_could_still_be_fresh",
            "test_expired_nonces_are_pruned_by_signed_requests",
        ),
    ),
    Control(
        "C-CLOCK-SKEW",
        "Signed requests must be recent",
        "Timestamps outside clock_skew are refused with a message saying the clock is off.",
        ("update_server.device_auth:authenticate_device",),
        _n(
            _DEVICE_AUTH,
            "test_stale_timestamp_is_refused_with_a_clock_message",
            "test_timestamp_within_the_skew_is_accepted",
        )
        + _n(
            "pumpguard/test_request_timestamp",
            "test_a_timestamp_that_is_not_plain_bounded_seconds_is_malformed",
            "test_a_plain_timestamp_verifies",
        ),
    ),
    Control(
        "C-SIZE-LIMITS",
        "Request sizes and pages are bounded before parsing",
        "Bundles above the upload limit are 413; signed bodies and enrollments are "
        "bounded before the sender is authenticated; list pages are bounded.",
        (
            "update_server.releases",
            "update_server.device_auth:authenticate_device",
            "update_server.spool:upload_slots",
            "update_server.spool:sweep",
        ),
        _n(_PUBLISH_API, "test_bundle_larger_than_the_limit_is_413")
        + _n(
            "update_server/test_upload_bounds",
            "test_a_tar_of_a_million_members_is_refused_after_its_first_65_headers",
            "test_uploads_beyond_the_bounds_get_429_per_token_and_503_in_all",
        )
        + _n(
            "update_server/test_upload_leftovers",
            "test_a_killed_upload_leaves_nothing_once_the_server_restarts",
            "test_the_start_up_clean_up_spares_an_upload_in_flight_in_another_process",
            "test_a_failed_upload_leaves_nothing",
            "test_an_upload_that_fills_the_disk_is_a_500_naming_no_path_and_leaves_nothing",
        )
        + _n(_DEVICE_AUTH, "test_oversized_signed_body_is_refused_before_parsing")
        + _n(
            _DEVICES,
            "test_oversized_enrollment_is_refused",
            "test_device_list_refuses_bad_query_parameters",
            "test_a_full_batch_of_events_is_accepted",
        ),
    ),
    Control(
        "C-STRICT-INPUT",
        "Strict JSON and schema checks; a refused request changes nothing",
        "Duplicate keys, unknown fields, wrong types and malformed uploads are refused "
        "with a JSON error; the OpenAPI document covers every route and states exactly "
        "what the server accepts (tests compare the two on tables and generated bodies).",
        (
            "update_server.devices:parse_json_object",
            "pumpguard.jsonutil:loads_strict",
            "update_server._openapi_inputs:INPUT_SCHEMAS",
        ),
        _n(
            _DEVICES,
            "test_malformed_checkin_is_refused_and_changes_nothing",
            "test_malformed_event_batch_stores_nothing",
            "test_wrong_method_is_a_json_error",
        )
        + _n(_PUBLISH_API, "test_malformed_uploads_get_json_errors_and_change_nothing")
        + _n(
            "update_server/test_openapi",
            "test_openapi_document_is_valid_and_complete",
            "test_wrong_method_answers_json_405_with_allow_header",
            "test_every_pattern_is_exact_in_both_regex_dialects",
        )
        + _n(
            "update_server/test_openapi_contract",
            "test_the_document_accepts_a_body_exactly_when_the_server_does",
            "test_the_largest_accepted_bodies_fit_the_body_limits_as_compact_json",
            "test_each_rule_beyond_json_schema_is_stated_in_the_document",
            "test_each_rule_beyond_json_schema_is_exercised_by_the_tables",
            "test_the_document_refuses_iso_8601_times_that_are_not_rfc_3339",
            "test_the_server_refuses_iso_8601_times_that_are_not_rfc_3339",
        )
        + _n(
            "update_server/test_openapi_generated",
            "test_generated_bodies_are_accepted_by_the_document_exactly_when_by_the_server",
        )
        + _n(
            "device_agent/test_agent_wire_contract",
            "test_real_agent_bodies_pass_server_validation_and_openapi_schema",
        )
        + _n(
            "pumpguard/test_wire_contract",
            "test_device_id_table_agrees_in_agent_config_server_and_openapi",
            "test_device_id_table_covers_both_ends_of_the_length_rule",
            "test_server_vocabularies_are_the_contract_enums",
            "test_openapi_vocabularies_and_limits_are_the_contract",
            "test_agent_state_machine_uses_the_contract_states",
            "test_every_refusal_reason_is_documented_and_every_documented_reason_exists",
            "test_http_reasons_read_back_as_reported",
            "test_unknown_reasons_are_not_read_back",
        )
        + _n(
            "update_server/test_openapi_queries",
            "test_the_document_accepts_a_query_value_exactly_when_the_server_does",
            "test_the_release_list_refuses_integers_no_client_writes",
        )
        + _n(
            "signer/test_bundle_errors",
            "test_corrupt_metadata_raises_bundle_error_naming_the_file",
            "test_cli_refuses_corrupt_metadata_with_one_line",
            "test_corrupt_metadata_in_tar_bundle_is_refused",
        )
        + _n(
            "pumpguard/test_cli",
            "test_system_error_is_one_line_naming_the_command_and_the_reason",
            "test_repository_error_naming_a_path_with_a_newline_stays_one_line",
        )
        + _n(
            "pumpguard/test_jsonutil",
            "test_numbers_and_nesting_that_break_a_later_reader_are_refused",
            "test_no_accepted_number_is_infinite_or_nan",
        )
        + _n(
            "update_server/test_config",
            "test_numeric_settings_must_be_finite_and_within_bounds",
        )
        + _n(
            "update_server/test_device_auth",
            "test_a_device_id_followed_by_a_newline_is_not_a_device_id",
        ),
    ),
    Control(
        "C-HOSTILE-CLIENTS",
        "The embedded server outlasts slow and flooding clients",
        "`server run` serves with waitress through a guard: a slow client costs a socket, "
        "not a thread; a request head must arrive within header_timeout and a body within "
        "body_timeout (408); at the connection cap, which is kept below the open-file "
        "limit, the oldest connections without a complete request are dropped so a new "
        "one is always served; large bodies only on the upload route, a bounded number at "
        "once (503 and Retry-After).",
        ("update_server.serve:serve", "update_server._guarded_waitress:GuardedServer"),
        _n(
            "update_server/test_server_run_hostile",
            "test_slowloris_leaves_timestamp_served_within_its_deadline",
            "test_a_slow_client_is_closed_within_its_deadline",
            "test_a_body_larger_than_its_route_takes_is_refused_at_its_head",
            "test_uploads_received_at_once_are_bounded_and_the_next_is_told_to_retry",
        )
        + _n(
            "update_server/test_server_run_uploads",
            "test_an_upload_server_run_would_refuse_is_answered_from_its_head_alone",
            "test_an_allowed_upload_head_waits_for_its_body_and_publishes",
            "test_100_continue_is_sent_only_for_a_head_that_passed",
            "test_a_head_check_waiting_on_the_database_does_not_stall_other_clients",
            "test_an_upload_head_pipelined_behind_another_request_is_judged_after_its_answer",
        )
        + _n(
            "update_server/test_resource_exhaustion",
            "test_server_run_settings_must_be_finite_and_bounded",
            "test_server_run_settings_come_from_the_environment_too",
            "test_server_run_refuses_a_bad_flag_in_one_line",
        ),
    ),
    Control(
        "C-BOUNDED-POOLS",
        "Database connections come from bounded pools, after the checks that need none",
        "A signed request's headers, device id, declared size and timestamp are checked "
        "before a connection is taken; check-ins and sessions draw on pools of "
        "db_pool_size connections returned at each request's end; an exhausted pool is 503 "
        "with Retry-After at once, never a hang or an exhausted PostgreSQL.",
        ("update_server.db:DevicePool", "update_server.device_auth:authenticate_device"),
        _n(
            "update_server/test_server_run_hostile",
            "test_forged_checkins_on_new_connections_leave_postgres_connections_bounded",
        )
        + _n(
            "update_server/test_resource_exhaustion",
            "test_a_full_checkin_pool_answers_503_at_once_and_serves_again_when_free",
            "test_checks_that_need_no_database_answer_while_the_pool_is_exhausted",
            "test_a_full_session_pool_answers_503_at_once",
        )
        + _n(
            _DEVICE_AUTH,
            "test_a_broken_device_connection_answers_503_and_is_replaced",
            "test_concurrent_checkins_share_a_pool_of_at_most_its_size",
        ),
    ),
    Control(
        "C-PRIVATE-SERVER-DATA",
        "Server errors and files disclose nothing of the server",
        "API errors of the upload and publish path name no server path (the data, "
        "upload, key and temp folders become labels; an OSError reports its reason only); "
        "server.db and its WAL files are created 0600.",
        ("update_server.redact:public_message", "update_server.db:engine_for"),
        _n(
            "update_server/test_upload_leftovers",
            "test_errors_of_bad_uploads_name_no_server_path",
            "test_an_upload_that_fills_the_disk_is_a_500_naming_no_path_and_leaves_nothing",
        )
        + _n(
            "update_server/test_resource_exhaustion",
            "test_the_sqlite_database_and_its_wal_files_are_private",
        )
        + _n(
            "signer/test_bundle_stream",
            "test_full_disk_while_unpacking_is_an_os_error_naming_no_path",
        ),
    ),
    Control(
        "C-STATIC-TUF",
        "TUF files are static and cacheable",
        "Metadata and targets are plain files any static server or CDN can serve "
        "(ETag/304, Range), so pump polls do not load the application.",
        ("update_server.tuf",),
        _n(
            _TUF_FILES,
            "test_published_files_are_readable_by_a_static_server_running_as_another_user",
            "test_metadata_has_a_content_hash_etag_and_answers_304_when_unchanged",
            "test_single_byte_ranges_resume_a_download",
            "test_served_bytes_are_the_published_files",
            "test_range_positions_with_thousands_of_digits_are_answered_per_rfc_9110",
            "test_flood_of_huge_range_numbers_leaks_no_file_descriptors",
            "test_any_error_while_answering_closes_the_file",
        )
        + _n(
            "update_server/test_resource_exhaustion",
            "test_out_of_descriptors_is_503_to_retry_never_404",
        )
        + _n("update_server/test_gunicorn", "test_documented_gunicorn_command_serves_tuf_and_api"),
    ),
    Control(
        "C-CACHE-RULES",
        "Only timestamp.json may change; caches never keep it",
        "timestamp.json is served uncached with a content ETag; every versioned file and "
        "target is immutable, so a CDN cannot serve a stale mixture for long.",
        ("update_server.tuf",),
        _n(
            _TUF_FILES,
            "test_timestamp_is_never_cached_and_every_versioned_file_and_target_is_immutable",
            "test_replaced_timestamp_gets_a_new_etag_and_a_conditional_poll_sees_it",
            "test_missing_files_are_404_json_that_no_cache_keeps",
            "test_416_is_not_stored_by_a_cache_and_carries_no_validator",
        ),
    ),
    Control(
        "C-TUF-FILES-PATHS",
        "TUF file serving cannot leave the published tree",
        "Traversal, hidden files, links and directories are 404, also with raw paths.",
        ("update_server.tuf",),
        _n(
            _TUF_FILES,
            "test_traversal_hidden_files_links_and_directories_are_404",
            "test_traversal_over_real_http_with_raw_paths_is_404",
        ),
    ),
    Control(
        "C-AUDIT-CHAIN",
        "Hash-chained audit log of every publish, enrollment and revocation",
        "Each entry's hash covers its content and the previous hash; `server audit "
        "verify` finds a changed, inserted or removed entry, the off-site head catches "
        "truncation.",
        (
            "update_server.audit:append",
            "update_server.audit:verify_chain",
            "update_server.publish_records:index_unindexed",
        ),
        _n("update_server/test_datadir", "test_audit_chain_detects_tampering")
        + _n("update_server/test_server_cli", "test_audit_verify_fails_on_a_changed_entry")
        + _n(
            _DEVICES,
            "test_enrollment_is_returned_audited_and_the_chain_verifies",
            "test_revocation_is_audited_once_and_needs_operator",
        )
        + _n(_PUBLISH_API, "test_two_person_release_is_published_indexed_audited_and_listed")
        + _n(
            "update_server/test_audit_log",
            "test_concurrent_audit_appends_all_succeed_and_chain",
            "test_concurrent_token_creations_are_all_created_and_audited",
        )
        + _n(
            "update_server/test_datadir",
            "test_recorded_entry_detects_a_rewritten_history_after_the_chain_grew",
            "test_recorded_entry_detects_truncation",
        )
        + _n(
            "update_server/test_server_cli",
            "test_audit_verify_prints_an_anchor_that_a_later_verify_checks",
        )
        + _n(
            "update_server/test_upload_records",
            "test_a_publish_killed_right_after_timestamp_json_is_replaced_keeps_its_publisher",
            "test_each_upload_is_recorded_before_the_repository_is_written_and_marked_when_it_ends",
        ),
    ),
    Control(
        "C-FLEET-VISIBILITY",
        "Operators see every pump's state, version and last outcome",
        "Check-ins record state, slots, counter and the last update's result; the device "
        "list filters by product and version, so exposed pumps are found.",
        ("update_server.devices:checkin", "update_server.devices:list_devices"),
        _n(
            _DEVICES,
            "test_checkin_records_state_and_assigns_the_published_release",
            "test_device_list_reports_last_state",
            "test_device_list_filters_and_pages",
            "test_events_are_stored_and_listed",
        ),
    ),
    # --- pump safety and robustness
    Control(
        "C-THERAPY-INTERLOCK",
        "No install, reboot or commit while an infusion runs or is programmed",
        "The safety decision is taken before installing, again before every reboot (after "
        "installing, when a reboot is resumed, when rolling back) and before committing; "
        "downloading continues. Waiting never counts as a crash. The state machine has no "
        "shortcut around the waiting state.",
        ("device_agent.status:assess_safety", "device_agent.agent:Agent.safety"),
        _n(
            "device_agent/test_agent_update",
            "test_update_assigned_mid_infusion_is_downloaded_but_installed_only_after",
            "test_unsafe_conditions_defer_installing",
        )
        + _cases(
            _REBOOT,
            "test_waiting_to_commit_during_an_infusion_is_not_a_crash_loop",
            "running",
            "programmed",
            "status-unavailable",
        )
        + _cases(
            _REBOOT,
            "test_resumed_reboot_waits_for_a_safe_window",
            "running",
            "programmed",
            "status-unavailable",
        )
        + _cases(
            _REBOOT,
            "test_rollback_reboot_waits_for_a_safe_window",
            "running",
            "programmed",
            "status-unavailable",
        )
        + _n(
            _INTERLOCK,
            "test_install_is_allowed_only_when_every_rule_allows_it",
            "test_therapy_outranks_every_other_reason",
        )
        + _n(_STATE, "test_shortcuts_around_the_safety_steps_are_illegal"),
    ),
    Control(
        "C-STATUS-UNKNOWN-UNSAFE",
        "A missing, stale or malformed therapy status means not safe",
        "The status must be younger than max_status_age and well-formed; anything "
        "unknown defers the install (status-stale, status-unavailable).",
        ("device_agent.status:parse_status", "device_agent.status:assess_safety"),
        _n(
            _INTERLOCK,
            "test_malformed_status_is_a_clear_error",
            "test_install_is_allowed_only_when_every_rule_allows_it",
            "test_file_provider_reads_the_controllers_status",
            "test_socket_provider_reads_one_document",
        )
        + _n(
            "device_agent/test_simulator",
            "test_the_simulator_config_keeps_a_status_only_minutes_fresh",
        ),
    ),
    Control(
        "C-POWER-WINDOW",
        "Install only on mains or with enough battery, inside the maintenance window",
        "Off mains the battery must be at least min_battery_percent; local time must be "
        "in the maintenance window (battery-low, outside-maintenance-window).",
        ("device_agent.status:assess_safety", "device_agent.config:MaintenanceWindow"),
        _n("device_agent/test_agent_update", "test_unsafe_conditions_defer_installing")
        + _n(_INTERLOCK, "test_install_is_allowed_only_when_every_rule_allows_it"),
    ),
    Control(
        "C-THERAPY-RATE-LIMIT",
        "Downloads during therapy are rate-limited",
        "therapy_download_rate applies from the moment an infusion starts (re-read every "
        "second), so the download cannot starve the pump.",
        ("device_agent.status:download_rate", "device_agent._ratelimit:Pacer"),
        _n(_INTERLOCK, "test_download_is_rate_limited_during_therapy_and_when_status_unknown")
        + _n(
            _DOWNLOAD, "test_pacer_follows_a_changing_limit", "test_rate_limit_is_polled_per_chunk"
        )
        + _n(_DOWNLOAD, "test_a_long_rate_limit_pause_rereads_the_limit_every_second"),
    ),
    Control(
        "C-DURABLE-STATE",
        "Every state is persisted before it is acted on; every action is idempotent",
        "All durable writes go through one module with crash points; power loss at each "
        "of them during update and rollback boots a complete verified image and keeps "
        "the counter equal to the committed image's (boot env first, counter second).",
        (
            "device_agent._durable:atomic_write",
            "device_agent.state:StateStore.transition",
            "device_agent.agent:Agent.step",
        ),
        # The enumeration runs in shards (tests/device_agent/test_power_loss.py,
        # SHARDS = 4); every shard is linked, and so is the test proving the
        # shards together take every crash point.
        _cases(
            "device_agent/test_power_loss",
            "test_power_loss_at_every_durable_operation",
            *(f"{path}-{k}of4" for path in ("update", "rollback") for k in range(1, 5)),
        )
        + _n(
            "device_agent/test_power_loss",
            "test_the_update_paths_have_dozens_of_crash_points",
            "test_the_shards_together_take_every_crash_point",
        )
        + _n(_STATE, "test_state_is_persisted_and_reloaded", "test_slot_records_are_idempotent")
        + _n(
            _DOWNLOAD,
            "test_crash_points_stay_few_per_download",
            "test_a_new_slot_file_is_created_durably",
        )
        + _n(
            "device_agent/test_durable",
            "test_make_dirs_durable_fsyncs_the_parent_of_every_new_directory",
            "test_agent_creates_its_state_and_metadata_directories_durably",
            "test_outbox_directory_is_created_durably",
        ),
    ),
    Control(
        "C-SIGKILL",
        "The real agent process survives SIGKILL at random moments",
        "Killing the running agent during real updates and rollbacks never bricks the "
        "pump; the next start finishes the same way.",
        ("device_agent.agent:Agent.run_cycle",),
        _n("device_agent/test_sigkill", "test_sigkill_at_random_moments_never_bricks_the_pump"),
    ),
    Control(
        "C-STATE-MACHINE",
        "One transition table; illegal transitions are errors",
        "Every state is reachable and leads back to idle; a corrupt state file is a clear "
        "error, not a guess.",
        ("device_agent.state:check_transition", "device_agent.state:TRANSITIONS"),
        _n(
            _STATE,
            "test_every_state_is_in_the_table_and_reachable_from_idle",
            "test_every_state_leads_back_to_idle",
            "test_shortcuts_around_the_safety_steps_are_illegal",
            "test_corrupt_state_file_is_a_clear_error",
        ),
    ),
    Control(
        "C-RESUMABLE-DOWNLOAD",
        "Downloads resume from a checkpoint",
        "Range requests from the last fsynced checkpoint; a server ignoring Range is handled. "
        "Progress counts as progress: only attempts in a row without an advanced checkpoint "
        "count towards giving up, a round is bounded by the firmware deadline, and giving up "
        "keeps the checkpoint for the next round of the same target.",
        (
            "device_agent.download:download_to_slot",
            "device_agent.fetcher:AgentFetcher.stream",
            "device_agent.agent:Agent._do_downloading",
            "device_agent.state:ResumePoint",
        ),
        _n(_DOWNLOAD, "test_resumes_interrupted_download_from_checkpoint")
        + _n(
            _FETCHER,
            "test_resumes_with_range_after_dropped_connection",
            "test_skips_prefix_when_server_ignores_range",
            "test_complete_offset_makes_no_request",
        )
        + _n(_DOWNLOAD, "test_a_transfer_cut_short_is_retried_and_resumed_not_refused")
        + _n(
            _DOWNLOAD,
            "test_a_dropped_transfer_checkpoints_what_arrived_before_the_error",
            "test_a_slow_link_is_checkpointed_every_checkpoint_seconds",
        )
        + _n(
            "device_agent/test_sigkill",
            "test_killed_five_times_mid_download_the_agent_resumes_each_time_and_finishes",
        )
        + _n(
            "device_agent/test_download_progress",
            "test_give_up_rule_counts_only_attempts_without_progress",
            "test_a_round_of_downloading_is_bounded_by_the_firmware_deadline_then_resumed",
            "test_a_resumed_image_with_a_wrong_hash_is_discarded_and_counts_as_a_failure",
            "test_kept_bytes_resume_only_the_same_target",
            "test_connection_dropped_five_times_mid_body_the_agent_process_resumes_and_finishes",
            "test_checkpoint_interval_is_bounded_and_named_when_wrong",
        )
        + _n(
            _STATE,
            "test_a_state_file_written_before_resume_points_still_loads",
            "test_a_resume_point_is_persisted",
            "test_kept_bytes_fit_only_the_same_target_in_the_same_slot",
            "test_nothing_to_resume_makes_no_resume_point",
        ),
    ),
    Control(
        "C-AB-TRIAL-BOOT",
        "A/B slots with a limited number of trial boots",
        "The new slot is booted as a trial with a few attempts; the bootloader falls back "
        "to the committed slot when they run out.",
        (
            "device_agent.bootctl._bootloader:select_boot",
            "device_agent.bootctl._base:EnvBootControl.start_trial",
        ),
        _n(
            _BOOTCTL,
            "test_start_trial_sets_trial_and_keeps_committed",
            "test_trial_boots_the_new_slot_then_commit_makes_it_the_default",
            "test_trial_falls_back_to_committed_when_attempts_run_out",
            "test_a_second_update_cycle_runs_on_the_other_slot",
        )
        + _n("device_agent/test_bootctl_select", "test_select_boot_follows_the_trial_rule")
        + _n(
            _REBOOT,
            "test_bootloader_that_ignores_the_trial_is_not_rebooted_forever",
            "test_bootloader_that_ignores_the_rollback_is_reported_not_rebooted_forever",
        ),
    ),
    Control(
        "C-BOOTENV-ATOMIC",
        "Boot environment writes are atomic in every backend",
        "Redundant copies (file, U-Boot) or a scratch copy and rename (GRUB); tested with "
        "the real grub-editenv and fw_setenv.",
        (
            "device_agent.bootctl.file:FileBootControl",
            "device_agent.bootctl.grub:GrubBootControl",
            "device_agent.bootctl.uboot:UBootBootControl",
        ),
        _n(
            _BOOTCTL,
            "test_a_crash_at_any_durable_step_leaves_the_old_or_the_new_env",
            "test_a_torn_write_of_the_new_copy_falls_back_to_the_old_env",
            "test_one_corrupt_copy_is_survived",
        )
        + _n(
            _BOOT_TOOLS,
            "test_grub_updates_replace_the_block_by_rename_not_in_place",
            "test_uboot_a_crash_between_the_two_files_leaves_the_env_uninitialized",
        )
        + _cases(
            "device_agent/test_agent_update",
            "test_update_is_installed_committed_and_reported",
            "grub",
            "uboot",
        )
        + _n(
            _BOOT_TOOLS,
            "test_grub_writes_through_a_symlinked_env_to_the_file_grub_loads",
            "test_uboot_a_size_without_0x_is_refused_because_the_tools_read_it_as_hex",
            "test_uboot_an_ambiguous_or_overlapping_env_config_is_refused",
        ),
    ),
    Control(
        "C-BOOTENV-INTEGRITY",
        "A corrupt or forged boot environment is an error, never silently fixed",
        "Checksummed copies; forged variables through multi-line values and U-Boot's "
        "default environment are detected.",
        ("device_agent.bootctl._vars:env_from_vars", "device_agent.bootctl.file:decode_copy"),
        _n(
            _BOOTCTL,
            "test_a_corrupt_env_is_never_silently_fixed",
            "test_both_copies_corrupt_is_an_error",
        )
        + _n(
            "device_agent/test_bootctl_file",
            "test_a_checksummed_but_invalid_newest_copy_is_an_error_not_a_fallback",
        )
        + _n(
            _BOOT_TOOLS,
            "test_grub_a_variable_forged_by_a_multiline_value_is_an_error",
            "test_uboot_a_default_environment_is_never_taken_for_the_real_one",
            "test_uboot_a_setenv_that_ignores_the_script_is_detected",
        ),
    ),
    Control(
        "C-SELFTEST-ROLLBACK",
        "Self-test, crash loop or exhausted attempts roll back and are reported",
        "The new image must pass its self-test before commit; failure, a crash loop or "
        "exhausted boot attempts return to the committed slot, report the reason, and "
        "the failed release is not retried.",
        ("device_agent.agent:Agent", "device_agent.bootctl._base:EnvBootControl.cancel_trial"),
        _n(
            "device_agent/test_rollback",
            "test_self_test_failure_rolls_back_and_is_not_retried",
            "test_crash_loop_while_verifying_the_boot_rolls_back",
            "test_image_that_never_boots_falls_back_when_attempts_run_out",
        )
        + _n(_BOOTCTL, "test_cancel_trial_rolls_back_to_committed"),
    ),
    Control(
        "C-OUTBOX",
        "Outcome events are queued durably until the server stored them",
        "Events survive an unreachable server and a power loss; a refused batch does not "
        "block later ones.",
        ("device_agent.reporting:Outbox",),
        _n(
            _REPORTING,
            "test_events_are_queued_while_the_server_is_down_and_delivered_in_order",
            "test_a_batch_the_server_refuses_as_malformed_does_not_block_later_ones",
            "test_unenrolled_pump_keeps_its_events",
        )
        + _cases(
            "device_agent/test_reporting_hostile_server",
            "test_a_server_dripping_its_answer_cannot_hold_the_agent",
            "drips-the-body-events",
            "drips-the-head-events",
            "drips-chunks-events",
        ),
    ),
    Control(
        "C-BACKOFF",
        "Jittered polling and capped exponential backoff",
        "Pumps do not synchronise into load spikes, and retry an unreachable server "
        "without hammering it.",
        ("device_agent.reporting:backoff_delay", "device_agent.agent:Agent.next_poll_delay"),
        _n(
            _REPORTING,
            "test_backoff_grows_with_failures_and_stays_capped",
            "test_a_poll_interval_that_is_not_a_finite_number_is_a_malformed_answer",
            "test_the_servers_poll_interval_is_kept_within_bounds",
        )
        + _n(_TUF_CLIENT, "test_unreachable_repository_is_a_transfer_error"),
    ),
    Control(
        "C-AGENT-CONFIG",
        "The pump's configuration is checked when it loads",
        "Every wrong value is named (exit 2) instead of running with a weakened setting.",
        ("device_agent.config:load_config",),
        _n(
            "device_agent/test_agent_config",
            "test_bad_config_names_what_is_wrong",
            "test_unreadable_and_non_toml_configs_are_config_errors",
        )
        + _n(_BOOTCTL, "test_bad_slot_configuration_is_refused")
        + _n(
            "device_agent/test_agent_config",
            "test_a_slot_that_is_another_configured_file_is_refused",
            "test_a_value_that_defeats_a_defence_is_a_config_error_naming_the_key",
        )
        + _n(
            _DOWNLOAD,
            "test_a_slot_swapped_for_another_configured_file_after_loading_is_never_written",
        ),
    ),
    Control(
        "C-UPDATE-PATH",
        "A signed fix reaches the fleet end to end",
        "Publish through the API, pumps refresh, install, commit and report; the path "
        "that ships a fix is itself tested on every backend.",
        ("device_agent.agent:Agent", "update_server.publishing:publish"),
        _n(_E2E, "test_two_person_release_published_through_the_api_is_installed_by_a_tuf_client")
        + _cases(
            "device_agent/test_agent_update",
            "test_update_is_installed_committed_and_reported",
            "file",
        )
        + _n(_TUF_CLIENT, "test_second_poll_sees_new_release"),
    ),
    # --- SBOM and vulnerability management
    Control(
        "C-SBOM-BINDING",
        "The SBOM is bound to the firmware it describes",
        "The SBOM's firmware component carries the TUF target's sha256; publishing and "
        "verification refuse an SBOM of other firmware or a tampered one.",
        ("sbom.binding:bound_firmware_sha256", "signer.verification:verify_release_update"),
        _refusal("sbom not bound-HashMismatchError-not the release's firmware")
        + _n(
            "sbom/test_sbom_verify",
            "test_sbom_describing_other_firmware_is_refused",
            "test_tampered_sbom_target_fails_verification",
        )
        + _n("sbom/test_sbom_generate", "test_bound_sha256_of_generated_sbom_is_the_input_sha256")
        + _n(
            "sbom/test_sbom_binding",
            "test_duplicate_keys_are_refused_so_no_reader_sees_another_hash",
        ),
    ),
    Control(
        "C-SBOM-THROUGH-TUF",
        "Reviewers fetch SBOMs through TUF",
        "sbom verify downloads and checks the SBOM like a pump, from a local repository "
        "or a server, chained to a root the reviewer trusts.",
        ("sbom.verify",),
        _n(
            "sbom/test_sbom_verify",
            "test_verify_local_repository_through_tuf",
            "test_verify_over_http",
            "test_a_root_the_repository_does_not_chain_to_is_refused",
        ),
    ),
    Control(
        "C-SBOM-COMPLETE",
        "SBOMs are schema-valid, NTIA-complete and show end of support",
        "Strict CycloneDX 1.6 validation; missing NTIA elements and components past or "
        "near end of support are listed.",
        ("sbom.check", "sbom.validation"),
        _n(
            "sbom/test_sbom_audit_cli",
            "test_check_lists_missing_ntia_elements_per_component",
            "test_check_flags_components_past_or_near_end_of_support",
            "test_check_passes_a_complete_sbom",
        )
        + _n(
            "sbom/test_sbom_generate",
            "test_generated_sbom_validates_against_strict_cyclonedx_1_6_schema",
        ),
    ),
    Control(
        "C-SBOM-AUDIT",
        "Every release's components are audited against OSV, NVD and KEV",
        "Affected versions are matched per ecosystem; KEV findings first; untriaged "
        "findings above a threshold fail the audit; unchecked components are listed.",
        ("sbom.audit", "sbom.versions", "sbom._ranges", "sbom._cvss", "sbom._cpe"),
        _n(
            "sbom/test_sbom_audit",
            "test_affected_versions_match_and_fixed_ones_do_not",
            "test_findings_carry_kev_status_and_sort_kev_first",
            "test_components_without_purl_or_cpe_are_reported_unchecked",
        )
        + _n(
            "sbom/test_sbom_audit_cli",
            "test_audit_fail_on_gates_untriaged_findings",
            "test_diff_lists_component_changes_and_vulnerabilities_fixed",
        )
        + _n(
            "sbom/test_sbom_advisories",
            "test_debian_record_with_upstream_cve_gets_kev_and_vex",
            "test_purl_type_no_source_covers_is_reported_not_checked",
            "test_audit_output_gives_the_reason_a_component_was_not_checked",
            "test_highest_cvss_score_wins_across_versions",
            "test_debian_fix_of_the_components_release_is_used",
            "test_withdrawn_osv_record_is_not_reported",
            "test_cve_rejected_later_is_removed_from_the_store",
        )
        + _n(
            "sbom/test_sbom_version_orders",
            "test_versions_before_the_fix_are_affected",
            "test_versions_order_as_their_ecosystems_reference_says",
            "test_versions_their_ecosystem_scheme_cannot_parse_are_unorderable",
            "test_an_ecosystem_pumpguard_cannot_order_is_not_evaluated",
            "test_a_listed_version_or_a_semver_range_needs_no_ecosystem_order",
            "test_one_range_that_matches_is_enough_even_if_another_cannot_be_evaluated",
            "test_audit_reports_the_alpine_false_negative_as_a_finding",
            "test_a_version_that_cannot_be_ordered_is_listed_as_not_checked",
            "test_findings_stay_when_another_advisory_cannot_be_evaluated",
        )
        + _n(
            "sbom/test_sbom_audit_scores_and_cpes",
            "test_a_cvss4_only_critical_finding_fails_audit_fail_on_with_exit_5",
            "test_an_osv_record_with_only_a_cvss4_vector_is_rated_by_its_score",
            "test_the_higher_of_a_v3_and_a_v4_score_is_kept",
            "test_a_store_imported_before_cvss4_scoring_rates_the_finding_when_read",
            "test_a_cpe22_uri_with_percent_escapes_matches_the_nvd_record",
            "test_cpe_uris_bind_to_the_formatted_string_nistir_7695_gives",
            "test_malformed_cpe_uris_are_refused",
            "test_a_cpe_uri_parses_to_the_parts_of_its_formatted_string",
        )
        + _n(
            "sbom/test_sbom_versions",
            "test_versions_a_scheme_cannot_parse_are_never_ordered_by_guess",
            "test_the_generic_scheme_of_nvd_versions_orders_any_two_strings",
            "test_cvss_v4_vectors_are_scored",
            "test_incomplete_or_unknown_cvss_vectors_have_no_score",
        ),
    ),
    Control(
        "C-VEX",
        "Findings are triaged with VEX and the history is kept",
        "An analysis settles a finding only for the same component; analyses carry "
        "forward to unchanged components; the history is append-only.",
        ("sbom.vex",),
        _n(
            "sbom/test_sbom_audit",
            "test_vex_analysis_settles_a_finding_for_the_same_component_only",
            "test_in_triage_still_needs_triage",
        )
        + _n(
            "sbom/test_sbom_audit_cli",
            "test_vex_round_trip_keeps_every_analysis_and_its_history",
            "test_vex_analyses_carry_forward_to_unchanged_components_only",
        )
        + _n("sbom/test_sbom_vulndb", "test_vex_history_is_append_only")
        + _n(
            "sbom/test_sbom_vex_identity",
            "test_versionless_purl_analysis_does_not_carry_to_another_version",
            "test_versionless_purl_identity_includes_the_component_version",
            "test_vex_without_timestamps_is_imported",
            "test_undated_statement_stays_undated_through_export_and_import",
        ),
    ),
    Control(
        "C-VULNDB-INTEGRITY",
        "Feed imports are checked and recorded",
        "Each import records the source file's digest and counts; a bad feed is refused "
        "and leaves the store unchanged; archive member names are never paths.",
        ("sbom.vulndb",),
        _n(
            "sbom/test_sbom_vulndb",
            "test_import_records_source_file_digest_and_counts",
            "test_failed_import_leaves_the_store_unchanged",
            "test_zip_member_names_are_never_used_as_paths",
            "test_bad_feeds_are_refused_with_a_clear_error",
            "test_a_feed_of_the_wrong_kind_is_refused",
            "test_schema_1_store_is_refused_for_reading_and_upgraded_on_write",
        ),
    ),
    Control(
        "C-REPORT-ESCAPING",
        "Reports escape untrusted names and load nothing",
        "Component names and advisory text from feeds are escaped; the HTML report runs "
        "no script and fetches nothing.",
        ("sbom.report_html",),
        _n(
            "sbom/test_sbom_report_html",
            "test_untrusted_names_are_escaped",
            "test_report_loads_nothing_and_runs_nothing",
        ),
    ),
)

# ------------------------------------------------------------------- threats


def _r(exploitability: Exploitability, severity: Severity) -> Risk:
    return Risk(exploitability, severity)


_E = Exploitability
_S = Severity
_STRIDE = Category

_THREATS = (
    # --- TUF metadata and firmware on the way to the pump
    Threat(
        "AGT-UNSIGNED",
        "Pump installs firmware or metadata nobody authorised",
        _STRIDE.SPOOFING,
        ("F-TUF-DOWNLOAD", "E-AGENT"),
        "An attacker on the network path, the CDN or the server serves unsigned or "
        "wrongly signed metadata, or signatures below a role's threshold, to make the "
        "pump install their firmware: arbitrary code next to the therapy controller.",
        _r(_E.REMOTE, _S.CATASTROPHIC),
        _r(_E.THEORETICAL, _S.CATASTROPHIC),
        ("C-TUF-SIGNATURES", "C-TUF-THRESHOLD", "C-TUF-BOOTSTRAP", "C-TLS"),
        cvss="CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H",
    ),
    Threat(
        "TUF-ROLLBACK",
        "Rolled-back metadata or an older release",
        _STRIDE.TAMPERING,
        ("F-TUF-DOWNLOAD", "F-CHECKIN", "E-AGENT", "E-SERVER"),
        "Older (validly signed) timestamp, snapshot or product metadata, a replayed "
        "bundle, or an older release is presented, to bring back a release with a known "
        "vulnerability or defect.",
        _r(_E.REMOTE, _S.CRITICAL),
        _r(_E.THEORETICAL, _S.CRITICAL),
        (
            "C-TUF-VERSION-ROLLBACK",
            "C-TUF-DURABLE-CACHE",
            "C-PUBLISH-MONOTONIC",
            "C-SERVER-ASSIGNMENT",
            "C-ANTI-ROLLBACK-COUNTER",
        ),
    ),
    Threat(
        "TUF-FREEZE",
        "Frozen repository keeps pumps on an old release",
        _STRIDE.DENIAL_OF_SERVICE,
        ("F-TUF-DOWNLOAD", "E-CDN"),
        "A mirror, CDN or network attacker keeps serving the same (valid, old) metadata "
        "so pumps never learn about a security fix; or the online roles are left to "
        "expire after a server outage.",
        _r(_E.REMOTE, _S.SERIOUS),
        _r(_E.HARD, _S.SERIOUS),
        ("C-TUF-EXPIRY", "C-ONLINE-REFRESH", "C-CACHE-RULES"),
    ),
    Threat(
        "TUF-MIX-AND-MATCH",
        "Metadata from different repository states combined",
        _STRIDE.TAMPERING,
        ("F-TUF-DOWNLOAD", "E-SERVER-FILES"),
        "Serving a product's metadata from one state with a snapshot of another (or a "
        "publish seen half-way) could make a pump accept a combination no one signed "
        "together.",
        _r(_E.REMOTE, _S.CRITICAL),
        _r(_E.THEORETICAL, _S.CRITICAL),
        ("C-TUF-SNAPSHOT", "C-ATOMIC-PUBLISH", "C-PUBLISH-LOCK"),
    ),
    Threat(
        "TUF-ENDLESS-DATA",
        "Endless metadata or firmware exhausts the pump",
        _STRIDE.DENIAL_OF_SERVICE,
        ("F-TUF-DOWNLOAD", "E-AGENT", "E-PUMP-STORAGE"),
        "A server sends metadata or firmware without end, filling the pump's storage or "
        "memory and keeping the agent busy.",
        _r(_E.REMOTE, _S.SERIOUS),
        _r(_E.THEORETICAL, _S.SERIOUS),
        ("C-FETCH-LENGTH-CAPS",),
    ),
    Threat(
        "AGT-SLOW",
        "Slow retrieval stalls the update",
        _STRIDE.DENIAL_OF_SERVICE,
        ("F-TUF-DOWNLOAD", "E-AGENT"),
        "A server trickles bytes (headers or body) so that the agent never finishes or "
        "never times out, keeping a security fix from installing.",
        _r(_E.REMOTE, _S.SERIOUS),
        _r(_E.HARD, _S.MINOR),
        ("C-FETCH-DEADLINE", "C-RESUMABLE-DOWNLOAD"),
    ),
    Threat(
        "AGT-TAMPER",
        "Substituted, truncated or bit-flipped firmware",
        _STRIDE.TAMPERING,
        ("F-TUF-DOWNLOAD", "F-AGENT-STORAGE", "E-PUMP-STORAGE"),
        "Firmware bytes that are not the signed ones (an attacker's substitute, a "
        "truncated transfer, a flipped bit in transit or in the slot) are made bootable.",
        _r(_E.REMOTE, _S.CATASTROPHIC),
        _r(_E.THEORETICAL, _S.CATASTROPHIC),
        ("C-SLOT-HASH-STREAM", "C-SLOT-REVERIFY", "C-FETCH-LENGTH-CAPS"),
    ),
    Threat(
        "AGT-WRONG-HW",
        "Valid firmware for another hardware revision or product",
        _STRIDE.PATIENT_SAFETY,
        ("F-CHECKIN", "E-AGENT"),
        "A signed release built for other hardware (or another product line) is "
        "assigned to a pump, by mistake or by a compromised server; it may not drive "
        "this pump's hardware correctly.",
        _r(_E.INSIDER, _S.CATASTROPHIC),
        _r(_E.THEORETICAL, _S.CATASTROPHIC),
        ("C-AGT-POLICY", "C-SERVER-ASSIGNMENT", "C-DELEGATION-PATHS"),
    ),
    Threat(
        "AGT-ROLLBACK",
        "Downgrade to an older signed release by a compromised server",
        _STRIDE.ELEVATION_OF_PRIVILEGE,
        ("F-CHECKIN", "E-AGENT", "E-PUMP-STORAGE"),
        "Someone controlling the server (online keys, database) assigns an older, "
        "properly signed release with a known vulnerability (release_counter downgrade).",
        _r(_E.INSIDER, _S.CRITICAL),
        _r(_E.THEORETICAL, _S.CRITICAL),
        ("C-ANTI-ROLLBACK-COUNTER", "C-TUF-VERSION-ROLLBACK"),
    ),
    Threat(
        "TUF-ARBITRARY",
        "A role signs what it may not: one person, an outsider or another product",
        _STRIDE.ELEVATION_OF_PRIVILEGE,
        ("F-BUNDLE-UPLOAD", "E-SERVER", "E-SIGNER", "E-AGENT"),
        "A single release engineer, a key outside the delegation or one product's keys "
        "sign a release (or a target outside the product's paths) and it is published "
        "or installed.",
        _r(_E.INSIDER, _S.CATASTROPHIC),
        _r(_E.THEORETICAL, _S.CATASTROPHIC),
        ("C-TWO-PERSON", "C-DELEGATION-PATHS", "C-KEYID-CHECK", "C-TUF-THRESHOLD"),
    ),
    Threat(
        "AGT-TRAVERSAL",
        "Malicious target path",
        _STRIDE.TAMPERING,
        ("F-CHECKIN", "E-AGENT"),
        "An assigned path with .., an absolute path, a NUL or a backslash makes the "
        "agent look up or write somewhere else.",
        _r(_E.INSIDER, _S.SERIOUS),
        _r(_E.THEORETICAL, _S.SERIOUS),
        ("C-TARGET-PATH",),
    ),
    Threat(
        "SRV-COMPROMISE",
        "Compromised update server",
        _STRIDE.ELEVATION_OF_PRIVILEGE,
        ("E-SERVER", "E-SERVER-FILES", "E-DB"),
        "An attacker owns the server: online keys, database, assignments and check-in "
        "answers. They try to install unsigned, older or other-hardware firmware; what "
        "remains is withholding updates until the timestamp expires.",
        _r(_E.INSIDER, _S.CATASTROPHIC),
        _r(_E.THEORETICAL, _S.CATASTROPHIC),
        (
            "C-TUF-SIGNATURES",
            "C-TWO-PERSON",
            "C-ANTI-ROLLBACK-COUNTER",
            "C-AGT-POLICY",
            "C-TARGET-PATH",
            "C-TUF-EXPIRY",
            "C-AUDIT-CHAIN",
        ),
    ),
    # --- networks
    Threat(
        "NET-MITM",
        "Eavesdropping or tampering on the hospital network",
        _STRIDE.INFORMATION_DISCLOSURE,
        ("E-HOSPITAL-NET", "F-NET-TRANSIT", "F-CHECKIN", "F-BUNDLE-UPLOAD", "F-OPERATOR-API"),
        "An adjacent attacker reads tokens, fleet state and release versions, or "
        "modifies traffic; integrity of updates does not depend on the transport, but "
        "tokens and pump inventory do.",
        _r(_E.ADJACENT, _S.SERIOUS),
        _r(_E.HARD, _S.MINOR),
        ("C-TLS", "C-DEVICE-SIGNATURE", "C-TUF-SIGNATURES"),
    ),
    Threat(
        "NET-OUTAGE",
        "Network or server unavailable",
        _STRIDE.DENIAL_OF_SERVICE,
        ("E-HOSPITAL-NET", "F-CHECKIN", "F-EVENTS", "F-TUF-DOWNLOAD"),
        "Pumps cannot reach the server or the CDN (outage, DoS, firewall): updates are "
        "delayed and outcomes unreported; therapy itself never depends on the network.",
        _r(_E.ADJACENT, _S.SERIOUS),
        _r(_E.ADJACENT, _S.MINOR),
        ("C-OUTBOX", "C-BACKOFF", "C-RESUMABLE-DOWNLOAD", "C-STATIC-TUF"),
    ),
    # --- server
    Threat(
        "SRV-TOKEN-THEFT",
        "Stolen or misused API token",
        _STRIDE.SPOOFING,
        ("F-BUNDLE-UPLOAD", "F-OPERATOR-API", "F-ENROLL", "E-DB", "E-OPERATOR"),
        "A token leaks (clear-text transport, logs, a database dump) or is used beyond "
        "its role or product, to publish a release, enroll a rogue pump or revoke real "
        "ones.",
        _r(_E.ADJACENT, _S.CATASTROPHIC),
        _r(_E.THEORETICAL, _S.SERIOUS),
        (
            "C-TWO-PERSON",
            "C-API-AUTHN",
            "C-API-ROLES",
            "C-API-SCOPE",
            "C-TOKEN-LIFECYCLE",
            "C-TLS",
        ),
    ),
    Threat(
        "SRV-DEVICE-SPOOF",
        "Forged check-ins or events",
        _STRIDE.SPOOFING,
        ("F-CHECKIN", "F-EVENTS", "E-SERVER"),
        "Someone reports for a pump they do not hold (hiding a failed update, faking a "
        "commit, learning assignments) or one pump's key speaks for another.",
        _r(_E.ADJACENT, _S.SERIOUS),
        _r(_E.THEORETICAL, _S.SERIOUS),
        (
            "C-DEVICE-SIGNATURE",
            "C-DEVICE-KEY-VALIDITY",
            "C-DEVICE-BINDING",
            "C-DEVICE-REVOCATION",
            "C-ENROLLMENT",
        ),
    ),
    Threat(
        "SRV-REPLAY",
        "Replayed check-ins or events",
        _STRIDE.SPOOFING,
        ("F-CHECKIN", "F-EVENTS"),
        "A captured signed request is sent again to report an old state (e.g. an "
        "already replaced vulnerable version as current, or a stale success).",
        _r(_E.ADJACENT, _S.MINOR),
        _r(_E.THEORETICAL, _S.MINOR),
        ("C-NONCE", "C-CLOCK-SKEW"),
    ),
    Threat(
        "SRV-ROGUE-PUMP",
        "Rogue or stolen pump keeps talking to the server",
        _STRIDE.SPOOFING,
        ("F-ENROLL", "E-SERVER"),
        "A device that is not (or no longer) a legitimate pump enrolls or keeps "
        "checking in, polluting fleet data or probing the API.",
        _r(_E.ADJACENT, _S.MINOR),
        _r(_E.HARD, _S.MINOR),
        ("C-ENROLLMENT", "C-DEVICE-REVOCATION", "C-API-ROLES"),
    ),
    Threat(
        "SRV-DOS",
        "Resource exhaustion of the server",
        _STRIDE.DENIAL_OF_SERVICE,
        ("E-SERVER", "E-DB"),
        "Huge uploads, bodies, event batches or list requests, or floods of polls, "
        "exhaust memory, disk or the database before anyone is authenticated.",
        _r(_E.REMOTE, _S.SERIOUS),
        _r(_E.ADJACENT, _S.MINOR),
        (
            "C-SIZE-LIMITS",
            "C-HOSTILE-CLIENTS",
            "C-BOUNDED-POOLS",
            "C-STATIC-TUF",
            "C-BACKOFF",
            "C-ATOMIC-PUBLISH",
        ),
    ),
    Threat(
        "SRV-INPUT",
        "Malformed input corrupts server state",
        _STRIDE.TAMPERING,
        ("E-SERVER", "E-DB", "F-CHECKIN", "F-ENROLL"),
        "Duplicate JSON keys, unknown fields, wrong types or malformed uploads are "
        "half-processed, leaving inconsistent records.",
        _r(_E.REMOTE, _S.MINOR),
        _r(_E.THEORETICAL, _S.MINOR),
        ("C-STRICT-INPUT", "C-BUNDLE-SIGNED-DECISION"),
    ),
    Threat(
        "SRV-PUBLISH-RACE",
        "Concurrent publishes produce an inconsistent repository",
        _STRIDE.TAMPERING,
        ("E-SERVER", "E-SERVER-FILES", "F-SERVER-FILES"),
        "Two publishes (or a publish and a re-signing) built on the same state overwrite "
        "each other; pumps see metadata that does not verify.",
        _r(_E.INSIDER, _S.SERIOUS),
        _r(_E.THEORETICAL, _S.SERIOUS),
        ("C-PUBLISH-LOCK", "C-ATOMIC-PUBLISH"),
    ),
    Threat(
        "SRV-REPUDIATION",
        "Who published, enrolled or revoked cannot be shown",
        _STRIDE.REPUDIATION,
        ("E-SERVER", "E-DB", "F-SERVER-DB", "E-OPERATOR", "E-RE-WS"),
        "An operator or release engineer denies an action, or an attacker with database "
        "access edits, inserts or removes audit entries to hide one.",
        _r(_E.INSIDER, _S.SERIOUS),
        _r(_E.HARD, _S.MINOR),
        ("C-AUDIT-CHAIN", "C-TOKEN-LIFECYCLE"),
    ),
    Threat(
        "SRV-FILE-TRAVERSAL",
        "TUF file serving discloses other files",
        _STRIDE.INFORMATION_DISCLOSURE,
        ("E-SERVER", "E-SERVER-FILES"),
        "A crafted /tuf path reaches the online keys, the database or configuration.",
        _r(_E.REMOTE, _S.CRITICAL),
        _r(_E.THEORETICAL, _S.CRITICAL),
        ("C-TUF-FILES-PATHS",),
    ),
    Threat(
        "SRV-DISCLOSURE",
        "Errors and data files disclose the server's internals",
        _STRIDE.INFORMATION_DISCLOSURE,
        ("E-SERVER", "E-SERVER-FILES", "E-DB"),
        "An API error names the server's folders (data, uploads, keys), helping an "
        "attacker aim; the database file is readable by other local users.",
        _r(_E.REMOTE, _S.MINOR),
        _r(_E.THEORETICAL, _S.MINOR),
        ("C-PRIVATE-SERVER-DATA",),
    ),
    Threat(
        "SRV-WRONG-KEY",
        "Server signs with keys root does not trust",
        _STRIDE.DENIAL_OF_SERVICE,
        ("E-SERVER-FILES", "F-ROOT-INSTALL"),
        "A misconfigured or swapped online key makes every pump reject the repository "
        "until someone notices.",
        _r(_E.INSIDER, _S.SERIOUS),
        _r(_E.THEORETICAL, _S.SERIOUS),
        ("C-ONLINE-KEY-CHECK",),
    ),
    Threat(
        "CDN-TAMPER",
        "Compromised static host or CDN",
        _STRIDE.TAMPERING,
        ("E-CDN", "F-CDN-SYNC"),
        "The CDN serves altered, stale or mixed files, or caches timestamp.json too long.",
        _r(_E.REMOTE, _S.CATASTROPHIC),
        _r(_E.THEORETICAL, _S.SERIOUS),
        ("C-TUF-SIGNATURES", "C-SLOT-HASH-STREAM", "C-CACHE-RULES", "C-TUF-EXPIRY"),
    ),
    # --- signing environment
    Threat(
        "SGN-KEY-THEFT",
        "A signing key is stolen",
        _STRIDE.INFORMATION_DISCLOSURE,
        ("E-RE-WS", "E-OFFLINE-REPO", "E-HSM", "F-HSM-SIGN", "F-OFFLINE-METADATA"),
        "A release engineer's key file or PIN is copied from a workstation; with one "
        "key an attacker tries to release firmware.",
        _r(_E.INSIDER, _S.CATASTROPHIC),
        _r(_E.THEORETICAL, _S.CATASTROPHIC),
        ("C-ENCRYPTED-KEYS", "C-HSM-KEYS", "C-TWO-PERSON", "C-PRODUCT-KEY-ROTATION"),
    ),
    Threat(
        "SGN-ROOT-COMPROMISE",
        "Root or targets keys compromised",
        _STRIDE.ELEVATION_OF_PRIVILEGE,
        ("E-OFFLINE-REPO", "F-ROOT-INSTALL", "F-PROVISION"),
        "Root keys below threshold are stolen or lost; the trust anchor must be "
        "rotated without reflashing pumps in the field.",
        _r(_E.HARD, _S.CATASTROPHIC),
        _r(_E.THEORETICAL, _S.CATASTROPHIC),
        ("C-ROOT-ROTATION", "C-TUF-THRESHOLD", "C-TUF-BOOTSTRAP"),
    ),
    Threat(
        "SGN-KEYID-FORGERY",
        "One key counted twice",
        _STRIDE.SPOOFING,
        ("E-SIGNER", "F-BUNDLE-UPLOAD"),
        "An edited keyid or a repeated signature lets one person satisfy a threshold of two.",
        _r(_E.INSIDER, _S.CATASTROPHIC),
        _r(_E.THEORETICAL, _S.CATASTROPHIC),
        ("C-KEYID-CHECK", "C-TWO-PERSON"),
    ),
    Threat(
        "SGN-BUNDLE-SWAP",
        "A signer signs other bytes than those reviewed",
        _STRIDE.TAMPERING,
        ("F-BUILD-INPUT", "E-SIGNER", "F-BUNDLE-UPLOAD"),
        "A bundle is altered between the two signatures or before publishing (firmware "
        "swapped, files added), so the second person signs what they did not check.",
        _r(_E.INSIDER, _S.CATASTROPHIC),
        _r(_E.THEORETICAL, _S.CATASTROPHIC),
        ("C-BUNDLE-INTACT", "C-BUNDLE-SIGNED-DECISION", "C-TWO-PERSON"),
    ),
    Threat(
        "SGN-BUNDLE-TRAVERSAL",
        "Malicious tar bundle writes outside its folder",
        _STRIDE.ELEVATION_OF_PRIVILEGE,
        ("E-SIGNER", "E-SERVER"),
        "Links, absolute or .. paths, or a huge member count in a bundle archive "
        "overwrite files of the signer's or the server's machine.",
        _r(_E.ADJACENT, _S.CRITICAL),
        _r(_E.THEORETICAL, _S.CRITICAL),
        ("C-BUNDLE-SAFE-UNPACK",),
    ),
    # --- pump
    Threat(
        "PWR-1",
        "Power loss or a crash in the middle of a durable write",
        _STRIDE.DENIAL_OF_SERVICE,
        (
            "E-OFFLINE-REPO",
            "E-SERVER-FILES",
            "E-PUMP-STORAGE",
            "F-AGENT-STORAGE",
            "F-BOOT-ENV",
        ),
        "The signer, the server or the pump loses power (or the agent is killed) while "
        "writing: a half-written key, policy or metadata file, a repository pumps cannot "
        "verify, or a pump back up with an inconsistent state, slot, boot environment or "
        "anti-rollback counter, during download, install, commit or rollback.",
        _r(_E.ADJACENT, _S.CRITICAL),
        _r(_E.THEORETICAL, _S.CRITICAL),
        (
            "C-ATOMIC-WRITE",
            "C-ATOMIC-PUBLISH",
            "C-DURABLE-STATE",
            "C-SIGKILL",
            "C-BOOTENV-ATOMIC",
            "C-TUF-DURABLE-CACHE",
        ),
    ),
    Threat(
        "AGT-STORAGE-CORRUPT",
        "Corrupt agent state or boot environment",
        _STRIDE.TAMPERING,
        ("E-PUMP-STORAGE", "F-BOOT-ENV"),
        "A damaged or forged state file or boot environment (flash fault, torn write, "
        "a multi-line variable) is silently 'repaired' into a wrong decision.",
        _r(_E.HARD, _S.SERIOUS),
        _r(_E.THEORETICAL, _S.SERIOUS),
        ("C-BOOTENV-INTEGRITY", "C-STATE-MACHINE"),
    ),
    Threat(
        "AGT-MISCONFIG",
        "Agent runs with a wrong configuration",
        _STRIDE.TAMPERING,
        ("E-AGENT", "F-PROVISION"),
        "A wrong value (interlock rules, slots, server, root) silently weakens a safety "
        "or security check.",
        _r(_E.INSIDER, _S.SERIOUS),
        _r(_E.THEORETICAL, _S.SERIOUS),
        ("C-AGENT-CONFIG",),
    ),
    Threat(
        "AGT-REPORT-LOSS",
        "Update outcomes are lost",
        _STRIDE.REPUDIATION,
        ("F-EVENTS", "E-AGENT"),
        "A failed or rolled-back update is never reported (server down, power loss), so "
        "operators believe the fleet is patched.",
        _r(_E.ADJACENT, _S.SERIOUS),
        _r(_E.THEORETICAL, _S.SERIOUS),
        ("C-OUTBOX", "C-FLEET-VISIBILITY"),
    ),
    Threat(
        "MED-STATUS-SPOOF",
        "Wrong therapy status reaches the agent",
        _STRIDE.SPOOFING,
        ("F-THERAPY-STATUS", "E-THERAPY"),
        "A stale, missing, malformed or forged status says 'idle' while an infusion runs.",
        _r(_E.HARD, _S.CATASTROPHIC),
        _r(_E.THEORETICAL, _S.CATASTROPHIC),
        ("C-STATUS-UNKNOWN-UNSAFE", "C-THERAPY-INTERLOCK"),
    ),
    Threat(
        "BOOT-ENV-TAMPER",
        "The boot environment points at an unverified slot",
        _STRIDE.TAMPERING,
        ("F-BOOT-ENV", "F-BOOT-IMAGE", "E-BOOTLOADER"),
        "The agent (or a crash) makes a slot bootable before it is verified, or the "
        "slot changes between verification and boot.",
        _r(_E.HARD, _S.CATASTROPHIC),
        _r(_E.THEORETICAL, _S.CATASTROPHIC),
        ("C-SLOT-REVERIFY", "C-STATE-MACHINE", "C-BOOTENV-INTEGRITY"),
    ),
    # --- reviewer
    Threat(
        "SBOM-MISMATCH",
        "The SBOM does not describe the firmware",
        _STRIDE.TAMPERING,
        ("F-REVIEW", "E-REVIEWER", "F-BUNDLE-UPLOAD"),
        "A reviewer audits an SBOM of other firmware (or a tampered one) and misses a "
        "vulnerable component that is really in the field.",
        _r(_E.INSIDER, _S.CRITICAL),
        _r(_E.THEORETICAL, _S.CRITICAL),
        ("C-SBOM-BINDING", "C-SBOM-THROUGH-TUF"),
    ),
    Threat(
        "REV-FEED-POISON",
        "Corrupt or poisoned vulnerability feed",
        _STRIDE.TAMPERING,
        ("F-VULN-FEEDS", "E-VULN-FEEDS"),
        "A truncated, wrong-kind or malicious feed hides vulnerabilities or writes files "
        "on the reviewer's machine.",
        _r(_E.REMOTE, _S.SERIOUS),
        _r(_E.HARD, _S.MINOR),
        ("C-VULNDB-INTEGRITY",),
    ),
    Threat(
        "REV-REPORT-INJECTION",
        "Untrusted names run script in a reviewer's browser",
        _STRIDE.ELEVATION_OF_PRIVILEGE,
        ("E-REVIEWER",),
        "Component names or advisory text in an HTML report inject markup or script.",
        _r(_E.REMOTE, _S.MINOR),
        _r(_E.THEORETICAL, _S.MINOR),
        ("C-REPORT-ESCAPING",),
    ),
    # --- patient safety (issue 6)
    Threat(
        "MED-INFUSION",
        "Update installed or pump rebooted during an infusion",
        _STRIDE.PATIENT_SAFETY,
        ("E-AGENT", "E-THERAPY", "F-THERAPY-STATUS"),
        "An install, reboot or commit while an infusion runs or is programmed "
        "interrupts therapy: under- or over-dosing of a patient.",
        _r(_E.REMOTE, _S.CATASTROPHIC),
        _r(_E.THEORETICAL, _S.CATASTROPHIC),
        (
            "C-THERAPY-INTERLOCK",
            "C-STATUS-UNKNOWN-UNSAFE",
            "C-THERAPY-RATE-LIMIT",
            "C-STATE-MACHINE",
        ),
    ),
    Threat(
        "MED-POWER",
        "Install on a failing battery or outside the maintenance window",
        _STRIDE.PATIENT_SAFETY,
        ("E-AGENT", "E-THERAPY"),
        "An install started on a low battery dies half-way, or one during clinical hours "
        "takes a pump out of service when it is needed.",
        _r(_E.ADJACENT, _S.CRITICAL),
        _r(_E.THEORETICAL, _S.SERIOUS),
        ("C-POWER-WINDOW", "C-DURABLE-STATE"),
    ),
    Threat(
        "MED-UNBOOTABLE",
        "A pump left unbootable",
        _STRIDE.PATIENT_SAFETY,
        ("E-BOOTLOADER", "E-PUMP-STORAGE", "F-BOOT-ENV"),
        "After a power loss, a killed agent, a torn boot environment or an image that "
        "does not start, the pump boots neither the old nor the new image and cannot "
        "deliver therapy.",
        _r(_E.ADJACENT, _S.CRITICAL),
        _r(_E.THEORETICAL, _S.CRITICAL),
        (
            "C-AB-TRIAL-BOOT",
            "C-BOOTENV-ATOMIC",
            "C-DURABLE-STATE",
            "C-SIGKILL",
            "C-SELFTEST-ROLLBACK",
        ),
    ),
    Threat(
        "MED-MASS-HARM",
        "One bad release harms many patients at once",
        _STRIDE.PATIENT_SAFETY,
        ("E-SERVER", "E-AGENT", "F-CHECKIN"),
        "A defective or malicious release reaches the whole fleet: every pump that "
        "installs it may misdose or stop, at the same time, across hospitals.",
        _r(_E.INSIDER, _S.CATASTROPHIC),
        _r(_E.HARD, _S.CATASTROPHIC),
        (
            "C-TWO-PERSON",
            "C-SELFTEST-ROLLBACK",
            "C-AGT-POLICY",
            "C-THERAPY-INTERLOCK",
            "C-POWER-WINDOW",
            "C-FLEET-VISIBILITY",
            "C-UPDATE-PATH",
        ),
        acceptance=(
            "Staged rollouts, pinning and recall are not built yet (update_server."
            "assignment is their extension point): today every pump of a product is "
            "assigned the newest release at once. Two-person review, the on-pump "
            "self-test with automatic rollback, installs only outside therapy and in the "
            "maintenance window, and shipping a fixed release bound the harm; staged "
            "rollouts would lower exploitability to THEORETICAL. Accepted until the "
            "rollout issue lands; re-rate then."
        ),
    ),
    Threat(
        "MED-VULN-FIELD",
        "A vulnerable component left in the field",
        _STRIDE.PATIENT_SAFETY,
        ("E-REVIEWER", "E-AGENT", "F-VULN-FEEDS"),
        "A known-exploited vulnerability in a firmware component stays on pumps because "
        "nobody noticed, triage lags, or the fix cannot be shipped.",
        _r(_E.ADJACENT, _S.CATASTROPHIC),
        _r(_E.HARD, _S.CATASTROPHIC),
        (
            "C-SBOM-AUDIT",
            "C-VEX",
            "C-SBOM-COMPLETE",
            "C-SBOM-BINDING",
            "C-FLEET-VISIBILITY",
            "C-UPDATE-PATH",
        ),
        acceptance=(
            "Unknown vulnerabilities cannot be excluded. Every release is audited "
            "against OSV, NVD and KEV with VEX triage, the fleet's versions are visible, "
            "and a signed fix reaches pumps through the tested update path; the "
            "remaining exposure window is a postmarket process (monitoring cadence, "
            "triage deadlines) outside the code."
        ),
    ),
)

#: What the model takes for granted; a threat relying on a broken assumption
#: must be re-rated.
ASSUMPTIONS = (
    "Root and targets keys are kept offline, and fewer than a threshold of them are "
    "ever compromised at once.",
    "No attacker holds a threshold of a product's release keys (the release engineer's "
    "and QA's keys are not both stolen).",
    "The bootloader is verified by the pump's hardware secure boot and only boots a slot "
    "the boot environment names (out of scope here).",
    "The pump's clock is roughly right (within the metadata expiry margins and the "
    "server's clock_skew); a pump with a wildly wrong clock refuses updates rather than "
    "accepting expired metadata.",
    "Only the therapy controller can write the status file or socket (operating-system "
    "permissions on the pump), and it reports a running or programmed infusion "
    "truthfully.",
    "The pump's storage and the device key are protected against physical extraction by "
    "the hardware; physical attacks on a pump in hand are out of scope.",
    "The server's operating system, TLS termination and database are patched and run by "
    "the manufacturer; the online snapshot and timestamp keys may be lost with the "
    "server (the model covers that case).",
    "Pumps are provisioned at manufacture with the correct root.json (version 1), "
    "device key and configuration.",
    "Therapy never depends on the network or the update server: a pump that cannot "
    "update keeps delivering therapy on its committed image.",
)


def build_model() -> ThreatModel:
    """The threat model of pumpguard, checked to be closed under references.

    Returns:
        The model; :func:`threat_model.check.trace` proves its controls.

    Raises:
        ThreatModelError: The catalogue is inconsistent (a dangling id, a duplicate).
    """
    model = ThreatModel(
        name="pumpguard",
        boundaries=_BOUNDARIES,
        elements=_ELEMENTS,
        flows=_FLOWS,
        threats=_THREATS,
        controls=_CONTROLS,
        assumptions=ASSUMPTIONS,
    )
    model.validate()
    return model
