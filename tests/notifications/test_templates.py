"""What each mail says, in its plain-text and HTML parts, as the SMTP server receives it: the PNR and the
manage-my-booking link, times in the zone of the airport, money in the currency's units, names escaped in HTML."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from arq.connections import ArqRedis

from core_api.auth.service import RESET_TOKEN_SEAL
from core_api.notifications.jobs import Notifier
from core_api.notifications.rendering import TEMPLATES, format_money, local_time
from core_api.notifications.schemas import MailMoney, TemplateName
from core_api.storage.db import DbPool
from core_api.users.schemas import Role
from tests.bookings.conftest import SmallFlight, adult
from tests.notifications.conftest import (
    PUBLIC_URL,
    ConfirmedBooking,
    RunWorker,
    SmtpServer,
    book,
    dispatch,
    notifications,
    parts,
    payment_payload,
    write_event,
)
from tests.support.accounts import MakeAccount


def test_every_template_is_compiled_once_at_import() -> None:
    assert set(TEMPLATES) == {name.value for name in TemplateName}
    for mail in TEMPLATES.values():
        assert mail.text is mail.text.environment.get_template(f"{mail.name.value}.txt")  # the cached compilation


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [(45000, "USD", "$450.00"), (123456789, "EUR", "€1,234,567.89"), (45000, "JPY", "¥45,000"),
     (1250, "KWD", "KWD 1.250"), (99, "CHF", "CHF 0.99")],
)  # fmt: skip
def test_money_is_shown_in_the_units_of_its_currency(amount: int, currency: str, shown: str) -> None:
    assert format_money(MailMoney(amount=amount, currency=currency)) == shown


def test_times_are_shown_in_the_zone_of_the_airport() -> None:
    moment = datetime(2026, 7, 1, 22, 30, tzinfo=UTC)
    assert local_time(moment, "America/New_York") == "Wed 01 Jul 2026, 18:30 EDT"
    assert local_time(moment, "Asia/Tokyo") == "Thu 02 Jul 2026, 07:30 JST"


def _flight_times(flight: SmallFlight) -> tuple[str, str]:
    return (
        local_time(flight.departure_at, "America/New_York"),
        local_time(flight.departure_at + timedelta(hours=7), "Europe/London"),
    )


async def _mail_for(pool: DbPool, notifier: Notifier, run_worker: RunWorker, smtp: SmtpServer, event: tuple) -> tuple:
    event_id = await write_event(pool, *event)
    await dispatch(pool, notifier, event_id)
    await run_worker()
    [row] = [row for row in await notifications(pool) if row["event_id"] == event_id]
    assert row["status"] == "SENT", row["last_error"]
    [mail] = [m for m in smtp.received if m["X-Flightdesk-Notification"] == str(row["id"])]
    return mail, *parts(mail)


async def test_booking_confirmation(
    pool: DbPool, notifier: Notifier, run_worker: RunWorker, smtp: SmtpServer, booking: ConfirmedBooking
) -> None:
    mail, text, html = await _mail_for(
        pool, notifier, run_worker, smtp, ("booking.confirmed", ("booking", booking.id), {"booking_id": booking.id})
    )
    departs, arrives = _flight_times(booking.flight)
    link = f"{PUBLIC_URL}/api/v1/bookings/pnr/{booking.pnr}"
    assert mail["Subject"] == f"Booking confirmed: JFK to LHR ({booking.pnr})"
    assert mail["To"] == booking.contact_email
    for part in (text, html):
        assert booking.pnr in part
        assert link in part
        assert departs in part
        assert arrives in part
        assert "$300.00" in part  # the cheapest economy bucket, M
        assert "Ann Example" in part
        assert "BA9001" in part
        assert "British Airways" in part
        assert "Economy" in part
    assert f'href="{link}"' in html
    assert "<" not in text


async def test_booking_cancelled_and_reminder(
    pool: DbPool, notifier: Notifier, run_worker: RunWorker, smtp: SmtpServer, booking: ConfirmedBooking
) -> None:
    mail, text, html = await _mail_for(
        pool, notifier, run_worker, smtp, ("booking.cancelled", ("booking", booking.id), {"booking_id": booking.id})
    )
    assert mail["Subject"] == f"Booking {booking.pnr} cancelled"
    for part in (text, html):
        assert "cancelled" in part
        assert booking.pnr in part
        assert _flight_times(booking.flight)[0] in part


async def test_payment_receipt_refund_and_failure(
    pool: DbPool, notifier: Notifier, run_worker: RunWorker, smtp: SmtpServer, booking: ConfirmedBooking
) -> None:
    payload = payment_payload(booking)
    mail, text, html = await _mail_for(
        pool, notifier, run_worker, smtp, ("payment.succeeded", ("payment", "pay_0001"), payload)
    )
    assert mail["Subject"] == f"Receipt for booking {booking.pnr}: $450.00"
    for part in (text, html):
        assert "received your payment of" in part
        assert "pay_0001" in part
        assert f"{PUBLIC_URL}/api/v1/bookings/pnr/{booking.pnr}" in part

    refund = payment_payload(booking, amount=12345, currency="GBP", refund_id="re_0001")
    mail, text, html = await _mail_for(
        pool, notifier, run_worker, smtp, ("payment.refunded", ("payment", "pay_0001"), refund)
    )
    assert mail["Subject"] == f"Refund for booking {booking.pnr}: £123.45"
    for part in (text, html):
        assert "refunded" in part
        assert "re_0001" in part

    mail, text, html = await _mail_for(
        pool, notifier, run_worker, smtp, ("payment.failed", ("payment", "pay_0001"), payment_payload(booking))
    )
    assert mail["Subject"] == f"Payment failed for booking {booking.pnr}"
    for part in (text, html):
        assert "failed" in part
        assert "$450.00" in part


async def test_flight_changed_shows_old_and_new_times(
    pool: DbPool, notifier: Notifier, run_worker: RunWorker, smtp: SmtpServer, booking: ConfirmedBooking
) -> None:
    old = booking.flight.departure_at
    new = old + timedelta(hours=3)
    payload = {
        "flight_id": booking.flight.id, "booking_id": booking.id, "pnr": booking.pnr, "flight_number": "BA9001",
        "origin": "JFK", "destination": "LHR", "origin_tz": "America/New_York", "destination_tz": "Europe/London",
        "change": "delayed", "status": "DELAYED",
        "old_departure_at": old.isoformat().replace("+00:00", "Z"),
        "new_departure_at": new.isoformat().replace("+00:00", "Z"),
        "old_arrival_at": (old + timedelta(hours=7)).isoformat().replace("+00:00", "Z"),
        "new_arrival_at": (new + timedelta(hours=7)).isoformat().replace("+00:00", "Z"),
    }  # fmt: skip
    mail, text, html = await _mail_for(
        pool, notifier, run_worker, smtp, ("flight.changed", ("booking", booking.id), payload)
    )
    assert mail["Subject"] == f"Flight BA9001 delayed: booking {booking.pnr}"
    for part in (text, html):
        assert local_time(old, "America/New_York") in part
        assert local_time(new, "America/New_York") in part
        assert local_time(new + timedelta(hours=7), "Europe/London") in part
        assert booking.pnr in part


async def test_welcome_and_password_reset(
    pool: DbPool, notifier: Notifier, run_worker: RunWorker, smtp: SmtpServer, booking: ConfirmedBooking
) -> None:
    user = booking.customer.user
    payload = {"user_id": str(user.id), "email": user.email, "full_name": user.full_name}
    mail, text, html = await _mail_for(pool, notifier, run_worker, smtp, ("auth.register", ("user", user.id), payload))
    assert mail["Subject"] == f"Welcome to Flightdesk, {user.full_name}"
    assert user.full_name in text
    assert user.full_name in html

    sealed = notifier.cipher.seal_text("pr_abcdefgh12345678", context=RESET_TOKEN_SEAL)
    payload = {"user_id": str(user.id), "email": user.email, "sealed_token": sealed}
    mail, text, html = await _mail_for(
        pool, notifier, run_worker, smtp, ("auth.password_reset_requested", ("user", user.id), payload)
    )
    assert mail["Subject"] == "Reset your Flightdesk password"
    [row] = [row for row in await notifications(pool) if row["template"] == "password_reset"]
    assert "token" not in row["payload"]  # not kept once mailed (and only ever stored sealed)
    for part in (text, html):
        assert "pr_abcdefgh12345678" in part
        assert "30 minutes" in part
        assert "/api/v1/auth/password-reset/confirm" in part


async def test_html_in_a_name_is_escaped_in_html_and_kept_as_text_in_plain_text(
    pool: DbPool,
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    notifier: Notifier,
    run_worker: RunWorker,
    smtp: SmtpServer,
    flight: SmallFlight,
) -> None:
    evil = "<script>alert(1)</script>"
    customer = await make_account(Role.CUSTOMER, full_name=f"Bob {evil}")
    booking = await book(pool, client, customer, flight, adult("Ann", "O'Brien-Smith"))
    mail, text, html = await _mail_for(
        pool, notifier, run_worker, smtp, ("booking.confirmed", ("booking", booking.id), {"booking_id": booking.id})
    )
    assert evil not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "O&#39;Brien-Smith" in html
    assert f"Dear Bob {evil}," in text
    assert "\n" not in mail["Subject"]


async def test_the_registration_and_reset_flows_mail_the_account(
    pool: DbPool, client: httpx.AsyncClient, arq_redis: ArqRedis, run_worker: RunWorker, smtp: SmtpServer
) -> None:
    from tests.notifications.conftest import relay_all

    body = {"email": "neo@example.com", "password": "a long password", "full_name": "Neo Anderson"}
    assert (await client.post("/api/v1/auth/register", json=body)).status_code == 201
    assert (await client.post("/api/v1/auth/password-reset/request", json={"email": "neo@example.com"})).status_code
    await relay_all(pool, arq_redis)
    await run_worker()
    subjects = sorted(mail["Subject"] for mail in smtp.to("neo@example.com"))
    assert subjects == ["Reset your Flightdesk password", "Welcome to Flightdesk, Neo Anderson"]
    [reset] = [mail for mail in smtp.to("neo@example.com") if mail["Subject"].startswith("Reset")]
    token = next(word for word in parts(reset)[0].split() if word.startswith("pr_"))
    confirm = {"token": token, "new_password": "another long password"}
    assert (await client.post("/api/v1/auth/password-reset/confirm", json=confirm)).status_code == 204
