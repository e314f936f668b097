"""The release contract every component shares (pumpguard.release)."""

from __future__ import annotations

from typing import Any

import pytest

from pumpguard.errors import ReleaseContractError
from pumpguard.release import (
    ReleaseInfo,
    SemVer,
    split_target_path,
    validate_hardware_id,
    validate_product,
)

SHA = "a" * 64


def _info(**overrides: Any) -> ReleaseInfo:
    fields: dict[str, Any] = {
        "product": "sigma-spectrum",
        "version": "1.2.3",
        "release_counter": 7,
        "hardware_ids": ("rev-b",),
        "sbom_sha256": SHA,
        "notes": "fix",
    }
    fields.update(overrides)
    return ReleaseInfo(**fields)


def test_round_trips_through_custom_field() -> None:
    info = _info(hardware_ids=("rev-b", "rev-c"))
    assert ReleaseInfo.from_custom(info.to_custom(), "sigma-spectrum/1.2.3/firmware.img") == info
    assert info.to_custom()["pumpguard"]["sbom"] == {
        "path": "sigma-spectrum/1.2.3/sbom.cdx.json",
        "sha256": SHA,
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"product": "Sigma"}, "product"),
        ({"product": "targets"}, "reserved"),
        ({"product": "-x"}, "product"),
        ({"version": "1.2"}, "semantic version"),
        ({"version": "01.2.3"}, "semantic version"),
        ({"release_counter": 0}, "release_counter"),
        ({"release_counter": True}, "release_counter"),
        ({"release_counter": 2**63}, "release_counter"),
        ({"hardware_ids": ()}, "at least one hardware id"),
        ({"hardware_ids": ("rev b",)}, "hardware id"),
        ({"hardware_ids": ("a", "a")}, "repeated"),
        ({"sbom_sha256": "ABC"}, "sha256"),
        ({"notes": "x" * 5000}, "notes"),
    ],
)
def test_rejects_invalid_release_fields(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ReleaseContractError, match=message):
        _info(**overrides)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c.pop("pumpguard"), "lacks the 'pumpguard'"),
        (lambda c: c["pumpguard"].pop("release_counter"), "release_counter"),
        (lambda c: c["pumpguard"].update(release_counter="7"), "wrong type"),
        (lambda c: c["pumpguard"].update(hardware_ids="rev-b"), "wrong type"),
        (lambda c: c["pumpguard"]["sbom"].update(path="other/1.2.3/sbom.cdx.json"), "sbom path"),
        (lambda c: c["pumpguard"].pop("sbom"), "sbom"),
    ],
)
def test_rejects_malformed_custom_field(mutate: Any, message: str) -> None:
    custom = _info().to_custom()
    mutate(custom)
    with pytest.raises(ReleaseContractError, match=message):
        ReleaseInfo.from_custom(custom)


def test_rejects_release_metadata_under_another_target_path() -> None:
    with pytest.raises(ReleaseContractError, match="carries release metadata"):
        ReleaseInfo.from_custom(_info().to_custom(), "sigma-spectrum/9.9.9/firmware.img")


@pytest.mark.parametrize(
    "ordered",
    [
        [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.1.0",
            "2.0.0",
            "10.0.0",
        ],
    ],
)
def test_semver_precedence_follows_the_specification(ordered: list[str]) -> None:
    parsed = [SemVer.parse(v) for v in ordered]
    assert parsed == sorted(parsed)
    assert [str(p) for p in parsed] == ordered
    assert SemVer.parse("1.0.0+build.5") == SemVer.parse("1.0.0")


def test_runs_on_only_listed_hardware() -> None:
    info = _info(hardware_ids=("rev-b",))
    assert info.runs_on("rev-b")
    assert not info.runs_on("rev-a")


@pytest.mark.parametrize("path", ["a/b", "a/b/c/d", "a//c", "/b/c"])
def test_split_target_path_rejects_other_shapes(path: str) -> None:
    with pytest.raises(ReleaseContractError):
        split_target_path(path)


def test_validate_product_accepts_product_names() -> None:
    assert validate_product("sigma-spectrum") == "sigma-spectrum"


# A trailing newline ("$" matches before it), an embedded newline, and digits
# outside ASCII ("\\d" matches any Unicode digit, and int() then parses them)
# would otherwise reach signed target paths and URLs.
ARABIC_ZERO = "\u0660"  # ARABIC-INDIC DIGIT ZERO
FULLWIDTH_ONE = "\uff11"  # FULLWIDTH DIGIT ONE
DEVANAGARI_TWO = "\u0968"  # DEVANAGARI DIGIT TWO
SUPERSCRIPT_TWO = "\u00b2"  # str.isdigit() is True for it

