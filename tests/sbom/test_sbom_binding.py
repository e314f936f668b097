"""Reading the firmware binding of an SBOM, and strict schema validation."""

from __future__ import annotations

import copy
import datetime
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from sbom import SbomValidationError, bound_firmware_sha256, build_firmware_sbom, validate_sbom

FIRMWARE_SHA256 = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
OTHER_SHA256 = "0" * 64


@pytest.fixture(scope="module")
def sbom_bytes() -> bytes:
    return build_firmware_sbom(
        product="sigma-spectrum",
        version="8.1.0",
        firmware_name="firmware.img",
        firmware_sha256=FIRMWARE_SHA256,
        firmware_size=10,
        hardware_ids=["rev-c"],
        timestamp=datetime.datetime(2025, 3, 1, tzinfo=datetime.UTC),
        serial_number=uuid.UUID(int=1),
    )


def _firmware(doc: dict[str, Any]) -> dict[str, Any]:
    firmware: dict[str, Any] = doc["metadata"]["component"]
    return firmware


def test_bound_sha256_round_trips(sbom_bytes: bytes) -> None:
    assert bound_firmware_sha256(sbom_bytes) == FIRMWARE_SHA256


def test_other_hash_algorithms_next_to_the_sha256_are_allowed(sbom_bytes: bytes) -> None:
    doc = json.loads(sbom_bytes)
    _firmware(doc)["hashes"].append({"alg": "SHA-512", "content": "b" * 128})
    assert bound_firmware_sha256(json.dumps(doc).encode()) == FIRMWARE_SHA256


Mutate = Callable[[dict[str, Any]], Any]


def _set_firmware(key: str, value: Any) -> Mutate:
    return lambda doc: _firmware(doc).__setitem__(key, value)


def _delete_firmware(key: str) -> Mutate:
    return lambda doc: _firmware(doc).pop(key)


# Documents built by changing a valid SBOM: (case, change, fragment of the error).
MALFORMED_DOCUMENTS: list[tuple[str, Mutate, str]] = [
    ("not-cyclonedx", lambda doc: doc.__setitem__("bomFormat", "SPDX"), "not CycloneDX"),
    ("no-metadata", lambda doc: doc.pop("metadata"), "$.metadata is missing"),
    ("metadata-not-object", lambda doc: doc.__setitem__("metadata", []), "$.metadata must be"),
    (
        "no-component",
        lambda doc: doc["metadata"].pop("component"),
        "$.metadata.component is missing",
    ),
    (
        "component-not-object",
        lambda doc: doc["metadata"].__setitem__("component", "firmware"),
        "$.metadata.component must be a JSON object",
    ),
    ("no-type", _delete_firmware("type"), "$.metadata.component.type is missing"),
    ("type-not-firmware", _set_firmware("type", "application"), "'application', not 'firmware'"),
    ("type-not-string", _set_firmware("type", 7), "type must be a JSON string"),
    ("no-hashes", _delete_firmware("hashes"), "hashes is missing"),
    ("hashes-not-array", _set_firmware("hashes", {"SHA-256": "x"}), "must be a JSON array"),
    ("hash-not-object", _set_firmware("hashes", ["SHA-256"]), "non-object entry"),
    ("no-sha256", _set_firmware("hashes", []), "0 SHA-256 hashes"),
    (
        "only-other-algorithm",
        _set_firmware("hashes", [{"alg": "SHA-512", "content": "b" * 128}]),
        "0 SHA-256 hashes",
    ),
    (
        "two-sha256",
        _set_firmware(
            "hashes",
            [
                {"alg": "SHA-256", "content": FIRMWARE_SHA256},
                {"alg": "SHA-256", "content": OTHER_SHA256},
            ],
        ),
        "2 SHA-256 hashes",
    ),
    (
        "upper-case-hex",
        _set_firmware("hashes", [{"alg": "SHA-256", "content": FIRMWARE_SHA256.upper()}]),
        "64 lower-case hex",
    ),
    (
        "short-hex",
        _set_firmware("hashes", [{"alg": "SHA-256", "content": FIRMWARE_SHA256[:-1]}]),
        "64 lower-case hex",
    ),
    (
        "trailing-newline",
        _set_firmware("hashes", [{"alg": "SHA-256", "content": FIRMWARE_SHA256 + "\n"}]),
        "64 lower-case hex",
    ),
    ("no-content", _set_firmware("hashes", [{"alg": "SHA-256"}]), "64 lower-case hex"),
    (
        "content-not-string",
        _set_firmware("hashes", [{"alg": "SHA-256", "content": 12}]),
        "64 lower-case hex",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [(mutate, fragment) for _, mutate, fragment in MALFORMED_DOCUMENTS],
    ids=[case for case, _, _ in MALFORMED_DOCUMENTS],
)
def test_bound_sha256_rejects_malformed_documents(
    sbom_bytes: bytes, mutate: Mutate, fragment: str
) -> None:
    doc = copy.deepcopy(json.loads(sbom_bytes))
    mutate(doc)
    with pytest.raises(SbomValidationError) as raised:
        bound_firmware_sha256(json.dumps(doc).encode())
    assert fragment in str(raised.value)


# Raw inputs that are not a JSON object at all, or not strict JSON.
GARBAGE: list[tuple[str, Any, str]] = [
    ("empty", b"", "not valid JSON"),
    ("binary", b"\x7fELF\x02\x01\x01\x00", "not valid JSON"),
    ("not-utf8", b'{"a": "\xff"}', "not UTF-8"),
    ("array", b"[1, 2]", "not a JSON object"),
    ("string", b'"CycloneDX"', "not a JSON object"),
    ("null", b"null", "not a JSON object"),
    ("nan", b'{"bomFormat": "CycloneDX", "x": NaN}', "NaN is not JSON"),
    ("truncated", b'{"bomFormat": "CycloneDX", "metadata": {', "not valid JSON"),
    ("deep-nesting", b"[" * 200_000 + b"]" * 200_000, "not valid JSON"),
    ("str-not-bytes", '{"bomFormat": "CycloneDX"}', "must be bytes"),
]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [(data, fragment) for _, data, fragment in GARBAGE],
    ids=[case for case, _, _ in GARBAGE],
)
def test_bound_sha256_rejects_garbage(data: Any, fragment: str) -> None:
    with pytest.raises(SbomValidationError) as raised:
        bound_firmware_sha256(data)
    assert fragment in str(raised.value)


