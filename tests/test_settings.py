"""Settings are read once from FLIGHTDESK_* variables and .env, and a bad value names its variable."""

from pathlib import Path

import pytest

from core_api.settings import SettingsError, load_settings, setting_variables


def test_defaults_leave_servers_embedded() -> None:
    settings = load_settings({}, dotenv=None)
    assert settings.database.url is None
    assert settings.redis.url is None
    assert settings.api.port == 8000
    assert settings.warehouse_path == Path(".flightdesk/warehouse.duckdb")


def test_environment_values_are_typed() -> None:
    settings = load_settings(
        {
            "FLIGHTDESK_API_PORT": "9100",
            "FLIGHTDESK_API_WORKERS": "4",
            "FLIGHTDESK_API_CORS_ORIGINS": "https://a.example, https://b.example",
            "FLIGHTDESK_WAREHOUSE_PATH": "/tmp/w.duckdb",
            "FLIGHTDESK_REDIS_TIMEOUT_SECONDS": "1.5",
        },
        dotenv=None,
    )
    assert settings.api.port == 9100
    assert settings.api.workers == 4
    assert settings.api.cors_origins == ("https://a.example", "https://b.example")
    assert settings.warehouse_path == Path("/tmp/w.duckdb")
    assert settings.redis.timeout_seconds == 1.5


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FLIGHTDESK_API_PORT", "eighty"),
        ("FLIGHTDESK_API_PORT", "70000"),
        ("FLIGHTDESK_API_WORKERS", "0"),
        ("FLIGHTDESK_LOG_LEVEL", "LOUD"),
        ("FLIGHTDESK_DATABASE_POOL_MAX", "-1"),
        ("FLIGHTDESK_OUTBOX_POLL_SECONDS", "0"),  # a relay polling without pause would spin on the database
        ("FLIGHTDESK_BOOKING_FARE_STRIPES", "0"),  # a bucket needs a row to count in
        ("FLIGHTDESK_BOOKING_FARE_STRIPES", "65"),  # beyond what flight_prices_stripes_in_range allows
        ("FLIGHTDESK_BOOKING_STRIPE_MIN_SEATS", "0"),
        ("FLIGHTDESK_AUTH_LOGIN_MAX_FAILURES_PER_EMAIL", "3"),  # fewer than per email and address makes no sense
        ("FLIGHTDESK_OPS_TOKEN", "short"),  # a guessable ops token would open the infrastructure's details
    ],
)
def test_malformed_value_names_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_settings({variable: value}, dotenv=None)


def test_unknown_variable_is_refused_as_a_likely_typo() -> None:
    with pytest.raises(SettingsError, match="FLIGHTDESK_API_PROT"):
        load_settings({"FLIGHTDESK_API_PROT": "1"}, dotenv=None)


def test_test_suite_variables_are_not_settings() -> None:
    load_settings({"FLIGHTDESK_TEST_DATABASE_URL": "postgresql://x"}, dotenv=None)


def test_dotenv_is_read_and_environment_wins(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text('# demo\nFLIGHTDESK_API_PORT=9001\nexport FLIGHTDESK_API_HOST="0.0.0.0"\n')
    settings = load_settings({"FLIGHTDESK_API_PORT": "9002"}, dotenv=dotenv)
    assert settings.api.port == 9002
    assert settings.api.host == "0.0.0.0"


def test_every_variable_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    missing = [variable for variable in setting_variables() if variable not in readme]
    assert not missing
