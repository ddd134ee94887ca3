"""Generic JDBC backend for Django: any JDBC driver, for raw SQL.

ENGINE ``djpool.backends.jdbc``. The DATABASES entry names the driver and
the URL::

    "legacy": {
        "ENGINE": "djpool.backends.jdbc",
        "JDBC_DRIVER": "org.postgresql.Driver",
        "JDBC_URL": "jdbc:postgresql://db.internal:5432/app",
        "USER": "app",
        "PASSWORD": "…",
        "JDBC_CLASSPATH": "/opt/jdbc/postgresql.jar",   # or the CLASSPATH variable
    }

``connections["legacy"].cursor()`` then takes pooled connections and accepts
Django's ``%s`` / ``%(name)s`` parameters. There is no SQL dialect behind
it, so models and migrations need a vendor ENGINE.
"""

from __future__ import annotations

from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.base.client import BaseDatabaseClient
from django.db.backends.base.creation import BaseDatabaseCreation
from django.db.backends.base.features import BaseDatabaseFeatures
from django.db.backends.base.introspection import BaseDatabaseIntrospection
from django.db.backends.base.operations import BaseDatabaseOperations

from djpool.backends.jdbc import dbapi
from djpool.backends.jdbc.__about__ import __version__
from djpool.backends.jdbc.mixins import JDBCConnectionMixin, JDBCPoolMixin
from djpool.core.compat import require_core

# Keep in step with the djpool-core range in this package's pyproject.toml.
require_core("djpool-jdbc", __version__, minimum="0.1", below="1")


class DatabaseFeatures(BaseDatabaseFeatures):
    empty_fetchmany_value = []
    supports_transactions = True
    uses_savepoints = True
    can_release_savepoints = True


class DatabaseOperations(BaseDatabaseOperations):
    _identifier_quote: str | None = None

    def quote_name(self, name: str) -> str:
        # The driver knows its server's identifier quote (MySQL: a backtick);
        # it is learnt on the first open connection ('"' until then).
        quote = self._identifier_quote
        if quote is None:
            connection = self.connection.connection
            if isinstance(connection, dbapi.Connection) and not connection.closed:
                quote = self._identifier_quote = connection.identifier_quote
            else:
                quote = '"'
        if name.startswith(quote) and name.endswith(quote):
            return name
        return f"{quote}{name}{quote}"

    def last_executed_query(self, cursor: Any, sql: str, params: Any) -> str | None:
        return getattr(cursor, "_executed", None) or super().last_executed_query(cursor, sql, params)


class JDBCDatabaseWrapper(JDBCConnectionMixin, BaseDatabaseWrapper):
    """The unpooled generic JDBC backend (the pool opens its connections through it)."""

    vendor = "jdbc"
    display_name = "JDBC"
    data_types: dict[str, str] = {}
    operators: dict[str, str] = {}
    client_class = BaseDatabaseClient
    creation_class = BaseDatabaseCreation
    features_class = DatabaseFeatures
    introspection_class = BaseDatabaseIntrospection
    ops_class = DatabaseOperations


class DatabaseWrapper(JDBCPoolMixin, JDBCDatabaseWrapper):
    pass
