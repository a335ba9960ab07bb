"""The marts: one SQL model per file in ``warehouse/marts/``, each building one ``mart_<name>`` table from the
replicated tables (or from marts built before it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

__all__ = ["MARTS", "MARTS_DIR", "Mart", "build_mart"]

MARTS_DIR = Path(__file__).resolve().parent / "marts"


@dataclass(frozen=True)
class Mart:
    name: str
    description: str
    # Replicated tables and marts it reads.
    tables: tuple[str, ...]
    marts: tuple[str, ...] = ()

    @property
    def table(self) -> str:
        return f"mart_{self.name}"

    @property
    def sql(self) -> str:
        return (MARTS_DIR / f"{self.name}.sql").read_text()


# In build order: a mart comes after the marts it reads.
MARTS: tuple[Mart, ...] = (
    Mart(
        "bookings_revenue",
        "Bookings and revenue net of refunds by route, airline, agent and currency per 15-minute slot.",
        ("bookings", "flights", "payments", "refunds"),
    ),
    Mart(
        "load_factor", "Seats sold and taken over seats on sale, by flight.", ("flights", "flight_prices", "bookings")
    ),
    Mart("user_growth", "Accounts created and deleted by role per 15-minute slot.", ("users",)),
    Mart(
        "funnel",
        "Searches, bookings and paid bookings by route per 15-minute slot.",
        ("search_events", "bookings", "flights", "payments"),
    ),
    Mart(
        "popular_routes",
        "Searches, bookings and seats by route per 15-minute slot.",
        (),
        ("funnel", "bookings_revenue"),
    ),
    Mart(
        "agent_performance",
        "What each travel agent booked, sold and had refunded per 15-minute slot.",
        ("users",),
        ("bookings_revenue",),
    ),
    Mart(
        "cancellations_refunds",
        "Cancellations and refunds by airline, route and currency per 15-minute slot.",
        ("bookings", "refunds", "flights"),
    ),
    Mart("security_events", "Security events by type and actor role per 15-minute slot.", ("audit_logs",)),
)

MARTS_BY_NAME = {mart.name: mart for mart in MARTS}


def build_mart(conn: duckdb.DuckDBPyConnection, mart: Mart) -> int:
    """(Re)build one mart; return its row count."""
    conn.execute(mart.sql)
    row = conn.execute(f"SELECT count(*) FROM {mart.table}").fetchone()  # noqa: S608 - a mart of MARTS
    return int(row[0]) if row else 0
