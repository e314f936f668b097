"""CPE names split into the parts advisories are matched by.

NVD writes CPE 2.3 formatted strings (``cpe:2.3:a:microsoft:visual_c\\+\\+:...``);
SBOMs may carry CPE 2.2 URIs (``cpe:/a:microsoft:visual_c%2b%2b:2015``). A URI is
converted to the formatted string it names before it is split, as NISTIR 7695
(CPE Naming 2.3) says: unbind the URI to a well-formed name (section 6.1.3:
``decode`` of each component, ``unpack`` of a packed edition), then bind that to
a formatted string (section 6.2.2). Both forms are then compared as the same
text. No library on PyPI was used: ``cpe`` 1.3.1 leaves the percent-escapes in
place (``visual_c\\%2b\\%2b``) and does not unpack a packed edition.
"""

from __future__ import annotations

import dataclasses
import re

__all__ = ["Cpe", "parse_cpe", "uri_to_formatted_string"]

# Split on colons that are not backslash-escaped.
_SPLIT_RE = re.compile(r"(?<!\\):")
ANY = "*"

# NISTIR 7695 section 6.1.2.3.2 (pct_encode): the characters a URI percent-encodes.
_PCT_DECODED = {f"%{ord(c):02x}": c for c in "!\"#$%&'()*+,/:;<=>?@[\\]^`{|}~"}
# The URI's components, in order; the edition may pack five attributes.
_URI_COMPONENTS = ("part", "vendor", "product", "version", "update", "edition", "language")
_PACKED = ("edition", "sw_edition", "target_sw", "target_hw", "other")
_FS_ATTRIBUTES = (*_URI_COMPONENTS, *_PACKED[1:])


class _CpeDecodeError(ValueError):
    pass


def _decode(component: str) -> str:
    """One URI component as a formatted string's value (sections 6.1.3.4 and 6.2.2.2).

    ``decode`` gives the well-formed name's value: ``.``, ``-`` and ``~`` and
    every percent-decoded character quoted with a backslash, ``%01`` and
    ``%02`` the wildcards ``?`` and ``*``. Binding it to a formatted string
    then unquotes ``.``, ``-`` and ``_``, the only change ``bind_value_for_fs``
    makes to a value.
    """
    if component == "":
        return ANY
    if component == "-":
        return "-"
    text = component.lower()
    out: list[str] = []
    i = 0
    embedded = False
    while i < len(text):
        c = text[i]
        if c != "%":
            out.append("\\~" if c == "~" else c)
            i += 1
            embedded = True
            continue
        form = text[i : i + 3]
        if form == "%01":
            # A run of %01 may only lead or trail the value.
            leading = not embedded and (i == 0 or text[i - 3 : i] == "%01")
            trailing = i == len(text) - 3 or (embedded and text[i + 3 : i + 6] == "%01")
            if not (leading or trailing):
                raise _CpeDecodeError(f"embedded %01 in {component!r}")
            out.append("?")
        elif form == "%02":
            if i not in (0, len(text) - 3):
                raise _CpeDecodeError(f"embedded %02 in {component!r}")
            out.append("*")
            embedded = True
        elif form in _PCT_DECODED:
            out.append("\\" + _PCT_DECODED[form])
            embedded = True
        else:
            raise _CpeDecodeError(f"{form!r} is not a percent-encoding CPE URIs use")
        i += 3
    return "".join(out)


def uri_to_formatted_string(uri: str) -> str | None:
    """The CPE 2.3 formatted string a CPE 2.2 URI names (NISTIR 7695 sections 6.1.3, 6.2.2).

    Args:
        uri: e.g. ``cpe:/a:microsoft:visual_c%2b%2b:2015``.

    Returns:
        e.g. ``cpe:2.3:a:microsoft:visual_c\\+\\+:2015:*:*:*:*:*:*:*``, or ``None``
        if ``uri`` is not a CPE URI or breaks the binding's rules.
    """
    text = uri.strip()
    if not text.lower().startswith("cpe:/"):
        return None
    components = text[len("cpe:/") :].split(":")
    if len(components) > len(_URI_COMPONENTS):
        return None
    components += [""] * (len(_URI_COMPONENTS) - len(components))
    values: dict[str, str] = dict.fromkeys(_FS_ATTRIBUTES, ANY)
    try:
        for name, component in zip(_URI_COMPONENTS, components, strict=True):
            if name == "edition" and component.startswith("~"):
                packed = component.split("~")
                if len(packed) != len(_PACKED) + 1:
                    return None
                values.update(zip(_PACKED, (_decode(p) for p in packed[1:]), strict=True))
            else:
                values[name] = _decode(component)
    except _CpeDecodeError:
        return None
    return "cpe:2.3:" + ":".join(values[name] for name in _FS_ATTRIBUTES)


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
        formatted = uri_to_formatted_string(text)
        if formatted is None:
            return None
        parts = _SPLIT_RE.split(formatted[len("cpe:2.3:") :])
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
