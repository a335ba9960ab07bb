"""Storage: the PostgreSQL pool and named queries, migrations, the Redis client, and the embedded servers started
when no URLs are configured.
"""
