-- advance_chain_head --
-- Take the next chain position; the head's row lock serialises writers until their transactions end.
UPDATE audit_chain_head SET seq = seq + 1 WHERE id

-- record_event --
-- Append one audit row at the position just taken, linked to the previous row's hash. A statement of its own,
-- so its snapshot is taken after the head lock was granted and the previous writer's row is visible.
WITH event AS (
    SELECT head.seq AS id,
           previous.hash AS prev_hash,
           coalesce(%(occurred_at)s::timestamptz, clock_timestamp()) AS occurred_at,
           %(event_type)s::text AS event_type,
           %(actor_id)s::uuid AS actor_id,
           %(actor_role)s::text AS actor_role,
           %(ip)s::inet AS ip,
           %(user_agent)s::text AS user_agent,
           %(request_id)s::text AS request_id,
           %(entity_type)s::text AS entity_type,
           %(entity_id)s::text AS entity_id,
           %(before)s::jsonb AS before,
           %(after)s::jsonb AS after,
           %(metadata)s::jsonb AS metadata
    FROM audit_chain_head AS head
    LEFT JOIN audit_logs AS previous ON previous.id = head.seq - 1
)
INSERT INTO audit_logs (id, occurred_at, event_type, actor_id, actor_role, ip, user_agent, request_id,
                        entity_type, entity_id, before, after, metadata, prev_hash, hash)
SELECT id, occurred_at, event_type, actor_id, actor_role, ip, user_agent, request_id,
       entity_type, entity_id, before, after, metadata, prev_hash,
       audit_row_hash(prev_hash, id, occurred_at, event_type, actor_id, actor_role, ip, user_agent, request_id,
                      entity_type, entity_id, before, after, metadata)
FROM event
RETURNING id

-- verify_chain --
-- Rows whose stored hash or link disagrees with a recomputation, among the rows kept; plus how many were checked.
WITH chain AS (
    SELECT id, hash, prev_hash,
           lag(id) OVER (ORDER BY id) AS previous_id,
           lag(hash) OVER (ORDER BY id) AS previous_hash,
           audit_row_hash(prev_hash, id, occurred_at, event_type, actor_id, actor_role, ip, user_agent, request_id,
                          entity_type, entity_id, before, after, metadata) AS recomputed
    FROM audit_logs
)
SELECT count(*) AS checked,
       min(id) FILTER (
           WHERE hash <> recomputed
              OR (previous_id IS NOT NULL AND (previous_id <> id - 1 OR prev_hash IS DISTINCT FROM previous_hash))
       ) AS first_broken_id
FROM chain
