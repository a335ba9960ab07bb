-- payment_visible --
-- A payment the caller may see, by the scope of its booking (as bookings: own, made by them, their airline's, all).
SELECT p.id, p.booking_id
FROM payments AS p
JOIN bookings AS b ON b.id = p.booking_id
JOIN flights AS f ON f.id = b.flight_id
WHERE p.id = %(id)s::uuid
  AND CASE %(scope)s::text
          WHEN 'all' THEN true
          WHEN 'customer' THEN b.customer_id = %(user_id)s::uuid
          WHEN 'agent' THEN b.agent_id = %(user_id)s::uuid
          WHEN 'airline' THEN f.airline_code = %(airline_code)s::text
          ELSE false
      END

-- payment_detail --
-- Payments as the API shows them, for the given ids.
SELECT p.id, p.booking_id, b.pnr, p.status, p.amount, p.currency, p.amount_refunded, p.provider,
       p.client_secret_enc, p.failure_code, p.failure_message, p.created_at, p.updated_at, p.succeeded_at,
       b.customer_id, b.agent_id
FROM payments AS p
JOIN bookings AS b ON b.id = p.booking_id
WHERE p.id = ANY(%(ids)s::uuid[])

-- payment_page --
-- A page of the payments a caller may see, newest first, by booking and status, and how many match: one row.
WITH matching AS (
    SELECT p.id, p.created_at
    FROM payments AS p
    JOIN bookings AS b ON b.id = p.booking_id
    JOIN flights AS f ON f.id = b.flight_id
    WHERE CASE %(scope)s::text
              WHEN 'all' THEN true
              WHEN 'customer' THEN b.customer_id = %(user_id)s::uuid
              WHEN 'agent' THEN b.agent_id = %(user_id)s::uuid
              WHEN 'airline' THEN f.airline_code = %(airline_code)s::text
              ELSE false
          END
      AND (%(booking_id)s::uuid IS NULL OR p.booking_id = %(booking_id)s::uuid)
      AND (%(status)s::text IS NULL OR p.status = %(status)s::text)
)
SELECT (SELECT count(*) FROM matching) AS total,
       array(SELECT id FROM matching ORDER BY created_at DESC, id DESC
             LIMIT %(limit)s::int OFFSET %(offset)s::int) AS ids

-- open_payment --
-- The booking's open intent, if any (at most one: payments_one_open_per_booking).
SELECT id FROM payments
WHERE booking_id = %(booking_id)s::uuid AND status IN ('REQUIRES_PAYMENT', 'PROCESSING')

-- paid_payment --
-- The booking's succeeded payment, if any (at most one: payments_one_succeeded_per_booking), locked.
SELECT id, provider, provider_payment_id, status, amount, currency, amount_refunded
FROM payments
WHERE booking_id = %(booking_id)s::uuid AND status IN ('SUCCEEDED', 'PARTIALLY_REFUNDED', 'REFUNDED')
FOR UPDATE

-- insert_payment --
-- A new intent of a booking, as the provider created it.
INSERT INTO payments (id, booking_id, provider, provider_payment_id, status, amount, currency, client_secret_enc,
                      crypto_key_version, created_by)
VALUES (%(id)s::uuid, %(booking_id)s::uuid, %(provider)s::text, %(provider_payment_id)s::text, 'REQUIRES_PAYMENT',
        %(amount)s::bigint, %(currency)s::text, %(client_secret_enc)s::bytea, %(key_version)s::smallint,
        %(created_by)s::uuid)

-- payment_by_provider_id --
-- The payment of a provider intent id (unlocked: the booking is locked first, then the payment).
SELECT id, booking_id FROM payments WHERE provider_payment_id = %(provider_payment_id)s::text

-- payment_booking --
-- The booking of a payment (unlocked).
SELECT booking_id FROM payments WHERE id = %(id)s::uuid

-- lock_payment --
-- A payment's state, its row locked until the transaction ends (after its booking's: the lock order).
SELECT id, booking_id, provider, provider_payment_id, status, amount, currency, amount_refunded, created_by
FROM payments
WHERE id = %(id)s::uuid
FOR UPDATE

