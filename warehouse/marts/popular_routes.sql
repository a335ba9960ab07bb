-- Popular routes per 15-minute UTC slot: searches, bookings and booked seats of each origin-destination pair.
CREATE OR REPLACE TABLE mart_popular_routes AS
SELECT slot, origin, destination,
       sum(searches)::BIGINT AS searches, sum(bookings)::BIGINT AS bookings, sum(seats)::BIGINT AS seats
FROM (
    SELECT slot, origin, destination, searches, 0 AS bookings, 0 AS seats FROM mart_funnel WHERE searches > 0
    UNION ALL
    SELECT slot, origin, destination, 0, bookings, seats FROM mart_bookings_revenue WHERE bookings > 0
)
GROUP BY ALL
ORDER BY slot;
