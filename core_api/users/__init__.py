"""Users: accounts, roles and profiles."""
