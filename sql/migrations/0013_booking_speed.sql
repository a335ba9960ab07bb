-- Booking speed (issue 12): what the fare bucket's row lock serialises is the seat count and nothing else, and
-- every statement of the booking path is an index lookup whatever the statistics say.

-- 1. Nothing references the counter row.
--
-- flight_prices.seats_available is the counter every buyer of a bucket updates, its row lock the queue they wait
-- in. bookings.fare_id pointed at that very row, so each booking's foreign key check took FOR KEY SHARE on it while
-- another buyer held its update lock: a MultiXact of the updater and every buyer in flight, rewritten by each
-- update under the lock (MultiXactMember waits). Bookings now reference fare_keys, one insert-only row per bucket
-- with the bucket's id, which flight_prices references in turn: a booking still cannot name a bucket that does not
-- exist, a bucket with bookings still cannot be deleted, and the counter row is locked by its updaters only.
CREATE TABLE fare_keys (
    id bigint PRIMARY KEY
);
INSERT INTO fare_keys (id) SELECT id FROM flight_prices;

-- A bucket's key is written with it (COPY included) and goes with it; deleting the key of a bucket that bookings
-- reference fails on bookings_fare_id_fkey, so the bucket's delete does too, as before.
CREATE FUNCTION fare_keys_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO fare_keys (id) VALUES (NEW.id) ON CONFLICT (id) DO NOTHING;
    RETURN NEW;
END;
$$;
CREATE FUNCTION fare_keys_remove() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM fare_keys WHERE id = OLD.id;
    RETURN NULL;
END;
$$;
CREATE TRIGGER flight_prices_fare_key_add BEFORE INSERT ON flight_prices
    FOR EACH ROW EXECUTE FUNCTION fare_keys_add();
CREATE TRIGGER flight_prices_fare_key_remove AFTER DELETE ON flight_prices
    FOR EACH ROW EXECUTE FUNCTION fare_keys_remove();

ALTER TABLE flight_prices ADD CONSTRAINT flight_prices_fare_key_fkey FOREIGN KEY (id) REFERENCES fare_keys (id);
ALTER TABLE bookings
    DROP CONSTRAINT bookings_fare_id_fkey,
    ADD CONSTRAINT bookings_fare_id_fkey FOREIGN KEY (fare_id) REFERENCES fare_keys (id);

-- 2. The unpaid-seat cap reads the holder's live holds, and only those.
--
-- The cap query read every live hold of the system: statistics taken when few holds were live (after a seed, say)
-- made bookings_live_holds_idx, or bookings_status_idx, look nearly empty, and the planner kept taking them while
-- thousands of holds piled up. These two lead with the holder, so the cap is a range of one holder's unexpired
-- holds (at most the cap's worth), and carry seat_count for the sum. Their predicate is spelt
-- "(status = 'PENDING_PAYMENT') IS TRUE", and so is the cap query's condition: no other index can serve that
-- condition (an index on status matches "status = ...", not this), so however stale or missing the statistics
-- are, the holder's index is the only one the cap query can use and it has no cheaper-looking rival. The
-- "IS NOT NULL" keeps the customer's index away from the agent's query and the other way round.
CREATE INDEX bookings_customer_live_holds_idx ON bookings (customer_id, hold_expires_at) INCLUDE (seat_count)
    WHERE (status = 'PENDING_PAYMENT') IS TRUE AND customer_id IS NOT NULL;
CREATE INDEX bookings_agent_live_holds_idx ON bookings (agent_id, hold_expires_at) INCLUDE (seat_count)
    WHERE (status = 'PENDING_PAYMENT') IS TRUE AND agent_id IS NOT NULL;
