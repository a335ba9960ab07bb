"""The ``sandbox`` provider: no network, no money. Its intents live in our ``payments`` rows; ids are derived from
the idempotency keys, so a repeated call answers the same intent or refund, as Stripe does. Payments are settled by
``POST /payments/{id}/sandbox/confirm``, which makes it send the webhook Stripe would (see
:func:`core_api.payments.webhooks.sandbox_event`).
"""

from __future__ import annotations

import hashlib

from core_api.payments.providers import ProviderIntent, ProviderRefund

__all__ = ["SandboxProvider"]


def _derived(prefix: str, key: str) -> str:
    return f"{prefix}_sandbox_{hashlib.sha256(key.encode()).hexdigest()[:24]}"


class SandboxProvider:
    name = "sandbox"

    async def create_intent(
        self, *, amount: int, currency: str, metadata: dict[str, str], idempotency_key: str
    ) -> ProviderIntent:
        del amount, currency, metadata  # kept in our payments row, which is the sandbox's state
        intent_id = _derived("pi", idempotency_key)
        secret = hashlib.sha256(f"secret:{intent_id}".encode()).hexdigest()[:24]
        return ProviderIntent(
            id=intent_id, client_secret=f"{intent_id}_secret_{secret}", status="requires_payment_method"
        )

    async def retrieve_intent(self, intent_id: str) -> ProviderIntent:
        secret = hashlib.sha256(f"secret:{intent_id}".encode()).hexdigest()[:24]
        return ProviderIntent(
            id=intent_id, client_secret=f"{intent_id}_secret_{secret}", status="requires_payment_method"
        )

    async def cancel_intent(self, intent_id: str, *, idempotency_key: str) -> None:
        del intent_id, idempotency_key

    async def refund(
        self, *, intent_id: str, amount: int, metadata: dict[str, str], idempotency_key: str
    ) -> ProviderRefund:
        del intent_id, amount, metadata
        return ProviderRefund(id=_derived("re", idempotency_key), status="succeeded")
