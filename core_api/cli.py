"""The ``flightdesk`` command: run everything (``up``) or one piece (``api``, ``worker``, ``migrate`` …).

Every command resolves its PostgreSQL and Redis first: the configured URLs, or embedded servers under the state
directory, which it starts or, when another Flightdesk process already runs them, attaches to. Children started
by ``up`` get the resolved URLs in their environment, so they attach rather than start their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING

import click
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from rich.console import Console

from core_api.settings import Settings, SettingsError, get_settings

if TYPE_CHECKING:
    from core_api.notifications.delivery import MailCatcher

__all__ = ["main"]

console = Console(stderr=True)

EMBEDDED_DATABASE = "flightdesk"
# Days of booking history the demo seed makes before today (SPEC §2).
HISTORY_DAYS = 90


@dataclass(frozen=True)
class Services:
    database_url: str
    redis_url: str

    def environment(self) -> dict[str, str]:
        return {"FLIGHTDESK_DATABASE_URL": self.database_url, "FLIGHTDESK_REDIS_URL": self.redis_url}


def _settings() -> Settings:
    try:
        return get_settings()
    except SettingsError as exc:
        raise click.ClickException(f"invalid setting: {exc}") from None


def _ensure_database(server_url: str, name: str) -> str:
    """Create the application database on an embedded server if missing; return its conninfo."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):  # another process won the race
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_conninfo(server_url, dbname=name)


@contextlib.contextmanager
def services(settings: Settings, *, quiet: bool = False) -> Iterator[Services]:
    """The configured servers, or embedded ones started (or attached to) for the duration of the block."""
    need_postgres = not settings.database.url
    need_redis = not settings.redis.url
    if not (need_postgres or need_redis):
        assert settings.database.url
        assert settings.redis.url
        yield Services(settings.database.url, settings.redis.url)
        return

    from core_api.storage.embedded import embedded_services

    def progress(message: str) -> None:
        if not quiet:
            console.print(f"[dim]•[/dim] {message}")

    with embedded_services(
        settings.state_dir.resolve(), postgres=need_postgres, redis=need_redis, on_progress=progress
    ) as handles:
        database_url = settings.database.url
        if database_url is None:
            assert handles.database_url
            database_url = _ensure_database(handles.database_url, EMBEDDED_DATABASE)
        redis_url = settings.redis.url or handles.redis_url
        assert redis_url
        yield Services(database_url, redis_url)


def _migrate(database_url: str) -> None:
    from core_api.storage.migrations import migrate

    applied = asyncio.run(migrate(database_url))
    if applied:
        names = ", ".join(m.path.name for m in applied)
        console.print(f"[green]✓[/green] applied {len(applied)} migration(s): {names}")
    else:
        console.print("[green]✓[/green] schema up to date")


def _seed(database_url: str, settings: Settings, *, scale: str, only_if_empty: bool) -> None:
    from core_api.seed import is_seeded, seed_reference_and_flights
    from core_api.seed.history import LARGE_HISTORY, SMALL_HISTORY
    from core_api.seed.progress import RichProgress

    if asyncio.run(is_seeded(database_url)):
        if not only_if_empty:
            console.print("[yellow]database already has flights; nothing seeded[/yellow]")
        return
    days, history = (60, SMALL_HISTORY) if scale == "small" else (365, LARGE_HISTORY)
    with RichProgress(console) as progress:
        summary = asyncio.run(
            seed_reference_and_flights(
                database_url,
                days=days,
                history_days=HISTORY_DAYS,
                history=history,
                progress=progress,
                striping=(settings.booking.fare_stripes, settings.booking.stripe_min_seats),
            )
        )
    console.print(
        f"[green]✓[/green] seeded {summary.airports:,} airports, {summary.airlines} airlines, "
        f"{summary.flights:,} flights, {summary.fares:,} fares, {summary.seats:,} seats, {summary.users:,} users, "
        f"{summary.bookings:,} bookings, {summary.passengers:,} passengers, {summary.audit_events:,} audit events "
        f"in {summary.seconds:.1f}s"
    )


