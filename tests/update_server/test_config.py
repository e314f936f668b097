"""Server configuration: server.toml, PUMPGUARD_* and DATABASE_URL overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from pumpguard.errors import ConfigError
from update_server.config import load_config


def test_defaults_put_sqlite_in_the_data_folder(tmp_path: Path) -> None:
    config = load_config(tmp_path, environ={})
    assert config.database_url == f"sqlite:///{tmp_path / 'server.db'}"
    assert config.poll_interval == 60
    assert config.key_spec("keys/snapshot.key") == str(tmp_path / "keys/snapshot.key")
    assert config.key_spec("pkcs11:token=hsm;id=%01") == "pkcs11:token=hsm;id=%01"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    (tmp_path / "server.toml").write_text("poll_interval = 30\nclock_skew = 120\n")
    config = load_config(
        tmp_path,
        environ={
            "PUMPGUARD_POLL_INTERVAL": "15",
            "DATABASE_URL": "postgresql+psycopg://db/pumpguard",
            "PUMPGUARD_REFRESH_INTERVAL": "0",
        },
    )
    assert config.poll_interval == 15
    assert config.clock_skew == 120
    assert config.refresh_interval == 0
    assert config.database_url == "postgresql+psycopg://db/pumpguard"


@pytest.mark.parametrize(
    ("toml", "environ", "message"),
    [
        ("pol_interval = 30\n", {}, "unknown setting"),
        ("poll_interval = [\n", {}, "server.toml"),
        ('poll_interval = "often"\n', {}, "poll_interval must be a positive integer"),
        ("poll_interval = 0\n", {}, "poll_interval must be a positive integer"),
        ("", {"PUMPGUARD_CLOCK_SKEW": "soon"}, "PUMPGUARD_CLOCK_SKEW='soon' is not an integer"),
        ("refresh_interval = -1\n", {}, "refresh_interval"),
    ],
)
def test_bad_configuration_names_what_is_wrong(
    tmp_path: Path, toml: str, environ: dict[str, str], message: str
) -> None:
    (tmp_path / "server.toml").write_text(toml)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path, environ=environ)
