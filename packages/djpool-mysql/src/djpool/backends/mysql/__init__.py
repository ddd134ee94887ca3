"""Pooled MySQL/MariaDB backend: ENGINE ``djpool.backends.mysql``."""
