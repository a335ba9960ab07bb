-- record_event --
-- Append one audit row in the caller's transaction. It takes no lock another writer waits for (the id comes from a
-- sequence, xact_id defaults to the writer's transaction: its place in the sealing order) and answers nothing, so
-- it can be pipelined with the change it records.
INSERT INTO audit_logs (occurred_at, event_type, actor_id, actor_role, request_id, entity_type, entity_id,
                        before, after, metadata)
VALUES (coalesce(%(occurred_at)s::timestamptz, clock_timestamp()), %(event_type)s::text, %(actor_id)s::uuid,
        %(actor_role)s::text, %(request_id)s::text, %(entity_type)s::text, %(entity_id)s::text, %(before)s::jsonb,
        %(after)s::jsonb, %(metadata)s::jsonb)

-- record_event_with_personal_data --
-- record_event, and the row's personal data (values behind its references, the actor's address) kept apart.
WITH written AS (
    INSERT INTO audit_logs (occurred_at, event_type, actor_id, actor_role, request_id, entity_type, entity_id,
                            before, after, metadata)
    VALUES (coalesce(%(occurred_at)s::timestamptz, clock_timestamp()), %(event_type)s::text, %(actor_id)s::uuid,
            %(actor_role)s::text, %(request_id)s::text, %(entity_type)s::text, %(entity_id)s::text,
            %(before)s::jsonb, %(after)s::jsonb, %(metadata)s::jsonb)
    RETURNING id
)
INSERT INTO audit_personal_data (audit_id, subjects, salt, ip, user_agent, "values")
SELECT id, %(subjects)s::uuid[], %(salt)s::bytea, %(ip)s::inet, %(user_agent)s::text, %(values)s::jsonb
FROM written

-- seal_lock --
-- One sealer at a time, until its transaction ends; the others skip their round.
SELECT pg_try_advisory_xact_lock(7305010611) AS locked

-- seal_lock_wait --
-- The sealer's lock, waited for (retention and the seed must not interleave with a seal).
SELECT pg_advisory_xact_lock(7305010611)

-- seal_horizon --
-- The sealing horizon: the oldest transaction of THIS database still running (or prepared), else the next
-- transaction id to be handed out. Every transaction below it has ended, and ids are handed out in order, so no
-- row below it can still appear. pg_snapshot_xmin would do, but it counts every database of the server: a long
-- transaction elsewhere (a bulk load, a stuck session) would stop the sealer here. Running transactions are taken
-- from the snapshot and kept when pg_stat_activity, read after it, places them in this database.
WITH snapshot AS (SELECT pg_current_snapshot() AS s),
ours AS (
    SELECT backend_xid AS xid FROM pg_stat_activity WHERE datname = current_database() AND backend_xid IS NOT NULL
    UNION ALL
    SELECT transaction FROM pg_prepared_xacts WHERE database = current_database()
)
SELECT coalesce(
           (SELECT min(running) FROM snapshot, pg_snapshot_xip(s) AS running
            WHERE running::xid IN (SELECT xid FROM ours)),
           (SELECT pg_snapshot_xmax(s) FROM snapshot)
       ) AS horizon

-- seal --
-- Link the next committed rows below the horizon into the chain (see audit_seal in migration 0011).
SELECT seal_no, first_position, cardinality(audit_ids) AS sealed, sealed_at FROM audit_seal(%(horizon)s::xid8, %(max_rows)s::integer)

-- backlog --
-- Committed rows not sealed yet, and the oldest of them: everything after the last seal's sort key.
WITH frontier AS (
    SELECT coalesce(last_xact_id, '0'::xid8) AS xact_id, last_id AS id FROM audit_seals ORDER BY seal_no DESC LIMIT 1
)
SELECT count(*) AS unsealed, min(a.occurred_at) AS oldest
FROM audit_logs AS a
WHERE a.xact_id IS NOT NULL
  AND (a.xact_id, a.id) > (coalesce((SELECT xact_id FROM frontier), '0'::xid8), coalesce((SELECT id FROM frontier), 0))

-- latest_checkpoint --
-- Where retention last cut the chain (position 0: never).
SELECT position, hash FROM audit_checkpoints ORDER BY id DESC LIMIT 1

-- chain_end --
-- The last sealed position and its chain hash.
SELECT first_position + cardinality(audit_ids) - 1 AS position, substring(hashes FROM octet_length(hashes) - 31) AS hash
FROM audit_seals ORDER BY seal_no DESC LIMIT 1

