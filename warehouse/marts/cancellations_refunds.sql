-- Cancellations (when cancelled) and refunds (when requested, by status) per 15-minute UTC slot, airline, route
-- and currency.
CREATE OR REPLACE TABLE mart_cancellations_refunds AS
WITH events AS (
    SELECT b.cancelled_at AS event_at, b.flight_id, b.currency, 1 AS cancellations, b.seat_count AS cancelled_seats,
           0 AS refunds, 0 AS refunded_amount, 0 AS refunds_pending, 0 AS refunds_failed
    FROM bookings AS b
    WHERE b.status = 'CANCELLED' AND b.cancelled_at IS NOT NULL
    UNION ALL
    SELECT r.created_at, b.flight_id, r.currency, 0, 0,
           CASE WHEN r.status = 'SUCCEEDED' THEN 1 ELSE 0 END,
           CASE WHEN r.status = 'SUCCEEDED' THEN r.amount ELSE 0 END,
           CASE WHEN r.status = 'PENDING' THEN 1 ELSE 0 END,
           CASE WHEN r.status = 'FAILED' THEN 1 ELSE 0 END
    FROM refunds AS r JOIN bookings AS b ON b.id = r.booking_id
)
SELECT time_bucket(INTERVAL '15 minutes', e.event_at) AS slot, f.airline_code, f.origin, f.destination, e.currency,
       sum(e.cancellations)::BIGINT AS cancellations, sum(e.cancelled_seats)::BIGINT AS cancelled_seats,
       sum(e.refunds)::BIGINT AS refunds, sum(e.refunded_amount)::BIGINT AS refunded_amount,
       sum(e.refunds_pending)::BIGINT AS refunds_pending, sum(e.refunds_failed)::BIGINT AS refunds_failed
FROM events AS e
JOIN flights AS f ON f.id = e.flight_id
GROUP BY ALL
ORDER BY slot;
