"""Mail benchmark: mails per second through the real SMTP catcher with ``--mails`` (1,000) queued, against bare
aiosmtplib sending the same messages to the same catcher in the same run; then outbox event -> mail latency.

Throughput: ``--mails`` welcome mails are queued as the outbox handlers queue them (one ``notifications`` row each,
one ``send_notification`` arq job each), then an arq worker with ``--concurrency`` job slots drains the queue:
claim, render, SMTP, mark sent, audit row. The reference sends the same rendered messages with aiosmtplib alone
from ``--concurrency`` tasks (no database, no arq). Both go to one ``MailCatcher`` (aiosmtpd writing ``.eml``
files, as ``flightdesk up`` runs it) on a thread of this process.

Latency: with the outbox relay and the worker running, ``--events`` ``payment.succeeded`` events (the payments
contract's payload, no booking) are committed one after another (``--gap-ms`` apart); each one's latency is its
commit to its receipt's ``.eml`` file appearing (file mtime). Payments are built in parallel: "payment webhook ->
mail" is this path plus the webhook's own transaction.

    uv run python loadtests/bench_mail.py --database-url postgresql://postgres@127.0.0.1:5432/postgres \
        --redis-url redis://127.0.0.1:6379/6 [--mails 1000] [--concurrency 10] [--events 200]
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.worker import Worker, func

from core_api.notifications import handlers as _handlers  # noqa: F401 - registers the outbox handlers
from core_api.notifications.delivery import MailCatcher, Mailer, build_message
from core_api.notifications.jobs import Notifier, send_notification
from core_api.notifications.rendering import TEMPLATES
from core_api.notifications.schemas import TemplateName, WelcomeContext
from core_api.notifications.service import enqueue_send, queue_mail
from core_api.outbox import emit
from core_api.outbox.dispatch import dispatch_event
from core_api.outbox.relay import OutboxRelay
from core_api.security.crypto import load_cipher
from core_api.settings import load_settings
from core_api.storage.db import create_pool as create_db_pool
from core_api.storage.db import transaction
from core_api.storage.migrations import migrate
from loadtests.loadgen import create_scratch_database, drop_database, free_port

PUBLIC_URL = "https://flightdesk.bench"


def eml_count(directory: Path) -> int:
    return len(list(directory.glob("*.eml")))


async def wait_for_files(directory: Path, count: int, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while eml_count(directory) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {eml_count(directory)} of {count} mails arrived in {timeout:.0f}s")
        await asyncio.sleep(0.02)


async def reference(mailer: Mailer, mails: int, concurrency: int, directory: Path) -> float:
    """Bare aiosmtplib: the same rendered welcome mail, ``mails`` times, from ``concurrency`` tasks; mails/s."""
    mail = TEMPLATES[TemplateName.WELCOME]
    rendered = mail.render(WelcomeContext(full_name="Bench Reference"), PUBLIC_URL)
    start_count = eml_count(directory)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(mails):
        queue.put_nowait(n)

    async def sender() -> None:
        while not queue.empty():
            n = queue.get_nowait()
            await mailer.send(
                build_message(mailer.sender, f"ref{n}@example.com", rendered, notification_id=uuid.uuid4())
            )

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    await wait_for_files(directory, start_count + mails)
    return mails / (time.perf_counter() - started)


async def through_worker(notifier: Notifier, redis: ArqRedis, mails: int, concurrency: int, directory: Path) -> float:
    """``mails`` queued first, then a worker drains them; mails/s from the worker's start to the last file."""
    ids: list[tuple[uuid.UUID, int]] = []
    async with transaction(notifier.pool) as tx:
        for n in range(mails):
            queued = await queue_mail(
                tx,
                event_id=uuid.uuid4(),
                template=TemplateName.WELCOME,
                recipient=f"bench{n}@example.com",
                context=WelcomeContext(full_name=f"Bench {n}"),
                public_url=PUBLIC_URL,
            )
            assert queued is not None
            ids.append(queued)
    for notification_id, priority in ids:
        await enqueue_send(redis, notification_id, priority)
    start_count = eml_count(directory)
    worker = Worker(
        functions=[func(send_notification, keep_result=0, max_tries=20, timeout=60)],
        redis_pool=redis,
        burst=True,
        handle_signals=False,
        poll_delay=0.01,
        max_jobs=concurrency,
        ctx={"notifier": notifier},
    )
    started = time.perf_counter()
    await worker.main()
    await wait_for_files(directory, start_count + mails)
    elapsed = time.perf_counter() - started
    async with notifier.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT count(*) FILTER (WHERE status = 'SENT') AS sent, count(*) AS n FROM notifications"
            )
        ).fetchone()
    assert row is not None
    if row["sent"] != mails:
        raise SystemExit(f"{row['sent']} of {row['n']} mails SENT")
    return mails / elapsed


