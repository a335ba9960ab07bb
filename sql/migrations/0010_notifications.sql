-- Notifications as an outbox consumer (SPEC §7): one row per mail, keyed by the event that caused it and the
-- recipient, so a replayed event, a second relay or a re-run job finds the row and sends nothing twice.
--
-- 0001 made event_id unique on its own; a flight.changed or an admin's send may address several recipients, so the
-- key becomes (event_id, recipient). Status gains SENDING (a worker holds the row until lease_until; a worker killed
-- mid-send leaves a lease that runs out, and the job's next run takes the row again). cleared_at hides completed
-- rows from lists and stats without deleting them: the row is the de-duplication key of its event.
ALTER TABLE notifications DROP CONSTRAINT notifications_event_id_key;
ALTER TABLE notifications ADD CONSTRAINT notifications_event_recipient_key UNIQUE (event_id, recipient);

ALTER TABLE notifications DROP CONSTRAINT notifications_status_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_status_check
    CHECK (status IN ('PENDING', 'SENDING', 'SENT', 'FAILED', 'CANCELLED'));

ALTER TABLE notifications
    ADD COLUMN lease_until timestamptz,
    ADD COLUMN cleared_at  timestamptz;

-- Lists (newest first) and stats read only rows not cleared; the stalled-job sweep reads live rows by status.
CREATE INDEX notifications_visible_created_idx ON notifications (created_at DESC, id DESC) WHERE cleared_at IS NULL;
CREATE INDEX notifications_live_idx ON notifications (status, updated_at) WHERE status IN ('PENDING', 'SENDING');
-- The reminder cron looks for bookings that have no reminder yet.
CREATE INDEX notifications_booking_template_idx ON notifications (booking_id, template) WHERE booking_id IS NOT NULL;
