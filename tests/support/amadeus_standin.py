"""A local stand-in for Amadeus Self-Service, speaking its HTTP protocol so that the real ``amadeus`` SDK is exercised.

It serves the two endpoints the ``amadeus`` search provider uses, with Amadeus' real bodies, status codes and
content types (the SDK only parses ``application/json`` and ``application/vnd.amadeus+json``, exactly)::

    POST /v1/security/oauth2/token      client credentials → a bearer token (401 ``invalid_client`` when wrong)
    GET  /v2/shopping/flight-offers     bearer token required (401), parameters validated (400), offers

Usage::

    with AmadeusStandIn() as standin:
        standin.offers = [make_offer("1", segments=[make_segment(origin="JFK", destination="LHR")])]
        standin.delay_seconds = 0.5  # every search answers this late
        standin.fail_status = 500  # every search answers Amadeus' server error
        provider = AmadeusProvider.from_settings(Settings(amadeus=standin.settings()))
        ...
        assert standin.token_requests == 1 and standin.search_params[-1]["adults"] == "2"

The server is a ``ThreadingHTTPServer`` on ``127.0.0.1`` (ephemeral port) in a daemon thread, so it answers while
the test's event loop runs the code under test. Its attributes may be changed from the test at any time.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import airportsdata

from core_api.settings import AmadeusSettings

__all__ = ["AmadeusStandIn", "make_offer", "make_segment"]

OAUTH_PATH = "/v1/security/oauth2/token"
OFFERS_PATH = "/v2/shopping/flight-offers"
TRAVEL_CLASSES = ("ECONOMY", "PREMIUM_ECONOMY", "BUSINESS", "FIRST")

_AIRPORTS = airportsdata.load("IATA")
_IATA = re.compile(r"[A-Z]{3}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DURATION = re.compile(r"PT(?:(\d+)H)?(?:(\d+)M)?")

# Amadeus' own error bodies, as recorded from the test environment.
INVALID_CLIENT = {
    "error": "invalid_client",
    "error_description": "Client credentials are invalid",
    "code": 38187,
    "title": "Invalid parameters",
}
UNSUPPORTED_GRANT_TYPE = {
    "error": "unsupported_grant_type",
    "error_description": "Only client_credentials value is allowed for the body parameter grant_type",
    "code": 38187,
    "title": "Invalid parameters",
}
MISSING_AUTHORIZATION = {
    "errors": [
        {
            "code": 38191,
            "title": "Invalid HTTP header",
            "detail": "Missing or invalid format for mandatory Authorization header",
            "status": 401,
        }
    ]
}
INVALID_TOKEN = {
    "errors": [
        {
            "code": 38190,
            "title": "Invalid access token",
            "detail": "The access token provided in the Authorization header is invalid",
            "status": 401,
        }
    ]
}
SYSTEM_ERROR = {"errors": [{"status": 500, "code": 141, "title": "SYSTEM ERROR HAS OCCURRED"}]}


def make_segment(
    *,
    carrier: str = "BA",
    number: str = "178",
    origin: str = "JFK",
    destination: str = "LHR",
    departure: str = "2026-01-15T18:30:00",
    arrival: str = "2026-01-16T06:40:00",
    duration: str | None = "PT7H10M",
    aircraft: str = "77W",
    segment_id: str = "1",
) -> dict[str, Any]:
    """One segment as Amadeus sends it: local wall-clock times without offset, duration in ISO 8601."""
    segment: dict[str, Any] = {
        "departure": {"iataCode": origin, "terminal": "7", "at": departure},
        "arrival": {"iataCode": destination, "terminal": "5", "at": arrival},
        "carrierCode": carrier,
        "number": number,
        "aircraft": {"code": aircraft},
        "operating": {"carrierCode": carrier},
        "duration": duration,
        "id": segment_id,
        "numberOfStops": 0,
        "blacklistedInEU": False,
    }
    if duration is None:
        del segment["duration"]
    return segment


def make_offer(
    offer_id: str = "1",
    *,
    segments: list[dict[str, Any]] | None = None,
    currency: str = "USD",
    grand_total: str = "412.35",
    cabin: str = "ECONOMY",
    fare_class: str = "Y",
    seats: int = 9,
    adults: int = 1,
    children: int = 0,
    infants: int = 0,
) -> dict[str, Any]:
    """A flight-offer object in the shape Flight Offers Search v2 returns, priced ``grand_total`` for the party."""
    segments = segments if segments is not None else [make_segment()]
    carrier = segments[0]["carrierCode"]
    total = Decimal(grand_total)
    exponent = total.as_tuple().exponent
    quantum = Decimal(1).scaleb(exponent if isinstance(exponent, int) and exponent < 0 else 0)
    base = (total * Decimal("0.82")).quantize(quantum)
    travelers = [("ADULT", adults), ("CHILD", children), ("HELD_INFANT", infants)]
    party = [kind for kind, count in travelers for _ in range(count)] or ["ADULT"]
    share = (total / len(party)).quantize(quantum)
    return {
        "type": "flight-offer",
        "id": offer_id,
        "source": "GDS",
        "instantTicketingRequired": False,
        "nonHomogeneous": False,
        "oneWay": False,
        "lastTicketingDate": segments[0]["departure"]["at"][:10],
        "numberOfBookableSeats": seats,
        "itineraries": [{"duration": _itinerary_duration(segments), "segments": segments}],
        "price": {
            "currency": currency,
            "total": grand_total,
            "base": str(base),
            "fees": [{"amount": "0.00", "type": "SUPPLIER"}, {"amount": "0.00", "type": "TICKETING"}],
            "grandTotal": grand_total,
        },
        "pricingOptions": {"fareType": ["PUBLISHED"], "includedCheckedBagsOnly": True},
        "validatingAirlineCodes": [carrier],
        "travelerPricings": [
            {
                "travelerId": str(number),
                "fareOption": "STANDARD",
                "travelerType": kind,
                "price": {
                    "currency": currency,
                    "total": str(share),
                    "base": str((share * Decimal("0.82")).quantize(quantum)),
                },
                "fareDetailsBySegment": [
                    {
                        "segmentId": segment["id"],
                        "cabin": cabin,
                        "fareBasis": f"{fare_class}LOW{carrier}",
                        "class": fare_class,
                        "includedCheckedBags": {"quantity": 2 if cabin in ("BUSINESS", "FIRST") else 1},
                    }
                    for segment in segments
                ],
            }
            for number, kind in enumerate(party, start=1)
        ],
    }


def _itinerary_duration(segments: list[dict[str, Any]]) -> str:
    """First departure to last arrival, in the airports' zones, as ``PT…H…M``."""
    try:
        start = _utc(segments[0]["departure"]["at"], segments[0]["departure"]["iataCode"])
        end = _utc(segments[-1]["arrival"]["at"], segments[-1]["arrival"]["iataCode"])
    except (KeyError, IndexError, TypeError, ValueError):
        return "PT0M"
    minutes = max(int((end - start) / timedelta(minutes=1)), 0)
    return f"PT{minutes // 60}H{minutes % 60}M"


