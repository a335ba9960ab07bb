-- insert_event --
-- Append one event to the outbox, in the transaction of the change it announces.
INSERT INTO outbox_events (id, event_type, aggregate_type, aggregate_id, payload)
VALUES (%(id)s::uuid, %(event_type)s::text, %(aggregate_type)s::text, %(aggregate_id)s::text, %(payload)s::jsonb)

-- claim_unpublished --
-- Lock the oldest unpublished events in write order, skipping rows another relay has claimed.
SELECT id, seq, event_type, aggregate_type, aggregate_id, payload, created_at
FROM outbox_events
WHERE published_at IS NULL
ORDER BY seq
LIMIT %(limit)s::integer
FOR UPDATE SKIP LOCKED

-- mark_published --
-- Record that the claimed events reached Redis pub/sub and the arq queue.
UPDATE outbox_events
SET published_at = now()
WHERE id = ANY(%(ids)s::uuid[])

-- record_failure --
-- Count a failed delivery attempt on events still unpublished, leaving alone rows another relay holds.
UPDATE outbox_events
SET attempts = attempts + 1, last_error = %(error)s::text
WHERE id IN (
    SELECT id FROM outbox_events
    WHERE id = ANY(%(ids)s::uuid[]) AND published_at IS NULL
    FOR UPDATE SKIP LOCKED
)

-- backlog --
-- How many events wait for the relay, and since when (queue depth for health checks and metrics).
SELECT count(*)::integer AS pending, min(created_at) AS oldest_created_at
FROM outbox_events
WHERE published_at IS NULL

-- any_unpublished --
-- Whether any event waits, as one autocommit index probe (outbox_events_unpublished_idx): an idle relay's poll.
SELECT EXISTS (SELECT 1 FROM outbox_events WHERE published_at IS NULL) AS pending