BAD_VERSIONS = [
    "1.0.0\n",
    "1.0.0\r\n",
    "\n1.0.0",
    "1.0\n.0",
    "1.0.0-rc.1\n",
    "1.0.0+build\n",
    f"1{ARABIC_ZERO}.0.0",
    f"{ARABIC_ZERO}.0.0",
    f"{FULLWIDTH_ONE}.0.0",
    f"1{FULLWIDTH_ONE}.0.0",
    f"1.{FULLWIDTH_ONE}.0",
    f"1.1{FULLWIDTH_ONE}.0",
    f"1.0.1{FULLWIDTH_ONE}",
    f"1.0.0-rc.1{FULLWIDTH_ONE}",
    f"1.0.{DEVANAGARI_TWO}",
    f"1.0.0-rc.{ARABIC_ZERO}",
    f"1.0.0-{FULLWIDTH_ONE}",
    f"1.0.0-{SUPERSCRIPT_TWO}",
    f"1.0.0-{DEVANAGARI_TWO}a",
]
BAD_PRODUCTS = [
    "sigma\n",
    "sigma-spectrum\n",
    "sigma\nspectrum",
    "\nsigma",
    "root\n",
    "targets\n",
    f"sigma{ARABIC_ZERO}",
    f"sigma-{FULLWIDTH_ONE}",
]
BAD_HARDWARE_IDS = [
    "rev-b\n",
    "rev-b\r\n",
    "rev\nb",
    "\nrev-b",
    f"rev-{ARABIC_ZERO}",
    f"rev-{FULLWIDTH_ONE}",
    f"{DEVANAGARI_TWO}rev",
]
BAD_SHA256 = [SHA + "\n", SHA[:32] + "\n" + SHA[33:], SHA[:-1] + ARABIC_ZERO]


def _ids(values: list[str]) -> list[str]:
    return [ascii(v) for v in values]


@pytest.mark.parametrize("version", BAD_VERSIONS, ids=_ids(BAD_VERSIONS))
def test_semver_rejects_newlines_and_non_ascii_digits(version: str) -> None:
    with pytest.raises(ReleaseContractError, match="version"):
        SemVer.parse(version)
    with pytest.raises(ReleaseContractError, match="version"):
        _info(version=version)


@pytest.mark.parametrize("product", BAD_PRODUCTS, ids=_ids(BAD_PRODUCTS))
def test_product_rejects_newlines_and_non_ascii_digits(product: str) -> None:
    with pytest.raises(ReleaseContractError, match="product"):
        validate_product(product)
    with pytest.raises(ReleaseContractError, match="product"):
        _info(product=product)


@pytest.mark.parametrize("hardware_id", BAD_HARDWARE_IDS, ids=_ids(BAD_HARDWARE_IDS))
def test_hardware_id_rejects_newlines_and_non_ascii_digits(hardware_id: str) -> None:
    with pytest.raises(ReleaseContractError, match="hardware id"):
        validate_hardware_id(hardware_id)
    with pytest.raises(ReleaseContractError, match="hardware id"):
        _info(hardware_ids=("rev-a", hardware_id))


@pytest.mark.parametrize("sha256", BAD_SHA256, ids=_ids(BAD_SHA256))
def test_sbom_sha256_rejects_newlines_and_non_ascii_digits(sha256: str) -> None:
    with pytest.raises(ReleaseContractError, match="sbom sha256"):
        _info(sbom_sha256=sha256)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("product", "sigma\n"),
        ("version", "1.2.3\n"),
        ("version", f"1.2.3{ARABIC_ZERO}"),
        ("version", f"1.2.3{FULLWIDTH_ONE}"),
    ],
)
def test_custom_field_with_newline_or_non_ascii_digit_is_refused(field: str, value: str) -> None:
    custom = _info().to_custom()
    custom["pumpguard"][field] = value
    with pytest.raises(ReleaseContractError, match=field):
        ReleaseInfo.from_custom(custom)


def test_custom_field_hardware_id_with_newline_is_refused() -> None:
    custom = _info().to_custom()
    custom["pumpguard"]["hardware_ids"] = ["rev-b\n"]
    with pytest.raises(ReleaseContractError, match="hardware id"):
        ReleaseInfo.from_custom(custom)


@pytest.mark.parametrize(
    "version",
    ["0.0.0", "1.2.3", "10.20.30", "1.0.0-alpha", "1.0.0-rc.1", "1.0.0-0.3.7", "1.0.0+b.5"],
)
def test_semver_still_accepts_ascii_versions(version: str) -> None:
    assert str(SemVer.parse(version)) == version
    assert _info(version=version).version == version


def test_semver_parses_ascii_numbers_only() -> None:
    assert SemVer.parse("10.0.0") == SemVer(10, 0, 0)
    assert SemVer.parse("1.0.0-rc.10").prerelease == ("rc", 10)


@pytest.mark.parametrize("product", ["a", "sigma", "sigma-spectrum", "p2", "a" * 64])
def test_product_still_accepts_valid_names(product: str) -> None:
    assert validate_product(product) == product


@pytest.mark.parametrize("hardware_id", ["rev-b", "A", "rev_2.1", "x" * 64])
def test_hardware_id_still_accepts_valid_ids(hardware_id: str) -> None:
    assert validate_hardware_id(hardware_id) == hardware_id
