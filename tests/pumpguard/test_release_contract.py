"""The release contract every component shares (pumpguard.release)."""

from __future__ import annotations

from typing import Any

import pytest

from pumpguard.errors import ReleaseContractError
from pumpguard.release import ReleaseInfo, SemVer, split_target_path, validate_product

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
