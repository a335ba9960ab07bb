"""Payments (SPEC §4, §5): intents through a provider, webhooks applied exactly once, refunds, fields encrypted."""
