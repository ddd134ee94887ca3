"""Pooled PostgreSQL backend: ENGINE ``djpool.backends.postgresql``."""