async def latency(
    database_url: str, notifier: Notifier, redis: ArqRedis, events: int, gap: float, directory: Path
) -> list[float]:
    """Commit -> .eml latencies (seconds) of ``events`` payment.succeeded events, relay and worker running."""
    committed: dict[str, float] = {}
    worker = Worker(
        functions=[dispatch_event, func(send_notification, keep_result=0, max_tries=20, timeout=60)],
        redis_pool=redis,
        handle_signals=False,
        poll_delay=0.01,
        max_jobs=10,
        ctx={"notifier": notifier, "redis": redis},
    )
    worker_task = asyncio.create_task(worker.main())
    before = set(directory.glob("*.eml"))  # noqa: ASYNC240 - a local folder, between measurements
    async with OutboxRelay(database_url, redis):  # polling as the worker's relay does
        for n in range(events):
            recipient = f"lat{n}@example.com"
            async with transaction(notifier.pool) as tx:
                # A payment.succeeded event by the payments contract, as the webhook's transaction writes it.
                payload = {"payment_id": f"pay_{n}", "booking_id": None, "pnr": "BENCH2", "amount": 45000,
                           "currency": "USD", "customer_id": None, "contact_email": recipient}  # fmt: skip
                await emit(tx, "payment.succeeded", ("payment", n), payload)
            committed[recipient] = time.time()
            await asyncio.sleep(gap)
        await wait_for_files(directory, len(before) + events, timeout=120)
    worker_task.cancel()
    await asyncio.gather(worker_task, return_exceptions=True)
    latencies = []
    for path in set(directory.glob("*.eml")) - before:  # noqa: ASYNC240 - after the measurement
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        latencies.append(path.stat().st_mtime - committed[str(message["To"])])
    return latencies


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True, help="PostgreSQL server; a scratch database is made on it")
    parser.add_argument("--redis-url", required=True, help="Redis database the benchmark may flush")
    parser.add_argument("--mails", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=10, help="worker job slots (arq max_jobs), sender tasks")
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--gap-ms", type=float, default=20.0)
    args = parser.parse_args()

    name, database_url = create_scratch_database(args.database_url, "bench_i13_notifications")
    directory = Path(tempfile.mkdtemp(prefix="bench-mail-"))
    catcher = MailCatcher(directory, port=free_port())
    catcher.start()
    redis = await create_pool(RedisSettings.from_dsn(args.redis_url))
    settings = load_settings({"FLIGHTDESK_ENV": "test", "FLIGHTDESK_LOG_LEVEL": "WARNING"}, dotenv=None)
    pool = create_db_pool(settings, database_url, name="bench-mail")
    try:
        await redis.flushdb()
        await migrate(database_url)
        await pool.open(wait=True)
        host, port = catcher.address
        mailer = Mailer(host=host, port=port, timeout=30)
        notifier = Notifier(
            pool=pool,
            redis=redis,
            mailer=mailer,
            public_url=PUBLIC_URL,
            retry_base=0.5,
            reminder_hours=24,
            cipher=load_cipher(settings),
        )
        print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {args.mails} mails, concurrency {args.concurrency}")
        bare = await reference(mailer, args.mails, args.concurrency, directory)
        print(f"reference  bare aiosmtplib -> catcher        {bare:8.1f} mails/s")
        queued = await through_worker(notifier, redis, args.mails, args.concurrency, directory)
        print(f"measured   {args.mails} queued, arq worker -> catcher {queued:8.1f} mails/s")
        print(f"ratio      worker / bare                      {queued / bare:8.2f}")
        lat = await latency(database_url, notifier, redis, args.events, args.gap_ms / 1000, directory)
        quantiles = statistics.quantiles(lat, n=100)
        print(
            f"latency    payment.succeeded commit -> .eml ({len(lat)} events, relay + worker): "
            f"p50 {quantiles[49] * 1000:.0f} ms, p95 {quantiles[94] * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms"
        )
    finally:
        await pool.close()
        await redis.flushdb()
        await redis.aclose()
        catcher.stop()
        drop_database(args.database_url, name)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except psycopg.Error as exc:
        raise SystemExit(f"database error: {exc}") from None
