-- insert_user --
-- Create a user and return it.
INSERT INTO users (email, password_hash, full_name, phone, role, airline_code)
VALUES (%(email)s, %(password_hash)s, %(full_name)s, %(phone)s, %(role)s, %(airline_code)s)
RETURNING id, email, full_name, phone, role, airline_code, is_active, created_at, updated_at, last_login_at

-- airline_exists --
-- Whether an airline code is known.
SELECT EXISTS (SELECT 1 FROM airlines WHERE code = %(code)s) AS exists

-- user_by_id --
-- A live (not deleted) user by id.
SELECT id, email, full_name, phone, role, airline_code, is_active, created_at, updated_at, last_login_at
FROM users
WHERE id = %(id)s AND deleted_at IS NULL

-- lock_user --
-- A live user by id, its row locked for an update in this transaction.
SELECT id, email, full_name, phone, role, airline_code, is_active, created_at, updated_at, last_login_at
FROM users
WHERE id = %(id)s AND deleted_at IS NULL
FOR UPDATE

-- password_hash --
-- The password hash of a live user, and the email its lockout counters go by (for a password change).
SELECT email, password_hash FROM users WHERE id = %(id)s AND deleted_at IS NULL

-- lock_admin_removal --
-- Serialise changes that could remove an admin (demote, deactivate, delete) until this transaction ends.
SELECT pg_advisory_xact_lock(hashtext('flightdesk.users.active_admins'))

-- count_other_active_admins --
-- Live, active admins other than the given user.
SELECT count(*) AS n
FROM users
WHERE role = 'ADMIN' AND is_active AND deleted_at IS NULL AND id <> %(id)s

-- update_user --
-- Write a user's profile and administrative fields (the service passes every field, changed or not).
UPDATE users
SET full_name = %(full_name)s, phone = %(phone)s, role = %(role)s, airline_code = %(airline_code)s,
    is_active = %(is_active)s, updated_at = now()
WHERE id = %(id)s AND deleted_at IS NULL
RETURNING id, email, full_name, phone, role, airline_code, is_active, created_at, updated_at, last_login_at

-- change_password --
-- Replace the password hash that was just verified (no row if it changed meanwhile); older access tokens stop working.
UPDATE users SET password_hash = %(password_hash)s, credentials_changed_at = now(), updated_at = now()
WHERE id = %(id)s AND deleted_at IS NULL AND password_hash = %(verified_hash)s
RETURNING id, email, full_name, phone, role, airline_code, is_active, created_at, updated_at, last_login_at

-- soft_delete_user --
-- Delete a user softly: deactivate, anonymise personal data, make the password unusable, refuse old tokens.
-- '!' can never be produced by argon2, so no password verifies against it.
UPDATE users
SET deleted_at = now(), is_active = false, email = 'deleted-' || id || '@deleted.invalid',
    full_name = 'Deleted user', phone = NULL, password_hash = '!deleted', credentials_changed_at = now(),
    updated_at = now()
WHERE id = %(id)s AND deleted_at IS NULL
RETURNING id, role

-- read_only_snapshot --
-- Make this transaction read one snapshot (a page and its total agree) and write nothing.
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY

-- count_users --
-- How many live users match the list filters (run unprepared, so NULL filters fold away).
SELECT count(*) AS total
FROM users
WHERE deleted_at IS NULL
  AND (%(role)s::text IS NULL OR role = %(role)s::text)
  AND (%(is_active)s::boolean IS NULL OR is_active = %(is_active)s::boolean)
  AND (%(q)s::text IS NULL OR users_search_document(full_name, email) @@ users_search_query(%(q)s::text))

-- list_users --
-- One page of live users, newest first, without a search term (walks users_live_created_idx).
SELECT id, email, full_name, phone, role, airline_code, is_active, created_at, updated_at, last_login_at
FROM users
WHERE deleted_at IS NULL
  AND (%(role)s::text IS NULL OR role = %(role)s::text)
  AND (%(is_active)s::boolean IS NULL OR is_active = %(is_active)s::boolean)
ORDER BY created_at DESC, id
LIMIT %(limit)s OFFSET %(offset)s

-- search_users --
-- One page of live users matching a search term, newest first. The matches are collected through the GIN index
-- first: the planner underestimates how rare a prefix is and would otherwise walk the whole list in order,
-- filtering row by row. Measured on 200 k users: a term matching nothing took 1 s that way, 0.1 ms this way;
-- a term matching 40 k users takes 30 ms this way.
WITH matching AS MATERIALIZED (
    SELECT id, email, full_name, phone, role, airline_code, is_active, created_at, updated_at, last_login_at
    FROM users
    WHERE deleted_at IS NULL
      AND users_search_document(full_name, email) @@ users_search_query(%(q)s::text)
      AND (%(role)s::text IS NULL OR role = %(role)s::text)
      AND (%(is_active)s::boolean IS NULL OR is_active = %(is_active)s::boolean)
)
SELECT id, email, full_name, phone, role, airline_code, is_active, created_at, updated_at, last_login_at
FROM matching
ORDER BY created_at DESC, id
LIMIT %(limit)s OFFSET %(offset)s

-- user_counts --
-- Users by role and state: live active, live inactive, deleted.
SELECT role,
       count(*) FILTER (WHERE deleted_at IS NULL AND is_active) AS active,
       count(*) FILTER (WHERE deleted_at IS NULL AND NOT is_active) AS inactive,
       count(*) FILTER (WHERE deleted_at IS NOT NULL) AS deleted
FROM users
GROUP BY role

-- new_users_per_day --
-- Accounts created on each UTC day of the last 30 (today included), zero-filled, deleted ones counted too.
WITH days AS (
    SELECT (now() AT TIME ZONE 'UTC')::date - offset_days AS day
    FROM generate_series(0, 29) AS offset_days
)
SELECT days.day AS date, count(users.id) AS count
FROM days
LEFT JOIN users
       ON users.created_at >= days.day::timestamp AT TIME ZONE 'UTC'
      AND users.created_at < (days.day + 1)::timestamp AT TIME ZONE 'UTC'
GROUP BY days.day
ORDER BY days.day
