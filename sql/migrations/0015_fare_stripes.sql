-- Fare stripes (issue 12, "beyond one row"): a big fare bucket's seat counter split over several rows, so that
-- its buyers queue on one stripe each instead of all on one row.
--
-- flight_prices.seats_available stays the bucket's main count; a striped bucket (stripes > 1) also counts the seats
-- of its fare_stripes rows 0 .. stripes-1, and its total is the sum: fare_seats_available(). Buyers of a striped
-- bucket take from the stripes (take_fare_seats); seats given back (cancel, expiry) go to the main row, which
-- buyers fall back to. Nothing references a stripe, and a stripe references the bucket's immutable key row.
ALTER TABLE flight_prices ADD COLUMN stripes smallint NOT NULL DEFAULT 1
    CONSTRAINT flight_prices_stripes_in_range CHECK (stripes BETWEEN 1 AND 64);

CREATE TABLE fare_stripes (
    fare_id         bigint NOT NULL REFERENCES fare_keys (id) ON DELETE CASCADE,
    stripe          smallint NOT NULL CHECK (stripe >= 0),
    seats_available integer NOT NULL CONSTRAINT fare_stripes_seats_in_range CHECK (seats_available >= 0),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (fare_id, stripe)
);

-- Seats left in a bucket: its main count, plus its stripes' when it has them (one index range of a few rows).
-- PL/pgSQL, not SQL: a SQL function with a subquery is not inlined, and its body was planned again in every query
-- that called it (0.3 ms in fare_buckets); this one keeps its plan, and an unstriped bucket runs no query at all.
-- Readers of many buckets (search, replication) spell the expression out instead of calling it per row.
CREATE FUNCTION fare_seats_available(fare_id bigint, main integer, stripes smallint) RETURNS integer
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
    IF stripes = 1 THEN
        RETURN main;
    END IF;
    RETURN main + (SELECT coalesce(sum(s.seats_available), 0)::integer
                   FROM fare_stripes AS s WHERE s.fare_id = fare_seats_available.fare_id);
END;
$$;

