-- insert_notification --
-- Queue one mail for an event and recipient; a second insert for the same pair (a replay) changes nothing. An
-- account or booking the event names that does not exist (an admin's send naming any booking) is left out, not
-- a reason to lose the mail.
INSERT INTO notifications (user_id, booking_id, event_id, template, recipient, subject, priority, payload)
VALUES ((SELECT id FROM users WHERE id = %(user_id)s::uuid), (SELECT id FROM bookings WHERE id = %(booking_id)s::uuid),
        %(event_id)s::uuid, %(template)s::text, %(recipient)s::text,
        %(subject)s::text, %(priority)s::smallint, %(payload)s::jsonb)
ON CONFLICT (event_id, recipient) DO NOTHING
RETURNING id

-- notification_of_event --
-- The mail already queued for an event and recipient, so a replayed event can re-enqueue a job that was lost.
SELECT id, status, priority
FROM notifications
WHERE event_id = %(event_id)s::uuid AND recipient = %(recipient)s::text

-- pending_by_ids --
-- Which of these mails still wait for a send job (the others are sent, failed, or held by a worker).
SELECT id, priority
FROM notifications
WHERE id = ANY(%(ids)s::uuid[]) AND status = 'PENDING'

-- claim_notification --
-- Take a mail for one send attempt: a pending one, or one whose sender's lease ran out (a killed worker).
UPDATE notifications
SET status = 'SENDING', attempts = attempts + 1, lease_until = now() + make_interval(secs => %(lease)s::float8),
    updated_at = now()
WHERE id = %(id)s::uuid
  AND (status = 'PENDING' OR (status = 'SENDING' AND lease_until < now()))
RETURNING id, user_id, booking_id, template, recipient, subject, payload, attempts

-- notification_state --
-- Where a mail the send job could not claim stands, and how long another sender's lease still runs.
SELECT status, GREATEST(extract(epoch FROM lease_until - now()), 0)::float8 AS lease_left
FROM notifications
WHERE id = %(id)s::uuid

-- mark_sent --
-- The SMTP server accepted the mail; a password-reset token it carried is not kept.
UPDATE notifications
SET status = 'SENT', sent_at = now(), last_error = NULL, lease_until = NULL, updated_at = now(),
    payload = payload - 'token'
WHERE id = %(id)s::uuid AND status = 'SENDING'

-- mark_retry --
-- A delivery attempt failed and another follows after the backoff: the mail waits again.
UPDATE notifications
SET status = 'PENDING', last_error = %(error)s::text, lease_until = NULL, updated_at = now()
WHERE id = %(id)s::uuid AND status = 'SENDING'

-- mark_failed --
-- The last attempt failed (or the mail cannot be rendered): kept as FAILED for retry-failed.
UPDATE notifications
SET status = 'FAILED', last_error = %(error)s::text, lease_until = NULL, updated_at = now()
WHERE id = %(id)s::uuid AND status = 'SENDING'

-- stalled_notifications --
-- Mails that should have a send job but may have lost it (Redis flushed, a job enqueued after its row was gone):
-- pending for a while, or held by a lease that ran out. Re-enqueueing an id arq still holds is a no-op.
SELECT id, priority
FROM notifications
WHERE (status = 'PENDING' AND updated_at < now() - make_interval(secs => %(idle)s::float8))
   OR (status = 'SENDING' AND lease_until < now())
ORDER BY priority, created_at
LIMIT %(limit)s::integer

-- list_notifications --
-- A page of mails, newest first: all of them, or one user's; each row carries the total count.
SELECT id, user_id, booking_id, template, recipient, subject, status, priority, attempts, last_error,
       created_at, updated_at, sent_at, count(*) OVER () AS total
FROM notifications
WHERE cleared_at IS NULL
  AND (%(user_id)s::uuid IS NULL OR user_id = %(user_id)s::uuid)
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(template)s::text IS NULL OR template = %(template)s::text)
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s::integer OFFSET %(offset)s::integer

-- notification_counts --
-- Mails not cleared, by template and status, for the stats endpoint.
SELECT template, status, count(*)::integer AS n
FROM notifications
WHERE cleared_at IS NULL
GROUP BY template, status

-- clear_completed --
-- Hide sent mails from lists and stats and drop their rendering context; the rows stay as de-duplication keys.
UPDATE notifications
SET cleared_at = now(), payload = '{}'::jsonb, updated_at = now()
WHERE status = 'SENT' AND cleared_at IS NULL

-- retry_failed --
-- Give failed mails three fresh attempts; returns them for the send jobs.
UPDATE notifications
SET status = 'PENDING', attempts = 0, updated_at = now()
WHERE status = 'FAILED' AND cleared_at IS NULL
RETURNING id

-- booking_for_mail --
-- What a booking mail says: the booking, its flight with the airports' zones, its travellers and its customer.
SELECT b.id, b.pnr, b.status, b.contact_email, b.customer_id, b.total_amount, b.currency, b.cabin,
       f.flight_number, al.name AS airline, f.origin, f.destination, o.city AS origin_city, d.city AS destination_city,
       o.tz AS origin_tz, d.tz AS destination_tz, f.departure_at, f.arrival_at, f.status AS flight_status,
       u.full_name AS customer_name,
       ARRAY(SELECT p.first_name || ' ' || p.last_name FROM passengers AS p WHERE p.booking_id = b.id
             ORDER BY p.created_at, p.id) AS passengers
FROM bookings AS b
JOIN flights AS f ON f.id = b.flight_id
JOIN airlines AS al ON al.code = f.airline_code
JOIN airports AS o ON o.code = f.origin
JOIN airports AS d ON d.code = f.destination
LEFT JOIN users AS u ON u.id = b.customer_id
WHERE b.id = %(id)s::uuid

-- bookings_due_reminder --
-- Confirmed bookings whose flight leaves within the reminder window and that have no reminder yet.
SELECT b.id
FROM bookings AS b
JOIN flights AS f ON f.id = b.flight_id
WHERE b.status = 'CONFIRMED'
  AND f.departure_at > now()
  AND f.departure_at <= now() + make_interval(secs => %(window)s::float8)
  AND f.status <> 'CANCELLED'
  AND NOT EXISTS (SELECT 1 FROM notifications AS n WHERE n.booking_id = b.id AND n.template = 'booking_reminder')
ORDER BY f.departure_at
LIMIT %(limit)s::integer

-- user_for_mail --
-- The name a mail to an account greets.
SELECT id, email, full_name
FROM users
WHERE id = %(id)s::uuid AND deleted_at IS NULL

-- notification --
-- One mail, as the API shows it.
SELECT id, user_id, booking_id, template, recipient, subject, status, priority, attempts, last_error,
       created_at, updated_at, sent_at
FROM notifications
WHERE id = %(id)s::uuid

-- mails_by_status --
-- Mails not cleared, by status, for the worker's gauges.
SELECT status, count(*)::integer AS n
FROM notifications
WHERE cleared_at IS NULL
GROUP BY status

-- erase_user_notifications --
-- A deleted account's mails keep no personal data: address, subject and context go; status and counts stay.
UPDATE notifications
SET recipient = 'erased-' || id::text || '@invalid', subject = '[erased]', payload = '{}'::jsonb,
    last_error = NULL, updated_at = now()
WHERE user_id = %(user_id)s::uuid
