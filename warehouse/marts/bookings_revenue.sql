-- Bookings and revenue net of refunds by route, airline, agent and currency, per 15-minute UTC slot.
-- Three event streams: a booking counts when it is created (booked_amount is its total then), a payment's amount
-- when it succeeded (gross), a refund's when it was requested and has succeeded (refunded). 15-minute slots are
-- exact for every IANA zone (all offsets are whole quarters of an hour), so readers bucket them by day, week or
-- month in any zone.
CREATE OR REPLACE TABLE mart_bookings_revenue AS
WITH dims AS (
    SELECT b.id AS booking_id, f.origin, f.destination, f.airline_code, b.agent_id
    FROM bookings AS b
    JOIN flights AS f ON f.id = b.flight_id
),
events AS (
    SELECT b.created_at AS event_at, b.id AS booking_id, b.currency,
           1 AS bookings, b.seat_count AS seats, b.total_amount AS booked_amount,
           CASE WHEN b.status = 'CONFIRMED' THEN 1 ELSE 0 END AS confirmed,
           CASE WHEN b.status = 'CANCELLED' THEN 1 ELSE 0 END AS cancelled,
           CASE WHEN b.status = 'EXPIRED' THEN 1 ELSE 0 END AS expired,
           0 AS payments, 0 AS gross, 0 AS refunds, 0 AS refunded
    FROM bookings AS b
    UNION ALL
    SELECT p.succeeded_at, p.booking_id, p.currency, 0, 0, 0, 0, 0, 0, 1, p.amount, 0, 0
    FROM payments AS p
    WHERE p.status IN ('SUCCEEDED', 'PARTIALLY_REFUNDED', 'REFUNDED') AND p.succeeded_at IS NOT NULL
    UNION ALL
    SELECT r.created_at, r.booking_id, r.currency, 0, 0, 0, 0, 0, 0, 0, 0, 1, r.amount
    FROM refunds AS r
    WHERE r.status = 'SUCCEEDED'
)
SELECT time_bucket(INTERVAL '15 minutes', e.event_at) AS slot,
       d.origin, d.destination, d.airline_code, d.agent_id, e.currency,
       sum(e.bookings)::BIGINT AS bookings,
       sum(e.seats)::BIGINT AS seats,
       sum(e.booked_amount)::BIGINT AS booked_amount,
       sum(e.confirmed)::BIGINT AS confirmed,
       sum(e.cancelled)::BIGINT AS cancelled,
       sum(e.expired)::BIGINT AS expired,
       sum(e.payments)::BIGINT AS payments,
       sum(e.gross)::BIGINT AS gross_revenue,
       sum(e.refunds)::BIGINT AS refunds,
       sum(e.refunded)::BIGINT AS refunded_amount,
       (sum(e.gross) - sum(e.refunded))::BIGINT AS net_revenue
FROM events AS e
JOIN dims AS d ON d.booking_id = e.booking_id
GROUP BY ALL
ORDER BY slot;
