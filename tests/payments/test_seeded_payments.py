"""The seeded history's payments: every confirmed booking paid once (some after a declined attempt), cancelled
refundable ones refunded, and the audit trail naming the very rows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg.rows import dict_row

from core_api.audit.service import verify_chain
from core_api.seed import seed_reference_and_flights
from core_api.seed.history import HistoryVolume
from tests.conftest import cloned_database


@pytest.fixture(scope="module")
async def seeded(postgres_url: str, template_database: str) -> AsyncIterator[str]:
    async with cloned_database(postgres_url, template_database) as url:
        volume = HistoryVolume(bookings_per_day=200, customers=300, travel_agents=2)
        await seed_reference_and_flights(url, days=2, history_days=6, history=volume)
        yield url


async def _one(url: str, query: str) -> tuple:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        row = await (await conn.execute(query)).fetchone()
    assert row is not None
    return row


async def test_every_confirmed_booking_was_paid_once_for_its_total(seeded: str) -> None:
    confirmed, paid, mismatched = await _one(
        seeded,
        """
        SELECT count(*) FILTER (WHERE b.confirmed_at IS NOT NULL),
               count(p.id),
               count(*) FILTER (WHERE p.id IS NOT NULL AND (p.amount, p.currency) <> (b.total_amount, b.currency))
        FROM bookings AS b
        LEFT JOIN payments AS p ON p.booking_id = b.id AND p.status IN ('SUCCEEDED', 'PARTIALLY_REFUNDED', 'REFUNDED')
        """,
    )
    assert confirmed > 100
    assert paid == confirmed
    assert mismatched == 0
    unpaid_paid = await _one(
        seeded,
        "SELECT count(*) FROM payments AS p JOIN bookings AS b ON b.id = p.booking_id WHERE b.confirmed_at IS NULL",
    )
    assert unpaid_paid == (0,)


async def test_some_paid_after_a_declined_attempt_and_refundable_cancellations_were_refunded(seeded: str) -> None:
    (failed,) = await _one(seeded, "SELECT count(*) FROM payments WHERE status = 'FAILED'")
    (paid,) = await _one(seeded, "SELECT count(*) FROM payments WHERE status <> 'FAILED'")
    assert 0.03 * paid < failed < 0.2 * paid
    refunded, refunds, matching = await _one(
        seeded,
        """
        SELECT (SELECT count(*) FROM payments WHERE status = 'REFUNDED'),
               (SELECT count(*) FROM refunds WHERE status = 'SUCCEEDED'),
               (SELECT count(*) FROM refunds AS r JOIN payments AS p ON p.id = r.payment_id
                WHERE r.amount = p.amount_refunded AND p.amount_refunded = p.amount)
        """,
    )
    assert refunded == refunds == matching


async def test_the_audit_trail_names_the_seeded_payments_and_stays_valid(seeded: str) -> None:
    (orphans,) = await _one(
        seeded,
        """
        SELECT count(*) FROM audit_logs AS a
        WHERE a.entity_type = 'payment' AND NOT EXISTS (SELECT 1 FROM payments AS p WHERE p.id::text = a.entity_id)
        """,
    )
    assert orphans == 0
    (succeeded,) = await _one(seeded, "SELECT count(*) FROM audit_logs WHERE event_type = 'payment.succeeded'")
    (paid,) = await _one(seeded, "SELECT count(*) FROM payments WHERE status <> 'FAILED'")
    assert succeeded == paid
    async with await psycopg.AsyncConnection.connect(seeded, row_factory=dict_row, autocommit=True) as conn:
        status = await verify_chain(conn)
    assert status.valid, status
