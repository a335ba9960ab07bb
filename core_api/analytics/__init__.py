"""``/analytics``: KPIs, trends and period comparisons for business owners and admins, read from the warehouse
marts (``realtime`` reads PostgreSQL)."""
