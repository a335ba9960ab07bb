"""A worker killed with SIGKILL in the middle of a send: the job runs again and the mail goes out once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from core_api.notifications.jobs import Notifier
from core_api.storage.db import DbPool
from tests.conftest import REPO_ROOT
from tests.notifications.conftest import (
    ConfirmedBooking,
    RunWorker,
    SmtpServer,
    dispatch,
    eventually,
    notifications,
    payment_payload,
    write_event,
)


async def test_a_worker_killed_mid_send_leaves_the_job_to_run_again_and_one_mail_goes_out(
    pool: DbPool,
    database_url: str,
    redis_url: str,
    notifier: Notifier,
    run_worker: RunWorker,
    smtp: SmtpServer,
    booking: ConfirmedBooking,
) -> None:
    smtp.rcpt_delay = 60  # the SMTP conversation hangs before the mail's content is sent
    failure = await write_event(pool, "payment.failed", ("payment", "p"), payment_payload(booking))
    await dispatch(pool, notifier, failure)
    worker = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "tests.notifications._worker_process", database_url, redis_url, str(smtp.port)),
        cwd=REPO_ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("FLIGHTDESK_")},
    )
    try:

        async def sending() -> bool:
            rows = await notifications(pool)
            return bool(rows) and rows[0]["status"] == "SENDING"

        await eventually(sending, within=30)
        await asyncio.sleep(0.3)  # inside the SMTP conversation
        worker.send_signal(signal.SIGKILL)
        await asyncio.wait_for(worker.wait(), 10)
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    smtp.rcpt_delay = 0
    assert smtp.received == []
    [row] = await notifications(pool)
    assert (row["status"], row["attempts"]) == ("SENDING", 1)

    # arq runs the job again once the dead worker's in-progress mark expires (its job timeout + 10 s).
    await run_worker(within=40)
    assert len(smtp.to(booking.contact_email)) == 1
    [row] = await notifications(pool)
    assert (row["status"], row["attempts"]) == ("SENT", 2)
