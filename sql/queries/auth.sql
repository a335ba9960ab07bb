-- principal_state --
-- What every authenticated request checks: the user is live, the session open, the token not blacklisted.
-- An inner join: a token naming no session of its user (none at all, or someone else's) finds no row and is
-- refused like a revoked one; a session past its absolute lifetime is over as well.
SELECT u.id, u.role, u.airline_code, u.is_active, u.deleted_at, u.credentials_changed_at,
       s.revoked_at IS NOT NULL OR s.expires_at <= now() AS session_ended,
       EXISTS (SELECT 1 FROM blacklisted_tokens AS b WHERE b.jti = %(jti)s) AS blacklisted
FROM users AS u
JOIN sessions AS s ON s.family_id = %(sid)s AND s.user_id = u.id
WHERE u.id = %(sub)s

-- user_for_login --
-- The account behind an email, with its password hash.
SELECT id, email, full_name, phone, role, airline_code, is_active, created_at, updated_at, last_login_at,
       password_hash, deleted_at
FROM users
WHERE lower(email) = lower(%(email)s) AND deleted_at IS NULL

-- record_login --
-- Stamp a successful login, replacing the hash when its parameters are outdated.
UPDATE users
SET last_login_at = now(), password_hash = coalesce(%(new_hash)s, password_hash)
WHERE id = %(user_id)s
RETURNING id, email, full_name, phone, role, airline_code, is_active, created_at, updated_at, last_login_at

-- open_session --
-- Start a refresh-token family for a device.
INSERT INTO sessions (user_id, family_id, ip, user_agent, expires_at)
VALUES (%(user_id)s, %(family_id)s, %(ip)s, %(user_agent)s, now() + make_interval(secs => %(ttl)s))
RETURNING expires_at

-- insert_refresh_token --
-- Store a refresh token (hashed) of a family; it never outlives the family.
INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at)
SELECT %(user_id)s, s.family_id, %(token_hash)s, least(now() + make_interval(secs => %(ttl)s), s.expires_at)
FROM sessions AS s
WHERE s.family_id = %(family_id)s
RETURNING expires_at

-- lock_refresh_token --
-- The refresh token presented, locked so that two concurrent refreshes cannot both spend it.
SELECT t.id, t.user_id, t.family_id, t.expires_at, t.spent_at, t.revoked_at,
       s.revoked_at AS session_revoked_at, s.expires_at AS session_expires_at
FROM refresh_tokens AS t
JOIN sessions AS s ON s.family_id = t.family_id
WHERE t.token_hash = %(token_hash)s
FOR UPDATE OF t

-- spend_refresh_token --
-- Mark a refresh token used.
UPDATE refresh_tokens SET spent_at = now() WHERE id = %(id)s

-- touch_session --
-- Record that a session was used.
UPDATE sessions SET last_seen_at = now(), ip = coalesce(%(ip)s, ip) WHERE family_id = %(family_id)s

-- revoke_family --
-- End one session and every refresh token of it.
WITH session AS (
    UPDATE sessions SET revoked_at = now(), revoke_reason = %(reason)s
    WHERE family_id = %(family_id)s AND revoked_at IS NULL
    RETURNING family_id
)
UPDATE refresh_tokens SET revoked_at = now()
WHERE family_id = %(family_id)s AND revoked_at IS NULL

-- revoke_user_sessions --
-- End every session and refresh token of a user (password change, deactivation, deletion).
WITH sessions_ended AS (
    UPDATE sessions SET revoked_at = now(), revoke_reason = %(reason)s
    WHERE user_id = %(user_id)s AND revoked_at IS NULL
    RETURNING family_id
)
UPDATE refresh_tokens SET revoked_at = now()
WHERE user_id = %(user_id)s AND revoked_at IS NULL

