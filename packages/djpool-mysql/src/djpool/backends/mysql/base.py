"""MySQL and MariaDB database backend for Django, with djpool's connection pool.

Django's own MySQL backend runs unchanged; connections come from the pool.
Requires mysqlclient: https://pypi.org/project/mysqlclient/
"""

from __future__ import annotations

from typing import Any

from django.db.backends.mysql import base

from djpool.backends.mysql.checks import DatabaseValidation
from djpool.backends.mysql.__about__ import __version__
from djpool.core.bounded import NoAnswer, wait_readable
from djpool.core.compat import require_core
from djpool.core.mixins import PooledDatabaseWrapperMixin

# Keep in step with the djpool-core range in this package's pyproject.toml.
require_core("djpool-mysql", __version__, minimum="0.1", below="1")


def _mysqlclient_run_within(dbapi_connection: Any, query: bytes, timeout: float) -> None:
    """Run ``query`` (no result set) on a mysqlclient connection, giving up after ``timeout`` seconds.

    ``ping()`` and ``rollback()`` wait for the server without a limit (only
    the connect-time ``read_timeout`` bounds them, for every query): send the
    statement, wait on the socket with a deadline, then read the answer.
    """
    dbapi_connection.send_query(query)
    if not wait_readable(dbapi_connection.fileno(), timeout):
        raise NoAnswer(f"no answer from the server within {timeout:g} s")
    dbapi_connection.read_query_result()


def _mysqlclient_ping_within(dbapi_connection: Any, timeout: float) -> None:
    _mysqlclient_run_within(dbapi_connection, b"DO 1", timeout)


def _mysqlclient_rollback_within(dbapi_connection: Any, timeout: float) -> None:
    _mysqlclient_run_within(dbapi_connection, b"ROLLBACK", timeout)


class DatabaseWrapper(PooledDatabaseWrapperMixin, base.DatabaseWrapper):
    validation_class = DatabaseValidation  # Django's checks plus djpool.W101

    djpool_ping_within = staticmethod(_mysqlclient_ping_within)
    djpool_rollback_within = staticmethod(_mysqlclient_rollback_within)
    djpool_connect_timeout_option = "connect_timeout"

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
