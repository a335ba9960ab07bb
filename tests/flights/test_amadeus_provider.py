"""The ``amadeus`` provider through the real SDK against the local Amadeus stand-in."""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest

from core_api.flights.providers.amadeus import AmadeusError, AmadeusProvider, minor_units
from core_api.flights.schemas import Cabin, Money, SearchQuery
from core_api.settings import AmadeusSettings, SearchSettings, Settings
from tests.support.amadeus_standin import AmadeusStandIn, make_offer, make_segment

QUERY = SearchQuery(origin="JFK", destination="LHR", date=date(2026, 1, 15))


@pytest.fixture
def standin() -> Iterator[AmadeusStandIn]:
    with AmadeusStandIn() as server:
        server.offers = [make_offer("1")]
        yield server


def build_provider(standin: AmadeusStandIn, *, timeout: float = 3.0, **overrides: object) -> AmadeusProvider:
    settings = Settings(amadeus=standin.settings(**overrides), search=SearchSettings(provider_timeout_seconds=timeout))
    provider = AmadeusProvider.from_settings(settings)
    assert provider is not None
    return provider


@pytest.fixture
def provider(standin: AmadeusStandIn) -> Iterator[AmadeusProvider]:
    provider = build_provider(standin)
    yield provider
    provider.close()


async def test_an_offer_is_mapped_to_ours(standin: AmadeusStandIn, provider: AmadeusProvider) -> None:
    standin.offers = [
        make_offer(
            "7",
            segments=[
                # JFK 18:30 in January is EST (UTC-5); LHR is on GMT.
                make_segment(
                    carrier="BA",
                    number="178",
                    origin="JFK",
                    destination="LHR",
                    departure="2026-01-15T18:30:00",
                    arrival="2026-01-16T06:40:00",
                    duration="PT7H10M",
                ),
                # No duration given: taken from the times (LHR GMT → NRT JST, UTC+9).
                make_segment(
                    carrier="JL",
                    number="44",
                    origin="LHR",
                    destination="NRT",
                    departure="2026-01-16T09:30:00",
                    arrival="2026-01-17T07:15:00",
                    duration=None,
                    segment_id="2",
                ),
            ],
            currency="USD",
            grand_total="1234.56",
            cabin="BUSINESS",
            fare_class="J",
            seats=4,
        )
    ]

    [offer] = await provider.search(QUERY)

    assert offer.offer_id.startswith("amadeus:7:")
    assert (offer.source, offer.flight_id) == ("amadeus", None)
    assert (offer.cabin, offer.fare_class, offer.seats_left) == (Cabin.BUSINESS, "J", 4)
    assert offer.price == Money(amount=123456, currency="USD")
    first, second = offer.segments
    assert (first.flight_number, first.airline, first.origin, first.destination) == ("BA178", "BA", "JFK", "LHR")
    # Local times at each airport become UTC, with the airport's zone beside them.
    assert first.departure_at == datetime(2026, 1, 15, 23, 30, tzinfo=UTC)
    assert first.departure_at.utcoffset() == timedelta(0)
    assert (first.origin_tz, first.destination_tz) == ("America/New_York", "Europe/London")
    assert first.arrival_at == datetime(2026, 1, 16, 6, 40, tzinfo=UTC)
    assert first.duration_minutes == 7 * 60 + 10
    assert (second.flight_number, second.airline) == ("JL44", "JL")
    assert second.arrival_at == datetime(2026, 1, 16, 22, 15, tzinfo=UTC)
    assert second.arrival_at.utcoffset() == timedelta(0)
    assert (second.origin_tz, second.destination_tz) == ("Europe/London", "Asia/Tokyo")
    assert second.duration_minutes == 12 * 60 + 45


