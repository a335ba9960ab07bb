-- claim_idempotency_key --
-- Take an Idempotency-Key for this request, or give it back when the stored one has expired. No row: the key is
-- live and someone else's request (wait for its transaction, then read it with idempotency_key). The insert waits
-- on a concurrent insert of the same key until that transaction ends, so concurrent duplicates run one at a time.
INSERT INTO idempotency_keys (owner_id, key, method, path, request_hash, expires_at)
VALUES (%(owner_id)s::uuid, %(key)s::text, %(method)s::text, %(path)s::text, %(request_hash)s::bytea,
        now() + make_interval(hours => %(ttl_hours)s::int))
ON CONFLICT (owner_id, key) DO UPDATE
    SET method = EXCLUDED.method, path = EXCLUDED.path, request_hash = EXCLUDED.request_hash,
        status_code = NULL, response_body = NULL, created_at = now(), expires_at = EXCLUDED.expires_at
    WHERE idempotency_keys.expires_at <= now()
RETURNING key

-- idempotency_key --
-- A live idempotency key of a caller with the request it was used for and the stored response.
SELECT method, path, request_hash, status_code, response_body
FROM idempotency_keys
WHERE owner_id = %(owner_id)s::uuid AND key = %(key)s::text AND expires_at > now()

-- store_idempotent_response --
-- Keep the response of the request that took the key, committed with the change it made.
UPDATE idempotency_keys
SET status_code = %(status_code)s::int, response_body = %(response_body)s::bytea
WHERE owner_id = %(owner_id)s::uuid AND key = %(key)s::text

-- delete_expired_idempotency_keys --
-- Forget keys past their 24 hours, a batch at a time.
DELETE FROM idempotency_keys
WHERE ctid = ANY(ARRAY(SELECT ctid FROM idempotency_keys WHERE expires_at <= now() LIMIT %(limit)s::int))

