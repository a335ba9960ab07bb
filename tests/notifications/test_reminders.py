"""The reminder cron mails each confirmed booking once, within a day of departure."""

from __future__ import annotations

import httpx

from core_api.notifications.jobs import Notifier, requeue_stalled_mail, send_reminders
from core_api.storage.db import DbPool
from tests.bookings.conftest import add_small_flight
from tests.notifications.conftest import ConfirmedBooking, RunWorker, SmtpServer, book, notifications


async def _leaves_in(pool: DbPool, booking: ConfirmedBooking, hours: float) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE flights SET departure_at = now() + make_interval(secs => %s),"
            " arrival_at = now() + make_interval(secs => %s) WHERE id = %s",
            (hours * 3600, hours * 3600 + 7 * 3600, booking.flight.id),
        )


async def test_a_booking_leaving_within_a_day_is_reminded_once(
    pool: DbPool,
    client: httpx.AsyncClient,
    notifier: Notifier,
    run_worker: RunWorker,
    smtp: SmtpServer,
    booking: ConfirmedBooking,
) -> None:
    ctx = {"notifier": notifier}
    assert await send_reminders(ctx) == 0  # ten days out
    await _leaves_in(pool, booking, 23.5)
    # Another booking on a later flight, and an unpaid one on the same flight: neither is reminded.
    later = await add_small_flight(pool, number="BA9002")
    await book(pool, client, booking.customer, later)
    response = await client.post(
        "/api/v1/bookings",
        json={"flight_id": booking.flight.id, "cabin": "ECONOMY", "passengers": [
            {"first_name": "Un", "last_name": "Paid", "date_of_birth": "1990-01-01", "type": "ADULT"}]},
        headers=booking.customer.headers,
    )  # fmt: skip
    assert response.status_code == 201

    assert await send_reminders(ctx) == 1
    assert await send_reminders(ctx) == 0  # already queued
    await run_worker()
    assert await send_reminders(ctx) == 0  # already sent
    [mail] = smtp.to(booking.contact_email)
    assert mail["Subject"] == f"Your flight BA9001 to LHR leaves tomorrow ({booking.pnr})"
    [row] = await notifications(pool)
    assert (row["template"], row["status"], str(row["booking_id"])) == ("booking_reminder", "SENT", booking.id)


async def test_a_mail_whose_job_was_lost_is_enqueued_again_by_the_sweep(
    pool: DbPool, notifier: Notifier, run_worker: RunWorker, smtp: SmtpServer, booking: ConfirmedBooking
) -> None:
    await _leaves_in(pool, booking, 2)
    ctx = {"notifier": notifier}
    assert await send_reminders(ctx) == 1
    await notifier.redis.flushdb()  # the send job is gone with Redis' data
    async with pool.connection() as conn:
        await conn.execute("UPDATE notifications SET updated_at = now() - interval '10 minutes'")
    assert await requeue_stalled_mail(ctx) == 1
    await run_worker()
    assert len(smtp.to(booking.contact_email)) == 1
    assert await requeue_stalled_mail(ctx) == 0


async def test_a_claim_left_by_a_dead_sender_runs_out_and_the_mail_goes_once(
    pool: DbPool, notifier: Notifier, run_worker: RunWorker, smtp: SmtpServer, booking: ConfirmedBooking
) -> None:
    await _leaves_in(pool, booking, 2)
    ctx = {"notifier": notifier}
    assert await send_reminders(ctx) == 1
    await notifier.redis.flushdb()
    # As a worker killed between claiming and sending leaves it: SENDING, one attempt, a lease that ran out.
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE notifications SET status = 'SENDING', attempts = 1, lease_until = now() - interval '1 second'"
        )
    assert await requeue_stalled_mail(ctx) == 1
    await run_worker()
    assert len(smtp.to(booking.contact_email)) == 1
    [row] = await notifications(pool)
    assert (row["status"], row["attempts"]) == ("SENT", 2)