-- mark_payment_succeeded --
-- The money arrived; the provider's customer and payment method come encrypted.
UPDATE payments
SET status = 'SUCCEEDED', succeeded_at = now(), updated_at = now(), failure_code = NULL, failure_message = NULL,
    provider_customer_enc = coalesce(%(customer_enc)s::bytea, provider_customer_enc),
    payment_method_enc = coalesce(%(payment_method_enc)s::bytea, payment_method_enc),
    crypto_key_version = least(crypto_key_version, %(key_version)s::smallint)
WHERE id = %(id)s::uuid

-- mark_payment_failed --
-- The attempt failed; the booking may pay again with a new intent.
UPDATE payments
SET status = 'FAILED', failure_code = %(failure_code)s::text, failure_message = %(failure_message)s::text,
    updated_at = now()
WHERE id = %(id)s::uuid

-- reserve_refund --
-- Count a refund against the payment before the provider is asked (the CHECK keeps it within the amount).
UPDATE payments
SET amount_refunded = amount_refunded + %(amount)s::bigint, updated_at = now(),
    status = CASE WHEN amount_refunded + %(amount)s::bigint >= amount THEN 'REFUNDED' ELSE 'PARTIALLY_REFUNDED' END
WHERE id = %(id)s::uuid

-- release_refund --
-- A refund the provider refused no longer counts against the payment (a cancelled duplicate stays cancelled).
UPDATE payments
SET amount_refunded = amount_refunded - %(amount)s::bigint, updated_at = now(),
    status = CASE WHEN status = 'CANCELLED' THEN 'CANCELLED'
                  WHEN amount_refunded - %(amount)s::bigint = 0 THEN 'SUCCEEDED'
                  ELSE 'PARTIALLY_REFUNDED' END
WHERE id = %(id)s::uuid

-- insert_refund --
-- A refund, pending until the provider answers (or already settled, when the provider reported it).
INSERT INTO refunds (id, payment_id, booking_id, amount, currency, status, reason, provider_refund_id, created_by,
                     source)
VALUES (%(id)s::uuid, %(payment_id)s::uuid, %(booking_id)s::uuid, %(amount)s::bigint, %(currency)s::text,
        %(status)s::text, %(reason)s::text, %(provider_refund_id)s::text, %(created_by)s::uuid, %(source)s::text)

-- lock_refund --
-- A refund with its payment's provider intent, locked (a refund is settled once).
SELECT r.id, r.payment_id, r.booking_id, r.amount, r.currency, r.status, r.reason, r.source, r.created_by,
       p.provider_payment_id
FROM refunds AS r
JOIN payments AS p ON p.id = r.payment_id
WHERE r.id = %(id)s::uuid
FOR UPDATE OF r

-- settle_refund --
-- The provider answered: the refund succeeded or failed.
UPDATE refunds
SET status = %(status)s::text, provider_refund_id = coalesce(%(provider_refund_id)s::text, provider_refund_id),
    last_error = %(last_error)s::text, updated_at = now()
WHERE id = %(id)s::uuid

-- refund_unanswered --
-- The provider did not answer: count the attempt, keep it pending for the reconciler.
UPDATE refunds
SET attempts = attempts + 1, last_error = %(last_error)s::text, updated_at = now()
WHERE id = %(id)s::uuid

-- refund_by_provider_id --
-- A refund we know by the provider's id.
SELECT id, status FROM refunds WHERE provider_refund_id = %(provider_refund_id)s::text

-- refund_detail --
-- Refunds as the API shows them.
SELECT id, payment_id, booking_id, amount, currency, status, reason, source, created_at, updated_at
FROM refunds
WHERE id = ANY(%(ids)s::uuid[])

