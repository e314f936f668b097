"""The component manifest the SBOM audit and assurance tests audit.

Known vulnerabilities (zlib), a known exploited one (golang.org/x/net) and a
component past its end of support (busybox), matching the advisories in
``tests/sbom/fixtures``.
"""

from __future__ import annotations

__all__ = ["ZLIB_SHA256", "audited_components"]

ZLIB_SHA256 = "8b54fb9bcf4d5a7078028e0520acddefb7900b3e66fec7f7175bb5b7d85ccdca"


def audited_components(
    zlib: str = "1.2.11",
    busybox: str = "1.35.0",
    zlib_hash: str | None = ZLIB_SHA256,
    eos: str = "2030-12-31",
) -> str:
    """The TOML component manifest; ``zlib_hash=None`` leaves zlib's hash out."""
    hashes = f'hashes = {{ sha256 = "{zlib_hash}" }}\n' if zlib_hash else ""
    return f"""
[supplier]
name = "Acme Medical Devices"

[[component]]
name = "zlib"
version = "{zlib}"
supplier = "Jean-loup Gailly and Mark Adler"
cpe = "cpe:2.3:a:zlib:zlib:{zlib}:*:*:*:*:*:*:*"
purl = "pkg:generic/zlib@{zlib}"
licenses = ["Zlib"]
support_level = "supported"
end_of_support = {eos}
{hashes}
[[component]]
name = "busybox"
version = "{busybox}"
supplier = "BusyBox project"
cpe = "cpe:2.3:a:busybox:busybox:{busybox}:*:*:*:*:*:*:*"
purl = "pkg:generic/busybox@{busybox}"
licenses = ["GPL-2.0-only"]
support_level = "limited"
end_of_support = 2025-06-30

[[component]]
name = "golang.org/x/net"
version = "0.16.0"
supplier = "The Go Authors"
purl = "pkg:golang/golang.org/x/net@v0.16.0"
licenses = ["BSD-3-Clause"]
support_level = "supported"
end_of_support = 2031-01-01
"""
