"""CPE names split into the parts advisories are matched by."""

from __future__ import annotations

import dataclasses
import re

__all__ = ["Cpe", "parse_cpe"]

# Split on colons that are not backslash-escaped.
_SPLIT_RE = re.compile(r"(?<!\\):")
ANY = "*"


@dataclasses.dataclass(frozen=True)
class Cpe:
    """The parts of a CPE name pumpguard matches on, in lower case.

    ``*`` means any value (CPE 2.3's ANY), ``-`` not applicable.

    Attributes:
        part: ``a`` application, ``o`` operating system, ``h`` hardware, or ``*``.
        vendor: Vendor, e.g. ``zlib``.
        product: Product, e.g. ``zlib``.
        version: Version, ``*`` or ``-``.
        update: Update (e.g. ``rc1``), ``*`` or ``-``.
    """

    part: str
    vendor: str
    product: str
    version: str
    update: str


def parse_cpe(text: str) -> Cpe | None:
    """Parse a CPE 2.3 formatted string or a CPE 2.2 URI.

    Returns:
        The parsed name, or ``None`` if ``text`` is neither, or has no product.
    """
    text = text.strip()
    lowered = text.lower()
    if lowered.startswith("cpe:2.3:"):
        parts = _SPLIT_RE.split(text[len("cpe:2.3:") :])
        if len(parts) != 11:
            return None
    elif lowered.startswith("cpe:/"):
        parts = text[len("cpe:/") :].split(":")
        parts += [ANY] * (5 - len(parts))
        parts = [p if p else ANY for p in parts]
    else:
        return None
    part, vendor, product, version, update = (p.lower() for p in parts[:5])
    if product in ("", ANY, "-"):
        return None
    return Cpe(
        part=part or ANY,
        vendor=vendor or ANY,
        product=product,
        version=version or ANY,
        update=update or ANY,
    )