-- stale_pending_refunds --
-- Refunds whose provider call did not answer (a crash or an outage between our commit and its answer).
SELECT id FROM refunds
WHERE status = 'PENDING' AND updated_at <= now() - make_interval(secs => %(older_than_seconds)s::int)
ORDER BY updated_at
LIMIT %(limit)s::int

-- settled_refunds_total --
-- What our refunds of a payment add up to, pending or succeeded (what the provider should report refunded).
SELECT coalesce(sum(amount), 0)::bigint AS amount
FROM refunds
WHERE payment_id = %(payment_id)s::uuid AND status IN ('PENDING', 'SUCCEEDED')

-- insert_webhook_event --
-- Store a verified webhook event by its id; no row back when it was stored before (a replay). A concurrent replay
-- waits on the first insert's row until that transaction ends, then finds the conflict.
INSERT INTO webhook_events (id, provider, type, payload)
VALUES (%(id)s::text, %(provider)s::text, %(type)s::text, %(payload)s::jsonb)
ON CONFLICT (id) DO NOTHING
RETURNING id

-- webhook_processed --
-- The event was applied (or had nothing to apply).
UPDATE webhook_events
SET processed_at = now(), payment_id = %(payment_id)s::uuid, error = %(error)s::text
WHERE id = %(id)s::text

-- occupy_seats --
-- A paid booking's held seats become occupied.
UPDATE seats SET status = 'OCCUPIED'
WHERE flight_id = %(flight_id)s::bigint AND booking_id = %(booking_id)s::uuid AND status = 'HELD'

-- confirm_booking --
-- The booking is paid.
UPDATE bookings
SET status = 'CONFIRMED', confirmed_at = now(), updated_at = now(), status_reason = %(status_reason)s::text
WHERE id = %(id)s::uuid

-- retake_fare_seats --
-- A payment arrived after the hold lapsed: take the seats again if the bucket still has them (no row: sold).
SELECT seats_available
FROM (SELECT take_fare_seats(%(fare_id)s::bigint, %(seats)s::int, or_null => true) AS seats_available) AS taken
WHERE seats_available IS NOT NULL

-- note_booking --
-- Say on the booking what happened to it.
UPDATE bookings SET status_reason = %(status_reason)s::text, updated_at = now() WHERE id = %(id)s::uuid

-- fare_refundable --
-- Whether a booking's fare may be refunded to its traveller.
SELECT refundable FROM flight_prices WHERE id = %(fare_id)s::bigint

-- payment_contact --
-- The receipt's addressee: the booking's customer and contact.
SELECT b.pnr, b.customer_id, b.contact_email FROM bookings AS b WHERE b.id = %(booking_id)s::uuid

-- payment_refunds --
-- The refunds of the given payments, oldest first.
SELECT id, payment_id, booking_id, amount, currency, status, reason, source, created_at, updated_at
FROM refunds
WHERE payment_id = ANY(%(ids)s::uuid[])
ORDER BY created_at, id

-- refund_to_settle --
-- A refund with its payment's provider intent, unlocked: read before the provider is asked (no lock held then).
SELECT r.id, r.payment_id, r.booking_id, r.amount, r.currency, r.status, r.reason, r.source, r.created_by,
       p.provider_payment_id
FROM refunds AS r
JOIN payments AS p ON p.id = r.payment_id
WHERE r.id = %(id)s::uuid

-- cancel_duplicate_payment --
-- Money arrived for a booking another payment already paid: this one is cancelled at our side and refunded in full
-- (one succeeded payment per booking is the database's rule, so it never counts as a second sale).
UPDATE payments
SET status = 'CANCELLED', amount_refunded = amount, failure_code = 'duplicate_payment',
    failure_message = 'the booking was paid by another payment', updated_at = now()
WHERE id = %(id)s::uuid

-- cancel_open_payments --
-- A cancelled booking's open intents are cancelled with it (money that still arrives for one is refunded).
UPDATE payments SET status = 'CANCELLED', updated_at = now()
WHERE booking_id = %(booking_id)s::uuid AND status IN ('REQUIRES_PAYMENT', 'PROCESSING')
RETURNING id