async def test_local_times_follow_daylight_saving(standin: AmadeusStandIn, provider: AmadeusProvider) -> None:
    standin.offers = [
        make_offer(segments=[make_segment(departure="2026-07-15T18:30:00", arrival="2026-07-16T06:40:00")])
    ]

    [offer] = await provider.search(QUERY)

    assert offer.segments[0].departure_at == datetime(2026, 7, 15, 22, 30, tzinfo=UTC)  # EDT, UTC-4
    assert offer.segments[0].arrival_at == datetime(2026, 7, 16, 5, 40, tzinfo=UTC)  # BST, UTC+1


@pytest.mark.parametrize(
    ("currency", "grand_total", "amount"),
    [("USD", "412.35", 41235), ("USD", "99", 9900), ("JPY", "52300", 52300), ("KWD", "120.250", 120250)],
)
async def test_prices_are_in_minor_units_of_their_currency(
    standin: AmadeusStandIn, provider: AmadeusProvider, currency: str, grand_total: str, amount: int
) -> None:
    standin.offers = [make_offer(currency=currency, grand_total=grand_total)]

    [offer] = await provider.search(QUERY)

    assert offer.price == Money(amount=amount, currency=currency)


def test_an_amount_finer_than_its_currency_is_refused() -> None:
    assert minor_units("52300.00", "JPY") == 52300
    for amount, currency in [("10.005", "USD"), ("12.5", "JPY"), ("NaN", "USD"), ("-1.00", "USD"), ("1e", "USD")]:
        with pytest.raises(ValueError, match="price"):
            minor_units(amount, currency)


async def test_party_cabin_and_airline_reach_amadeus(standin: AmadeusStandIn, provider: AmadeusProvider) -> None:
    query = SearchQuery(
        origin="JFK",
        destination="LHR",
        date=date(2026, 1, 15),
        adults=2,
        children=1,
        infants=1,
        cabin=Cabin.PREMIUM_ECONOMY,
        airline="BA",
        max_price=100_000,
    )

    await provider.search(query)

    assert standin.search_params[-1] == {
        "originLocationCode": "JFK",
        "destinationLocationCode": "LHR",
        "departureDate": "2026-01-15",
        "adults": "2",
        "children": "1",
        "infants": "1",
        "travelClass": "PREMIUM_ECONOMY",
        "includedAirlineCodes": "BA",
        "max": "50",
    }


async def test_the_token_is_fetched_once_and_reused(standin: AmadeusStandIn, provider: AmadeusProvider) -> None:
    for _ in range(3):
        assert len(await provider.search(QUERY)) == 1

    assert (standin.token_requests, standin.search_requests) == (1, 3)


async def test_concurrent_searches_share_one_token(standin: AmadeusStandIn, provider: AmadeusProvider) -> None:
    standin.delay_seconds = 0.05  # the searches overlap on the provider's threads

    results = await asyncio.gather(*(provider.search(QUERY) for _ in range(10)))

    assert all(len(offers) == 1 for offers in results)
    assert (standin.token_requests, standin.search_requests) == (1, 10)


async def test_a_revoked_token_is_replaced_once(standin: AmadeusStandIn, provider: AmadeusProvider) -> None:
    await provider.search(QUERY)
    standin.revoke_tokens()

    assert len(await provider.search(QUERY)) == 1
    assert standin.token_requests == 2


