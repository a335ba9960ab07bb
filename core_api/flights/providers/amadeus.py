"""The ``amadeus`` search provider: Flight Offers Search through the official ``amadeus`` SDK, mapped to our offers.

The SDK is blocking (urllib), so each search runs on a small dedicated thread pool and the event loop never waits on
the network; the pool is the provider's own, so a slow Amadeus cannot starve the loop's default executor. Every
HTTP call has a socket timeout of the provider's budget, so a call abandoned by the caller's ``wait_for`` still
frees its thread soon after.

One ``amadeus.Client`` is shared by all threads. The client itself keeps no per-request state, but its token cache
(``AccessToken``) checks and refreshes without a lock: N threads finding no valid token would fetch N tokens. The
cache is therefore replaced by :class:`_SerialisedAccessToken`, which holds a lock across check-and-refresh, so one
thread fetches and the others wait for its token.

The client secret and the token live only inside the SDK client; nothing here logs them, the SDK runs with
``log_level="silent"`` (its ``debug`` level would print request parameters, the secret included), and the errors
raised carry the HTTP status and Amadeus' own error text with any echo of the secret redacted.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import re
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import airportsdata
import amadeus
from amadeus.client.access_token import AccessToken

from core_api.flights.schemas import Cabin, Money, Offer, Segment

if TYPE_CHECKING:
    from core_api.flights.schemas import SearchQuery
    from core_api.settings import Settings

__all__ = ["AmadeusError", "AmadeusProvider", "minor_units"]

logger = logging.getLogger(__name__)

MAX_OFFERS = 50
"""``max`` sent to Amadeus: offers asked for per search."""

_OAUTH_PATH = "/v1/security/oauth2/token"
_CURRENCY = re.compile(r"[A-Z]{3}")
_ISO_DURATION = re.compile(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:\d+S)?)?")
# ISO 4217 minor-unit exponents that are not 2 (Amadeus sends decimal strings; we store integers of minor units).
_ZERO_DECIMALS = ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV")
_CURRENCY_EXPONENTS: dict[str, int] = {
    **dict.fromkeys((*_ZERO_DECIMALS, "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    "CLF": 4,
    "UYW": 4,
}


class AmadeusError(Exception):
    """Amadeus answered with an error, or could not be reached (``status`` is then ``None``)."""

    def __init__(self, kind: str, status: int | None, detail: str) -> None:
        super().__init__(f"Amadeus {kind} [{status if status is not None else '---'}]: {detail}")
        self.kind = kind
        """The SDK's error class name: ``AuthenticationError``, ``ClientError``, ``ServerError``, ``NetworkError`` …"""
        self.status = status
        self.detail = detail


def minor_units(amount: str, currency: str) -> int:
    """``"412.35"`` USD → 41235, ``"52300"`` JPY → 52300, ``"120.250"`` KWD → 120250; exact, never through float.

    An amount with more decimals than its currency has is refused rather than rounded.
    """
    try:
        value = Decimal(amount)
    except (InvalidOperation, TypeError):
        raise ValueError(f"price {amount!r} is not a decimal number") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"price {amount!r} is not a non-negative amount")
    scaled = value.scaleb(_CURRENCY_EXPONENTS.get(currency, 2))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"price {amount!r} has more decimals than {currency} allows")
    return int(scaled)


class _SerialisedAccessToken(AccessToken):
    """The SDK's token cache with check-and-refresh under one lock (see the module docstring)."""

    access_token: str | None
    expires_at: int

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self._lock = threading.Lock()

    def _bearer_token(self) -> str:
        with self._lock:
            token: str = super()._bearer_token()
            return token

    def invalidate(self, bearer: str | None) -> None:
        """Forget the token if it is still the one that ``bearer`` carried (another thread may have replaced it)."""
        with self._lock:
            if bearer == f"Bearer {self.access_token}":
                self.access_token = None
                self.expires_at = 0


