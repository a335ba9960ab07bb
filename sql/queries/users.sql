-- insert_user --
-- Create a user and return it.
INSERT INTO users (email, password_hash, full_name, phone, role, airline_code)
VALUES (%(email)s, %(password_hash)s, %(full_name)s, %(phone)s, %(role)s, %(airline_code)s)
RETURNING id, email, full_name, phone, role, airline_code, is_active, created_at, updated_at, last_login_at

-- airline_exists --
-- Whether an airline code is known.
SELECT EXISTS (SELECT 1 FROM airlines WHERE code = %(code)s) AS exists
