"""The bookings of the demo history, generated in the order they were made, with their passengers and audit rows.

Bookings are made every day of the history: more on weekdays than at weekends, more as the months go on, more in
the daytime, each 1 to 60 days before its flight (typically one to five weeks ahead), on a flight picked in proportion
to its seats and a fare bucket picked the same way. A booking only takes a bucket that still has its seats. Its
fate is drawn when it is made: most are paid within the 15-minute hold and confirmed, some of those cancelled
later, some holds lapse (expired) and a few are cancelled before payment. Bookings made during the last hold
period before the seed runs are still waiting for payment (live holds, always on future flights).

Because bookings come in creation order, the audit trail comes out in time order for the cost of a small heap:
a booking's later events (confirmed, cancelled, expired) wait there until the stream passes their moment, and
the registrations of customers are merged in from their own sorted list. Output is produced in chunks of COPY
text, so memory stays bounded however many bookings are made.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date

from core_api.audit._personal import split_value
from core_api.seed._history_audit import AuditChain, copy_timestamp, jsonb_text, to_datetime
from core_api.seed._history_model import (
    AuditEvent,
    BookableFlight,
    BookingPace,
    Fare,
    HistoryChunk,
    PaidBooking,
    PaymentHook,
    PnrSequence,
    booking_total,
)
from core_api.seed._history_people import FIRST_NAMES, LAST_NAMES, SeededUser, time_ordered_uuid

__all__ = ["BookingHistory"]

_SECOND = 1_000_000
_MINUTE = 60 * _SECOND
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR

# Weekly rhythm of bookings made (Monday first; mean 1) and growth over the whole history (from -20 % to +20 %).
_WEEKDAY_FACTORS = (1.12, 1.16, 1.06, 1.00, 0.95, 0.78, 0.93)
_GROWTH = 0.40
_DAILY_NOISE_SIGMA = 0.08
# Bookings per UTC hour: a worldwide customer base, quietest in the small hours of the Atlantic.
_HOURLY_WEIGHTS = (3, 2, 2, 2, 3, 4, 6, 8, 9, 10, 10, 10, 10, 10, 10, 10, 10, 9, 9, 8, 7, 6, 5, 4)
_HOURLY_CUMULATIVE = tuple(itertools.accumulate(_HOURLY_WEIGHTS))
# Time between booking and departure: 1 to 60 days, triangular with its mode at 10 days (a mean of 23.7).
_MIN_LEAD, _MAX_LEAD, _MODE_LEAD = _DAY, 60 * _DAY, 10 * _DAY
# A flight is looked for within half a day of the drawn departure moment; a few draws before giving up.
_LEAD_SLACK = 12 * _HOUR
_PLACEMENT_TRIES = 3
# Passengers per booking (1-4) and the mix of the companions of the first passenger, who is always an adult.
_PARTY_SIZES = (1, 2, 3, 4)
_PARTY_CUMULATIVE = tuple(itertools.accumulate((52, 28, 12, 8)))
_COMPANION_ADULT, _COMPANION_CHILD = 0.55, 0.88  # cumulative shares; the rest are infants (one per adult at most)
_FAMILY_NAME_SHARE = 0.7  # an adult companion shares the booker's last name
_ADULT_AGE_DAYS = (18 * 365 + 5, 80 * 365)
_CHILD_AGE_DAYS = (2 * 365 + 1, 12 * 365 - 1)
_INFANT_AGE_DAYS = (7, 2 * 365 - 1)
# Fates: shares of bookings whose hold lapses, that are cancelled unpaid, and (of those confirmed) cancelled later.
_EXPIRED_SHARE = 0.10
_CANCELLED_UNPAID_SHARE = 0.02
_CANCELLED_AFTER_CONFIRM_SHARE = 0.08
# The expiry sweep runs every minute; a cancellation comes at least an hour after payment and two before departure.
_SWEEP_DELAY = _MINUTE
_CANCEL_AFTER_PAYMENT = _HOUR
_CANCEL_BEFORE_DEPARTURE = 2 * _HOUR
# Share of bookings made by travel agents, and how unevenly they are spread over the agents.
_AGENT_SHARE = 0.15
_AGENT_SKEW = 0.8
# Earlier customers book more often than recent ones: the index drawn is (registered so far) * u**this.
_LOYALTY_SKEW = 1.3
# Regular bookings stop this long before the live-hold period, so every lapsed hold was swept before "now".
_QUIET_BEFORE_LIVE = 5 * _MINUTE
_MIN_LIVE_HOLDS = 5

_NULL = "\\N"

# The ``after`` of booking.created, as jsonb prints it: the keys in its order, values filled in by name.
_CREATED_BOOKING_KEYS = ("pnr", "status", "flight_id", "cabin", "fare_class", "seat_count", "passengers",
                         "total_amount", "currency", "customer_id")  # fmt: skip
_CREATED_BOOKING_FORMAT = jsonb_text({key: f"\x00{key}\x00" for key in _CREATED_BOOKING_KEYS}).replace(
    "{", "{{").replace("}", "}}").replace('"\\u0000', "{").replace('\\u0000"', "}")  # fmt: skip
_STATUS_TEXT = {status: jsonb_text({"status": status}) for status in ("PENDING_PAYMENT", "CONFIRMED")}
_CANCELLED_TEXT = jsonb_text({"status": "CANCELLED"})
_EXPIRED_TEXT = jsonb_text({"status": "EXPIRED"})


def _between(rng: random.Random, low: int, high: int) -> int:
    """A number in ``[low, high)``: ``randrange`` without its checks, which cost more than the draw here."""
    return low + int(rng.random() * (high - low))


def _pick(rng: random.Random, names: Sequence[str]) -> str:
    return names[int(rng.random() * len(names))]


@dataclass(slots=True)
class _Party:
    """The passengers of one booking as (type, first name, last name), the booking customer first."""

    passengers: list[tuple[str, str, str]]
    infants: int

    @property
    def seated(self) -> int:
        return len(self.passengers) - self.infants


class BookingHistory:
    """Makes the bookings of a :class:`BookingPace` over ``flights`` and yields them as :class:`HistoryChunk`s.

    ``available`` is indexed like the fares (``Fare.position``) and holds each bucket's free seats; after the run
    :attr:`taken` holds the seats the generated PENDING_PAYMENT and CONFIRMED bookings took from each bucket.
    """

    def __init__(
        self,
        rng: random.Random,
        *,
        flights: Sequence[BookableFlight],
        available: Sequence[int],
        customers: Sequence[SeededUser],
        agents: Sequence[SeededUser],
        chain: AuditChain,
        pnrs: PnrSequence,
        pace: BookingPace,
        payment_hook: PaymentHook,
    ) -> None:
        self._rng = rng
        self._flights = sorted(flights, key=lambda flight: (flight.departure_at, flight.id))
        self._departures = [flight.departure_at for flight in self._flights]
        self._capacity_bounds = [0, *itertools.accumulate(flight.capacity for flight in self._flights)]
        self._available = list(available)
        self.taken = [0] * len(self._available)
        self._customers = customers
        self._agents = agents
        self._agent_bounds = list(itertools.accumulate(1 / (rank + 1) ** _AGENT_SKEW for rank in range(len(agents))))
        self._chain_head = chain
        self._pnrs = pnrs
        self._pace = pace
        self._payment_hook = payment_hook
        self._registered = 0  # customers registered before the moment being generated (and their events chained)
        self._pending: list[tuple[int, int, AuditEvent]] = []
        self._sequence = itertools.count()
        self._chunk = HistoryChunk()
        self.bookings = self.passengers = self.audit_events = self.unplaced = 0
        self._days = self._daily_counts()
        for agent in agents:
            salt = rng.randbytes(16)
            after, personal = split_value(
                {"email": agent.email, "full_name": agent.full_name, "role": agent.role}, salt
            )
            self._later(AuditEvent(agent.registered_at, "user.created", None, "SYSTEM", ("user", agent.id),
                                   after=jsonb_text(after), personal=(salt, personal, (agent.id,))))  # fmt: skip

    # -- when ------------------------------------------------------------------------------------------------------

    def _daily_counts(self) -> list[tuple[int, int, int]]:
        """``(first moment, end, bookings)`` of each UTC day of regular bookings, the last one cut short."""
        pace, rng = self._pace, self._rng
        regular_end = pace.now - pace.hold - _QUIET_BEFORE_LIVE
        total_days = max(1, -(-(regular_end - pace.start) // _DAY))
        days = []
        for number in range(total_days):
            begin = pace.start + number * _DAY
            end = min(begin + _DAY, regular_end)
            if end <= begin:
                break
            weekday = to_datetime(begin).weekday()
            trend = 1 + _GROWTH * (number / total_days - 0.5)
            noise = rng.lognormvariate(0, _DAILY_NOISE_SIGMA)
            share_of_day = (end - begin) / _DAY
            days.append((begin, end, round(pace.per_day * _WEEKDAY_FACTORS[weekday] * trend * noise * share_of_day)))
        return days

    @property
    def live_holds(self) -> int:
        """Bookings made during the last hold period, still waiting for their payment when the seed runs."""
        return max(_MIN_LIVE_HOLDS, round(self._pace.per_day * self._pace.hold / _DAY))

    @property
    def planned(self) -> int:
        """Booking slots this history draws (all but a rare unplaceable one become bookings)."""
        return sum(count for _, _, count in self._days) + self.live_holds

    def _moments_of_day(self, begin: int, end: int, count: int) -> list[int]:
        rng = self._rng
        moments: list[int] = []
        while len(moments) < count:
            hour = bisect.bisect_right(_HOURLY_CUMULATIVE, rng.random() * _HOURLY_CUMULATIVE[-1])
            moment = begin + hour * _HOUR + int(rng.random() * _HOUR)
            if moment < end:
                moments.append(moment)
        moments.sort()
        return moments

    def _moments(self) -> Iterator[tuple[int, bool]]:
        """Every booking's creation moment in order, and whether it is a live hold."""
        for begin, end, count in self._days:
            for moment in self._moments_of_day(begin, end, count):
                yield moment, False
        now, hold = self._pace.now, self._pace.hold
        for moment in sorted(self._rng.randrange(now - hold + _SECOND, now) for _ in range(self.live_holds)):
            yield moment, True

    # -- the stream ------------------------------------------------------------------------------------------------

    def chunks(self, size: int) -> Iterator[HistoryChunk]:
        """The history in chunks of about ``size`` booking slots; the last one ends the audit trail."""
        for moment, live in self._moments():
            self._chain_until(moment)
            self._chunk.slots += 1
            self._book(moment, live)
            if self._chunk.slots >= size:
                yield self._take_chunk()
        self._chain_until(None)
        yield self._take_chunk()

    def _take_chunk(self) -> HistoryChunk:
        chunk, self._chunk = self._chunk, HistoryChunk()
        chunk.seal = self._chain_head.take_seal()
        return chunk

    def _later(self, event: AuditEvent) -> None:
        heapq.heappush(self._pending, (event.occurred_at, next(self._sequence), event))

    def _chain(self, event: AuditEvent) -> None:
        self.audit_events += 1
        self._chunk.audit.append(
            self._chain_head.append(
                event.occurred_at,
                event.event_type,
                event.actor_id,
                event.actor_role,
                event.entity,
                before=event.before,
                after=event.after,
                metadata=event.metadata,
            )
        )
        if event.personal is not None:
            self._chunk.personal.append(self._chain_head.personal_line(*event.personal))

    def _chain_until(self, moment: int | None) -> None:
        """Chain every registration and pending event up to ``moment`` (None: all of them), oldest first."""
        customers, pending = self._customers, self._pending
        while True:
            next_registration = customers[self._registered].registered_at if self._registered < len(customers) else None
            next_pending = pending[0][0] if pending else None
            if next_registration is not None and (next_pending is None or next_registration <= next_pending):
                if moment is not None and next_registration >= moment:
                    return
                customer = customers[self._registered]
                self._registered += 1
                self._chain(AuditEvent(customer.registered_at, "auth.register", customer.id, customer.role,
                                       ("user", customer.id)))  # fmt: skip
            elif next_pending is not None:
                if moment is not None and next_pending > moment:
                    return
                self._chain(heapq.heappop(pending)[2])
            else:
                return

    # -- one booking -----------------------------------------------------------------------------------------------

    def _book(self, created: int, live: bool) -> None:
        rng = self._rng
        if self._registered == 0:
            self.unplaced += 1
            return
        customer = self._customers[int(self._registered * rng.random() ** _LOYALTY_SKEW)]
        agent = self._travel_agent()
        party = self._party(customer)
        seated = party.seated
        placed = self._place(created, seated)
        if placed is None:
            self.unplaced += 1
            return
        flight, fare = placed
        status, confirmed, cancelled, expired = self._fate(created, flight.departure_at, live)
        if status in ("PENDING_PAYMENT", "CONFIRMED"):
            self._available[fare.position] -= seated
            self.taken[fare.position] += seated
        booking_id = time_ordered_uuid(rng, created)
        booker = agent or customer
        total = booking_total(fare.price, seated, party.infants)
        pnr = next(self._pnrs)
        last_change = cancelled or expired or confirmed
        created_text = copy_timestamp(created)
        self._chunk.bookings.append(
            f"{booking_id}\t{pnr}\t{flight.id}\t{fare.id}\t{fare.cabin}\t{fare.fare_class}\t{customer.id}\t"
            f"{agent.id if agent else _NULL}\t{booker.id}\t{status}\t{seated}\t{total}\t{fare.currency}\t"
            f"{customer.email}\t{copy_timestamp(created + self._pace.hold)}\t{copy_timestamp(confirmed)}\t"
            f"{copy_timestamp(cancelled)}\t{copy_timestamp(expired)}\t{created_text}\t"
            f"{created_text if last_change is None else copy_timestamp(last_change)}\n"
        )
        self._add_passengers(booking_id, flight, party, customer, created, created_text)
        self.bookings += 1
        entity = ("booking", booking_id)
        facts = _CREATED_BOOKING_FORMAT.format(
            pnr=f'"{pnr}"',
            status='"PENDING_PAYMENT"',
            flight_id=flight.id,
            cabin=f'"{fare.cabin}"',
            fare_class=f'"{fare.fare_class}"',
            seat_count=seated,
            passengers=len(party.passengers),
            total_amount=total,
            currency=f'"{fare.currency}"',
            customer_id=f'"{customer.id}"',
        )
        self._chain(AuditEvent(created, "booking.created", booker.id, booker.role, entity, after=facts))
        self._follow_up(entity, booker, status, confirmed, cancelled, expired)
        if confirmed is not None:
            paid = PaidBooking(booking_id, booker, total, fare.currency, fare.refundable, created, confirmed, cancelled)
            for event in self._payment_hook(paid):
                if event.occurred_at < created:
                    raise ValueError(f"payment event {event.event_type} precedes its booking")
                self._later(event)

    def _follow_up(
        self,
        entity: tuple[str, str],
        booker: SeededUser,
        status: str,
        confirmed: int | None,
        cancelled: int | None,
        expired: int | None,
    ) -> None:
        """Queue the booking's status changes after ``booking.created``."""
        pending = _STATUS_TEXT["PENDING_PAYMENT"]
        if expired is not None:
            self._later(AuditEvent(expired, "booking.expired", None, "SYSTEM", entity, pending, _EXPIRED_TEXT))
        if confirmed is not None:
            confirmed_text = _STATUS_TEXT["CONFIRMED"]
            self._later(AuditEvent(confirmed, "booking.confirmed", None, "SYSTEM", entity, pending, confirmed_text))
        if cancelled is not None:
            before = pending if confirmed is None else _STATUS_TEXT["CONFIRMED"]
            self._later(
                AuditEvent(cancelled, "booking.cancelled", booker.id, booker.role, entity, before, _CANCELLED_TEXT)
            )
        assert status != "CANCELLED" or cancelled is not None

    def _travel_agent(self) -> SeededUser | None:
        """The agent making this booking, or None when the customer books for themselves."""
        rng, bounds = self._rng, self._agent_bounds
        if not self._agents or rng.random() >= _AGENT_SHARE:
            return None
        return self._agents[bisect.bisect_left(bounds, rng.random() * bounds[-1])]

    def _party(self, customer: SeededUser) -> _Party:
        rng = self._rng
        size = _PARTY_SIZES[bisect.bisect_right(_PARTY_CUMULATIVE, rng.random() * _PARTY_CUMULATIVE[-1])]
        passengers = [("ADULT", customer.first_name, customer.last_name)]
        adults = 1
        infants = 0
        for _ in range(size - 1):
            draw = rng.random()
            if draw < _COMPANION_ADULT:
                last_name = customer.last_name if rng.random() < _FAMILY_NAME_SHARE else _pick(rng, LAST_NAMES)
                passengers.append(("ADULT", _pick(rng, FIRST_NAMES), last_name))
                adults += 1
            elif draw < _COMPANION_CHILD or infants >= adults:
                passengers.append(("CHILD", _pick(rng, FIRST_NAMES), customer.last_name))
            else:
                passengers.append(("INFANT", _pick(rng, FIRST_NAMES), customer.last_name))
                infants += 1
        return _Party(passengers, infants)

    def _add_passengers(
        self,
        booking_id: str,
        flight: BookableFlight,
        party: _Party,
        customer: SeededUser,
        created: int,
        created_text: str,
    ) -> None:
        rng = self._rng
        for number, (kind, first_name, last_name) in enumerate(party.passengers):
            if number == 0:
                birth = customer.birth_ordinal
            else:
                ages = _ADULT_AGE_DAYS if kind == "ADULT" else _CHILD_AGE_DAYS if kind == "CHILD" else _INFANT_AGE_DAYS
                birth = flight.departure_ordinal - _between(rng, *ages)
            self._chunk.passengers.append(
                f"{time_ordered_uuid(rng, created)}\t{booking_id}\t{flight.id}\t{first_name}\t{last_name}\t"
                f"{date.fromordinal(birth).isoformat()}\t{kind}\t{_NULL}\t{_NULL}\t{created_text}\n"
            )
        self.passengers += len(party.passengers)

    def _place(self, created: int, seats: int) -> tuple[BookableFlight, Fare] | None:
        """A flight 1-60 days after ``created`` with a bucket that has ``seats`` free, or None."""
        rng, departures = self._rng, self._departures
        earliest, latest = created + _MIN_LEAD, created + _MAX_LEAD
        for _ in range(_PLACEMENT_TRIES):
            target = created + int(rng.triangular(_MIN_LEAD, _MAX_LEAD, _MODE_LEAD))
            low = bisect.bisect_left(departures, max(earliest, target - _LEAD_SLACK))
            high = bisect.bisect_right(departures, min(latest, target + _LEAD_SLACK))
            if low >= high:  # no flight near that moment (the ends of the seeded range): any in the window
                low, high = bisect.bisect_left(departures, earliest), bisect.bisect_right(departures, latest)
                if low >= high:
                    return None
            bounds = self._capacity_bounds
            if bounds[high] == bounds[low]:
                continue
            seat = _between(rng, bounds[low], bounds[high])
            flight = self._flights[bisect.bisect_right(bounds, seat) - 1]
            fare = self._fare(flight, seats)
            if fare is not None:
                return flight, fare
        return None

    def _fare(self, flight: BookableFlight, seats: int) -> Fare | None:
        """A bucket drawn in proportion to its size; when it lacks the seats, another of the same cabin."""
        drawn = flight.fares[bisect.bisect_right(flight.seat_bounds, _between(self._rng, 0, flight.capacity))]
        if self._available[drawn.position] >= seats:
            return drawn
        for fare in flight.fares:
            if fare.cabin == drawn.cabin and self._available[fare.position] >= seats:
                return fare
        return None

    def _fate(self, created: int, departure: int, live: bool) -> tuple[str, int | None, int | None, int | None]:
        """``(status, confirmed_at, cancelled_at, expired_at)`` of a booking made at ``created``."""
        if live:
            return "PENDING_PAYMENT", None, None, None
        rng, hold = self._rng, self._pace.hold
        draw = rng.random()
        if draw < _EXPIRED_SHARE:
            return "EXPIRED", None, None, created + hold + _between(rng, 0, _SWEEP_DELAY)
        if draw < _EXPIRED_SHARE + _CANCELLED_UNPAID_SHARE:
            return "CANCELLED", None, created + _between(rng, _MINUTE, hold), None
        confirmed = created + _between(rng, 20 * _SECOND, hold - 30 * _SECOND)
        if rng.random() < _CANCELLED_AFTER_CONFIRM_SHARE:
            earliest = confirmed + _CANCEL_AFTER_PAYMENT
            latest = min(self._pace.now - _MINUTE, departure - _CANCEL_BEFORE_DEPARTURE)
            if earliest < latest:
                return "CANCELLED", confirmed, _between(rng, earliest, latest), None
        return "CONFIRMED", confirmed, None, None
