"""Audit trail: the hash-chained, append-only record of every change and security event."""
