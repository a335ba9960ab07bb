-- flight_detail --
-- A flight with its airline's name, both airports and its fare buckets (cabins front to back, cheapest first).
SELECT f.id,
       f.airline_code AS airline,
       al.name AS airline_name,
       f.flight_number,
       f.origin,
       f.destination,
       f.departure_at,
       f.arrival_at,
       (extract(epoch FROM f.arrival_at - f.departure_at) / 60)::int AS duration_minutes,
       o.tz AS origin_tz,
       d.tz AS destination_tz,
       f.status,
       f.aircraft,
       json_build_object('code', o.code, 'name', o.name, 'city', o.city, 'country', o.country, 'tz', o.tz,
                         'latitude', o.latitude, 'longitude', o.longitude) AS origin_airport,
       json_build_object('code', d.code, 'name', d.name, 'city', d.city, 'country', d.country, 'tz', d.tz,
                         'latitude', d.latitude, 'longitude', d.longitude) AS destination_airport,
       coalesce(
           (SELECT json_agg(
                       json_build_object('cabin', p.cabin, 'fare_class', p.fare_class,
                                         'price', json_build_object('amount', p.price_amount, 'currency', p.currency),
                                         'seats_total', p.seats_total,
                                         'seats_available', fare_seats_available(p.id, p.seats_available, p.stripes),
                                         'refundable', p.refundable)
                       ORDER BY array_position(ARRAY['FIRST', 'BUSINESS', 'PREMIUM_ECONOMY', 'ECONOMY'], p.cabin),
                                p.price_amount, p.fare_class)
            FROM flight_prices AS p
            WHERE p.flight_id = f.id),
           '[]'::json
       ) AS fares
FROM flights AS f
JOIN airlines AS al ON al.code = f.airline_code
JOIN airports AS o ON o.code = f.origin
JOIN airports AS d ON d.code = f.destination
WHERE f.id = %(id)s::bigint

-- flight_seats --
-- The seat map of a flight, cabins front to back, rows in order, seats by letter; one row with NULL seat columns
-- for a flight without seats, none for an unknown flight.
SELECT f.aircraft, s.cabin, s.row_no, s.seat_no, s.status, s.features
FROM flights AS f
LEFT JOIN seats AS s ON s.flight_id = f.id
WHERE f.id = %(id)s::bigint
ORDER BY array_position(ARRAY['FIRST', 'BUSINESS', 'PREMIUM_ECONOMY', 'ECONOMY'], s.cabin), s.row_no,
         right(s.seat_no, 1)

-- flight_airline --
-- The airline operating a flight (it never changes, so it may be read before the flight is locked).
SELECT airline_code FROM flights WHERE id = %(id)s::bigint

-- lock_flight --
-- A flight's operational fields, its row locked until the transaction ends. FOR UPDATE (not NO KEY UPDATE) also
-- conflicts with the key-share lock a new booking's foreign key takes, so no booking appears while this is held.
SELECT id, airline_code, flight_number, status, departure_at, arrival_at
FROM flights
WHERE id = %(id)s::bigint
FOR UPDATE

-- update_flight --
-- Write a flight's status and times (the service passes all three, changed or not).
UPDATE flights
SET status = %(status)s::text, departure_at = %(departure_at)s::timestamptz, arrival_at = %(arrival_at)s::timestamptz,
    updated_at = now()
WHERE id = %(id)s::bigint

