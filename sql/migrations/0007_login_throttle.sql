-- Login lockout counters kept in PostgreSQL while Redis is unavailable (SPEC §10: still counted when Redis is down).
--
-- One row per counter: a kind (login, password reset) for one email from one client address, and for one email
-- from anywhere. The key is the SHA-256 of the counter's name, which itself holds only digests of the email and
-- address, so no row names a person. An attempt is counted in flight before its password is checked and becomes
-- a failure or is released after it, so parallel attempts never exceed the limit. Each row is a short-lived lock
-- shared only by attempts at the same email; rows whose window has ended are reused by the next attempt and
-- deleted by the worker.
CREATE TABLE login_throttle (
    key             bytea PRIMARY KEY CHECK (length(key) = 32),
    window_ends_at  timestamptz NOT NULL,
    in_flight       integer NOT NULL DEFAULT 0 CHECK (in_flight >= 0),
    failures        integer NOT NULL DEFAULT 0 CHECK (failures >= 0)
);

-- The worker forgets counters whose window has ended.
CREATE INDEX login_throttle_window_ends_at_idx ON login_throttle (window_ends_at);
