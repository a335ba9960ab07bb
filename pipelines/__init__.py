"""Dagster project of the data platform: replication of PostgreSQL into the warehouse, the marts, their checks,
the schedule and the outbox sensor. ``pipelines.definitions`` holds the ``Definitions``.
"""
