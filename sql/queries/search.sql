-- local_offers --
-- Bookable fare buckets of one route on one local date at the origin, with enough seats for the party.
-- The day's bounds are the origin's local midnights, computed once (init plans), so that origin, destination and
-- the whole departure range are index conditions on flights_route_departure_idx; each flight's buckets come from
-- flight_prices_one_bucket. Times come back in UTC with both airports' zones beside them.
SELECT f.id AS flight_id,
       f.flight_number,
       f.airline_code AS airline,
       f.origin,
       f.destination,
       f.departure_at,
       f.arrival_at,
       o.tz AS origin_tz,
       d.tz AS destination_tz,
       p.cabin,
       p.fare_class,
       p.price_amount AS fare_amount,
       p.currency,
       available.seats AS seats_available
FROM flights AS f
JOIN airports AS o ON o.code = f.origin
JOIN airports AS d ON d.code = f.destination
JOIN flight_prices AS p ON p.flight_id = f.id
-- fare_seats_available() spelt out: a SQL function with a subquery is not inlined, and a call per bucket read
-- doubled the query's time; for an unstriped bucket the CASE never runs its subquery.
CROSS JOIN LATERAL (
    SELECT p.seats_available + CASE WHEN p.stripes = 1 THEN 0 ELSE (
               SELECT coalesce(sum(s.seats_available), 0)::integer FROM fare_stripes AS s WHERE s.fare_id = p.id)
           END AS seats
) AS available
WHERE f.origin = %(origin)s::text
  AND f.destination = %(destination)s::text
  AND f.departure_at >= (SELECT %(day)s::date::timestamp AT TIME ZONE tz FROM airports WHERE code = %(origin)s::text)
  AND f.departure_at < (SELECT (%(day)s::date + 1)::timestamp AT TIME ZONE tz FROM airports WHERE code = %(origin)s::text)
  AND f.departure_at > now()
  AND f.status IN ('SCHEDULED', 'DELAYED')
  AND available.seats >= %(seats_needed)s::integer
  AND (%(cabin)s::text IS NULL OR p.cabin = %(cabin)s::text)
  AND (%(airline)s::text IS NULL OR f.airline_code = %(airline)s::text)
ORDER BY f.departure_at, f.id, p.cabin, p.fare_class

-- current_availability --
-- Seats left now in every fare bucket of the given flights, for those that can still be booked (by primary key,
-- then flight_prices_one_bucket: a few rows per flight).
SELECT p.flight_id, p.cabin, p.fare_class, available.seats AS seats_available
FROM flights AS f
JOIN flight_prices AS p ON p.flight_id = f.id
-- fare_seats_available() spelt out: a SQL function with a subquery is not inlined, and a call per bucket read
-- doubled the query's time; for an unstriped bucket the CASE never runs its subquery.
CROSS JOIN LATERAL (
    SELECT p.seats_available + CASE WHEN p.stripes = 1 THEN 0 ELSE (
               SELECT coalesce(sum(s.seats_available), 0)::integer FROM fare_stripes AS s WHERE s.fare_id = p.id)
           END AS seats
) AS available
WHERE f.id = ANY(%(flight_ids)s::bigint[])
  AND f.departure_at > now()
  AND f.status IN ('SCHEDULED', 'DELAYED')

-- airport_codes --
-- Every known airport code (the search validates origin and destination against them).
SELECT code FROM airports

-- flight_search_days --
-- The route of each flight and its departure date, local at the origin: the search day it is found under.
SELECT DISTINCT f.origin, f.destination, (f.departure_at AT TIME ZONE o.tz)::date AS day
FROM flights AS f
JOIN airports AS o ON o.code = f.origin
WHERE f.id = ANY(%(ids)s::bigint[])
