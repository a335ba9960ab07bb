"""Secrets at rest: the AES-256-GCM field cipher and the demo keys kept in the state directory."""