-- notify_affected_bookings --
-- One flight.changed outbox event per live booking (awaiting payment or confirmed) of a flight. The times arrive as
-- the wire writes them (RFC 3339 UTC with Z, from the service's encoder), with the airports' zones beside them.
INSERT INTO outbox_events (event_type, aggregate_type, aggregate_id, payload)
SELECT 'flight.changed', 'booking', b.id::text,
       jsonb_build_object(
           'flight_id', %(flight_id)s::bigint,
           'booking_id', b.id,
           'pnr', b.pnr,
           'flight_number', %(flight_number)s::text,
           'origin', f.origin,
           'destination', f.destination,
           'origin_tz', o.tz,
           'destination_tz', d.tz,
           'change', %(change)s::text,
           'status', %(status)s::text,
           'old_departure_at', %(old_departure_at)s::text,
           'new_departure_at', %(new_departure_at)s::text,
           'old_arrival_at', %(old_arrival_at)s::text,
           'new_arrival_at', %(new_arrival_at)s::text
       )
FROM bookings AS b
JOIN flights AS f ON f.id = b.flight_id
JOIN airports AS o ON o.code = f.origin
JOIN airports AS d ON d.code = f.destination
WHERE b.flight_id = %(flight_id)s::bigint AND b.status IN ('PENDING_PAYMENT', 'CONFIRMED')
ORDER BY b.created_at, b.id

-- airlines_page --
-- A page of airlines by code, each row carrying the total count.
SELECT code, name, country, count(*) OVER () AS total
FROM airlines
ORDER BY code
LIMIT %(limit)s::int OFFSET %(offset)s::int

-- count_airlines --
-- How many airlines there are (for a page past the last).
SELECT count(*) AS total FROM airlines

-- search_airports --
-- Airports matching a lookup, best first: exact code, code prefix, city prefix, name prefix, then a word of the name
-- or city starting with it. Each branch is one index scan (the patterns are escaped prefixes ending in %) carrying
-- the whole row, so ranking needs no join back. Cities, names and words compare folded (search_fold: no accents,
-- lower case; "zurich" finds Zürich and "zürich" Zurich), the pattern folded alike. The word branch, the only one
-- that can match thousands ("air"), runs only when the prefix branches leave the top `limit` unfilled, and keeps
-- only its own top `limit`.
WITH prefixed AS (
    SELECT 0 AS rank, code, name, city, country, tz, latitude, longitude
    FROM airports WHERE code = %(code)s::text
    UNION ALL
    SELECT 1, code, name, city, country, tz, latitude, longitude
    FROM airports WHERE code LIKE %(code_pattern)s::text
    UNION ALL
    SELECT 2, code, name, city, country, tz, latitude, longitude
    FROM airports WHERE search_fold(city) LIKE search_fold(%(pattern)s::text)
    UNION ALL
    SELECT 3, code, name, city, country, tz, latitude, longitude
    FROM airports WHERE search_fold(name) LIKE search_fold(%(pattern)s::text)
), worded AS (
    SELECT 4 AS rank, code, name, city, country, tz, latitude, longitude
    FROM airports
    WHERE %(words)s::bool
      AND (SELECT count(DISTINCT code) FROM prefixed) < %(limit)s::int
      AND airports_search_document(name, city) @@ airports_search_query(%(q)s::text)
      AND code NOT IN (SELECT code FROM prefixed)
    ORDER BY length(city), lower(city), lower(name), code
    LIMIT %(limit)s::int
), matches AS (
    SELECT * FROM prefixed
    UNION ALL
    SELECT * FROM worded
)
SELECT code, name, city, country, tz, latitude, longitude
FROM (SELECT DISTINCT ON (code) * FROM matches ORDER BY code, rank) AS best
ORDER BY rank, length(city), lower(city), lower(name), code
LIMIT %(limit)s::int

-- airline_exists --
-- Whether an airline code is known.
SELECT EXISTS (SELECT 1 FROM airlines WHERE code = %(code)s::text) AS exists

-- airports_by_code --
-- The airports among the given codes (for a new flight's route).
SELECT code, name, city, country, tz, latitude, longitude
FROM airports
WHERE code = ANY(%(codes)s::text[])

-- insert_flight --
-- Create a flight (status SCHEDULED) and return its id.
INSERT INTO flights (airline_code, flight_number, origin, destination, departure_at, arrival_at, aircraft)
VALUES (%(airline_code)s::text, %(flight_number)s::text, %(origin)s::text, %(destination)s::text,
        %(departure_at)s::timestamptz, %(arrival_at)s::timestamptz, %(aircraft)s::text)
RETURNING id

-- stripe_fares --
-- Split the counters of a flight's big fare buckets over stripes (migration 0015; none when stripes is 1).
SELECT split_fare_seats(array_agg(id), %(stripes)s::int, %(min_seats)s::int)
FROM flight_prices
WHERE flight_id = %(flight_id)s::bigint

-- insert_fares --
-- A new flight's fare buckets in one statement, every seat available.
INSERT INTO flight_prices (flight_id, cabin, fare_class, price_amount, currency, seats_total, seats_available,
                           refundable)
SELECT %(flight_id)s::bigint, fare.cabin, fare.fare_class, fare.price_amount, fare.currency, fare.seats,
       fare.seats, fare.refundable
FROM unnest(%(cabins)s::text[], %(fare_classes)s::text[], %(price_amounts)s::bigint[], %(currencies)s::text[],
            %(seats)s::int[], %(refundable)s::bool[])
     AS fare (cabin, fare_class, price_amount, currency, seats, refundable)

-- insert_seats --
-- A new flight's seat map from its aircraft layout in one statement: AVAILABLE where a fare sells the seat, BLOCKED
-- where none does; features come comma-joined ('' for none).
INSERT INTO seats (flight_id, seat_no, cabin, row_no, features, status)
SELECT %(flight_id)s::bigint, seat.seat_no, seat.cabin, seat.row_no, string_to_array(seat.features, ','), seat.status
FROM unnest(%(seat_nos)s::text[], %(cabins)s::text[], %(row_nos)s::smallint[], %(features)s::text[],
            %(statuses)s::text[])
     AS seat (seat_no, cabin, row_no, features, status)
