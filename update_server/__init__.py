"""The update server: TUF distribution, verified publishing, devices and check-ins.

Flask application factory with one blueprint per feature (DESIGN.md, Server).
The names below are imported on first use (:mod:`pumpguard.lazy`), so
``import update_server`` needs neither Flask nor a database driver: the
``pumpguard`` CLI and the tools of a base install import this package.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from update_server.app import create_app
    from update_server.config import ServerConfig, load_config
else:
    from pumpguard.lazy import lazy_exports

    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "create_app": "update_server.app",
            "ServerConfig": "update_server.config",
            "load_config": "update_server.config",
        },
    )

__all__ = ["ServerConfig", "create_app", "load_config"]
