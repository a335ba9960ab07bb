-- Payments (issue 10): what 0001's payments, refunds and webhook_events lacked to sell a seat.

-- One open intent per booking: a second POST /payments for the booking answers the open one.
CREATE UNIQUE INDEX payments_one_open_per_booking ON payments (booking_id)
    WHERE status IN ('REQUIRES_PAYMENT', 'PROCESSING');

-- Provider customer and payment-method ids, AES-256-GCM encrypted (core_api.security.crypto: the key version is
-- the ciphertext's first byte; crypto_key_version repeats the oldest of a row's, to find rows left to re-encrypt).
ALTER TABLE payments
    ADD COLUMN provider_customer_enc bytea,
    ADD COLUMN payment_method_enc bytea,
    ADD COLUMN crypto_key_version smallint CHECK (crypto_key_version BETWEEN 1 AND 255);
CREATE INDEX payments_crypto_key_version_idx ON payments (crypto_key_version) WHERE crypto_key_version IS NOT NULL;

-- Refunds awaiting the provider's answer (the worker's reconciler retries them with the same idempotency key).
ALTER TABLE refunds
    ADD COLUMN attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN last_error text,
    ADD COLUMN source text NOT NULL DEFAULT 'api' CHECK (source IN ('api', 'cancellation', 'automatic', 'provider'));
CREATE INDEX refunds_pending_idx ON refunds (updated_at) WHERE status = 'PENDING';

-- Why a booking ended the way it did, when the status alone does not say (a payment after the hold lapsed, with
-- the seats gone, is refunded automatically).
ALTER TABLE bookings ADD COLUMN status_reason text CHECK (length(status_reason) <= 500);

-- Which payment a webhook event concerned (for the audit of a payment's history).
ALTER TABLE webhook_events ADD COLUMN payment_id uuid REFERENCES payments (id);
CREATE INDEX webhook_events_payment_id_idx ON webhook_events (payment_id) WHERE payment_id IS NOT NULL;
CREATE INDEX webhook_events_type_idx ON webhook_events (type);
