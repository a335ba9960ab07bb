"""Known rows for the data platform's tests: a small airline's bookings, payments, a partial refund, a
cancellation, an agent's booking, a deleted user and a security event, at fixed times.

Times (UTC) are chosen so that zones disagree about the day: booking ``B1`` is made at 23:30 on 1 March, which is
1 March in UTC and New York but 2 March in Tokyo.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg

__all__ = ["KNOWN", "add_booking", "insert_known_rows"]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


KNOWN: dict[str, Any] = {
    "customer": "00000000-0000-4000-8000-000000000001",
    "agent": "00000000-0000-4000-8000-000000000002",
    "deleted": "00000000-0000-4000-8000-000000000003",
    "b1": "00000000-0000-4000-8000-0000000000b1",
    "b2": "00000000-0000-4000-8000-0000000000b2",
    "b3": "00000000-0000-4000-8000-0000000000b3",
    "p1": "00000000-0000-4000-8000-0000000000c1",
    "p2": "00000000-0000-4000-8000-0000000000c2",
    "r1": "00000000-0000-4000-8000-0000000000d1",
}


def _insert_users(conn: psycopg.Connection[Any]) -> None:
    users = [
        (KNOWN["customer"], "carla@example.com", "Carla Customer", "CUSTOMER", at("2026-02-01 10:00"), None),
        (KNOWN["agent"], "arno@example.com", "Arno Agent", "TRAVEL_AGENT", at("2026-02-01 11:00"), None),
        (
            KNOWN["deleted"],
            f"deleted-{KNOWN['deleted']}@deleted.invalid",
            "Deleted user",
            "CUSTOMER",
            at("2026-02-15 09:00"),
            at("2026-03-01 12:00"),
        ),
    ]
    for user_id, email, name, role, created, deleted in users:
        conn.execute(
            "INSERT INTO users (id, email, password_hash, full_name, role, created_at, updated_at, deleted_at, "
            "is_active) VALUES (%s, %s, 'x', %s, %s, %s, %s, %s, %s)",
            (user_id, email, name, role, created, deleted or created, deleted, deleted is None),
        )


def add_booking(
    conn: psycopg.Connection[Any],
    booking_id: str,
    pnr: str,
    *,
    fare_id: int,
    flight_id: int,
    created: datetime,
    status: str = "CONFIRMED",
    seats: int = 1,
    total: int = 50_000,
    agent_id: str | None = None,
    updated: datetime | None = None,
    cancelled: datetime | None = None,
) -> None:
    conn.execute(
        "INSERT INTO bookings (id, pnr, flight_id, fare_id, cabin, fare_class, customer_id, agent_id, created_by, "
        "status, seat_count, total_amount, currency, contact_email, hold_expires_at, confirmed_at, cancelled_at, "
        "created_at, updated_at) VALUES (%s, %s, %s, %s, 'ECONOMY', 'Y', %s, %s, %s, %s, %s, %s, 'USD', "
        "'carla@example.com', %s, %s, %s, %s, %s)",
        (
            booking_id,
            pnr,
            flight_id,
            fare_id,
            KNOWN["customer"],
            agent_id,
            agent_id or KNOWN["customer"],
            status,
            seats,
            total,
            created,
            created if status == "CONFIRMED" else None,
            cancelled,
            created,
            updated or cancelled or created,
        ),
    )
    for number in range(seats):
        conn.execute(
            "INSERT INTO passengers (booking_id, flight_id, first_name, last_name, date_of_birth, type, created_at) "
            "VALUES (%s, %s, 'Pat', %s, '1990-01-01', 'ADULT', %s)",
            (booking_id, flight_id, f"Traveller{number}", created),
        )


def insert_known_rows(conninfo: str) -> dict[str, int]:
    """Insert the known rows; return the ids of the flights and fare buckets."""
    with psycopg.connect(conninfo, autocommit=True) as conn, conn.transaction():
        conn.execute("INSERT INTO airlines (code, name, country) VALUES ('FD', 'Flightdesk Air', 'US')")
        conn.execute(
            "INSERT INTO airports (code, name, city, country, tz, latitude, longitude) VALUES "
            "('JFK', 'John F. Kennedy', 'New York', 'US', 'America/New_York', 40.6, -73.8), "
            "('LHR', 'Heathrow', 'London', 'GB', 'Europe/London', 51.5, -0.5)"
        )
        _insert_users(conn)
        ids: dict[str, int] = {}
        for name, number, origin, destination, departure in (
            ("f1", "FD100", "JFK", "LHR", at("2026-03-10 23:00")),
            ("f2", "FD200", "LHR", "JFK", at("2026-03-11 10:00")),
        ):
            row = conn.execute(
                "INSERT INTO flights (airline_code, flight_number, origin, destination, departure_at, arrival_at, "
                "aircraft, created_at, updated_at) VALUES ('FD', %s, %s, %s, %s, %s + interval '7 hours', 'A320', "
                "%s, %s) RETURNING id",
                (number, origin, destination, departure, departure, at("2026-01-01 00:00"), at("2026-01-01 00:00")),
            ).fetchone()
            assert row is not None
            ids[name] = row[0]
        # f1: 100 seats, 3 sold (B1 2, B2 1); B3 was cancelled and gave its seat back. f2: 50 seats, none sold.
        for name, flight, available, total in (("fare1", "f1", 97, 100), ("fare2", "f2", 50, 50)):
            row = conn.execute(
                "INSERT INTO flight_prices (flight_id, cabin, fare_class, price_amount, currency, seats_total, "
                "seats_available, updated_at) VALUES (%s, 'ECONOMY', 'Y', 50000, 'USD', %s, %s, %s) RETURNING id",
                (ids[flight], total, available, at("2026-03-02 13:00")),
            ).fetchone()
            assert row is not None
            ids[name] = row[0]
        common = {"fare_id": ids["fare1"], "flight_id": ids["f1"]}
        add_booking(conn, KNOWN["b1"], "AAAAA2", created=at("2026-03-01 23:30"), seats=2, total=100_000, **common)
        add_booking(conn, KNOWN["b2"], "AAAAA3", created=at("2026-03-02 12:00"), agent_id=KNOWN["agent"], **common)
        add_booking(
            conn,
            KNOWN["b3"],
            "AAAAA4",
            created=at("2026-03-02 13:00"),
            status="CANCELLED",
            cancelled=at("2026-03-02 14:00"),
            **common,
        )
        # B1 paid 1000.00, then 300.00 refunded; B2 paid 500.00.
        conn.execute(
            "INSERT INTO payments (id, booking_id, provider, status, amount, currency, amount_refunded, "
            "created_at, updated_at, succeeded_at) VALUES "
            "(%s, %s, 'sandbox', 'PARTIALLY_REFUNDED', 100000, 'USD', 30000, %s, %s, %s), "
            "(%s, %s, 'sandbox', 'SUCCEEDED', 50000, 'USD', 0, %s, %s, %s)",
            (
                KNOWN["p1"],
                KNOWN["b1"],
                at("2026-03-01 23:35"),
                at("2026-03-02 10:00"),
                at("2026-03-01 23:40"),
                KNOWN["p2"],
                KNOWN["b2"],
                at("2026-03-02 12:01"),
                at("2026-03-02 12:05"),
                at("2026-03-02 12:05"),
            ),
        )
        conn.execute(
            "INSERT INTO refunds (id, payment_id, booking_id, amount, currency, status, created_at, updated_at) "
            "VALUES (%s, %s, %s, 30000, 'USD', 'SUCCEEDED', %s, %s)",
            (KNOWN["r1"], KNOWN["p1"], KNOWN["b1"], at("2026-03-02 10:00"), at("2026-03-02 10:00")),
        )
        conn.execute(
            "INSERT INTO audit_logs (occurred_at, event_type, actor_role, entity_type, entity_id) VALUES "
            "(%s, 'auth.login_failed', NULL, 'user', %s), (%s, 'booking.created', 'CUSTOMER', 'booking', %s)",
            (at("2026-03-02 08:00"), KNOWN["customer"], at("2026-03-01 23:30"), KNOWN["b1"]),
        )
    return ids
