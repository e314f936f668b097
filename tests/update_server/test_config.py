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


RS = "refresh_interval must be a number of seconds"

# (case, server.toml, environment, fragment of the error)
OUT_OF_BOUNDS: list[tuple[str, str, dict[str, str], str]] = [
    # NaN silently disabled the re-signing scheduler; inf killed its thread.
    ("toml-refresh-nan", "refresh_interval = nan\n", {}, RS),
    ("toml-refresh-inf", "refresh_interval = inf\n", {}, RS),
    ("toml-refresh-minus-inf", "refresh_interval = -inf\n", {}, RS),
    ("toml-refresh-1e400", "refresh_interval = 1e400\n", {}, RS),
    ("toml-refresh-above-a-day", "refresh_interval = 86401\n", {}, "from 0 to 86400"),
    ("toml-refresh-bool", "refresh_interval = true\n", {}, RS),
    ("env-refresh-nan", "", {"PUMPGUARD_REFRESH_INTERVAL": "nan"}, RS),
    ("env-refresh-inf", "", {"PUMPGUARD_REFRESH_INTERVAL": "inf"}, RS),
    ("env-refresh-Infinity", "", {"PUMPGUARD_REFRESH_INTERVAL": "Infinity"}, RS),
    ("env-refresh-1e999", "", {"PUMPGUARD_REFRESH_INTERVAL": "1e999"}, RS),
    ("env-refresh-1e300", "", {"PUMPGUARD_REFRESH_INTERVAL": "1e300"}, "from 0 to 86400"),
    ("toml-poll-above-a-day", "poll_interval = 86401\n", {}, "poll_interval must be at most"),
    ("env-poll-huge", "", {"PUMPGUARD_POLL_INTERVAL": "9" * 30}, "poll_interval must be at most"),
    ("toml-poll-nan", "poll_interval = nan\n", {}, "poll_interval must be a positive integer"),
    ("toml-poll-bool", "poll_interval = true\n", {}, "poll_interval must be a positive integer"),
    ("toml-skew-int64-max", "clock_skew = 9223372036854775807\n", {}, "clock_skew must be at most"),
    ("toml-skew-inf", "clock_skew = inf\n", {}, "clock_skew must be a positive integer"),
    ("env-skew-nan", "", {"PUMPGUARD_CLOCK_SKEW": "nan"}, "PUMPGUARD_CLOCK_SKEW='nan' is not an"),
    ("toml-bundle-float", "max_bundle_bytes = 1e12\n", {}, "max_bundle_bytes must be a positive"),
    ("toml-bundle-huge", "max_bundle_bytes = 9223372036854775807\n", {}, "must be at most"),
    ("env-bundle-negative", "", {"PUMPGUARD_MAX_BUNDLE_BYTES": "-1"}, "must be a positive"),
]


@pytest.mark.parametrize(
    ("toml", "environ", "message"),
    [pytest.param(t, e, m, id=i) for i, t, e, m in OUT_OF_BOUNDS],
)
def test_numeric_settings_must_be_finite_and_within_bounds(
    tmp_path: Path, toml: str, environ: dict[str, str], message: str
) -> None:
    (tmp_path / "server.toml").write_text(toml)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path, environ=environ)


@pytest.mark.parametrize(
    ("toml", "setting", "value"),
    [
        ("refresh_interval = 0\n", "refresh_interval", 0),
        ("refresh_interval = 0.1\n", "refresh_interval", 0.1),
        ("refresh_interval = 86400\n", "refresh_interval", 86400),
        ("poll_interval = 86400\n", "poll_interval", 86400),
        ("clock_skew = 86400\n", "clock_skew", 86400),
        ("max_bundle_bytes = 68719476736\n", "max_bundle_bytes", 64 << 30),
    ],
)
def test_numeric_settings_at_their_bounds_are_accepted(
    tmp_path: Path, toml: str, setting: str, value: float
) -> None:
    (tmp_path / "server.toml").write_text(toml)
    assert getattr(load_config(tmp_path, environ={}), setting) == value