class AmadeusProvider:
    """Offers from Amadeus for a :class:`SearchQuery`; build it with :meth:`from_settings`, :meth:`close` it at exit."""

    name = "amadeus"

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        host: str,
        port: int,
        ssl: bool,
        timeout_seconds: float,
        currency: str | None = None,
        non_stop: bool | None = None,
        max_workers: int = 8,
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self.currency = currency
        """``currencyCode`` to ask for; ``None`` lets Amadeus price in the point of sale's currency."""
        self.non_stop = non_stop
        """``nonStop`` to send; ``None`` leaves it out (Amadeus' default: connections allowed)."""
        self.malformed_offers = 0
        """Offers skipped because they could not be mapped, since start."""
        self._counter_lock = threading.Lock()
        self._client = amadeus.Client(
            client_id=client_id,
            client_secret=client_secret,
            host=host,
            port=port,
            ssl=ssl,
            logger=logger,
            log_level="silent",
            http=functools.partial(urllib.request.urlopen, timeout=timeout_seconds),
        )
        # The SDK memoises its token cache in this attribute; setting it first makes the client use ours.
        self._token = _SerialisedAccessToken(self._client)
        self._client.access_token = self._token
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="amadeus")

    @classmethod
    def from_settings(cls, settings: Settings) -> AmadeusProvider | None:
        """The provider configured by ``FLIGHTDESK_AMADEUS_*``, or ``None`` when the key or secret is unset."""
        config = settings.amadeus
        if not config.client_id or not config.client_secret:
            return None
        return cls(
            client_id=config.client_id,
            client_secret=config.client_secret,
            host=config.host,
            port=config.port,
            ssl=config.ssl,
            timeout_seconds=settings.search.provider_timeout_seconds,
        )

    async def search(self, query: SearchQuery) -> list[Offer]:
        """Offers for the query, priced for the whole party; raises :class:`AmadeusError` when Amadeus fails."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._search_blocking, self.request_params(query))

    def close(self) -> None:
        """Stop the thread pool; a call still running finishes within its socket timeout."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def request_params(self, query: SearchQuery) -> dict[str, str | int]:
        """Query parameters of ``GET /v2/shopping/flight-offers`` for the query.

        ``max_price`` is not sent: Amadeus' ``maxPrice`` is per traveller, in whole units of the answer's currency,
        while ours is for the whole party in minor units; the search filters the merged offers itself.
        """
        params: dict[str, str | int] = {
            "originLocationCode": query.origin,
            "destinationLocationCode": query.destination,
            "departureDate": query.date.isoformat(),
            "adults": query.adults,
            "max": MAX_OFFERS,
        }
        if query.children:
            params["children"] = query.children
        if query.infants:
            params["infants"] = query.infants
        if query.cabin is not None:
            params["travelClass"] = query.cabin.value  # our cabin names are Amadeus' travelClass values
        if query.airline:
            params["includedAirlineCodes"] = query.airline
        if self.currency:
            params["currencyCode"] = self.currency
        if self.non_stop is not None:
            params["nonStop"] = "true" if self.non_stop else "false"
        return params

    # Everything below runs on the provider's threads.

    def _search_blocking(self, params: dict[str, str | int]) -> list[Offer]:
        try:
            try:
                response = self._client.shopping.flight_offers_search.get(**params)
            except amadeus.AuthenticationError as exc:
                request = getattr(exc.response, "request", None)
                if request is None or request.path == _OAUTH_PATH:
                    raise
                # Amadeus refused a token we hold as valid (revoked, or expired early): fetch a new one, once.
                self._token.invalidate(request.bearer_token)
                response = self._client.shopping.flight_offers_search.get(**params)
        except amadeus.ResponseError as exc:
            raise self._error(exc) from None
        except OSError as exc:  # a read timeout escapes the SDK as a bare socket error
            raise AmadeusError("NetworkError", None, str(exc) or type(exc).__name__) from None
        return self._map_offers(response.data)

    def _error(self, exc: Any) -> AmadeusError:
        response = exc.response
        result = getattr(response, "result", None)
        detail = _describe_errors(result) if isinstance(result, dict) else ""
        if not detail:
            reason = getattr(getattr(response, "http_response", None), "reason", None)
            detail = str(reason) if reason else "no details"
        secret = self._client.client_secret
        if secret:
            detail = detail.replace(secret, "[redacted]")
        return AmadeusError(exc.code, getattr(response, "status_code", None), detail)

    def _map_offers(self, data: Any) -> list[Offer]:
        offers: list[Offer] = []
        problems: list[str] = []
        for raw in data if isinstance(data, list) else []:
            try:
                offers.append(_offer(raw))
            except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
                raw_id = raw.get("id") if isinstance(raw, dict) else None
                problems.append(f"offer {raw_id!r}: {type(exc).__name__}: {exc}")
        if problems:
            with self._counter_lock:
                self.malformed_offers += len(problems)
            logger.warning(
                "amadeus: skipped %d malformed flight offer(s) of %d",
                len(problems),
                len(offers) + len(problems),
                extra={"provider": self.name, "problems": problems[:5]},
            )
        return offers


