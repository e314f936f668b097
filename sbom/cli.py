"""The ``pumpguard sbom`` commands.

Errors are raised as :class:`sbom.errors.SbomError` subclasses; the umbrella CLI
(:mod:`pumpguard.cli`) prints them as one line and exits with their code.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import click

from pumpguard.fsutil import atomic_write_bytes
from sbom.binding import bound_firmware_sha256
from sbom.errors import SbomError
from sbom.generate import build_firmware_sbom

__all__ = ["sbom"]

_CHUNK = 1024 * 1024


def _hash_file(path: Path) -> tuple[str, int]:
    """sha256 and size of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except OSError as e:
        raise SbomError(f"cannot read firmware {path}: {e.strerror or e}") from e
    return digest.hexdigest(), size


@click.group()
def sbom() -> None:
    """Generate and check CycloneDX SBOMs of firmware releases."""


@sbom.command()
@click.option("--product", required=True, help="Product line, e.g. sigma-spectrum.")
@click.option("--version", required=True, help="Semantic version of the release.")
@click.option(
    "--firmware",
    "firmware",
    required=True,
    type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path),
    help="The firmware image the SBOM describes.",
)
@click.option(
    "--firmware-name",
    default=None,
    help="File name recorded for the image (default: the name of --firmware).",
)
@click.option(
    "--hardware-id",
    "hardware_ids",
    multiple=True,
    help="Pump hardware revision the image runs on; repeat for several.",
)
@click.option(
    "--components",
    "components",
    type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path),
    default=None,
    help="TOML component manifest (docs/sbom-manifest.md).",
)
@click.option(
    "--supplier",
    default=None,
    help="Supplier of the firmware (default: the manifest's [supplier], else none).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Where to write the SBOM, e.g. sbom.cdx.json.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def generate(
    product: str,
    version: str,
    firmware: Path,
    firmware_name: str | None,
    hardware_ids: tuple[str, ...],
    components: Path | None,
    supplier: str | None,
    out: Path,
    as_json: bool,
) -> None:
    """Write the CycloneDX 1.6 SBOM of a firmware image.

    The SBOM's firmware component carries the image's sha256 and size, so it is
    bound to exactly this image. The file is written atomically.
    """
    for source in (firmware, components):
        if source is not None and out.resolve() == source.resolve():
            raise SbomError(f"--out {out} would overwrite the input {source}")
    sha256, size = _hash_file(firmware)
    document = build_firmware_sbom(
        product=product,
        version=version,
        firmware_name=firmware_name if firmware_name is not None else firmware.name,
        firmware_sha256=sha256,
        firmware_size=size,
        hardware_ids=hardware_ids,
        supplier=supplier,
        components_manifest=components,
    )
    try:
        atomic_write_bytes(out, document)
    except OSError as e:
        raise SbomError(f"cannot write {out}: {e.strerror or e}") from e
    count = len(json.loads(document).get("components", []))
    bound = bound_firmware_sha256(document)
    if as_json:
        summary = {"out": str(out), "components": count, "firmware_sha256": bound}
        click.echo(json.dumps(summary))
    else:
        click.echo(f"wrote {out}: {count} components, firmware sha256 {bound}")