-- verify_links --
-- The first seal that does not continue the one before it (numbering, positions or the chain hash it starts from).
SELECT seal_no, first_position, first_id, previous_end, reason
FROM (
    SELECT seal_no, first_position, audit_ids[1] AS first_id,
           lag(first_position + cardinality(audit_ids)) OVER w AS previous_end,
           CASE
               WHEN lag(seal_no) OVER w IS NOT NULL AND lag(seal_no) OVER w <> seal_no - 1 THEN 'seal missing'
               WHEN lag(seal_no) OVER w IS NOT NULL
                    AND lag(first_position + cardinality(audit_ids)) OVER w <> first_position THEN 'positions not contiguous'
               WHEN lag(seal_no) OVER w IS NOT NULL
                    AND prev_hash IS DISTINCT FROM lag(substring(hashes FROM octet_length(hashes) - 31)) OVER w
                   THEN 'link to the previous seal broken'
           END AS reason
    FROM audit_seals
    WINDOW w AS (ORDER BY seal_no)
) AS links
WHERE reason IS NOT NULL
ORDER BY seal_no
LIMIT 1

-- first_seal --
-- The first kept seal: where a verification starts (retention may have removed the ones before).
SELECT seal_no, first_position, prev_hash, audit_ids[1] AS first_id,
       first_position + cardinality(audit_ids) - 1 AS last_position
FROM audit_seals ORDER BY seal_no LIMIT 1

-- hash_at --
-- The chain hash stored at a position.
SELECT substring(hashes FROM (%(position)s::bigint - first_position)::integer * 32 + 1 FOR 32) AS hash
FROM audit_seals
WHERE first_position <= %(position)s::bigint AND first_position + cardinality(audit_ids) > %(position)s::bigint

-- verify_rows --
-- Recompute the chain hash of every sealed row at positions [from, to) past the checkpoint from the stored hash
-- before it: how many were checked, and the first position whose row is gone or hashes otherwise.
WITH sealed AS (
    SELECT s.first_position + u.n - 1 AS position, u.audit_id,
           substring(s.hashes FROM (u.n::integer - 1) * 32 + 1 FOR 32) AS hash,
           CASE WHEN u.n = 1 THEN s.prev_hash ELSE substring(s.hashes FROM (u.n::integer - 2) * 32 + 1 FOR 32) END AS prev_hash
    FROM audit_seals AS s, unnest(s.audit_ids) WITH ORDINALITY AS u (audit_id, n)
    WHERE s.first_position < %(to)s::bigint AND s.first_position + cardinality(s.audit_ids) > %(from)s::bigint
),
checked AS (
    SELECT sealed.position, sealed.audit_id, a.id IS NULL AS missing,
           a.id IS NULL OR sealed.hash IS DISTINCT FROM audit_row_hash(
               sealed.prev_hash, a.id, a.occurred_at, a.event_type, a.actor_id, a.actor_role, a.ip, a.user_agent,
               a.request_id, a.entity_type, a.entity_id, a.before, a.after, a.metadata) AS broken
    FROM sealed LEFT JOIN audit_logs AS a ON a.id = sealed.audit_id
    WHERE sealed.position >= %(from)s::bigint AND sealed.position < %(to)s::bigint
)
SELECT count(*) AS checked,
       (array_agg(position ORDER BY position) FILTER (WHERE broken))[1] AS broken_position,
       (array_agg(audit_id ORDER BY position) FILTER (WHERE broken))[1] AS broken_id,
       (array_agg(missing ORDER BY position) FILTER (WHERE broken))[1] AS broken_missing
FROM checked

-- first_young --
-- The first position in [from, to) whose row is not older than the cutoff: retention stops before it.
SELECT min(s.first_position + u.n - 1) AS position
FROM audit_seals AS s, unnest(s.audit_ids) WITH ORDINALITY AS u (audit_id, n), audit_logs AS a
WHERE s.first_position < %(to)s::bigint AND s.first_position + cardinality(s.audit_ids) > %(from)s::bigint
  AND s.first_position + u.n - 1 >= %(from)s::bigint AND s.first_position + u.n - 1 < %(to)s::bigint
  AND a.id = u.audit_id AND a.occurred_at >= %(cutoff)s::timestamptz