-- lock_holder --
-- The customer or agent whose unpaid seats are capped, locked so that their concurrent bookings count one at a
-- time (NO KEY UPDATE: the bookings' foreign keys to the row still proceed).
SELECT id, email, role, is_active
FROM users
WHERE id = %(id)s::uuid AND deleted_at IS NULL
FOR NO KEY UPDATE

-- customer --
-- A live customer account an agent may book for.
SELECT id, email, role, is_active
FROM users
WHERE id = %(id)s::uuid AND deleted_at IS NULL

-- unpaid_seats_of_customer --
-- Seats a customer holds unpaid right now: a range of bookings_customer_live_holds_idx (their unexpired holds, at
-- most the cap's worth) whatever the statistics, however long their history. The status condition is spelt as the
-- index's predicate, which no other index can serve (see migration 0013).
SELECT coalesce(sum(seat_count), 0)::int AS seats
FROM bookings
WHERE customer_id = %(holder)s::uuid AND (status = 'PENDING_PAYMENT') IS TRUE AND hold_expires_at > now()

-- unpaid_seats_of_agent --
-- Seats an agent holds unpaid right now, from bookings_agent_live_holds_idx likewise.
SELECT coalesce(sum(seat_count), 0)::int AS seats
FROM bookings
WHERE agent_id = %(holder)s::uuid AND (status = 'PENDING_PAYMENT') IS TRUE AND hold_expires_at > now()

-- bookable_flight --
-- A flight as a booking shows it (booking_detail's "flight"), and whether it can still be sold.
SELECT f.id, f.airline_code, f.flight_number, f.origin, f.destination, f.departure_at, f.arrival_at,
       o.tz AS origin_tz, d.tz AS destination_tz, f.status,
       f.status IN ('SCHEDULED', 'DELAYED') AND f.departure_at > now() + interval '30 minutes' AS bookable,
       now() AS transaction_at
FROM flights AS f
JOIN airports AS o ON o.code = f.origin
JOIN airports AS d ON d.code = f.destination
WHERE f.id = %(flight_id)s::bigint

-- fare_buckets --
-- The fare buckets of a flight's cabin (one fare class, or all), cheapest first: candidates for a booking.
SELECT id, fare_class, price_amount, currency, fare_seats_available(id, seats_available, stripes) AS seats_available
FROM flight_prices
WHERE flight_id = %(flight_id)s::bigint AND cabin = %(cabin)s::text
  AND (%(fare_class)s::text IS NULL OR fare_class = %(fare_class)s::text)
ORDER BY price_amount, fare_class

-- take_fare_seats --
-- Take seats from a fare bucket (migration 0015: its row, or one of its stripes). The row lock this takes
-- serialises the bucket's buyers (of that stripe) until their transactions end. Taking more seats than are left
-- fails with flight_prices_seats_in_range's error instead of matching no row, so the statement needs no answer and
-- can travel in one pipeline with the outbox and audit rows and the COMMIT.
SELECT take_fare_seats(%(fare_id)s::bigint, %(seats)s::int)

-- take_fare_seats_announced --
-- take_fare_seats and the booking's outbox event in one statement, the event carrying the count the update leaves:
-- the one statement a new booking runs under the bucket's row lock (with the stored idempotent answer and COMMIT).
-- Overselling fails the UPDATE on flight_prices_seats_in_range, and the event with it.
WITH taken AS (
    SELECT take_fare_seats(%(fare_id)s::bigint, %(seats)s::int) AS seats_available
)
INSERT INTO outbox_events (id, event_type, aggregate_type, aggregate_id, payload)
SELECT %(id)s::uuid, %(event_type)s::text, 'booking', %(booking_id)s::text,
       jsonb_set(%(payload)s::jsonb, '{availability,seats_available}', to_jsonb(taken.seats_available))
FROM taken
WHERE taken.seats_available IS NOT NULL

-- insert_booking_event --
-- A booking's outbox event, with the availability its fare bucket has in this transaction (so it can be queued
-- right behind take_fare_seats, before anyone has read the bucket's new count).
INSERT INTO outbox_events (id, event_type, aggregate_type, aggregate_id, payload)
SELECT %(id)s::uuid, %(event_type)s::text, 'booking', %(booking_id)s::text,
       jsonb_set(%(payload)s::jsonb, '{availability,seats_available}',
                 to_jsonb(fare_seats_available(p.id, p.seats_available, p.stripes)))
FROM flight_prices AS p
WHERE p.id = %(fare_id)s::bigint

-- give_back_fare_seats --
-- Return a booking's seats to its fare bucket (cancel, expiry): to its main row, striped or not (buyers of a striped
-- bucket fall back to it; its trigger keeps the bucket's total within seats_total).
UPDATE flight_prices
SET seats_available = seats_available + %(seats)s::int, updated_at = now()
WHERE id = %(fare_id)s::bigint

-- insert_booking --
-- A new booking under a fresh PNR; no row back when the PNR is taken (the caller draws another).
INSERT INTO bookings (id, pnr, flight_id, fare_id, cabin, fare_class, customer_id, agent_id, created_by,
                      seat_count, total_amount, currency, contact_email, contact_phone, hold_expires_at)
VALUES (%(id)s::uuid, %(pnr)s::text, %(flight_id)s::bigint, %(fare_id)s::bigint, %(cabin)s::text,
        %(fare_class)s::text, %(customer_id)s::uuid, %(agent_id)s::uuid, %(created_by)s::uuid,
        %(seat_count)s::int, %(total_amount)s::bigint, %(currency)s::text, %(contact_email)s::text,
        %(contact_phone)s::text, now() + make_interval(mins => %(hold_minutes)s::int))
ON CONFLICT (pnr) DO NOTHING
RETURNING id, hold_expires_at, created_at, updated_at

-- insert_unseated_booking --
-- insert_booking and insert_passengers (no seats) in one statement, with nothing to answer: the hold's expiry is
-- given, the timestamps are the transaction's now() (read with bookable_flight), so the statement can travel in the
-- pipeline that takes the fare bucket's seats and commits. A taken PNR fails it on bookings_pnr_key (the caller
-- draws another and starts again). The travellers' foreign key to the booking is checked at the end of the
-- statement, once both are in.
WITH booking AS (
    INSERT INTO bookings (id, pnr, flight_id, fare_id, cabin, fare_class, customer_id, agent_id, created_by,
                          seat_count, total_amount, currency, contact_email, contact_phone, hold_expires_at)
    VALUES (%(id)s::uuid, %(pnr)s::text, %(flight_id)s::bigint, %(fare_id)s::bigint, %(cabin)s::text,
            %(fare_class)s::text, %(customer_id)s::uuid, %(agent_id)s::uuid, %(created_by)s::uuid,
            %(seat_count)s::int, %(total_amount)s::bigint, %(currency)s::text, %(contact_email)s::text,
            %(contact_phone)s::text, %(hold_expires_at)s::timestamptz)
    RETURNING id
)
INSERT INTO passengers (id, booking_id, flight_id, first_name, last_name, date_of_birth, type, document_enc,
                        seat_no, created_at)
SELECT p.id, booking.id, %(flight_id)s::bigint, p.first_name, p.last_name, p.date_of_birth, p.type,
       p.document_enc, NULL, now() + p.ordinality * interval '1 microsecond'
FROM booking,
     unnest(%(passenger_ids)s::uuid[], %(first_names)s::text[], %(last_names)s::text[],
            %(dates_of_birth)s::date[], %(types)s::text[], %(documents)s::bytea[])
     WITH ORDINALITY AS p (id, first_name, last_name, date_of_birth, type, document_enc, ordinality)

-- insert_passengers --
-- A booking's travellers in one statement, in the order given; none when the booking is not there (its insert met
-- a taken PNR), so that it can be pipelined behind insert_booking.
INSERT INTO passengers (id, booking_id, flight_id, first_name, last_name, date_of_birth, type, document_enc,
                        seat_no, created_at)
SELECT p.id, %(booking_id)s::uuid, %(flight_id)s::bigint, p.first_name, p.last_name, p.date_of_birth, p.type,
       p.document_enc, p.seat_no, now() + p.ordinality * interval '1 microsecond'
FROM unnest(%(ids)s::uuid[], %(first_names)s::text[], %(last_names)s::text[], %(dates_of_birth)s::date[],
            %(types)s::text[], %(documents)s::bytea[], %(seat_nos)s::text[])
     WITH ORDINALITY AS p (id, first_name, last_name, date_of_birth, type, document_enc, seat_no, ordinality)
WHERE EXISTS (SELECT 1 FROM bookings AS b WHERE b.id = %(booking_id)s::uuid)

-- lock_seats --
-- Lock the seats a change involves, in seat-number order (every writer of seats locks in this order, so two
-- bookings swapping seats wait for each other instead of deadlocking): the wanted ones and the booking's own.
SELECT seat_no, cabin, status, booking_id
FROM seats
WHERE flight_id = %(flight_id)s::bigint
  AND (seat_no = ANY(%(seat_nos)s::text[]) OR booking_id = %(booking_id)s::uuid)
ORDER BY seat_no
FOR UPDATE

-- release_seats --
-- Free the seats a booking holds except those it keeps (its rows are locked by lock_seats first).
UPDATE seats
SET status = 'AVAILABLE', booking_id = NULL
WHERE flight_id = %(flight_id)s::bigint AND booking_id = %(booking_id)s::uuid
  AND NOT (seat_no = ANY(%(keep)s::text[]))

-- hold_seats --
-- Hold seats for a booking (its rows are locked by lock_seats first and known to be available or its own).
UPDATE seats
SET status = %(status)s::text, booking_id = %(booking_id)s::uuid
WHERE flight_id = %(flight_id)s::bigint AND seat_no = ANY(%(seat_nos)s::text[])

-- clear_passenger_seats --
-- Take every seat off a booking's passengers (before a new assignment, or when it ends).
UPDATE passengers SET seat_no = NULL WHERE booking_id = %(booking_id)s::uuid AND seat_no IS NOT NULL

-- assign_passenger_seats --
-- Give passengers their seats.
UPDATE passengers AS p
SET seat_no = assignment.seat_no
FROM unnest(%(passenger_ids)s::uuid[], %(seat_nos)s::text[]) AS assignment (passenger_id, seat_no)
WHERE p.id = assignment.passenger_id AND p.booking_id = %(booking_id)s::uuid

-- rename_passenger --
-- Correct a passenger's name.
UPDATE passengers
SET first_name = coalesce(%(first_name)s::text, first_name), last_name = coalesce(%(last_name)s::text, last_name)
WHERE id = %(id)s::uuid AND booking_id = %(booking_id)s::uuid

-- lock_booking --
-- A booking's state, its row locked until the transaction ends, with its flight's airline for access checks.
SELECT b.id, b.pnr, b.status, b.flight_id, b.fare_id, b.cabin, b.fare_class, b.seat_count, b.customer_id,
       b.agent_id, b.created_by, b.contact_email, b.contact_phone, b.hold_expires_at, b.hold_expires_at <= now()
       AS hold_lapsed, b.total_amount, b.currency, f.airline_code, f.departure_at, f.departure_at <= now()
       AS departed
FROM bookings AS b
JOIN flights AS f ON f.id = b.flight_id
WHERE b.id = %(id)s::uuid
FOR UPDATE OF b

-- end_booking --
-- Move a live booking to CANCELLED or EXPIRED.
UPDATE bookings
SET status = %(status)s::text, updated_at = now(),
    cancelled_at = CASE WHEN %(status)s::text = 'CANCELLED' THEN now() END,
    expired_at = CASE WHEN %(status)s::text = 'EXPIRED' THEN now() END
WHERE id = %(id)s::uuid

-- update_contact --
-- Change a booking's contact details.
UPDATE bookings
SET contact_email = %(contact_email)s::text, contact_phone = %(contact_phone)s::text, updated_at = now()
WHERE id = %(id)s::uuid

-- touch_booking --
-- Mark a booking changed.
UPDATE bookings SET updated_at = now() WHERE id = %(id)s::uuid

-- passenger_seating --
-- A booking's passengers in order with their seats (for seat changes).
SELECT id, type, seat_no
FROM passengers
WHERE booking_id = %(booking_id)s::uuid
ORDER BY created_at, id

-- lapsed_hold --
-- One booking whose hold has lapsed, locked; bookings another worker (or a cancel) holds are skipped.
SELECT id
FROM bookings
WHERE status = 'PENDING_PAYMENT' AND hold_expires_at <= now()
ORDER BY hold_expires_at
LIMIT 1
FOR UPDATE SKIP LOCKED

-- booking_detail --
-- Bookings with their passengers, seats and flight, as the API returns them, for the given ids.
SELECT b.id, b.pnr, b.status, b.hold_expires_at,
       json_build_object('amount', b.total_amount, 'currency', b.currency) AS total,
       b.cabin, b.fare_class,
       coalesce(p.passengers, '[]'::json) AS passengers,
       coalesce(p.seats, '[]'::json) AS seats,
       json_build_object('id', f.id, 'airline', f.airline_code, 'flight_number', f.flight_number,
                         'origin', f.origin, 'destination', f.destination, 'departure_at', f.departure_at,
                         'arrival_at', f.arrival_at, 'origin_tz', o.tz, 'destination_tz', d.tz,
                         'status', f.status) AS flight,
       b.customer_id, b.agent_id, b.contact_email, b.contact_phone, b.created_at, b.updated_at,
       b.confirmed_at, b.cancelled_at, b.expired_at, b.status_reason
FROM bookings AS b
JOIN flights AS f ON f.id = b.flight_id
JOIN airports AS o ON o.code = f.origin
JOIN airports AS d ON d.code = f.destination
LEFT JOIN LATERAL (
    SELECT json_agg(json_build_object('id', x.id, 'first_name', x.first_name, 'last_name', x.last_name,
                                      'date_of_birth', x.date_of_birth, 'type', x.type, 'seat_no', x.seat_no,
                                      'has_document', x.document_enc IS NOT NULL)
                    ORDER BY x.created_at, x.id) AS passengers,
           json_agg(x.seat_no ORDER BY x.created_at, x.id) FILTER (WHERE x.seat_no IS NOT NULL) AS seats
    FROM passengers AS x
    WHERE x.booking_id = b.id
) AS p ON true
WHERE b.id = ANY(%(ids)s::uuid[])

-- booking_by_pnr --
-- The booking with this PNR if one of its passengers has this last name, in any case and with or without accents
-- ("muller" is Müller: search_fold): manage-my-booking.
SELECT b.id
FROM bookings AS b
WHERE b.pnr = %(pnr)s::text
  AND EXISTS (SELECT 1 FROM passengers AS p
              WHERE p.booking_id = b.id AND search_fold(p.last_name) = search_fold(%(last_name)s::text))

-- visible_booking --
-- Whether the caller may see a booking: own (customer), made by them (travel agent), on their airline's flights
-- (airline agent), or any (business owner, admin).
SELECT b.id
FROM bookings AS b
JOIN flights AS f ON f.id = b.flight_id
WHERE b.id = %(id)s::uuid
  AND CASE %(scope)s::text
          WHEN 'all' THEN true
          WHEN 'customer' THEN b.customer_id = %(user_id)s::uuid
          WHEN 'agent' THEN b.agent_id = %(user_id)s::uuid
          WHEN 'airline' THEN f.airline_code = %(airline_code)s::text
          ELSE false
      END

-- booking_page --
-- A page of the bookings a caller may see, newest first, filtered by status, flight and departure date (UTC), and
-- how many match in all: always one row.
WITH matching AS (
    SELECT b.id, b.created_at
    FROM bookings AS b
    JOIN flights AS f ON f.id = b.flight_id
    WHERE CASE %(scope)s::text
              WHEN 'all' THEN true
              WHEN 'customer' THEN b.customer_id = %(user_id)s::uuid
              WHEN 'agent' THEN b.agent_id = %(user_id)s::uuid
              WHEN 'airline' THEN f.airline_code = %(airline_code)s::text
              ELSE false
          END
      AND (%(status)s::text IS NULL OR b.status = %(status)s::text)
      AND (%(flight_id)s::bigint IS NULL OR b.flight_id = %(flight_id)s::bigint)
      AND (%(day)s::date IS NULL OR (f.departure_at >= %(day)s::date::timestamp AT TIME ZONE 'UTC'
                                     AND f.departure_at < (%(day)s::date + 1)::timestamp AT TIME ZONE 'UTC'))
)
SELECT (SELECT count(*) FROM matching) AS total,
       array(SELECT id FROM matching ORDER BY created_at DESC, id DESC
             LIMIT %(limit)s::int OFFSET %(offset)s::int) AS ids
