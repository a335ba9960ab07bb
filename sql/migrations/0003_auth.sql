-- Authentication: access tokens issued before a user's credentials last changed are refused.
ALTER TABLE users ADD COLUMN credentials_changed_at timestamptz;

-- Sessions are looked up by family on every authenticated request (revoked sessions end their access tokens).
CREATE INDEX sessions_active_user_idx ON sessions (user_id) WHERE revoked_at IS NULL;
CREATE INDEX refresh_tokens_live_family_idx ON refresh_tokens (family_id) WHERE revoked_at IS NULL;
