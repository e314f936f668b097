"""Keeping the server's paths out of what API clients are told (issue 19, finding 7).

An error answered to a client names no path on the server: the messages of
:class:`signer.BundleError`, of the repository and of OSError name the
upload's unpacked bundle, the data folder or key files, which tell an
attacker the layout of the machine. The log keeps the original text.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from update_server import spool
from update_server.config import ServerConfig

__all__ = ["public_message"]

#: Labels that stand for the server's own paths in what clients are told.
_UPLOADS_LABEL = "the upload"
_DATA_LABEL = "the server's data folder"
_TEMP_LABEL = "a temporary folder"
_KEYS_LABEL = "the server's key folder"


def public_message(text: str, config: ServerConfig) -> str:
    """``text`` with every path of the server replaced by what it stands for.

    An error answered to a client names no path on the server (issue 19,
    finding 7): an upload's unpacked bundle, the data folder, key files and
    the temporary folder become a label; the log keeps the original.
    """
    roots: dict[str, str] = {}
    for path, label in (
        (config.data_dir / spool.UPLOADS_DIR, _UPLOADS_LABEL),
        (config.data_dir, _DATA_LABEL),
        (Path(tempfile.gettempdir()), _TEMP_LABEL),
        *(
            (Path(config.key_spec(spec)).parent, _KEYS_LABEL)
            for spec in (config.snapshot_key, config.timestamp_key)
            if not spec.startswith(("pkcs11:", "hsm:"))
        ),
    ):
        for form in (path, path.absolute(), path.resolve()):
            if len(str(form)) > 1:
                roots.setdefault(str(form), label)
    for root in sorted(roots, key=len, reverse=True):
        text = re.sub(re.escape(root) + r"(?=$|[/\s'\":,)])[^\s'\":,)]*", roots[root], text)
    return text
