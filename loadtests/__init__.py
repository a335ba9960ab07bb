"""Benchmarks and load tests (not part of the pytest suite)."""