@click.group()
def main() -> None:
    """Flightdesk: flight booking API, worker and data platform."""


@main.command()
def migrate() -> None:
    """Apply pending database migrations."""
    settings = _settings()
    with services(settings) as urls:
        _migrate(urls.database_url)


@main.command()
@click.option("--scale", type=click.Choice(["small", "large"]), default="small", show_default=True)
def seed(scale: str) -> None:
    """Migrate, then load demo data: flights (60 days ahead, a year with --scale large) and 90 days of history."""
    settings = _settings()
    with services(settings) as urls:
        _migrate(urls.database_url)
        _seed(urls.database_url, settings, scale=scale, only_if_empty=False)


def _serve_api(settings: Settings, urls: Services, workers: int, host: str, port: int) -> None:
    from granian import Granian
    from granian.constants import Interfaces

    from core_api.log import dict_config

    # granian's workers read their settings from the environment.
    os.environ.update(urls.environment())
    if workers > 1:
        # Prometheus counters are per process; a shared directory lets /metrics sum the workers.
        metrics_dir = settings.state_dir.resolve() / "metrics"
        metrics_dir.mkdir(parents=True, exist_ok=True)
        for stale in metrics_dir.glob("*.db"):
            stale.unlink()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    Granian(
        "core_api.app:build_app",
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        log_access=False,
        log_dictconfig=dict_config(settings.log_level),
        respawn_failed_workers=True,
    ).serve()


@main.command()
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Worker processes [FLIGHTDESK_API_WORKERS]")
@click.option("--host", default=None, help="Bind address [FLIGHTDESK_API_HOST]")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port [FLIGHTDESK_API_PORT]")
def api(workers: int | None, host: str | None, port: int | None) -> None:
    """Serve the HTTP and WebSocket API with granian."""
    settings = _settings()
    with services(settings) as urls:
        _serve_api(
            settings, urls, workers or settings.api.workers, host or settings.api.host, port or settings.api.port
        )


@main.command()
def worker() -> None:
    """Run the background worker (arq)."""
    from core_api.log import configure_logging
    from core_api.worker import run

    settings = _settings()
    configure_logging(settings.log_level)
    with services(settings) as urls:
        run(urls.database_url, urls.redis_url)


def _refresh_warehouse(settings: Settings, database_url: str) -> bool:
    from pipelines.run import STAGES, RefreshResult, refresh

    names = [name for name, _ in STAGES]
    shown: set[str] = set()

    def report(stage: str, result: RefreshResult) -> None:
        for key, metadata in result.materialized.items():
            if key in shown:
                continue
            shown.add(key)
            if "rows_read" in metadata:
                mode = "full" if metadata["full_load"] else "incremental"
                detail = f"{metadata['rows_read']:,} read, {metadata['rows_total']:,} rows ({mode})"
            elif "rows" in metadata:
                detail = f"{metadata['rows']:,} rows"
            else:
                detail = f"{metadata.get('snapshot', '')}"
            console.print(f"  [green]✓[/green] {key}: {detail}")
        failed = [check for check, passed in result.checks.items() if not passed]
        for check in failed:
            console.print(f"  [red]✗ check failed:[/red] {check}")
        position = names.index(stage) + 1
        console.print(f"[dim]•[/dim] {stage} done ({position}/{len(names)})")

    with console.status("[dim]materialising the warehouse…[/dim]"):
        result = refresh(settings, database_url, on_stage=report)
    return result.success


@main.command()
def pipelines() -> None:
    """Materialise every Dagster asset once, in this process: replicate PostgreSQL, rebuild the marts, run the
    asset checks and publish a new warehouse snapshot."""
    settings = _settings()
    with services(settings) as urls:
        _migrate(urls.database_url)
        started = time.monotonic()
        if not _refresh_warehouse(settings, urls.database_url):
            raise click.ClickException("the warehouse refresh failed; the previous snapshot stays published")
        console.print(
            f"[green]✓[/green] warehouse published at {settings.warehouse_path} in {time.monotonic() - started:.1f}s"
        )


