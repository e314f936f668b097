"""The update server: TUF distribution, verified publishing, devices and check-ins.

Flask application factory with one blueprint per feature (DESIGN.md, Server).
"""

from update_server.app import create_app
from update_server.config import ServerConfig, load_config

__all__ = ["ServerConfig", "create_app", "load_config"]
