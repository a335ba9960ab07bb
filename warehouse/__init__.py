"""The analytical side: DuckDB snapshots of the replicated tables, the marts built on them (one SQL file each
under ``warehouse/marts/``) and the read API that ``/analytics`` and the dashboards call (:mod:`warehouse.read`).
"""
