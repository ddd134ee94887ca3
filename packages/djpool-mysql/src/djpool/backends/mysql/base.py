"""MySQL and MariaDB database backend for Django, with djpool's connection pool.

Django's own MySQL backend runs unchanged; connections come from the pool.
Requires mysqlclient (https://pypi.org/project/mysqlclient/) or PyMySQL
(https://pypi.org/project/PyMySQL/, the ``pymysql`` extra), which Django's
backend imports as ``MySQLdb``: after ``pymysql.install_as_MySQLdb()``, or on
its own when mysqlclient is not installed.
"""

from __future__ import annotations

from typing import Any


def _pymysql_as_mysqldb_without_mysqlclient() -> None:
    """Let PyMySQL stand in for MySQLdb when mysqlclient is absent (``djpool-mysql[pymysql]``).

    Django's MySQL backend imports ``MySQLdb``; PyMySQL's documented way to
    be that module is ``install_as_MySQLdb()``. With mysqlclient installed,
    or PyMySQL installed as MySQLdb already, nothing changes.
    """
    try:
        import MySQLdb  # noqa: F401
    except ImportError:
        try:
            import pymysql
        except ImportError:
            return  # Django's import below says that a driver is missing
        pymysql.install_as_MySQLdb()


_pymysql_as_mysqldb_without_mysqlclient()

from django.db.backends.mysql import base  # noqa: E402

from djpool.backends.mysql.checks import DatabaseValidation
from djpool.backends.mysql.__about__ import __version__
from djpool.core.compat import require_core
from djpool.core.mixins import PooledDatabaseWrapperMixin

# Keep in step with the djpool-core range in this package's pyproject.toml.
require_core("djpool-mysql", __version__, minimum="0.1", below="1")

#: True when ``MySQLdb`` is PyMySQL (installed as MySQLdb), not mysqlclient.
USING_PYMYSQL = base.Database.__name__ == "pymysql"

# MySQL 5.7.3+ and MariaDB 10.2.4+: reset the session, keep the login.
# PyMySQL has no method for it (mysqlclient's change_user() is not there either).
COM_RESET_CONNECTION = 0x1F


class DatabaseWrapper(PooledDatabaseWrapperMixin, base.DatabaseWrapper):
    validation_class = DatabaseValidation  # Django's checks plus djpool.W101

    def djpool_sqlalchemy_dialect(self) -> Any:
        if USING_PYMYSQL:
            from sqlalchemy.dialects.mysql.pymysql import MySQLDialect_pymysql

            return MySQLDialect_pymysql(dbapi=base.Database)
        from sqlalchemy.dialects.mysql.mysqldb import MySQLDialect_mysqldb

        return MySQLDialect_mysqldb(dbapi=base.Database)

    def djpool_driver_autocommit(self, dbapi_connection: Any) -> bool | None:
        # mysqlclient and PyMySQL both read the server's status flag locally.
        return bool(dbapi_connection.get_autocommit())

    @staticmethod
    def djpool_in_transaction(dbapi_connection: Any) -> bool:
        # mysqlclient and PyMySQL read the server's autocommit status flag
        # locally (PyMySQL from the last OK packet; only SET AUTOCOMMIT,
        # which answers with one, changes it). Django
        # opens transactions by turning autocommit off, so with autocommit on
        # nothing is left to roll back, but for a raw "BEGIN": the driver does
        # not report that one, so the core watches the statement text for it.
        return not dbapi_connection.get_autocommit()

    def djpool_full_reset(self, dbapi_connection: Any, conn_params: dict[str, Any]) -> None:
        if USING_PYMYSQL:
            self._djpool_pymysql_full_reset(dbapi_connection)
            return
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

    @staticmethod
    def _djpool_pymysql_full_reset(dbapi_connection: Any) -> None:
        """PyMySQL: COM_RESET_CONNECTION, then what PyMySQL's connect() sets after logging in.

        The reset clears what COM_CHANGE_USER does (user variables, temporary
        tables, session variables, prepared statements) and rolls back, but
        session variables go back to the server's defaults, character set
        included: SET NAMES, sql_mode and init_command are sent again. A
        dead connection raises here and the pool discards it.
        """
        dbapi_connection._execute_command(COM_RESET_CONNECTION, b"")
        dbapi_connection._read_ok_packet()
        dbapi_connection.set_character_set(dbapi_connection.charset, dbapi_connection.collation)
        cursor = dbapi_connection.cursor()
        try:
            if dbapi_connection.sql_mode is not None:
                cursor.execute("SET sql_mode=%s", (dbapi_connection.sql_mode,))
            if dbapi_connection.init_command is not None:
                cursor.execute(dbapi_connection.init_command)
        finally:
            cursor.close()
