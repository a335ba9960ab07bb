"""The ``stripe`` provider: PaymentIntents and Refunds through the official SDK's async client, at the API base
the settings name (a local stand-in in tests). Every call carries our idempotency key, and the SDK's own retries
are off: a call that does not answer within the budget is :class:`ProviderUnavailable`, retried by whoever holds
the key (the client, or the worker's refund reconciler).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import stripe

from core_api.payments.providers import ProviderIntent, ProviderRefund, ProviderRefused, ProviderUnavailable

if TYPE_CHECKING:
    from core_api.settings import Settings

__all__ = ["StripeProvider"]


def _failure(exc: stripe.StripeError) -> Exception:
    # No answer, or an answer saying the provider itself is in trouble: the call may be retried under its key.
    if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError) or (exc.http_status or 0) >= 500:
        return ProviderUnavailable(f"Stripe did not answer: {type(exc).__name__}")
    return ProviderRefused(f"Stripe refused: {exc.user_message or type(exc).__name__}")


def _intent(obj: Any) -> ProviderIntent:
    return ProviderIntent(id=obj["id"], client_secret=obj["client_secret"] or "", status=obj["status"])


class StripeProvider:
    name = "stripe"

    def __init__(self, client: stripe.StripeClient) -> None:
        self._client = client

    @classmethod
    def from_settings(cls, settings: Settings) -> StripeProvider:
        assert settings.stripe.secret_key  # the settings refuse the stripe provider without one
        client = stripe.StripeClient(
            settings.stripe.secret_key,
            base_addresses={"api": settings.stripe.api_base},
            max_network_retries=0,
            http_client=stripe.HTTPXClient(timeout=settings.payment.provider_timeout_seconds),
        )
        return cls(client)

    async def create_intent(
        self, *, amount: int, currency: str, metadata: dict[str, str], idempotency_key: str
    ) -> ProviderIntent:
        try:
            intent = await self._client.v1.payment_intents.create_async(
                {"amount": amount, "currency": currency.lower(), "metadata": metadata},
                {"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            raise _failure(exc) from exc
        return _intent(intent)

    async def retrieve_intent(self, intent_id: str) -> ProviderIntent:
        try:
            return _intent(await self._client.v1.payment_intents.retrieve_async(intent_id))
        except stripe.StripeError as exc:
            raise _failure(exc) from exc

    async def cancel_intent(self, intent_id: str, *, idempotency_key: str) -> None:
        try:
            await self._client.v1.payment_intents.cancel_async(intent_id, {}, {"idempotency_key": idempotency_key})
        except stripe.StripeError as exc:
            raise _failure(exc) from exc

    async def refund(
        self, *, intent_id: str, amount: int, metadata: dict[str, str], idempotency_key: str
    ) -> ProviderRefund:
        try:
            refund = await self._client.v1.refunds.create_async(
                {"payment_intent": intent_id, "amount": amount, "metadata": metadata},
                {"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            raise _failure(exc) from exc
        return ProviderRefund(id=refund["id"], status=refund["status"] or "pending")