def test_duplicate_keys_are_refused_so_no_reader_sees_another_hash(sbom_bytes: bytes) -> None:
    # A second "metadata" key would win with json.loads; a different parser may
    # take the first one, so the document is ambiguous and refused.
    text = sbom_bytes.decode().rstrip()
    assert text.endswith("}")
    forged = (
        text[:-1]
        + ', "metadata": {"component": {"type": "firmware", "hashes": ['
        + (f'{{"alg": "SHA-256", "content": "{OTHER_SHA256}"}}]}}}}}}')
    )
    with pytest.raises(SbomValidationError, match="duplicate key 'metadata'"):
        bound_firmware_sha256(forged.encode())


def test_validate_sbom_accepts_a_generated_sbom(sbom_bytes: bytes) -> None:
    validate_sbom(sbom_bytes)


# Schema-invalid documents: (case, change, fragment of the error).
SCHEMA_INVALID: list[tuple[str, Mutate, str]] = [
    ("unknown-property", lambda doc: doc.__setitem__("pumpguard", 1), "'pumpguard' was unexpected"),
    ("bad-firmware-type", _set_firmware("type", "gadget"), "$.metadata.component.type"),
    (
        "bad-hash-content",
        _set_firmware("hashes", [{"alg": "SHA-256", "content": "xyz"}]),
        "$.metadata.component.hashes[0].content",
    ),
    ("bad-serial", lambda doc: doc.__setitem__("serialNumber", "42"), "$.serialNumber"),
    ("old-spec-version", lambda doc: doc.__setitem__("specVersion", "1.5"), "requires '1.6'"),
]


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [(mutate, fragment) for _, mutate, fragment in SCHEMA_INVALID],
    ids=[case for case, _, _ in SCHEMA_INVALID],
)
def test_validate_sbom_rejects_schema_invalid_documents_naming_the_place(
    sbom_bytes: bytes, mutate: Mutate, fragment: str
) -> None:
    doc = copy.deepcopy(json.loads(sbom_bytes))
    mutate(doc)
    with pytest.raises(SbomValidationError) as raised:
        validate_sbom(json.dumps(doc).encode())
    assert fragment in str(raised.value)


def test_validate_sbom_lists_at_most_three_errors(sbom_bytes: bytes) -> None:
    doc = json.loads(sbom_bytes)
    doc["extra"] = 1
    doc["serialNumber"] = "42"
    doc["version"] = "one"
    _firmware(doc)["type"] = "gadget"
    with pytest.raises(SbomValidationError) as raised:
        validate_sbom(json.dumps(doc).encode())
    message = str(raised.value)
    assert message.count("; at ") == 2
    assert message.endswith("; and more")


@pytest.mark.parametrize(
    ("data", "fragment"),
    [(b"not json", "not valid JSON"), (b"[]", "not a JSON object")],
    ids=["not-json", "array"],
)
def test_validate_sbom_rejects_garbage(data: bytes, fragment: str) -> None:
    with pytest.raises(SbomValidationError, match=fragment):
        validate_sbom(data)
