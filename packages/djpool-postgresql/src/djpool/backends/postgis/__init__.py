"""Pooled PostGIS backend: ENGINE ``djpool.backends.postgis`` (shipped by djpool-postgresql)."""
