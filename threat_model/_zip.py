"""Writing a reproducible zip: the same files always give the same bytes."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping

__all__ = ["deterministic_zip"]

#: The earliest time a zip entry can carry: nothing about the build leaks in.
_EPOCH = (1980, 1, 1, 0, 0, 0)


def deterministic_zip(files: Mapping[str, bytes]) -> bytes:
    """Zip ``files`` (POSIX relative name -> bytes) reproducibly.

    Entries are sorted by name and carry a fixed date, fixed ``0644``
    permissions, a Unix origin and DEFLATE at level 9, so only the contents
    decide the archive's bytes (for one zlib version).
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so external_attr is read as a mode
            info.external_attr = (0o100644 & 0xFFFF) << 16
            archive.writestr(info, files[name], compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    return buffer.getvalue()
