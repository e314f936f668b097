"""The roles an API token carries, apart from the Flask side of :mod:`update_server.auth`.

``pumpguard server token create --role`` offers them as choices, and the
command's ``--help`` must work on a base install, without Flask.
"""

from __future__ import annotations

__all__ = ["ROLES"]

ROLES = ("admin", "operator", "release-engineer", "reviewer")
