"""The people of the demo history: customers, travel agents, and the passengers they book.

Names are drawn from short lists that span the markets the twelve airlines serve. Customers register over time —
about half before the history starts, the rest during it, more of them as it goes on — so every booking can be
made by someone who had an account at that moment. Every seeded account shares one password hash (see
``history``), of a password nobody knows.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date

from core_api.seed._history_audit import copy_timestamp

__all__ = [
    "DEMO_EMAIL_DOMAIN",
    "FIRST_NAMES",
    "LAST_NAMES",
    "SeededUser",
    "make_customers",
    "make_travel_agents",
    "time_ordered_uuid",
]

# Every seeded account's address is in this domain (which also tells a rerun that the history is there).
DEMO_EMAIL_DOMAIN = "demo.flightdesk.dev"

FIRST_NAMES: tuple[str, ...] = (
    "Olivia", "Liam", "Emma", "Noah", "Ava", "James", "Sophia", "William", "Isabella", "Benjamin", "Mia", "Lucas",
    "Charlotte", "Henry", "Amelia", "Alexander", "Harper", "Daniel", "Evelyn", "Michael", "Grace", "Samuel",
    "Chloe", "David", "Emily", "Joseph", "Hannah", "Thomas", "Lily", "George", "Oliver", "Jack", "Harry", "Sophie",
    "Freya", "Alfie", "Isla", "Poppy", "Arthur", "Florence", "Louis", "Camille", "Hugo", "Manon", "Jules", "Chloé",
    "Léa", "Gabriel", "Inès", "Maximilian", "Lena", "Felix", "Hannes", "Marie", "Paul", "Leonie", "Jonas", "Lukas",
    "Daan", "Sem", "Julia", "Tess", "Lotte", "Bram", "Lucía", "Mateo", "Martina", "Álvaro", "Pablo", "Alba",
    "Carmen", "Javier", "Valeria", "Diego", "Omar", "Fatima", "Aisha", "Yousef", "Layla", "Khalid", "Mariam",
    "Rashid", "Priya", "Arjun", "Ananya", "Rohan", "Wei", "Jia", "Hui Min", "Jun Jie", "Mei Ling", "Kai",
    "Haruto", "Yui", "Sota", "Hina", "Ren", "Aoi", "Yuki", "Takumi", "Sakura", "Kenji", "Charlie", "Ruby",
    "Matilda", "Lachlan", "Archie", "Zoe", "Mason", "Ella", "Ethan", "Aria", "Logan", "Nora", "Elena", "Marco",
    "Giulia", "Luca", "Sofia", "Anna", "Jan", "Eva", "Ingrid", "Erik", "Astrid", "Mohammed", "Sara", "Ali",
)  # fmt: skip

LAST_NAMES: tuple[str, ...] = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Wilson", "Anderson", "Taylor", "Thomas", "Moore", "Jackson", "Martin", "Lee", "Thompson", "White", "Harris",
    "Clark", "Lewis", "Walker", "Young", "Allen", "King", "Wright", "Scott", "Green", "Baker", "Adams", "Evans",
    "Hughes", "Roberts", "Patel", "Khan", "O'Brien", "Murphy", "Campbell", "Stewart", "Dubois", "Durand",
    "Lefebvre", "Moreau", "Laurent", "Bernard", "Fontaine", "Müller", "Schmidt", "Schneider", "Fischer", "Weber",
    "Wagner", "Becker", "Hoffmann", "de Jong", "Jansen", "de Vries", "van den Berg", "Bakker", "Visser", "Smit",
    "Fernández", "López", "González", "Sánchez", "Pérez", "Romero", "Navarro", "Al Mansouri", "Al Hashimi",
    "Haddad", "Nasser", "Farouk", "Sharma", "Gupta", "Nair", "Iyer", "Reddy", "Tan", "Lim", "Ng", "Wong", "Chen",
    "Goh", "Teo", "Sato", "Suzuki", "Takahashi", "Tanaka", "Watanabe", "Ito", "Yamamoto", "Nakamura",
    "Kobayashi", "Kato", "Nguyen", "Kelly", "Ryan", "Cooper", "Mitchell", "Rossi", "Russo", "Ferrari",
    "Esposito", "Bianchi", "Nowak", "Kowalski", "Novak", "Svensson", "Johansson", "Larsen", "Hansen", "Kim",
    "Park", "Choi", "Silva", "Santos", "Costa", "Oliveira", "Mendes", "Cohen", "Levi", "Okafor", "Mensah",
)  # fmt: skip

_DAY_MICROS = 86_400_000_000
# Customers who already had an account when the history starts, registered over the year before it.
_REGISTERED_BEFORE_SHARE = 0.55
_REGISTERED_BEFORE_DAYS = 365
# Travel agents were set up by an administrator one to two years before.
_AGENT_SINCE_DAYS = (365, 730)
# Age of an account holder when they registered.
_HOLDER_AGE_YEARS = (19, 72)


def time_ordered_uuid(rng: random.Random, micros: int) -> str:
    """A version 7 UUID (RFC 9562) for the moment ``micros``, its random part from ``rng``, hyphenated.

    The seed makes rows in time order, so their ids come in index order too: each insert lands at the right-hand
    edge of the primary key's btree instead of on a random page of it, which keeps millions of inserts cheap.
    """
    random_bits = rng.getrandbits(74)
    bits = ((micros // 1000) << 80) | (0x7 << 76) | ((random_bits >> 62) << 64) | (0x2 << 62)
    digits = f"{bits | (random_bits & ((1 << 62) - 1)):032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


@dataclass(slots=True, frozen=True)
class SeededUser:
    id: str
    email: str
    first_name: str
    last_name: str
    role: str
    registered_at: int
    birth_ordinal: int

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    def copy_line(self, password_hash: str) -> str:
        """The user as a line of ``COPY users (id, email, password_hash, full_name, role, created_at, updated_at)``."""
        created = copy_timestamp(self.registered_at)
        return f"{self.id}\t{self.email}\t{password_hash}\t{self.full_name}\t{self.role}\t{created}\t{created}\n"


def _birth_ordinal(rng: random.Random, registered_at: int) -> int:
    registered_on = date(1970, 1, 1).toordinal() + registered_at // _DAY_MICROS
    low, high = _HOLDER_AGE_YEARS
    return registered_on - rng.randrange(low * 365, high * 365)


def make_customers(rng: random.Random, count: int, history_start: int, history_end: int) -> list[SeededUser]:
    """``count`` customers in order of registration, numbered in that order (``customer1`` registered first)."""
    before_start = history_start - _REGISTERED_BEFORE_DAYS * _DAY_MICROS
    span = history_end - history_start
    moments = []
    for _ in range(count):
        if rng.random() < _REGISTERED_BEFORE_SHARE:
            moments.append(rng.randrange(before_start, history_start))
        else:
            # Sign-ups grow through the history: the square root of a uniform draw leans towards its end.
            moments.append(history_start + int(span * rng.random() ** 0.5))
    moments.sort()
    return [
        SeededUser(
            id=time_ordered_uuid(rng, moment),
            email=f"customer{number}@{DEMO_EMAIL_DOMAIN}",
            first_name=rng.choice(FIRST_NAMES),
            last_name=rng.choice(LAST_NAMES),
            role="CUSTOMER",
            registered_at=moment,
            birth_ordinal=_birth_ordinal(rng, moment),
        )
        for number, moment in enumerate(moments, start=1)
    ]


def make_travel_agents(rng: random.Random, count: int, history_start: int) -> list[SeededUser]:
    agents = []
    for number in range(1, count + 1):
        moment = history_start - rng.randrange(*_AGENT_SINCE_DAYS) * _DAY_MICROS - rng.randrange(_DAY_MICROS)
        agents.append(
            SeededUser(
                id=time_ordered_uuid(rng, moment),
                email=f"agent{number}@{DEMO_EMAIL_DOMAIN}",
                first_name=rng.choice(FIRST_NAMES),
                last_name=rng.choice(LAST_NAMES),
                role="TRAVEL_AGENT",
                registered_at=moment,
                birth_ordinal=_birth_ordinal(rng, moment),
            )
        )
    return agents
