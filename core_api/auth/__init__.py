"""Authentication: password hashing, tokens, sessions."""