-- delete_chain_prefix --
-- Delete the rows at positions (after, through] with their personal data, and the seals wholly inside; returns how
-- many audit rows went.
WITH doomed AS (
    SELECT u.audit_id
    FROM audit_seals AS s, unnest(s.audit_ids) WITH ORDINALITY AS u (audit_id, n)
    WHERE s.first_position <= %(through)s::bigint AND s.first_position + cardinality(s.audit_ids) > %(after)s::bigint
      AND s.first_position + u.n - 1 > %(after)s::bigint AND s.first_position + u.n - 1 <= %(through)s::bigint
),
personal AS (
    DELETE FROM audit_personal_data WHERE audit_id IN (SELECT audit_id FROM doomed)
),
seals AS (
    -- The last seal stays whatever its rows: the sealer continues after its sort key.
    DELETE FROM audit_seals
    WHERE first_position + cardinality(audit_ids) - 1 <= %(through)s::bigint
      AND seal_no < (SELECT max(seal_no) FROM audit_seals)
),
rows AS (
    DELETE FROM audit_logs WHERE id IN (SELECT audit_id FROM doomed) RETURNING 1
)
SELECT count(*) AS deleted FROM rows

-- older_kept --
-- Rows older than the cutoff that retention kept (behind a younger one in the chain, or not sealed yet).
SELECT count(*) AS kept FROM audit_logs WHERE occurred_at < %(cutoff)s::timestamptz

-- insert_checkpoint --
-- Remember where the chain now starts.
INSERT INTO audit_checkpoints (position, hash, removed, cutoff)
VALUES (%(position)s::bigint, %(hash)s::bytea, %(removed)s::bigint, %(cutoff)s::timestamptz)

-- erase_personal_data --
-- Forget the personal data of one user in the trail: the rows they did, the rows about them, the rows about their
-- bookings (as customer or agent). The chained rows keep only references that nothing resolves any more.
DELETE FROM audit_personal_data AS p
WHERE %(user_id)s::uuid = ANY (p.subjects)
  AND p.audit_id IN (
      SELECT id FROM audit_logs WHERE actor_id = %(user_id)s::uuid
      UNION ALL
      SELECT id FROM audit_logs WHERE entity_type = 'user' AND entity_id = %(user_id)s::text
      UNION ALL
      SELECT a.id
      FROM bookings AS b JOIN audit_logs AS a ON a.entity_type = 'booking' AND a.entity_id = b.id::text
      WHERE b.customer_id = %(user_id)s::uuid OR b.agent_id = %(user_id)s::uuid
  )

-- list_logs --
-- One page of rows, newest first, under any mix of filters (run unprepared, so that absent filters fold away
-- and the planner picks the index of the filters given); the keyset is (occurred_at, id).
WITH frontier AS (
    SELECT coalesce(last_xact_id, '0'::xid8) AS xact_id, last_id AS id FROM audit_seals ORDER BY seal_no DESC LIMIT 1
)
SELECT a.id, a.occurred_at, a.event_type, a.actor_id, a.actor_role, host(a.ip) AS ip, a.user_agent, a.request_id,
       a.entity_type, a.entity_id, a.before, a.after, a.metadata,
       a.xact_id IS NULL OR (a.xact_id, a.id) <= ((SELECT xact_id FROM frontier), (SELECT id FROM frontier)) AS sealed,
       p.salt, host(p.ip) AS personal_ip, p.user_agent AS personal_user_agent, p."values" AS personal_values
FROM (
    SELECT *
    FROM audit_logs
    WHERE (%(actor_id)s::uuid IS NULL OR actor_id = %(actor_id)s::uuid)
      AND (%(event_type)s::text IS NULL OR event_type = %(event_type)s::text)
      AND (%(entity_type)s::text IS NULL OR entity_type = %(entity_type)s::text)
      AND (%(entity_id)s::text IS NULL OR entity_id = %(entity_id)s::text)
      AND (%(from)s::timestamptz IS NULL OR occurred_at >= %(from)s::timestamptz)
      AND (%(to)s::timestamptz IS NULL OR occurred_at < %(to)s::timestamptz)
      AND (%(cursor_at)s::timestamptz IS NULL
           OR (occurred_at, id) < (%(cursor_at)s::timestamptz, %(cursor_id)s::bigint))
    ORDER BY occurred_at DESC, id DESC
    LIMIT %(limit)s
) AS a
LEFT JOIN audit_personal_data AS p ON p.audit_id = a.id
ORDER BY a.occurred_at DESC, a.id DESC