def _describe_errors(result: dict[str, Any]) -> str:
    """Amadeus' error body as one line: ``{"errors":[…]}`` of the APIs, or the OAuth ``error_description``."""
    if "error_description" in result:
        return f"{result.get('error', 'error')}: {result['error_description']}"
    parts = []
    for error in result.get("errors") or []:
        if not isinstance(error, dict):
            continue
        text = " ".join(str(error[key]) for key in ("code", "title") if error.get(key) is not None)
        if error.get("detail"):
            text += f": {error['detail']}"
        parameter = (error.get("source") or {}).get("parameter")
        if parameter:
            text += f" ({parameter})"
        parts.append(text)
    return "; ".join(parts)


def _offer(raw: dict[str, Any]) -> Offer:
    segments = [_segment(segment) for segment in raw["itineraries"][0]["segments"]]
    if not segments:
        raise ValueError("itinerary without segments")
    fare = raw["travelerPricings"][0]["fareDetailsBySegment"][0]
    price = raw["price"]
    currency = _text(price, "currency")
    if not _CURRENCY.fullmatch(currency):
        raise ValueError(f"currency {currency!r} is not an ISO 4217 code")
    amount = minor_units(price.get("grandTotal") or price["total"], currency)
    seats_left = raw["numberOfBookableSeats"]
    if not isinstance(seats_left, int) or isinstance(seats_left, bool) or seats_left < 0:
        raise ValueError(f"numberOfBookableSeats {seats_left!r} is not a count")
    cabin = Cabin(fare["cabin"])
    fare_class = _text(fare, "class")
    # Amadeus numbers offers 1..n per answer; the digest of what was offered tells equal offers of two answers apart
    # from different ones that happen to share a number.
    fingerprint = "|".join(
        [
            *(f"{s.flight_number}@{s.departure_at.isoformat()}" for s in segments),
            cabin,
            fare_class,
            str(amount),
            currency,
        ]
    )
    digest = hashlib.sha256(fingerprint.encode()).hexdigest()[:12]
    return Offer(
        offer_id=f"amadeus:{_text(raw, 'id')}:{digest}",
        source="amadeus",
        flight_id=None,
        segments=segments,
        cabin=cabin,
        fare_class=fare_class,
        price=Money(amount=amount, currency=currency),
        seats_left=seats_left,
    )


def _segment(raw: dict[str, Any]) -> Segment:
    carrier = _text(raw, "carrierCode")
    origin = _text(raw["departure"], "iataCode")
    destination = _text(raw["arrival"], "iataCode")
    departure_at = _aware(_text(raw["departure"], "at"), origin)
    arrival_at = _aware(_text(raw["arrival"], "at"), destination)
    if arrival_at <= departure_at:
        raise ValueError(f"segment arrives ({arrival_at}) before it departs ({departure_at})")
    duration = raw.get("duration")
    minutes = _iso_minutes(duration) if duration else (arrival_at - departure_at) // timedelta(minutes=1)
    return Segment(
        flight_number=f"{carrier}{_text(raw, 'number')}",
        airline=carrier,
        origin=origin,
        destination=destination,
        departure_at=departure_at,
        arrival_at=arrival_at,
        duration_minutes=minutes,
        origin_tz=_airport_zone(origin).key,
        destination_tz=_airport_zone(destination).key,
    )


def _text(mapping: dict[str, Any], key: str) -> str:
    value = mapping[key]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} {value!r} is not a non-empty string")
    return value


def _aware(local: str, airport: str) -> datetime:
    """Amadeus' ``2026-01-15T18:30:00`` is wall-clock time at the airport: ``2026-01-15T23:30:00Z`` at JFK (EST).

    Returned in UTC, as every time on our wire is (the segment carries the airport's zone beside it); UTC also
    keeps Python from subtracting two datetimes sharing one ZoneInfo as wall-clock times, which is wrong across a
    DST change within one zone.
    """
    moment = datetime.fromisoformat(local)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_airport_zone(airport))
    return moment.astimezone(UTC)


def _iso_minutes(duration: str) -> int:
    """``PT7H25M`` → 445, ``P1DT2H`` → 1560."""
    match = _ISO_DURATION.fullmatch(duration)
    if match is None or duration in ("P", "PT"):
        raise ValueError(f"duration {duration!r} is not an ISO 8601 duration")
    days, hours, minutes = (int(group or 0) for group in match.groups())
    total = days * 1440 + hours * 60 + minutes
    if total <= 0:
        raise ValueError(f"duration {duration!r} is not positive")
    return total


@functools.cache
def _airport_zone(iata: str) -> ZoneInfo:
    airport = _airports().get(iata)
    if airport is None or not airport.get("tz"):
        raise ValueError(f"unknown airport {iata!r}: no time zone for its local times")
    return ZoneInfo(airport["tz"])


@functools.cache
def _airports() -> dict[str, Any]:
    return dict(airportsdata.load("IATA"))
