"""Outbox events become mails through a real SMTP server: once per event and recipient, retried through refusals
and outages, first-class for password resets and failed payments."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from arq.connections import ArqRedis

from core_api.auth.service import RESET_TOKEN_SEAL
from core_api.notifications.jobs import Notifier, send_reminders
from core_api.storage.db import DbPool
from tests.notifications.conftest import (
    ConfirmedBooking,
    RunWorker,
    SmtpServer,
    dispatch,
    notifications,
    parts,
    payment_payload,
    relay_all,
    write_event,
)


async def test_a_confirmed_booking_is_mailed_to_its_contact(
    pool: DbPool, arq_redis: ArqRedis, smtp: SmtpServer, run_worker: RunWorker, booking: ConfirmedBooking
) -> None:
    await write_event(pool, "booking.confirmed", ("booking", booking.id), {"booking_id": booking.id})
    await relay_all(pool, arq_redis)
    await run_worker()

    [mail] = smtp.to(booking.contact_email)
    assert booking.pnr in mail["Subject"]
    text, html = parts(mail)
    assert booking.pnr in text
    assert booking.pnr in html
    [row] = await notifications(pool)
    assert (row["template"], row["status"], row["attempts"]) == ("booking_confirmation", "SENT", 1)
    assert str(row["booking_id"]) == booking.id
    assert str(row["user_id"]) == booking.customer.id


async def test_the_same_event_replayed_twenty_times_at_once_sends_one_mail(
    pool: DbPool, notifier: Notifier, smtp: SmtpServer, run_worker: RunWorker, booking: ConfirmedBooking
) -> None:
    event_id = await write_event(pool, "payment.succeeded", ("payment", "pay_0001"), payment_payload(booking))
    await asyncio.gather(*(dispatch(pool, notifier, event_id) for _ in range(20)))
    # And arq runs the send job of each replay, whichever ran first.
    await run_worker()
    await asyncio.gather(*(dispatch(pool, notifier, event_id) for _ in range(20)))
    await run_worker()

    assert len(smtp.to(booking.contact_email)) == 1
    [row] = await notifications(pool)
    assert (row["template"], row["status"], row["attempts"]) == ("payment_receipt", "SENT", 1)


async def test_a_server_that_refuses_and_then_accepts_gets_the_mail_once(
    pool: DbPool, arq_redis: ArqRedis, smtp: SmtpServer, run_worker: RunWorker, booking: ConfirmedBooking
) -> None:
    smtp.refuse_next = 2
    await write_event(pool, "payment.failed", ("payment", "pay_0001"), payment_payload(booking))
    await relay_all(pool, arq_redis)
    await run_worker()

    assert len(smtp.to(booking.contact_email)) == 1
    [row] = await notifications(pool)
    assert (row["template"], row["status"], row["attempts"]) == ("payment_failed", "SENT", 3)


async def test_three_refusals_leave_the_mail_failed_and_retry_failed_sends_it(
    pool: DbPool, arq_redis: ArqRedis, smtp: SmtpServer, run_worker: RunWorker, booking: ConfirmedBooking
) -> None:
    smtp.refuse_next = 3
    await write_event(pool, "booking.cancelled", ("booking", booking.id), {"booking_id": booking.id})
    await relay_all(pool, arq_redis)
    await run_worker()
    [row] = await notifications(pool)
    assert (row["status"], row["attempts"]) == ("FAILED", 3)
    assert "451" in row["last_error"]
    assert smtp.to(booking.contact_email) == []

    from core_api.audit.service import SYSTEM
    from core_api.notifications.service import retry_failed

    assert await retry_failed(pool, SYSTEM) == 1
    await relay_all(pool, arq_redis)  # the notification.queued event retry-failed wrote
    await run_worker()
    assert len(smtp.to(booking.contact_email)) == 1
    [row] = await notifications(pool)
    assert (row["status"], row["attempts"]) == ("SENT", 1)


async def test_mail_waits_out_an_smtp_outage_and_goes_out_once_when_the_server_is_back(
    pool: DbPool, arq_redis: ArqRedis, smtp: SmtpServer, run_worker: RunWorker, booking: ConfirmedBooking
) -> None:
    smtp.stop()
    await write_event(pool, "booking.confirmed", ("booking", booking.id), {"booking_id": booking.id})
    await write_event(pool, "payment.succeeded", ("payment", "pay_0001"), payment_payload(booking))
    await relay_all(pool, arq_redis)

    async def come_back() -> None:
        await asyncio.sleep(0.15)  # past the first attempt (backoff 0.1 s, then 0.2 s)
        smtp.start()

    await asyncio.gather(run_worker(), come_back())
    templates = sorted(row["template"] for row in await notifications(pool))
    assert templates == ["booking_confirmation", "payment_receipt"]
    assert {row["status"] for row in await notifications(pool)} == {"SENT"}
    assert len(smtp.to(booking.contact_email)) == 2
    assert all(row["attempts"] >= 2 for row in await notifications(pool))


async def test_password_resets_and_failed_payments_go_ahead_of_a_backlog(
    pool: DbPool, notifier: Notifier, smtp: SmtpServer, run_worker: RunWorker, booking: ConfirmedBooking
) -> None:
    # A reminder wave queued first (the booking leaves in two hours) still goes after the ordinary mail.
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE flights SET departure_at = now() + interval '2 hours', arrival_at = now() + interval '9 hours'"
        )
    assert await send_reminders({"notifier": notifier}) == 1
    events = []
    for n in range(15):
        payload = {"user_id": booking.customer.id, "email": f"new{n}@example.com", "full_name": f"New {n}"}
        events.append(await write_event(pool, "auth.register", ("user", n), payload))
    events.append(await write_event(pool, "payment.failed", ("payment", "pay_0001"), payment_payload(booking)))
    sealed = notifier.cipher.seal_text("pr_secret-token-123", context=RESET_TOKEN_SEAL)
    payload = {"user_id": booking.customer.id, "email": "reset@example.com", "sealed_token": sealed}
    events.append(await write_event(pool, "auth.password_reset_requested", ("user", 99), payload))
    # Every send job is queued (the urgent ones last) before one worker slot takes them.
    for event_id in events:
        await dispatch(pool, notifier, event_id)
    await run_worker(max_jobs=1)

    subjects = [mail["Subject"] for mail in smtp.received]
    assert len(subjects) == 18
    assert {subjects[0], subjects[1]} == {f"Payment failed for booking {booking.pnr}", "Reset your Flightdesk password"}
    assert all(subject.startswith("Welcome") for subject in subjects[2:17])
    assert subjects[17].startswith("Your flight BA9001")


async def test_a_database_failure_in_a_handler_asks_arq_for_a_retry_and_the_retry_queues_the_mail(
    pool: DbPool,
    notifier: Notifier,
    run_worker: RunWorker,
    smtp: SmtpServer,
    booking: ConfirmedBooking,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import psycopg
    from arq import Retry

    from core_api.notifications import handlers

    real = handlers.queue_mail
    calls = 0

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return await real(*args, **kwargs)

    monkeypatch.setattr(handlers, "queue_mail", flaky)
    event_id = await write_event(pool, "booking.confirmed", ("booking", booking.id), {"booking_id": booking.id})
    with pytest.raises(Retry):
        await dispatch(pool, notifier, event_id)
    assert await notifications(pool) == []
    await dispatch(pool, notifier, event_id)
    await run_worker()
    assert len(smtp.to(booking.contact_email)) == 1