@main.command("create-user")
@click.option("--email", required=True)
@click.option("--password", required=True, help="At least 8 characters.")
@click.option(
    "--role",
    type=click.Choice(["CUSTOMER", "TRAVEL_AGENT", "AIRLINE_AGENT", "BUSINESS_OWNER", "ADMIN"]),
    default="CUSTOMER",
    show_default=True,
)
@click.option("--full-name", default=None, help="Defaults to the email's local part.")
@click.option("--airline-code", default=None, help="Required for AIRLINE_AGENT.")
def create_user(email: str, password: str, role: str, full_name: str | None, airline_code: str | None) -> None:
    """Create a user of any role (the first ADMIN comes from here)."""
    from core_api.audit.service import Actor
    from core_api.users import service as users
    from core_api.users.schemas import Role
    from core_api.web.errors import AppError, map_database_error

    async def run(database_url: str) -> None:
        async with await psycopg.AsyncConnection.connect(database_url) as conn, conn.transaction():
            user = await users.create_user(
                conn,
                Actor(role="SYSTEM", user_agent="flightdesk-cli"),
                email=email,
                password=password,
                full_name=full_name or email.split("@")[0],
                role=Role(role),
                airline_code=airline_code,
            )
        console.print(f"[green]✓[/green] created {user.role} {user.email} ({user.id})")

    settings = _settings()
    with services(settings, quiet=True) as urls:
        try:
            asyncio.run(run(urls.database_url))
        except AppError as exc:
            raise click.ClickException(exc.detail) from None
        except psycopg.Error as exc:
            # A constraint the input broke (the API answers these as 4xx through the same mapping); any other
            # database error is ours and keeps its traceback.
            mapped = map_database_error(exc)
            if mapped is None:
                raise
            raise click.ClickException(mapped.detail) from None


@main.command("rotate-keys")
@click.option("--batch", type=click.IntRange(1, 100_000), default=500, show_default=True, help="Rows per transaction.")
def rotate_keys(batch: int) -> None:
    """Re-encrypt fields sealed with an older key under the first of FLIGHTDESK_CRYPTO_KEYS, in batches, online."""
    from core_api.security.crypto import load_cipher
    from core_api.security.rotation import rotate_keys as rotate

    settings = _settings()
    cipher = load_cipher(settings)

    async def run(database_url: str) -> None:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            done = await rotate(conn, cipher, batch=batch)
        for column, count in done.items():
            console.print(f"[green]✓[/green] {column}: {count} re-encrypted with key {cipher.current}")

    with services(settings, quiet=True) as urls:
        asyncio.run(run(urls.database_url))


