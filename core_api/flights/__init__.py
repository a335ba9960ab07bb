"""Flights: inventory, search over providers, seat maps, reference data and flight operations."""
