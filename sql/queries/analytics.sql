-- realtime_series --
-- Per minute of [start, end): bookings created, confirmed and cancelled, payments succeeded and searches.
WITH minutes AS (
    SELECT generate_series(date_trunc('minute', %(start)s::timestamptz), %(end)s::timestamptz - interval '1 minute',
                           interval '1 minute') AS minute
),
events AS (
    SELECT date_trunc('minute', created_at) AS minute, 1 AS created, 0 AS confirmed, 0 AS cancelled, 0 AS paid,
           0 AS searches
    FROM bookings WHERE created_at >= %(start)s::timestamptz AND created_at < %(end)s::timestamptz
    UNION ALL
    SELECT date_trunc('minute', confirmed_at), 0, 1, 0, 0, 0
    FROM bookings WHERE confirmed_at >= %(start)s::timestamptz AND confirmed_at < %(end)s::timestamptz
    UNION ALL
    SELECT date_trunc('minute', cancelled_at), 0, 0, 1, 0, 0
    FROM bookings WHERE cancelled_at >= %(start)s::timestamptz AND cancelled_at < %(end)s::timestamptz
    UNION ALL
    SELECT date_trunc('minute', succeeded_at), 0, 0, 0, 1, 0
    FROM payments
    WHERE succeeded_at >= %(start)s::timestamptz AND succeeded_at < %(end)s::timestamptz
      AND status IN ('SUCCEEDED', 'PARTIALLY_REFUNDED', 'REFUNDED')
    UNION ALL
    SELECT date_trunc('minute', searched_at), 0, 0, 0, 0, 1
    FROM search_events WHERE searched_at >= %(start)s::timestamptz AND searched_at < %(end)s::timestamptz
)
SELECT m.minute,
       coalesce(sum(e.created), 0)::int AS bookings_created,
       coalesce(sum(e.confirmed), 0)::int AS bookings_confirmed,
       coalesce(sum(e.cancelled), 0)::int AS bookings_cancelled,
       coalesce(sum(e.paid), 0)::int AS payments_succeeded,
       coalesce(sum(e.searches), 0)::int AS searches
FROM minutes AS m
LEFT JOIN events AS e ON e.minute = m.minute
GROUP BY m.minute
ORDER BY m.minute

-- realtime_revenue --
-- Payments succeeded in [start, end) by currency.
SELECT currency, sum(amount)::bigint AS amount
FROM payments
WHERE succeeded_at >= %(start)s::timestamptz AND succeeded_at < %(end)s::timestamptz
  AND status IN ('SUCCEEDED', 'PARTIALLY_REFUNDED', 'REFUNDED')
GROUP BY currency
ORDER BY currency

-- active_holds --
-- Unpaid bookings still holding seats.
SELECT count(*)::int AS holds FROM bookings WHERE status = 'PENDING_PAYMENT' AND hold_expires_at > now()
