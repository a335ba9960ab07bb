"""A notification worker in a process of its own, for the test that kills it with SIGKILL mid-send.

``python -m tests.notifications._worker_process DATABASE_URL REDIS_URL SMTP_PORT``
"""

from __future__ import annotations

import asyncio
import sys

from arq.connections import RedisSettings, create_pool
from arq.worker import Worker, func

from core_api.notifications.delivery import Mailer
from core_api.notifications.jobs import Notifier, send_notification
from core_api.security.crypto import parse_keys
from core_api.settings import load_settings
from core_api.storage.db import create_pool as create_db_pool
from tests.conftest import TEST_CRYPTO_KEYS


async def main(database_url: str, redis_url: str, smtp_port: int) -> None:
    settings = load_settings({"FLIGHTDESK_ENV": "test", "FLIGHTDESK_DATABASE_POOL_MIN": "1"}, dotenv=None)
    pool = create_db_pool(settings, database_url, name="flightdesk-test-worker")
    await pool.open(wait=True)
    redis = await create_pool(RedisSettings.from_dsn(redis_url))
    notifier = Notifier(
        pool=pool,
        redis=redis,
        mailer=Mailer(host="127.0.0.1", port=smtp_port, timeout=60),
        public_url="https://flightdesk.test",
        retry_base=0.1,
        reminder_hours=24,
        cipher=parse_keys(TEST_CRYPTO_KEYS),
        lease_seconds=1.0,
    )
    worker = Worker(
        functions=[func(send_notification, keep_result=0, max_tries=20, timeout=5)],
        redis_pool=redis,
        handle_signals=False,
        poll_delay=0.05,
        ctx={"notifier": notifier},
    )
    await worker.main()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
