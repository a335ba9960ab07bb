"""The payment provider interface and its two implementations: ``sandbox`` (the default; no network, state in our
database) and ``stripe`` (PaymentIntents through the official SDK). Both confirm payments the same way: the provider
sends a signed ``payment_intent.*`` webhook to ``/webhooks/stripe``.

A provider call that does not answer raises :class:`ProviderUnavailable` (the API answers 503); a call the provider
refuses raises :class:`ProviderRefused`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import msgspec

if TYPE_CHECKING:
    from core_api.settings import Settings

__all__ = [
    "PaymentProvider",
    "ProviderError",
    "ProviderIntent",
    "ProviderRefund",
    "ProviderRefused",
    "ProviderUnavailable",
    "load_provider",
]


class ProviderError(Exception):
    """A provider call failed."""


class ProviderUnavailable(ProviderError):
    """The provider did not answer (down, unreachable, too slow): the call may or may not have happened."""


class ProviderRefused(ProviderError):
    """The provider answered and refused the call."""


class ProviderIntent(msgspec.Struct, frozen=True, kw_only=True):
    """A PaymentIntent as the provider reports it."""

    id: str
    client_secret: str
    status: str


class ProviderRefund(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    status: str
    """``succeeded``, ``pending`` or ``failed`` (Stripe's words)."""


class PaymentProvider(Protocol):
    """What payments need from a provider; every call is idempotent under the key it is given."""

    name: str

    async def create_intent(
        self, *, amount: int, currency: str, metadata: dict[str, str], idempotency_key: str
    ) -> ProviderIntent: ...

    async def retrieve_intent(self, intent_id: str) -> ProviderIntent: ...

    async def cancel_intent(self, intent_id: str, *, idempotency_key: str) -> None: ...

    async def refund(
        self, *, intent_id: str, amount: int, metadata: dict[str, str], idempotency_key: str
    ) -> ProviderRefund: ...


def load_provider(settings: Settings) -> PaymentProvider:
    """The provider the settings name."""
    if settings.payment.provider == "stripe":
        from core_api.payments.providers.stripe import StripeProvider

        return StripeProvider.from_settings(settings)
    from core_api.payments.providers.sandbox import SandboxProvider

    return SandboxProvider()