-- blacklist_token --
-- Refuse an access token until it expires.
INSERT INTO blacklisted_tokens (jti, user_id, expires_at, reason)
VALUES (%(jti)s, %(user_id)s, %(expires_at)s, %(reason)s)
ON CONFLICT (jti) DO NOTHING

-- purge_expired_blacklist --
-- Forget blacklisted tokens that have expired anyway.
DELETE FROM blacklisted_tokens WHERE expires_at < now()

-- user_by_id --
-- A live user by id.
SELECT id, email, full_name, phone, role, airline_code, is_active, created_at, updated_at, last_login_at
FROM users
WHERE id = %(user_id)s AND deleted_at IS NULL

-- insert_password_reset --
-- Store a password-reset token (hashed).
INSERT INTO password_reset_tokens (user_id, token_hash, expires_at)
VALUES (%(user_id)s, %(token_hash)s, now() + make_interval(secs => %(ttl)s))

-- lock_password_reset_owner --
-- The live account a password-reset token belongs to, its row locked: the user row first, as deactivation and
-- deletion lock it before they revoke the account's reset tokens, so a confirmation racing them waits and then
-- sees what they wrote.
SELECT u.id, u.is_active
FROM password_reset_tokens AS t
JOIN users AS u ON u.id = t.user_id
WHERE t.token_hash = %(token_hash)s AND u.deleted_at IS NULL
FOR UPDATE OF u

-- take_password_reset --
-- Spend a live password-reset token of the given user, returning it.
UPDATE password_reset_tokens SET used_at = now()
WHERE token_hash = %(token_hash)s AND user_id = %(user_id)s AND used_at IS NULL AND expires_at > now()
RETURNING user_id

-- revoke_password_resets --
-- Spend every outstanding password-reset token of a user (reset completed, password changed, deactivation,
-- deletion, role change).
UPDATE password_reset_tokens SET used_at = now() WHERE user_id = %(user_id)s AND used_at IS NULL

-- change_password --
-- Replace a password hash; access tokens issued before now stop working.
UPDATE users SET password_hash = %(password_hash)s, credentials_changed_at = now(), updated_at = now()
WHERE id = %(user_id)s AND deleted_at IS NULL
RETURNING id

-- open_lockout_counter --
-- A login-lockout counter (PostgreSQL stands in while Redis is down) with a live window, a fresh one where its
-- window has ended; the row stays locked until the transaction ends, so a check and its count cannot be split.
INSERT INTO login_throttle AS t (key, window_ends_at)
VALUES (%(key)s, now() + make_interval(secs => %(window_seconds)s))
ON CONFLICT (key) DO UPDATE
SET window_ends_at = CASE WHEN t.window_ends_at <= now() THEN excluded.window_ends_at ELSE t.window_ends_at END,
    in_flight = CASE WHEN t.window_ends_at <= now() THEN 0 ELSE t.in_flight END,
    failures = CASE WHEN t.window_ends_at <= now() THEN 0 ELSE t.failures END
RETURNING in_flight, failures, window_ends_at,
          ceil(extract(epoch FROM window_ends_at - now()))::integer AS seconds_left

-- reserve_lockout_attempt --
-- Count an attempt in flight on its counters (opened and locked by this transaction).
UPDATE login_throttle SET in_flight = in_flight + 1 WHERE key = ANY(%(keys)s)

-- settle_lockout_attempt --
-- Take an attempt out of flight on one counter, in the window it was counted in, as a failure or a success (which
-- may forget the counter's failures); returns the failures now counted.
UPDATE login_throttle
SET in_flight = greatest(in_flight - 1, 0),
    failures = CASE WHEN %(failed)s THEN failures + 1 WHEN %(forget)s THEN 0 ELSE failures END
WHERE key = %(key)s AND window_ends_at = %(window_ends_at)s
RETURNING failures

-- forget_ended_lockout_windows --
-- Delete lockout counters whose window has ended (the worker's cleanup).
DELETE FROM login_throttle WHERE window_ends_at <= now()
