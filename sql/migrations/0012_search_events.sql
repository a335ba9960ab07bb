-- Searches are data too: one row per flight search, so that the funnel search -> booking -> payment can be
-- computed in the warehouse. The API buffers searches in memory and writes them in batches (no database round
-- trip on the search path); created_at is the insert's time and is what replication's high-water mark follows.

CREATE TABLE search_events (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    searched_at     timestamptz NOT NULL,
    origin          text NOT NULL,
    destination     text NOT NULL,
    departure_date  date NOT NULL,
    adults          smallint NOT NULL,
    children        smallint NOT NULL DEFAULT 0,
    infants         smallint NOT NULL DEFAULT 0,
    cabin           text,
    result_count    integer NOT NULL CHECK (result_count >= 0),
    cached          boolean NOT NULL,
    user_id         uuid,
    created_at      timestamptz NOT NULL DEFAULT now()
);
-- No foreign key to users on purpose: a search log outlives the account; replication reads by created_at.
CREATE INDEX search_events_created_at_idx ON search_events (created_at);
