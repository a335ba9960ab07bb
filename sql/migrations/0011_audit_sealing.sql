-- Audit trail without a global lock: writers append, a sealer chains.
--
-- Until now every writer took the one row of audit_chain_head and held it to its commit, so every audited
-- transaction of the system queued behind the one before it. Now a writer only inserts its row: the id comes from
-- a sequence and xact_id records the writer's transaction (pg_current_xact_id()), nothing shared is locked. The
-- sealer (core_api/audit/sealer.py, one at a time) links committed rows into the hash chain in the fixed order
-- (xact_id, id) once no transaction that could still add a row earlier in that order is open: every transaction
-- of this database whose id is below the horizon has ended, and transactions ids are handed out in order, so the
-- rows below the horizon are final. Seal positions and hashes live in insert-only rows of audit_seals; audit_logs
-- stays append-only.
--
-- The existing chain (rows with hash, xact_id NULL; id = chain position) is kept as it is and sealed by this
-- migration into audit_seals batches holding those very hashes, so it verifies exactly as before and the first new
-- row links to its last hash. The chain hash of a row is audit_row_hash(previous chain hash, the row), as before.

-- Old writers lock the chain head; wait for them, and keep new ones out until the table is switched over.
LOCK TABLE audit_chain_head, audit_logs IN EXCLUSIVE MODE;

CREATE SEQUENCE audit_logs_id_seq AS bigint OWNED BY audit_logs.id;
SELECT setval('audit_logs_id_seq', coalesce((SELECT max(id) FROM audit_logs), 0) + 1, false);

ALTER TABLE audit_logs
    ALTER COLUMN id SET DEFAULT nextval('audit_logs_id_seq'),
    ALTER COLUMN hash DROP NOT NULL,
    ADD COLUMN xact_id xid8;
