"""PostGIS (GeoDjango) database backend for Django, with djpool's connection pool.

Django's own ``django.contrib.gis.db.backends.postgis`` runs unchanged;
connections come from the pool. It shares the PostgreSQL backend's hooks, so
the pool talks to the server through the SQLAlchemy dialect of the driver in
use (psycopg or psycopg2) and recognises a connection the server has closed.
The predecessor used SQLAlchemy's generic ``PGDialect`` here, which cannot
ping; the first request after the server dropped an idle connection failed.

Requires GDAL and GEOS (GeoDjango's own requirements) and the ``postgis``
extension in the database.
"""

from __future__ import annotations

from django.contrib.gis.db.backends.postgis import base

from djpool.backends.postgresql.base import PostgreSQLPoolMixin

__all__ = ["DatabaseWrapper"]


class DatabaseWrapper(PostgreSQLPoolMixin, base.DatabaseWrapper):
    # With psycopg 3, GeoDjango's get_new_connection() registers the geometry
    # adapters on the driver connection itself, so they travel with it through
    # the pool: the mixin opens each connection through that method.
    pass
