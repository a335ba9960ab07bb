"""`flightdesk up` on a machine with nothing configured: embedded servers, migrations, seed, API and worker.

This is the README's first command, run as a user would run it, then stopped with SIGTERM.
"""

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.ports import free_port


@pytest.fixture
def fresh_environment() -> Iterator[dict[str, str]]:
    state_dir = Path(tempfile.mkdtemp(prefix="fdup", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLIGHTDESK_")}
    env |= {
        "FLIGHTDESK_STATE_DIR": str(state_dir),
        "FLIGHTDESK_API_PORT": str(free_port()),
        "FLIGHTDESK_SMTP_PORT": str(free_port()),
        "FLIGHTDESK_WAREHOUSE_DAGSTER_PORT": str(free_port()),
    }
    yield env
    for process in psutil.process_iter(["cmdline"]):
        if any(str(state_dir) in part for part in process.info["cmdline"] or []):
            process.kill()


def wait_until_healthy(base: str, up: subprocess.Popen[str], timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert up.poll() is None, f"flightdesk up exited early with {up.returncode}"
        try:
            response = httpx.get(f"{base}/api/v1/health/services", timeout=2)
            if response.status_code == 200:
                return response.json()
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError("flightdesk up did not become healthy in time")


def embedded_server_pids(state_dir: str) -> set[int]:
    return {
        process.pid
        for process in psutil.process_iter(["name", "cmdline"])
        if process.info["name"] in ("postgres", "redis-server")
        and any(state_dir in part for part in process.info["cmdline"] or [])
    }


def test_up_runs_everything_and_stops_cleanly(fresh_environment: dict[str, str]) -> None:
    env = fresh_environment
    base = f"http://127.0.0.1:{env['FLIGHTDESK_API_PORT']}"
    up = subprocess.Popen(
        [sys.executable, "-m", "core_api.cli", "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    # Read the output as it comes: a child blocked on a full pipe (the worker logs every job) would stall `up`.
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(up.stdout or ()), daemon=True)
    reader.start()
    try:
        health = wait_until_healthy(base, up)
        statuses = {service["name"]: service["status"] for service in health["services"]}
        # The warehouse is down until Dagster's schedule first publishes (it never makes the check fail).
        assert statuses | {"warehouse": "any"} == {
            "postgres": "up",
            "redis": "up",
            "worker": "up",
            "audit_sealer": "up",
            "smtp": "up",
            "payments": "up",
            "amadeus": "disabled",
            "warehouse": "any",
        }
        assert httpx.get(f"{base}/api/docs").status_code == 200
        # Through granian, this test is a loopback client: the ops endpoints answer it without a token.
        metrics = httpx.get(f"{base}/metrics", timeout=5)
        assert metrics.status_code == 200
        assert "flightdesk_request_duration_seconds" in metrics.text
        servers = embedded_server_pids(env["FLIGHTDESK_STATE_DIR"])
        assert servers

        # A command run beside `up` attaches to its servers and leaves them running when it exits.
        migrate = subprocess.run(
            [sys.executable, "-m", "core_api.cli", "migrate"], env=env, capture_output=True, text=True, timeout=60
        )
        assert migrate.returncode == 0, migrate.stderr
        assert "schema up to date" in migrate.stderr
        assert embedded_server_pids(env["FLIGHTDESK_STATE_DIR"]) == servers
        assert httpx.get(f"{base}/api/v1/health/services").status_code == 200

        # With no SMTP server configured, mails land in the local catcher's folder.
        body = {"email": "up@example.com", "password": "a long password", "full_name": "Up Example"}
        assert httpx.post(f"{base}/api/v1/auth/register", json=body, timeout=60).status_code == 201
        mail_dir = Path(env["FLIGHTDESK_STATE_DIR"]) / "mail"
        deadline = time.monotonic() + 60
        # (Demo bookings leaving within a day get their reminders meanwhile.)
        while time.monotonic() < deadline and not any(
            "To: up@example.com" in path.read_text() for path in mail_dir.glob("*.eml")
        ):
            time.sleep(0.2)
        welcome = [path.read_text() for path in mail_dir.glob("*.eml") if "To: up@example.com" in path.read_text()]
        assert len(welcome) == 1
        assert "Subject: Welcome to Flightdesk, Up Example" in welcome[0]
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=60)
        reader.join(timeout=10)
    output = "".join(lines)
    assert up.returncode == 0, output
    assert "seeded" in output
    assert "Flightdesk is up" in output
    assert f"{base}/api/docs" in output
    assert f"Dagster     http://127.0.0.1:{env['FLIGHTDESK_WAREHOUSE_DAGSTER_PORT']}" in output
    assert not embedded_server_pids(env["FLIGHTDESK_STATE_DIR"])
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{base}/api/v1/health", timeout=2)
