"""The flightdesk command as a user runs it: a separate process, configured through the environment."""

import os
import subprocess
import sys

import psycopg
import pytest

from core_api.users.schemas import Role


def flightdesk(*args: str, database_url: str, redis_url: str) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLIGHTDESK_")},
        "FLIGHTDESK_DATABASE_URL": database_url,
        "FLIGHTDESK_REDIS_URL": redis_url,
    }
    return subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "core_api.cli", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_create_user_makes_an_admin_with_an_argon2id_hash_and_an_audit_row(database_url: str, redis_url: str) -> None:
    result = flightdesk(
        "create-user", "--email", "Root@Example.COM", "--password", "correct horse battery", "--role", "ADMIN",
        database_url=database_url, redis_url=redis_url,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "created ADMIN" in result.stderr
    with psycopg.connect(database_url) as conn:
        email, role, password_hash = conn.execute("SELECT email, role, password_hash FROM users").fetchone()
        event, entity_type, actor_role, after = conn.execute(
            "SELECT event_type, entity_type, actor_role, after FROM audit_logs"
        ).fetchone()
    assert (email, role) == ("Root@example.com", Role.ADMIN)
    assert password_hash.startswith("$argon2id$")
    assert "correct horse" not in password_hash
    assert (event, entity_type, actor_role) == ("user.created", "user", "SYSTEM")
    assert "password_hash" not in after


def test_create_user_refuses_a_duplicate_email(database_url: str, redis_url: str) -> None:
    args = ("create-user", "--email", "ann@example.com", "--password", "long enough pw")
    assert flightdesk(*args, database_url=database_url, redis_url=redis_url).returncode == 0
    again = flightdesk(*args[:2], "ANN@example.com", *args[3:], database_url=database_url, redis_url=redis_url)
    assert again.returncode == 1
    # One line a person can act on, naming the address, and no traceback.
    assert again.stderr.strip().splitlines() == ["Error: A user with the email ANN@example.com already exists."]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--role", "AIRLINE_AGENT"), "airline_code: required for AIRLINE_AGENT"),
        (("--role", "AIRLINE_AGENT", "--airline-code", "ZZ"), "airline_code: unknown airline"),
        (("--password", "short"), "password: must be at least 8 characters"),
        (("--email", "not-an-email"), "email: not a valid email address"),
    ],
)
def test_create_user_explains_bad_input(
    database_url: str, redis_url: str, extra: tuple[str, ...], message: str
) -> None:
    base = {"--email": "agent@example.com", "--password": "long enough pw"}
    pairs = dict(zip(extra[::2], extra[1::2], strict=True))
    args = [item for pair in {**base, **pairs}.items() for item in pair]
    result = flightdesk("create-user", *args, database_url=database_url, redis_url=redis_url)
    assert result.returncode != 0
    assert message in result.stderr
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (0,)


def test_migrate_reports_an_up_to_date_schema(database_url: str, redis_url: str) -> None:
    result = flightdesk("migrate", database_url=database_url, redis_url=redis_url)
    assert result.returncode == 0, result.stderr
    assert "schema up to date" in result.stderr


def test_malformed_setting_stops_with_the_variable_named(database_url: str, redis_url: str) -> None:
    env_result = subprocess.run(
        [sys.executable, "-m", "core_api.cli", "migrate"],
        env={**os.environ, "FLIGHTDESK_API_PORT": "eighty"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert env_result.returncode != 0
    assert "FLIGHTDESK_API_PORT" in env_result.stderr