async def test_wrong_credentials_raise_without_the_secret(
    standin: AmadeusStandIn, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "wrong-secret-d5f1c0ffee"
    provider = build_provider(standin, client_secret=secret)
    caplog.set_level(logging.DEBUG)
    try:
        with pytest.raises(AmadeusError) as caught:
            await provider.search(QUERY)
    finally:
        provider.close()

    error = caught.value
    assert (error.kind, error.status) == ("AuthenticationError", 401)
    assert "Client credentials are invalid" in str(error)
    assert standin.search_requests == 0
    printed = capsys.readouterr()
    for text in ("".join(traceback.format_exception(error)), repr(error), caplog.text, printed.out, printed.err):
        assert secret not in text


async def test_a_server_error_raises(standin: AmadeusStandIn, provider: AmadeusProvider) -> None:
    standin.fail_status = 500

    with pytest.raises(AmadeusError, match=r"\[500\].*141 SYSTEM ERROR HAS OCCURRED") as caught:
        await provider.search(QUERY)

    assert (caught.value.kind, caught.value.status) == ("ServerError", 500)


async def test_a_rejected_parameter_raises_with_amadeus_detail(provider: AmadeusProvider) -> None:
    query = SearchQuery(origin="J1", destination="LHR", date=date(2026, 1, 15))

    with pytest.raises(
        AmadeusError, match=r"477 INVALID FORMAT: is not a valid IATA code \(originLocationCode\)"
    ) as caught:
        await provider.search(query)

    assert (caught.value.kind, caught.value.status) == ("ClientError", 400)


async def test_an_unreachable_amadeus_raises(standin: AmadeusStandIn, provider: AmadeusProvider) -> None:
    standin.stop()

    with pytest.raises(AmadeusError) as caught:
        await provider.search(QUERY)

    assert (caught.value.kind, caught.value.status) == ("NetworkError", None)


async def test_a_slow_amadeus_times_out_without_blocking_the_loop(
    standin: AmadeusStandIn, provider: AmadeusProvider
) -> None:
    standin.delay_seconds = 2.0
    started = time.monotonic()
    search = asyncio.ensure_future(asyncio.wait_for(provider.search(QUERY), 0.5))

    # The loop runs other work while the SDK waits on its thread: this sleep ends long before Amadeus answers.
    await asyncio.sleep(0.05)
    assert not search.done()
    with pytest.raises(TimeoutError):
        await search

    # Had the SDK's blocking call run on the loop, the timeout could only fire once the 2 s answer came back.
    assert time.monotonic() - started < 1.5


async def test_a_read_timeout_frees_the_thread_and_raises(standin: AmadeusStandIn) -> None:
    standin.delay_seconds = 2.0
    provider = build_provider(standin, timeout=0.3)
    try:
        with pytest.raises(AmadeusError) as caught:
            await provider.search(QUERY)
    finally:
        provider.close()

    assert caught.value.kind == "NetworkError"


async def test_malformed_offers_are_skipped(
    standin: AmadeusStandIn, provider: AmadeusProvider, caplog: pytest.LogCaptureFixture
) -> None:
    no_price = make_offer("2")
    del no_price["price"]
    odd_cabin = make_offer("3", cabin="STEERAGE")
    unknown_airport = make_offer("4", segments=[make_segment(destination="QQQ")])
    float_price = make_offer("5", grand_total="12.345")
    standin.offers = [make_offer("1"), no_price, odd_cabin, unknown_airport, float_price, make_offer("6")]

    with caplog.at_level(logging.WARNING):
        offers = await provider.search(QUERY)

    assert [offer.offer_id.split(":")[1] for offer in offers] == ["1", "6"]
    assert provider.malformed_offers == 4
    assert "skipped 4 malformed flight offer(s) of 6" in caplog.text


async def test_equal_offers_get_equal_ids_and_different_offers_different_ones(
    standin: AmadeusStandIn, provider: AmadeusProvider
) -> None:
    standin.offers = [make_offer("1"), make_offer("2", fare_class="M")]
    first = await provider.search(QUERY)
    second = await provider.search(QUERY)

    assert [offer.offer_id for offer in first] == [offer.offer_id for offer in second]
    assert first[0].offer_id.split(":")[2] != first[1].offer_id.split(":")[2]


def test_from_settings_needs_key_and_secret() -> None:
    assert AmadeusProvider.from_settings(Settings()) is None
    assert AmadeusProvider.from_settings(Settings(amadeus=AmadeusSettings(client_id="key"))) is None
    assert AmadeusProvider.from_settings(Settings(amadeus=AmadeusSettings(client_secret="secret"))) is None


def test_the_provider_takes_its_budget_from_settings(standin: AmadeusStandIn) -> None:
    provider = build_provider(standin, timeout=1.5)
    try:
        assert (provider.name, provider.timeout_seconds) == ("amadeus", 1.5)
        assert standin.client_secret not in repr(provider)
    finally:
        provider.close()