-- The upper bound of a striped bucket (seats_total) spans rows: checked where a count rises, which only a give-back
-- does (the main row's own CHECK still bounds it alone). Taking lowers counts and cannot break it.
CREATE FUNCTION flight_prices_striped_bound() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF fare_seats_available(NEW.id, NEW.seats_available, NEW.stripes) > NEW.seats_total THEN
        RAISE EXCEPTION 'fare % would have more seats available than it has', NEW.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'flight_prices_seats_in_range',
                  TABLE = 'flight_prices';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER flight_prices_striped_bound BEFORE UPDATE OF seats_available ON flight_prices
    FOR EACH ROW WHEN (NEW.stripes > 1 AND NEW.seats_available > OLD.seats_available)
    EXECUTE FUNCTION flight_prices_striped_bound();

-- Split the main count of the given unstriped buckets of at least min_seats seats available over n stripes
-- (remainder to the first ones); returns how many buckets were split. A bucket is split once: it stays striped.
CREATE FUNCTION split_fare_seats(fare_ids bigint[], n integer, min_seats integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    split integer;
BEGIN
    IF n < 2 THEN
        RETURN 0;
    END IF;
    WITH chosen AS (
        SELECT p.id, p.seats_available
        FROM flight_prices AS p
        WHERE p.id = ANY(fare_ids) AND p.stripes = 1 AND p.seats_available >= greatest(min_seats, n)
        ORDER BY p.id
        FOR UPDATE
    ), stripes AS (
        INSERT INTO fare_stripes (fare_id, stripe, seats_available)
        SELECT c.id, s.stripe, c.seats_available / n + (s.stripe < c.seats_available % n)::integer
        FROM chosen AS c, generate_series(0, n - 1) AS s (stripe)
    )
    UPDATE flight_prices AS p SET seats_available = 0, stripes = n, updated_at = now()
    FROM chosen AS c WHERE p.id = c.id;
    GET DIAGNOSTICS split = ROW_COUNT;
    RETURN split;
END;
$$;

-- Take seats from a bucket and return how many it has left; or, when fewer than wanted are left, raise the
-- bucket's check_violation (flight_prices_seats_in_range: SOLD_OUT), or return NULL when or_null. NULL too for a
-- bucket that does not exist.
--
-- An unstriped bucket is one UPDATE of its row, as before stripes. A striped one: the stripe this backend's pid
-- points at (buyers spread over the stripes and queue on theirs); when it is short, another stripe with room that
-- no other transaction holds (SKIP LOCKED); when none is, the slow path: every row of the bucket locked in one order
-- (main, then stripes 0..n-1), waiting, and the seats taken across them, main first. An UPDATE that waited for a
-- row and then found it short still holds its lock, so the first two tries run in a subtransaction that is rolled
-- back when they fail: the slow path starts holding none of the bucket's rows, and waits only in that one order,
-- so no two buyers deadlock.
CREATE FUNCTION take_fare_seats(fare bigint, wanted integer, or_null boolean DEFAULT false) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    left_main integer;
    n smallint;
    needed integer := wanted;
    stripe_row record;
    part integer;
BEGIN
    UPDATE flight_prices SET seats_available = seats_available - wanted, updated_at = now()
    WHERE id = fare AND stripes = 1 AND (NOT or_null OR seats_available >= wanted)
    RETURNING seats_available INTO left_main;
    IF FOUND THEN
        RETURN left_main;
    END IF;
    SELECT p.stripes, p.seats_available INTO n, left_main FROM flight_prices AS p WHERE p.id = fare;
    IF n IS NULL OR n = 1 THEN  -- no such bucket, or an unstriped one without room (or_null)
        RETURN NULL;
    END IF;

    BEGIN
        UPDATE fare_stripes SET seats_available = seats_available - wanted, updated_at = now()
        WHERE fare_id = fare AND stripe = pg_backend_pid() % n AND seats_available >= wanted;
        IF NOT FOUND THEN
            UPDATE fare_stripes AS s SET seats_available = s.seats_available - wanted, updated_at = now()
            WHERE (s.fare_id, s.stripe) = (
                SELECT c.fare_id, c.stripe FROM fare_stripes AS c
                WHERE c.fare_id = fare AND c.seats_available >= wanted
                ORDER BY (c.stripe - pg_backend_pid() % n + n) % n
                LIMIT 1
                FOR UPDATE SKIP LOCKED
            );
            IF NOT FOUND THEN
                RAISE EXCEPTION USING ERRCODE = 'no_data_found';  -- roll back what the tries locked
            END IF;
        END IF;
    EXCEPTION WHEN no_data_found THEN
        SELECT p.seats_available INTO left_main FROM flight_prices AS p WHERE p.id = fare FOR UPDATE;
        PERFORM 1 FROM fare_stripes AS s WHERE s.fare_id = fare ORDER BY s.stripe FOR UPDATE;
        IF fare_seats_available(fare, left_main, n) < wanted THEN
            IF or_null THEN
                RETURN NULL;
            END IF;
            RAISE EXCEPTION 'fare % has fewer than % seats left', fare, wanted
                USING ERRCODE = 'check_violation', CONSTRAINT = 'flight_prices_seats_in_range',
                      TABLE = 'flight_prices';
        END IF;
        IF left_main > 0 THEN
            part := least(left_main, needed);
            UPDATE flight_prices SET seats_available = seats_available - part, updated_at = now() WHERE id = fare;
            needed := needed - part;
            left_main := left_main - part;
        END IF;
        FOR stripe_row IN
            SELECT s.stripe, s.seats_available FROM fare_stripes AS s
            WHERE s.fare_id = fare AND s.seats_available > 0 ORDER BY s.stripe
        LOOP
            EXIT WHEN needed = 0;
            part := least(stripe_row.seats_available, needed);
            UPDATE fare_stripes SET seats_available = seats_available - part, updated_at = now()
            WHERE fare_id = fare AND stripe = stripe_row.stripe;
            needed := needed - part;
        END LOOP;
    END;
    -- For the event: the main count as read (exact after the slow path), the stripes as they are now.
    RETURN fare_seats_available(fare, left_main, n);
END;
$$;
