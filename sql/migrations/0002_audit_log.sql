-- Audit trail: append-only, one hash chain over all rows so that tampering is detectable.
--
-- A row's id is its position in the chain. Writers take the next position by updating the single row of
-- audit_chain_head, whose row lock they hold until their transaction ends: positions are gapless (a rolled-back
-- writer gives its position back) and the chain cannot fork however many writers run at once. Writers should
-- therefore record their audit row as late in their transaction as they can.

CREATE TABLE audit_chain_head (
    id      boolean PRIMARY KEY DEFAULT true CHECK (id),
    seq     bigint NOT NULL
);
INSERT INTO audit_chain_head (id, seq) VALUES (true, 0);

CREATE TABLE audit_logs (
    id              bigint PRIMARY KEY,
    occurred_at     timestamptz NOT NULL,
    event_type      text NOT NULL CHECK (event_type ~ '^[a-z][a-z_]*\.[a-z][a-z_]*$'),
    actor_id        uuid,
    actor_role      text,
    ip              inet,
    user_agent      text,
    request_id      text,
    entity_type     text CHECK (entity_type ~ '^[a-z][a-z_]*$'),
    entity_id       text,
    before          jsonb,
    after           jsonb,
    metadata        jsonb NOT NULL DEFAULT '{}',
    prev_hash       bytea,
    hash            bytea NOT NULL
);
-- No foreign keys on purpose: the trail outlives what it describes (users are anonymised, rows purged).
CREATE INDEX audit_logs_occurred_at_idx ON audit_logs (occurred_at);
CREATE INDEX audit_logs_actor_idx ON audit_logs (actor_id, id);
CREATE INDEX audit_logs_event_type_idx ON audit_logs (event_type, id);
CREATE INDEX audit_logs_entity_idx ON audit_logs (entity_type, entity_id, id);

-- The hash of one row: sha256 over the previous row's hash and a canonical rendering of the row.
-- jsonb's text form is canonical (keys sorted, one spacing), and the time is rendered in UTC so the session's
-- TimeZone setting cannot change the result.
CREATE FUNCTION audit_row_hash(
    prev_hash bytea, id bigint, occurred_at timestamptz, event_type text, actor_id uuid, actor_role text,
    ip inet, user_agent text, request_id text, entity_type text, entity_id text,
    before jsonb, after jsonb, metadata jsonb
) RETURNS bytea LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT sha256(coalesce(prev_hash, '\x'::bytea) || convert_to(jsonb_build_array(
        id, to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), event_type, actor_id,
        actor_role, host(ip), user_agent, request_id, entity_type, entity_id, before, after, metadata
    )::text, 'UTF8'))
$$;

-- Rows are never changed; only retention may delete the oldest ones.
CREATE FUNCTION audit_logs_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_logs rows are append-only' USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER audit_logs_no_update BEFORE UPDATE ON audit_logs
    FOR EACH ROW EXECUTE FUNCTION audit_logs_immutable();
