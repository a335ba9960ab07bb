-- User growth by role per 15-minute UTC slot: accounts created, and accounts deleted (counted when deleted).
CREATE OR REPLACE TABLE mart_user_growth AS
WITH events AS (
    SELECT created_at AS event_at, role, 1 AS new_users, 0 AS deleted_users FROM users
    UNION ALL
    SELECT deleted_at, role, 0, 1 FROM users WHERE deleted_at IS NOT NULL
)
SELECT time_bucket(INTERVAL '15 minutes', event_at) AS slot, role,
       sum(new_users)::BIGINT AS new_users, sum(deleted_users)::BIGINT AS deleted_users
FROM events
GROUP BY ALL
ORDER BY slot;