class _Supervisor:
    """Runs child processes, stops them all on SIGINT/SIGTERM or when one of them dies."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = {**os.environ, **env}
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = False

    def start(self, name: str, *args: str) -> None:
        self.start_module(name, "core_api.cli", *args)

    def start_module(
        self, name: str, module: str, *args: str, env: dict[str, str] | None = None, background: bool = False
    ) -> None:
        """Run ``python -m module args``; a ``background`` child (Dagster) runs at a lower CPU priority, so that
        its start-up and runs never slow the API and worker down on a small machine."""
        # Own session: a terminal's Ctrl-C reaches only `up`, which then stops the children in order.
        self.children[name] = subprocess.Popen(  # noqa: S603 - our own executable and fixed arguments
            [*(["nice", "-n", "10"] if background and shutil.which("nice") else []), sys.executable, "-m", module,
             *args],
            env={**self.env, **(env or {})},
            start_new_session=True,
        )  # fmt: skip

    def _request_stop(self, signum: int, _: FrameType | None) -> None:
        self.stopping = True

    def wait(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._request_stop)
        exit_code = 0
        while not self.stopping:
            for name, child in self.children.items():
                if child.poll() is not None:
                    console.print(f"[red]{name} exited with code {child.returncode}; stopping everything[/red]")
                    exit_code = child.returncode or 1
                    self.stopping = True
            time.sleep(0.2)
        self.stop()
        return exit_code

    def stop(self, timeout: float = 15.0) -> None:
        console.print("[dim]stopping…[/dim]")
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name, child in self.children.items():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                console.print(f"[yellow]{name} did not stop in {timeout:g}s; killing it[/yellow]")
                child.kill()
                child.wait()


@main.command()
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="API worker processes.")
def up(workers: int | None) -> None:
    """Start everything with demo data: migrate, seed if empty, then API, worker and Dagster."""
    settings = _settings()
    console.print("[bold]Flightdesk[/bold] starting")
    with services(settings) as urls:
        _migrate(urls.database_url)
        _seed(urls.database_url, settings, scale="small", only_if_empty=True)
        supervisor = _Supervisor(urls.environment())
        mail = _start_mail_catcher(settings)
        supervisor.start("api", "api", *(["--workers", str(workers)] if workers else []))
        supervisor.start("worker", "worker")
        dagster_url = _start_dagster(supervisor, settings)
        base = settings.api_url
        console.print(
            f"\n[bold green]Flightdesk is up[/bold green]\n"
            f"  API         {base}/api/v1\n"
            f"  API docs    {base}/api/docs\n"
            f"  OpenAPI     {base}/api/openapi.json\n"
            f"  Health      {base}/api/v1/health/services\n"
            f"  Metrics     {base}/metrics\n"
            + (f"  Dagster     {dagster_url}\n" if dagster_url else "")
            + f"  Warehouse   {settings.warehouse_path}\n"
            f"  PostgreSQL  {_redact(urls.database_url)}\n"
            f"  Redis       {_redact(urls.redis_url)}\n"
            f"  Mail        {_mail_line(settings, mail)}\n"
            "Press Ctrl-C to stop.\n"
        )
        try:
            exit_code = supervisor.wait()
        finally:
            if mail is not None:
                mail.stop()
    console.print("[green]stopped[/green]")
    sys.exit(exit_code)


def _start_mail_catcher(settings: Settings) -> MailCatcher | None:
    """With no SMTP server configured, catch the worker's mails locally as ``.eml`` files (SPEC §2)."""
    if settings.smtp.host:
        return None
    from core_api.notifications.delivery import MailCatcher

    catcher = MailCatcher(settings.state_dir.resolve() / "mail", port=settings.smtp.port)
    try:
        catcher.start()
    except (OSError, RuntimeError) as exc:
        raise click.ClickException(
            f"cannot start the local mail catcher on port {settings.smtp.port} ({exc}); "
            "set FLIGHTDESK_SMTP_PORT to a free port, or FLIGHTDESK_SMTP_HOST to a real server"
        ) from None
    return catcher


def _mail_line(settings: Settings, catcher: MailCatcher | None) -> str:
    if catcher is None:
        return f"SMTP {settings.smtp.host}:{settings.smtp.port}"
    host, port = catcher.address
    return f"caught on smtp://{host}:{port}, saved as .eml files in {catcher.directory}"


def _start_dagster(supervisor: _Supervisor, settings: Settings) -> str | None:
    """Dagster's webserver and daemon (schedule and sensor on), their instance under the state directory."""
    port = settings.warehouse.dagster_port
    if not port:
        return None
    home = settings.state_dir.resolve() / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        # Runs, schedules and event logs in SQLite under the state directory; nothing sent anywhere.
        config.write_text("telemetry:\n  enabled: false\n")
    env = {"DAGSTER_HOME": str(home)}
    host = settings.api.host
    supervisor.start_module(
        "dagster-webserver",
        "dagster_webserver",
        "-m",
        "pipelines.definitions",
        "-h",
        host,
        "-p",
        str(port),
        env=env,
        background=True,
    )
    supervisor.start_module(
        "dagster-daemon", "dagster._daemon", "run", "-m", "pipelines.definitions", env=env, background=True
    )
    return f"http://{host}:{port}"


def _redact(url: str) -> str:
    """A URL with any password masked, for printing."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


if __name__ == "__main__":
    main()
