"""Liveness and dependency health: is the API up, and can it reach what it depends on."""