-- user_timeline --
-- One page of what a user did and what was done to their account, newest first: two index ranges merged.
WITH frontier AS (
    SELECT coalesce(last_xact_id, '0'::xid8) AS xact_id, last_id AS id FROM audit_seals ORDER BY seal_no DESC LIMIT 1
)
SELECT a.id, a.occurred_at, a.event_type, a.actor_id, a.actor_role, host(a.ip) AS ip, a.user_agent, a.request_id,
       a.entity_type, a.entity_id, a.before, a.after, a.metadata,
       a.xact_id IS NULL OR (a.xact_id, a.id) <= ((SELECT xact_id FROM frontier), (SELECT id FROM frontier)) AS sealed,
       p.salt, host(p.ip) AS personal_ip, p.user_agent AS personal_user_agent, p."values" AS personal_values
FROM (
    SELECT * FROM (
        (SELECT * FROM audit_logs
         WHERE actor_id = %(user_id)s::uuid
           AND (%(cursor_at)s::timestamptz IS NULL
                OR (occurred_at, id) < (%(cursor_at)s::timestamptz, %(cursor_id)s::bigint))
         ORDER BY occurred_at DESC, id DESC LIMIT %(limit)s)
        UNION
        (SELECT * FROM audit_logs
         WHERE entity_type = 'user' AND entity_id = %(user_id)s::text
           AND (%(cursor_at)s::timestamptz IS NULL
                OR (occurred_at, id) < (%(cursor_at)s::timestamptz, %(cursor_id)s::bigint))
         ORDER BY occurred_at DESC, id DESC LIMIT %(limit)s)
    ) AS both_ranges
    ORDER BY occurred_at DESC, id DESC
    LIMIT %(limit)s
) AS a
LEFT JOIN audit_personal_data AS p ON p.audit_id = a.id
ORDER BY a.occurred_at DESC, a.id DESC

-- security_events --
-- One page of security events (failed logins, lockouts, refresh-token reuse, failed password changes, access
-- denied, rate limiting), newest first, on the partial index that holds only them.
WITH frontier AS (
    SELECT coalesce(last_xact_id, '0'::xid8) AS xact_id, last_id AS id FROM audit_seals ORDER BY seal_no DESC LIMIT 1
)
SELECT a.id, a.occurred_at, a.event_type, a.actor_id, a.actor_role, host(a.ip) AS ip, a.user_agent, a.request_id,
       a.entity_type, a.entity_id, a.before, a.after, a.metadata,
       a.xact_id IS NULL OR (a.xact_id, a.id) <= ((SELECT xact_id FROM frontier), (SELECT id FROM frontier)) AS sealed,
       p.salt, host(p.ip) AS personal_ip, p.user_agent AS personal_user_agent, p."values" AS personal_values
FROM (
    SELECT *
    FROM audit_logs
    WHERE event_type IN ('auth.login_failed', 'auth.lockout', 'auth.refresh_reuse_detected',
                         'auth.password_change_failed', 'security.access_denied', 'security.rate_limited')
      AND (%(event_type)s::text IS NULL OR event_type = %(event_type)s::text)
      AND (%(from)s::timestamptz IS NULL OR occurred_at >= %(from)s::timestamptz)
      AND (%(to)s::timestamptz IS NULL OR occurred_at < %(to)s::timestamptz)
      AND (%(cursor_at)s::timestamptz IS NULL
           OR (occurred_at, id) < (%(cursor_at)s::timestamptz, %(cursor_id)s::bigint))
    ORDER BY occurred_at DESC, id DESC
    LIMIT %(limit)s
) AS a
LEFT JOIN audit_personal_data AS p ON p.audit_id = a.id
ORDER BY a.occurred_at DESC, a.id DESC

-- statistics --
-- Counts over [from, to) by event type, by actor role and by UTC day, in one pass.
SELECT event_type, actor_role, day, GROUPING(event_type) = 0 AS by_event, GROUPING(actor_role) = 0 AS by_role,
       count(*) AS n
FROM (
    SELECT event_type, actor_role, to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day
    FROM audit_logs
    WHERE occurred_at >= %(from)s::timestamptz AND occurred_at < %(to)s::timestamptz
) AS rows
GROUP BY GROUPING SETS ((event_type), (actor_role), (day))
