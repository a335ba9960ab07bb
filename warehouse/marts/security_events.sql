-- Security events per 15-minute UTC slot and type: failed logins, lockouts, refresh-token reuse, failed
-- password changes, refused access and rate limiting.
CREATE OR REPLACE TABLE mart_security_events AS
SELECT time_bucket(INTERVAL '15 minutes', occurred_at) AS slot, event_type, actor_role,
       count(*)::BIGINT AS events, count(DISTINCT actor_id)::BIGINT AS actors
FROM audit_logs
WHERE event_type IN ('auth.login_failed', 'auth.lockout', 'auth.refresh_reuse_detected',
                     'auth.password_change_failed', 'security.access_denied', 'security.rate_limited')
GROUP BY ALL
ORDER BY slot;
