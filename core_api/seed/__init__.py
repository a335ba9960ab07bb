"""Demo data for ``flightdesk up`` / ``flightdesk seed``: real airports, twelve airlines and their daily flights.

``reference`` holds the airlines and airports, ``aircraft`` the cabin layouts and seat maps, ``schedule`` the
routes, times and fares, ``loader`` the one-transaction bulk write, ``progress`` the CLI's progress bars.
"""

from core_api.seed.loader import SeedProgress, SeedSummary, is_seeded, seed_reference_and_flights

__all__ = ["SeedProgress", "SeedSummary", "is_seeded", "seed_reference_and_flights"]
