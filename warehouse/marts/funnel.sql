-- The funnel search -> booking -> payment per 15-minute UTC slot and route: searches when they ran, bookings when
-- created, paid bookings when their payment succeeded.
CREATE OR REPLACE TABLE mart_funnel AS
WITH events AS (
    SELECT searched_at AS event_at, origin, destination, 1 AS searches, 0 AS bookings, 0 AS paid
    FROM search_events
    UNION ALL
    SELECT b.created_at, f.origin, f.destination, 0, 1, 0
    FROM bookings AS b JOIN flights AS f ON f.id = b.flight_id
    UNION ALL
    SELECT p.succeeded_at, f.origin, f.destination, 0, 0, 1
    FROM payments AS p
    JOIN bookings AS b ON b.id = p.booking_id
    JOIN flights AS f ON f.id = b.flight_id
    WHERE p.status IN ('SUCCEEDED', 'PARTIALLY_REFUNDED', 'REFUNDED') AND p.succeeded_at IS NOT NULL
)
SELECT time_bucket(INTERVAL '15 minutes', event_at) AS slot, origin, destination,
       sum(searches)::BIGINT AS searches, sum(bookings)::BIGINT AS bookings, sum(paid)::BIGINT AS paid
FROM events
GROUP BY ALL
ORDER BY slot;
