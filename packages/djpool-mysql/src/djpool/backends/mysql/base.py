"""MySQL and MariaDB database backend for Django, with djpool's connection pool.

Django's own MySQL backend runs unchanged; connections come from the pool.
Requires mysqlclient: https://pypi.org/project/mysqlclient/
"""

from __future__ import annotations

from typing import Any

from django.db.backends.mysql import base

from djpool.backends.mysql.checks import DatabaseValidation
from djpool.backends.mysql.__about__ import __version__
from djpool.core.compat import require_core
from djpool.core.mixins import PooledDatabaseWrapperMixin

# Keep in step with the djpool-core range in this package's pyproject.toml.
require_core("djpool-mysql", __version__, minimum="0.1", below="1")


class DatabaseWrapper(PooledDatabaseWrapperMixin, base.DatabaseWrapper):
    validation_class = DatabaseValidation  # Django's checks plus djpool.W101

    def djpool_sqlalchemy_dialect(self) -> Any:
        from sqlalchemy.dialects.mysql.mysqldb import MySQLDialect_mysqldb

        return MySQLDialect_mysqldb(dbapi=base.Database)

    def djpool_driver_autocommit(self, dbapi_connection: Any) -> bool | None:
        # mysqlclient reads the server's status flag locally.
        return bool(dbapi_connection.get_autocommit())

    @staticmethod
    def djpool_in_transaction(dbapi_connection: Any) -> bool:
        # mysqlclient reads the server's autocommit status flag locally. Django
        # opens transactions by turning autocommit off, so with autocommit on
        # nothing is left to roll back, but for a raw "BEGIN": the driver does
        # not report that one, so the core watches the statement text for it.
        return not dbapi_connection.get_autocommit()

    def djpool_full_reset(self, dbapi_connection: Any, conn_params: dict[str, Any]) -> None:
        # COM_CHANGE_USER to the same account resets the session: user
        # variables, temporary tables, session variables, prepared statements.
        # The client's init_command does not run again after it, so replay it.
        # The client library corrupts its heap (the process aborts) when
        # change_user() runs on a connection it knows is lost, e.g. one killed
        # during the request: ping first, and let the pool discard it if dead.
        dbapi_connection.ping()
        dbapi_connection.change_user(
            conn_params.get("user", ""),
            conn_params.get("password", conn_params.get("passwd", "")),
            conn_params.get("database", conn_params.get("db", "")),
        )
        init_command = conn_params.get("init_command")
        if init_command:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(init_command)
            finally:
                cursor.close()
