"""``pumpguard sbom generate``."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from pumpguard.cli import cli, main
from sbom import bound_firmware_sha256, validate_sbom


@pytest.fixture
def firmware(tmp_path: Path) -> Path:
    """A firmware image of 2.5 MiB, so hashing takes several 1 MiB chunks."""
    path = tmp_path / "build.img"
    path.write_bytes(os.urandom(2 * 1024 * 1024 + 512 * 1024))
    return path


def _args(firmware: Path, out: Path, *extra: str) -> list[str]:
    return [
        "sbom",
        "generate",
        "--product",
        "sigma-spectrum",
        "--version",
        "8.1.0",
        "--firmware",
        str(firmware),
        "--out",
        str(out),
        *extra,
    ]


def test_generate_writes_a_valid_sbom_bound_to_the_firmware(
    firmware: Path, example_manifest: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sbom.cdx.json"
    extra = ["--hardware-id", "rev-c", "--hardware-id", "rev-d"]
    extra += ["--components", str(example_manifest)]
    result = CliRunner().invoke(cli, _args(firmware, out, *extra))

    assert result.exit_code == 0, result.output
    document = out.read_bytes()
    validate_sbom(document)
    assert bound_firmware_sha256(document) == hashlib.sha256(firmware.read_bytes()).hexdigest()
    component = json.loads(document)["metadata"]["component"]
    props = {(p["name"], p["value"]) for p in component["properties"]}
    assert ("pumpguard:firmware:size", str(firmware.stat().st_size)) in props
    assert ("pumpguard:firmware:name", "build.img") in props
    assert ("pumpguard:hardware-id", "rev-c") in props
    assert ("pumpguard:hardware-id", "rev-d") in props
    assert f"wrote {out}: 3 components" in result.output


def test_generate_json_prints_a_summary(
    firmware: Path, example_manifest: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sbom.cdx.json"
    result = CliRunner().invoke(
        cli, _args(firmware, out, "--components", str(example_manifest), "--json")
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "out": str(out),
        "components": 3,
        "firmware_sha256": hashlib.sha256(firmware.read_bytes()).hexdigest(),
    }


def test_generate_records_firmware_name_and_supplier_options(
    firmware: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sbom.cdx.json"
    extra = ["--firmware-name", "firmware.img", "--supplier", "Acme Medical Devices", "--json"]
    result = CliRunner().invoke(cli, _args(firmware, out, *extra))

    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["components"] == 0
    metadata = json.loads(out.read_bytes())["metadata"]
    assert metadata["supplier"] == {"name": "Acme Medical Devices"}
    names = [p["value"] for p in metadata["component"]["properties"]]
    assert "firmware.img" in names


def test_generate_replaces_an_existing_sbom_without_leaving_temporary_files(
    firmware: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sbom.cdx.json"
    out.write_text("old")
    result = CliRunner().invoke(cli, _args(firmware, out))

    assert result.exit_code == 0, result.output
    validate_sbom(out.read_bytes())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build.img", "sbom.cdx.json"]


def test_generate_help_describes_the_options() -> None:
    result = CliRunner().invoke(cli, ["sbom", "generate", "--help"])

    assert result.exit_code == 0
    for option in ("--product", "--version", "--firmware", "--hardware-id", "--components"):
        assert option in result.output
    for option in ("--supplier", "--out", "--json"):
        assert option in result.output


@pytest.mark.parametrize(
    ("extra", "manifest", "code", "fragment"),
    [
        ([], '[[component]]\nname = "x"\nversion = "1"\ncolour = "red"\n', 2, "'colour'"),
        (["--hardware-id", "rev c"], None, 1, "hardware id 'rev c'"),
        (["--version", "eight"], None, 1, "not a semantic version"),
    ],
    ids=["bad-manifest", "bad-hardware-id", "bad-version"],
)
def test_generate_errors_are_one_line_with_the_error_exit_code(
    firmware: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    manifest: str | None,
    code: int,
    fragment: str,
) -> None:
    out = tmp_path / "sbom.cdx.json"
    if manifest is not None:
        path = tmp_path / "components.toml"
        path.write_text(manifest)
        extra = [*extra, "--components", str(path)]

    with pytest.raises(SystemExit) as exited:
        main(_args(firmware, out, *extra))

    assert exited.value.code == code
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert err.count("\n") == 1
    assert fragment in err
    assert not out.exists()


def test_generate_into_a_missing_directory_is_a_clean_error(
    firmware: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(_args(firmware, tmp_path / "absent" / "sbom.cdx.json"))

    assert exited.value.code == 1
    assert capsys.readouterr().err.startswith("error: cannot write ")


def test_generate_refuses_to_overwrite_the_firmware(
    firmware: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = firmware.read_bytes()
    with pytest.raises(SystemExit) as exited:
        main(_args(firmware, firmware))

    assert exited.value.code == 1
    assert "would overwrite the input" in capsys.readouterr().err
    assert firmware.read_bytes() == before