def _utc(local: str, iata: str) -> datetime:
    return datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(_AIRPORTS[iata]["tz"]))


class AmadeusStandIn:
    """The stand-in server; configure it through its attributes, read what it saw through its counters."""

    def __init__(self, *, client_id: str = "standin-client-id", client_secret: str | None = None) -> None:
        self.client_id = client_id
        self.client_secret = client_secret or f"standin-secret-{secrets.token_hex(12)}"
        self.host = "127.0.0.1"
        self.port = 0
        self.offers: list[dict[str, Any]] = []
        """Flight offers every search returns (``max`` of them), in order."""
        self.delay_seconds = 0.0
        """How long each search waits before answering."""
        self.fail_status: int | None = None
        """When set, every search answers this status with Amadeus' server-error body."""
        self.expires_in = 1799
        """Lifetime announced for new tokens, in seconds."""
        self.token_requests = 0
        self.search_requests = 0
        self.search_params: list[dict[str, str]] = []
        """Query parameters of every search received, in order (authorised or not)."""
        self._tokens: set[str] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle

    def start(self) -> Self:
        server = ThreadingHTTPServer((self.host, 0), _Handler)
        server.daemon_threads = True
        server.standin = self  # type: ignore[attr-defined]
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="amadeus-standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # ends any artificial delay at once
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    # For tests

    def settings(self, **overrides: Any) -> AmadeusSettings:
        """``AmadeusSettings`` pointing at this stand-in over plain HTTP, with its credentials."""
        values: dict[str, Any] = {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "host": self.host,
            "port": self.port,
            "ssl": False,
        }
        values.update(overrides)
        return AmadeusSettings(**values)

    def revoke_tokens(self) -> None:
        """Invalidate every token issued so far, as Amadeus does when it expires tokens early."""
        with self._lock:
            self._tokens.clear()

    # Endpoint logic, called from the handler threads: each returns (status, content type, body).

    def _token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.token_requests += 1
        if form.get("grant_type") != "client_credentials":
            return 400, UNSUPPORTED_GRANT_TYPE
        if not (
            secrets.compare_digest(form.get("client_id", ""), self.client_id)
            and secrets.compare_digest(form.get("client_secret", ""), self.client_secret)
        ):
            return 401, INVALID_CLIENT
        token = secrets.token_urlsafe(21)
        with self._lock:
            self._tokens.add(token)
        return 200, {
            "type": "amadeusOAuth2Token",
            "username": "developers@flightdesk.example",
            "application_name": "flightdesk",
            "client_id": self.client_id,
            "token_type": "Bearer",
            "access_token": token,
            "expires_in": self.expires_in,
            "state": "approved",
            "scope": "",
        }

    def _search(self, authorization: str | None, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.search_requests += 1
            self.search_params.append(params)
        scheme, _, token = (authorization or "").partition(" ")
        if scheme != "Bearer" or not token:
            return 401, MISSING_AUTHORIZATION
        with self._lock:
            known = token in self._tokens
        if not known:
            return 401, INVALID_TOKEN
        if self.delay_seconds:
            self._stopping.wait(self.delay_seconds)
        if self.fail_status is not None:
            return self.fail_status, SYSTEM_ERROR
        errors = _validate(params)
        if errors:
            return 400, {"errors": errors}
        offers = self.offers[: int(params.get("max", "250"))]
        return 200, {
            "meta": {"count": len(offers), "links": {"self": f"http://{self.host}:{self.port}{OFFERS_PATH}"}},
            "data": offers,
            "dictionaries": _dictionaries(offers),
        }


def _validate(params: dict[str, str]) -> list[dict[str, Any]]:
    """Amadeus' answers to bad parameters: 32171 for a missing one, 477 for a malformed one."""
    missing = [
        {
            "status": 400,
            "code": 32171,
            "title": "MANDATORY DATA MISSING",
            "detail": "This attribute is required",
            "source": {"parameter": parameter},
        }
        for parameter in ("originLocationCode", "destinationLocationCode", "departureDate", "adults")
        if not params.get(parameter)
    ]
    malformed = [
        {
            "status": 400,
            "code": 477,
            "title": "INVALID FORMAT",
            "detail": detail,
            "source": {"parameter": parameter, "example": example},
        }
        for parameter, detail, example in _malformed(params)
    ]
    return missing + malformed


def _malformed(params: dict[str, str]) -> Iterator[tuple[str, str, str]]:
    """(parameter, detail, example) of each parameter present but not acceptable."""
    for parameter in ("originLocationCode", "destinationLocationCode"):
        if params.get(parameter) and not _IATA.fullmatch(params[parameter]):
            yield parameter, "is not a valid IATA code", "PAR"
    if params.get("departureDate") and not _DATE.fullmatch(params["departureDate"]):
        yield "departureDate", "should be a date in the YYYY-MM-DD format", "2026-10-30"
    counts = {}
    for parameter, low in (("adults", 1), ("children", 0), ("infants", 0)):
        value = params.get(parameter, str(low))
        if not value.isdigit() or not low <= int(value) <= 9:
            yield parameter, f"should be a number between {low} and 9", "1"
        counts[parameter] = int(value) if value.isdigit() else 0
    if counts["infants"] > counts["adults"]:
        yield "infants", "the number of infants cannot exceed the number of adults", "1"
    if counts["adults"] + counts["children"] > 9:
        yield "adults", "the number of seated travelers cannot exceed 9", "1"
    if params.get("travelClass", "ECONOMY") not in TRAVEL_CLASSES:
        yield "travelClass", f"should be one of {', '.join(TRAVEL_CLASSES)}", "ECONOMY"
    if params.get("nonStop", "false") not in ("true", "false"):
        yield "nonStop", "should be true or false", "false"


def _dictionaries(offers: list[dict[str, Any]]) -> dict[str, Any]:
    locations: dict[str, Any] = {}
    aircraft: dict[str, str] = {}
    carriers: dict[str, str] = {}
    currencies: dict[str, str] = {}
    for offer in offers:
        try:
            for segment in offer["itineraries"][0]["segments"]:
                for end in (segment["departure"], segment["arrival"]):
                    code = end["iataCode"]
                    country = _AIRPORTS[code]["country"] if code in _AIRPORTS else "ZZ"
                    locations[code] = {"cityCode": code, "countryCode": country}
                aircraft[segment["aircraft"]["code"]] = segment["aircraft"]["code"]
                carriers[segment["carrierCode"]] = segment["carrierCode"]
            currencies[offer["price"]["currency"]] = offer["price"]["currency"]
        except (KeyError, IndexError, TypeError):
            continue  # malformed offers planted by a test go out as they are
    return {"locations": locations, "aircraft": aircraft, "currencies": currencies, "carriers": carriers}


class _Handler(BaseHTTPRequestHandler):
    server_version = "AmadeusStandIn/1.0"

    @property
    def standin(self) -> AmadeusStandIn:
        standin: AmadeusStandIn = self.server.standin  # type: ignore[attr-defined]
        return standin

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", errors="replace")
        if url.path != OAUTH_PATH:
            self._reply(404, {"errors": [{"status": 404, "code": 38196, "title": "Resource not found"}]})
            return
        status, payload = self.standin._token(dict(parse_qsl(body)))
        self._reply(status, payload, content_type="application/json")

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path != OFFERS_PATH:
            self._reply(404, {"errors": [{"status": 404, "code": 38196, "title": "Resource not found"}]})
            return
        status, payload = self.standin._search(self.headers.get("Authorization"), dict(parse_qsl(url.query)))
        self._reply(status, payload)

    def _reply(self, status: int, payload: dict[str, Any], content_type: str = "application/vnd.amadeus+json") -> None:
        body = json.dumps(payload).encode()
        try:
            self.send_response(status, HTTPStatus(status).phrase)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout); nothing to answer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests assert on what the provider logs
