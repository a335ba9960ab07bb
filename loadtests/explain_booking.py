"""``EXPLAIN (ANALYZE, BUFFERS)`` of every statement ``create_booking`` sends, with the parameters it binds, on a
database you name (seeded: ``flightdesk seed``), in one transaction that is rolled back:

    uv run python loadtests/explain_booking.py postgresql://postgres@127.0.0.1:5432/<seeded database>

The booker is the customer with the longest history, the cap is also read for the agent with the most bookings,
and the flight is the first with an ECONOMY Y bucket two days out. The statements run three times (savepoints in
between) and the third, warm, run is printed.
"""

from __future__ import annotations

import json
import sys
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core_api.audit._personal import split_personal
from core_api.storage.db import load_queries

BOOKINGS, AUDIT = load_queries("bookings"), load_queries("audit")

_FARE = """
SELECT p.id, p.flight_id FROM flight_prices AS p JOIN flights AS f ON f.id = p.flight_id
WHERE p.cabin = 'ECONOMY' AND p.fare_class = 'Y' AND f.departure_at > now() + interval '2 days'
  AND p.seats_available > 10
ORDER BY f.departure_at LIMIT 1
"""
_BUSIEST = "SELECT {0} AS id FROM bookings WHERE {0} IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"


def _one(conn: psycopg.Connection[Any], query: str) -> dict[str, Any]:
    row = conn.execute(query).fetchone()  # type: ignore[call-overload]
    if row is None:
        raise SystemExit(f"nothing found by {query.strip().splitlines()[0]!r}: is the database seeded?")
    return dict(row)


def steps(conn: psycopg.Connection[Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, SQL, parameters) of each statement, as the service binds them for one adult without a seat."""
    fare = _one(conn, _FARE)
    customer = _one(conn, _BUSIEST.format("customer_id"))["id"]
    agent = _one(conn, _BUSIEST.format("agent_id"))["id"]
    booking = uuid.uuid4()
    flight = fare["flight_id"]
    snapshot = {
        "status": "PENDING_PAYMENT",
        "pnr": "ZZZZZ2",
        "flight_id": flight,
        "seat_count": 1,
        "customer_id": str(customer),
        "contact_email": "someone@example.com",
    }
    texts, personal = split_personal(
        {"before": None, "after": snapshot, "metadata": {"seats": []}},
        actor_id=customer,
        ip="127.0.0.1",
        user_agent="explain",
        entity=("booking", str(booking)),
    )
    assert personal is not None
    audit_row = {
        "occurred_at": None,
        "event_type": "booking.created",
        "actor_id": customer,
        "actor_role": "CUSTOMER",
        "request_id": "explain",
        "entity_type": "booking",
        "entity_id": str(booking),
        **texts,
        **personal.params(),
    }
    new_booking = {
        "id": booking,
        "pnr": "ZZZZZ2",
        "flight_id": flight,
        "fare_id": fare["id"],
        "cabin": "ECONOMY",
        "fare_class": "Y",
        "customer_id": customer,
        "agent_id": None,
        "created_by": customer,
        "seat_count": 1,
        "total_amount": 45000,
        "currency": "USD",
        "contact_email": "someone@example.com",
        "contact_phone": None,
        "hold_minutes": 15,
        "hold_expires_at": datetime.now(UTC) + timedelta(minutes=15),
    }
    passengers = {
        "booking_id": booking,
        "flight_id": flight,
        "ids": [uuid.uuid4()],
        "first_names": ["Ann"],
        "last_names": ["Example"],
        "dates_of_birth": [date(1985, 4, 2)],
        "types": ["ADULT"],
        "documents": [None],
        "seat_nos": [None],
    }
    event = {
        "fare_id": fare["id"],
        "seats": 1,
        "id": uuid.uuid4(),
        "event_type": "booking.created",
        "booking_id": str(booking),
        "payload": json.dumps({"availability": {}}),
    }
    named = [
        ("bookable_flight", {"flight_id": flight}),
        ("lock_holder", {"id": customer}),
        ("unpaid_seats_of_customer", {"holder": customer}),
        ("unpaid_seats_of_agent", {"holder": agent}),
        ("fare_buckets", {"flight_id": flight, "cabin": "ECONOMY", "fare_class": "Y"}),
        ("insert_unseated_booking", {**new_booking, **passengers, "passenger_ids": passengers["ids"]}),
        ("take_fare_seats_announced", event),
    ]
    found = [(name, BOOKINGS[name], params) for name, params in named]
    found.insert(-1, ("record_event_with_personal_data", AUDIT["record_event_with_personal_data"], audit_row))
    return found


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    with psycopg.connect(sys.argv[1], row_factory=dict_row) as conn:
        statements = steps(conn)
        for run in range(3):
            conn.execute("SAVEPOINT run")
            for name, query, params in statements:
                rows = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {query}", params).fetchall()
                if run == 2:
                    print(f"--- {name}")
                    print("\n".join(str(row["QUERY PLAN"]) for row in rows))
            conn.execute("ROLLBACK TO SAVEPOINT run")
        conn.rollback()


if __name__ == "__main__":
    main()