-- Set apart from ADD COLUMN, so that the existing rows keep NULL (a volatile default would rewrite them).
ALTER TABLE audit_logs ALTER COLUMN xact_id SET DEFAULT pg_current_xact_id();
-- A row is either of the old chain (its hash in the row) or of the new one (its writer's transaction recorded).
ALTER TABLE audit_logs ADD CONSTRAINT audit_logs_legacy_or_sealable CHECK ((xact_id IS NULL) = (hash IS NOT NULL));

-- The chain itself: consecutive batches, each the next rows in chain order with the chain hash after each of them.
CREATE TABLE audit_seals (
    seal_no         bigint PRIMARY KEY CHECK (seal_no > 0),
    first_position  bigint NOT NULL UNIQUE CHECK (first_position > 0),
    audit_ids       bigint[] NOT NULL,
    -- 32 bytes per row, in chain order: sha256 over the previous chain hash and the row (audit_row_hash).
    hashes          bytea NOT NULL,
    -- The chain hash before the first row; NULL only for the first row of a chain that was never pruned.
    prev_hash       bytea,
    -- Sort key (xact_id, id) of the batch's last row: the next batch starts after it. NULL xact_id: old chain.
    last_xact_id    xid8,
    last_id         bigint NOT NULL,
    horizon         xid8,
    sealed_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK (cardinality(audit_ids) > 0 AND octet_length(hashes) = 32 * cardinality(audit_ids))
);

-- Retention removes a prefix of the chain; the checkpoint keeps the chain hash the first kept row links to.
CREATE TABLE audit_checkpoints (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    position    bigint NOT NULL CHECK (position >= 0),
    hash        bytea,
    removed     bigint NOT NULL CHECK (removed >= 0),
    cutoff      timestamptz,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Personal data of audit rows, kept apart so that it can be erased without touching a chained row. The row's
-- before/after/metadata hold a salted sha256 reference ("pii:…") where the value was; ip and user_agent live here
-- only. subjects are the users the data is about (the actor, the user or the booking's customer and agent).
CREATE TABLE audit_personal_data (
    audit_id    bigint PRIMARY KEY,
    subjects    uuid[] NOT NULL DEFAULT '{}',
    salt        bytea NOT NULL,
    ip          inet,
    user_agent  text,
    "values"    jsonb NOT NULL DEFAULT '{}'
);

-- Seal rows are never changed either.
CREATE TRIGGER audit_seals_no_update BEFORE UPDATE ON audit_seals
    FOR EACH ROW EXECUTE FUNCTION audit_logs_immutable();
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_logs_immutable();

-- The old chain, sealed as it stands: batches of 10,000 rows in id order, hashes as stored. A chain that retention
-- already pruned (its first kept row links to a removed one) starts from a checkpoint holding that link.
INSERT INTO audit_checkpoints (position, hash, removed, cutoff)
SELECT first.id - 1, first.prev_hash, first.id - 1, NULL
FROM (SELECT id, prev_hash FROM audit_logs WHERE xact_id IS NULL ORDER BY id LIMIT 1) AS first
WHERE first.id > 1;

INSERT INTO audit_seals (seal_no, first_position, audit_ids, hashes, prev_hash, last_xact_id, last_id, horizon)
SELECT row_number() OVER (ORDER BY min(id)), min(id), array_agg(id ORDER BY id), string_agg(hash, ''::bytea ORDER BY id),
       (array_agg(prev_hash ORDER BY id))[1], NULL, max(id), NULL
FROM audit_logs
WHERE xact_id IS NULL
GROUP BY (id - 1) / 10000;

DROP TABLE audit_chain_head;

-- Indexes for the keyset order of GET /audit/logs (newest first: occurred_at, id) under each filter, and the
-- sealer's order. Each filter's index ends with (occurred_at, id), so a page is one index range read backwards:
-- actor (with or without event type: one actor's rows are few), event type, entity (with anything else: one
-- entity's rows are few), time alone; the security events have a partial index of their own.
DROP INDEX audit_logs_occurred_at_idx, audit_logs_actor_idx, audit_logs_event_type_idx, audit_logs_entity_idx;
CREATE INDEX audit_logs_time_idx ON audit_logs (occurred_at, id);
CREATE INDEX audit_logs_actor_time_idx ON audit_logs (actor_id, occurred_at, id) WHERE actor_id IS NOT NULL;
CREATE INDEX audit_logs_event_time_idx ON audit_logs (event_type, occurred_at, id);
CREATE INDEX audit_logs_entity_time_idx ON audit_logs (entity_type, entity_id, occurred_at, id)
    WHERE entity_type IS NOT NULL;
CREATE INDEX audit_logs_security_time_idx ON audit_logs (occurred_at, id)
    WHERE event_type IN ('auth.login_failed', 'auth.lockout', 'auth.refresh_reuse_detected',
                         'auth.password_change_failed', 'security.access_denied', 'security.rate_limited');
CREATE INDEX audit_logs_seal_order_idx ON audit_logs (xact_id, id) WHERE xact_id IS NOT NULL;

-- Seal the next rows, in (xact_id, id) order, of the transactions below horizon (at most max_rows), after the last
-- seal; returns the new seal, or no row when there was nothing to seal. The caller holds the sealer's advisory
-- lock, and computed horizon in an earlier statement (this function's statements see every transaction that had
-- ended by then).
CREATE FUNCTION audit_seal(horizon xid8, max_rows integer) RETURNS SETOF audit_seals
LANGUAGE plpgsql AS $$
DECLARE
    last_seal audit_seals;
    chain_hash bytea;
    first_hash bytea;
    ids bigint[] := '{}';
    hashes bytea[] := '{}';
    entry audit_logs;
    next_no bigint := 1;
    next_position bigint := 1;
    after_xact xid8 := '0';
    after_id bigint := 0;
BEGIN
    SELECT * INTO last_seal FROM audit_seals ORDER BY seal_no DESC LIMIT 1;
    IF FOUND THEN
        chain_hash := substring(last_seal.hashes FROM octet_length(last_seal.hashes) - 31);
        next_no := last_seal.seal_no + 1;
        next_position := last_seal.first_position + cardinality(last_seal.audit_ids);
        IF last_seal.last_xact_id IS NOT NULL THEN
            after_xact := last_seal.last_xact_id;
            after_id := last_seal.last_id;
        END IF;
    ELSE
        -- A chain pruned to nothing continues from its checkpoint.
        SELECT c.hash, c.position + 1 INTO chain_hash, next_position
        FROM audit_checkpoints AS c ORDER BY c.id DESC LIMIT 1;
        next_position := coalesce(next_position, 1);
    END IF;
    first_hash := chain_hash;
    FOR entry IN
        SELECT * FROM audit_logs AS a
        WHERE a.xact_id IS NOT NULL AND a.xact_id < horizon AND (a.xact_id, a.id) > (after_xact, after_id)
        ORDER BY a.xact_id, a.id
        LIMIT max_rows
    LOOP
        chain_hash := audit_row_hash(chain_hash, entry.id, entry.occurred_at, entry.event_type, entry.actor_id,
                                     entry.actor_role, entry.ip, entry.user_agent, entry.request_id,
                                     entry.entity_type, entry.entity_id, entry.before, entry.after, entry.metadata);
        ids := array_append(ids, entry.id);
        hashes := array_append(hashes, chain_hash);
    END LOOP;
    IF cardinality(ids) = 0 THEN
        RETURN;
    END IF;
    RETURN QUERY
    INSERT INTO audit_seals (seal_no, first_position, audit_ids, hashes, prev_hash, last_xact_id, last_id, horizon)
    VALUES (next_no, next_position, ids,
            (SELECT string_agg(h, ''::bytea ORDER BY n) FROM unnest(hashes) WITH ORDINALITY AS u (h, n)),
            first_hash, entry.xact_id, entry.id, horizon)
    RETURNING *;
END;
$$;
