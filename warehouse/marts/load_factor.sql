-- Load factor by flight: seats sold (confirmed bookings) and taken (sold or held, from the inventory) over the
-- seats on sale in all its fare buckets.
CREATE OR REPLACE TABLE mart_load_factor AS
WITH inventory AS (
    SELECT flight_id, sum(seats_total)::BIGINT AS seats_total, sum(seats_available)::BIGINT AS seats_available,
           min(seats_available) AS min_bucket_available
    FROM flight_prices
    GROUP BY flight_id
),
sold AS (
    SELECT flight_id, sum(seat_count)::BIGINT AS seats_sold, count(*)::BIGINT AS bookings
    FROM bookings
    WHERE status = 'CONFIRMED'
    GROUP BY flight_id
)
SELECT f.id AS flight_id, f.airline_code, f.flight_number, f.origin, f.destination, f.departure_at, f.status,
       coalesce(i.seats_total, 0) AS seats_total,
       coalesce(i.seats_available, 0) AS seats_available,
       coalesce(i.seats_total - i.seats_available, 0) AS seats_taken,
       coalesce(i.min_bucket_available, 0) AS min_bucket_available,
       coalesce(s.seats_sold, 0) AS seats_sold,
       coalesce(s.bookings, 0) AS bookings,
       CASE WHEN coalesce(i.seats_total, 0) > 0 THEN coalesce(s.seats_sold, 0) / i.seats_total END AS load_factor
FROM flights AS f
LEFT JOIN inventory AS i ON i.flight_id = f.id
LEFT JOIN sold AS s ON s.flight_id = f.id
ORDER BY f.departure_at;
