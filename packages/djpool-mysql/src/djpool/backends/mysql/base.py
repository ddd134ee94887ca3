"""MySQL and MariaDB database backend for Django, with djpool's connection pool.

Django's own MySQL backend runs unchanged; connections come from the pool.
Requires mysqlclient (https://pypi.org/project/mysqlclient/) or PyMySQL
(https://pypi.org/project/PyMySQL/, the ``pymysql`` extra), which Django's
backend imports as ``MySQLdb``: after ``pymysql.install_as_MySQLdb()``, or on
its own when mysqlclient is not installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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

from djpool.backends.mysql import status
from djpool.backends.mysql.checks import DatabaseValidation
from djpool.backends.mysql.__about__ import __version__
from djpool.core.bounded import NoAnswer, wait_readable
from djpool.core.compat import require_core
from djpool.core.mixins import PooledDatabaseWrapperMixin

# Keep in step with the djpool-core range in this package's pyproject.toml.
require_core("djpool-mysql", __version__, minimum="0.1", below="1")

#: True when ``MySQLdb`` is PyMySQL (installed as MySQLdb), not mysqlclient.
USING_PYMYSQL = base.Database.__name__ == "pymysql"

#: Reads the server's status flags as the driver last saw them, or None
#: where the driver cannot (mysqlclient built on Oracle's libmysqlclient).
_server_status = status.pymysql_server_status if USING_PYMYSQL else status.mysqlclient_server_status


def _transaction_open(dbapi_connection: Any) -> bool:
    """A raw BEGIN (or Django's) opened a transaction that has not ended."""
    return bool(_server_status(dbapi_connection) & status.SERVER_STATUS_IN_TRANS)  # type: ignore[misc]


#: Whether a returned connection may have a transaction to roll back, from
#: the same flags (None where the driver cannot read them).
_in_transaction = status.pymysql_in_transaction if USING_PYMYSQL else status.mysqlclient_in_transaction


def _autocommit_off(dbapi_connection: Any) -> bool:
    # The driver cannot report a raw BEGIN: the statement text is watched
    # for one instead (djpool_watch_transaction_statements).
    return not dbapi_connection.get_autocommit()


# MySQL 5.7.3+ and MariaDB 10.2.4+: reset the session, keep the login.
# PyMySQL has no method for it (mysqlclient's change_user() is not there either).
COM_RESET_CONNECTION = 0x1F


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


def _mysqlclient_autocommit_within(dbapi_connection: Any, autocommit: bool, timeout: float) -> None:
    # get_autocommit() reads the server's status flags from the last answer,
    # which a SET autocommit's answer updates.
    if bool(dbapi_connection.get_autocommit()) != autocommit:
        _mysqlclient_run_within(dbapi_connection, b"SET autocommit=1" if autocommit else b"SET autocommit=0", timeout)


@contextmanager
def _pymysql_socket_timeouts(dbapi_connection: Any, timeout: float | None) -> Iterator[None]:
    """Cut PyMySQL's socket timeouts to ``timeout`` seconds for the block (``None``: leave them).

    PyMySQL sets its socket's timeout to ``read_timeout``/``write_timeout``
    before each read and write (no limit unless OPTIONS sets them): both are
    lowered, never raised, and restored afterwards.
    """
    saved = dbapi_connection._read_timeout, dbapi_connection._write_timeout
    if timeout is not None:
        dbapi_connection._read_timeout = min(timeout, saved[0] or timeout)
        dbapi_connection._write_timeout = min(timeout, saved[1] or timeout)
    try:
        yield
    finally:
        dbapi_connection._read_timeout, dbapi_connection._write_timeout = saved


def _pymysql_call_within(dbapi_connection: Any, call: Any, timeout: float) -> Any:
    """Run ``call()`` with PyMySQL's socket timeouts cut to ``timeout`` seconds; return its result.

    A timeout makes PyMySQL close the connection and raise "Lost connection
    ... (timed out)", raised on as :class:`NoAnswer`.
    """
    try:
        with _pymysql_socket_timeouts(dbapi_connection, timeout):
            return call()
    except base.Database.OperationalError as error:
        if isinstance(error.__cause__ or error.__context__, TimeoutError) or "timed out" in str(error):
            raise NoAnswer(str(error)) from error
        raise


def _mysqlclient_query_within(dbapi_connection: Any, query: bytes | bytearray, timeout: float) -> None:
    """``Connection.query()`` giving up after ``timeout`` seconds (its result is read as usual)."""
    _mysqlclient_run_within(dbapi_connection, bytes(query), timeout)


def _pymysql_query_within(dbapi_connection: Any, query: Any, timeout: float, *args: Any, **kwargs: Any) -> Any:
    """``Connection.query()`` giving up after ``timeout`` seconds."""
    send = type(dbapi_connection).query  # the class's: the instance's may be this function
    return _pymysql_call_within(dbapi_connection, lambda: send(dbapi_connection, query, *args, **kwargs), timeout)


def _pymysql_connect_within(dbapi_connection: Any, timeout: float | None) -> None:
    """``connect()`` a PyMySQL connection made with ``defer_connect``, each socket wait cut to ``timeout``.

    A timeout raises PyMySQL's own OperationalError (the connection's
    socket closed), as a refused or failed login does.
    """
    with _pymysql_socket_timeouts(dbapi_connection, timeout):
        dbapi_connection.connect()


def _pymysql_ping_within(dbapi_connection: Any, timeout: float) -> None:
    _pymysql_call_within(dbapi_connection, lambda: dbapi_connection.ping(reconnect=False), timeout)


def _pymysql_rollback_within(dbapi_connection: Any, timeout: float) -> None:
    _pymysql_call_within(dbapi_connection, dbapi_connection.rollback, timeout)


def _pymysql_autocommit_within(dbapi_connection: Any, autocommit: bool, timeout: float) -> None:
    if bool(dbapi_connection.get_autocommit()) != autocommit:
        _pymysql_call_within(dbapi_connection, lambda: dbapi_connection.autocommit(autocommit), timeout)


def _statement_name(statement: Any, limit: int = 60) -> str:
    """The statement as an error names it: Django's own setup text (no parameters), cut short."""
    text = statement.decode(errors="replace") if isinstance(statement, (bytes, bytearray)) else str(statement)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class DatabaseWrapper(PooledDatabaseWrapperMixin, base.DatabaseWrapper):
    validation_class = DatabaseValidation  # Django's checks plus djpool.W101

    # A deadline for the pool's own round trips: mysqlclient sends, then
    # waits on the socket; PyMySQL lowers its socket timeouts.
    djpool_ping_within = staticmethod(_pymysql_ping_within if USING_PYMYSQL else _mysqlclient_ping_within)
    djpool_rollback_within = staticmethod(_pymysql_rollback_within if USING_PYMYSQL else _mysqlclient_rollback_within)
    djpool_autocommit_within = staticmethod(_pymysql_autocommit_within if USING_PYMYSQL else _mysqlclient_autocommit_within)
    djpool_connect_timeout_option = "connect_timeout"
    # Both drivers' cursors send every statement through Connection.query().
    _djpool_query_within = staticmethod(_pymysql_query_within if USING_PYMYSQL else _mysqlclient_query_within)

    def init_connection_state(self) -> None:
        """Django's setup of a new connection, each statement bounded by VALIDATION_TIMEOUT on a pooled one.

        On a wrapper's first connection Django reads the server's data
        (``SELECT VERSION(), @@sql_mode, ...``); on every new connection it
        sets the isolation level (and ``SQL_AUTO_IS_NULL`` where the server
        has it on). Between the bounded connect and the pool's bounded
        round trips these were the only ones a silent network failure could
        hold for as long as the kernel retries: for the setup, the pooled
        connection's ``query()`` goes the pre-ping's way.
        """
        dbapi_connection = self.connection
        pool = self._djpool_pool_holding(dbapi_connection)
        if pool is None:
            super().init_connection_state()
            return
        timeout = pool.validation_timeout
        query_within = self._djpool_query_within
        unanswered: list[Any] = []

        def query(statement: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return query_within(dbapi_connection, statement, timeout, *args, **kwargs)
            except NoAnswer:
                unanswered.append(statement)
                raise

        # In the instance's dict, for the setup only: the class's method stays what every other
        # query runs (mysqlclient's connection refuses a del of its attributes, not this).
        attributes = vars(dbapi_connection)
        attributes["query"] = query
        try:
            super().init_connection_state()
        except NoAnswer as error:
            raise self._djpool_setup_unanswered(_statement_name(unanswered[-1]), error) from error
        finally:
            attributes.pop("query", None)

    def djpool_open_dbapi_connection(self, conn_params: dict[str, Any]) -> Any:
        # Both drivers connect with autocommit off unless told, which costs a
        # SET inside connect() and Django's SET back right after it, two round
        # trips that neither timeout bounds. Connected in AUTOCOMMIT's mode
        # (the server's default for "on"), neither is sent.
        if "autocommit" not in conn_params:
            conn_params = {**conn_params, "autocommit": bool(self.settings_dict["AUTOCOMMIT"])}
        if not USING_PYMYSQL:
            return super().djpool_open_dbapi_connection(conn_params)
        # PyMySQL's connect_timeout bounds the TCP connect only: the server's
        # greeting, the login and the SETs after it wait without a limit
        # unless read_timeout is set, which then applies to every query.
        # Connected in a second step, each of those waits gets connect_timeout.
        connection = super().djpool_open_dbapi_connection({**conn_params, "defer_connect": True})
        _pymysql_connect_within(connection, connection.connect_timeout)
        return connection

    def djpool_sqlalchemy_dialect(self) -> Any:
        if USING_PYMYSQL:
            from sqlalchemy.dialects.mysql.pymysql import MySQLDialect_pymysql

            return MySQLDialect_pymysql(dbapi=base.Database)
        from sqlalchemy.dialects.mysql.mysqldb import MySQLDialect_mysqldb

        return MySQLDialect_mysqldb(dbapi=base.Database)

    def djpool_driver_autocommit(self, dbapi_connection: Any) -> bool | None:
        # mysqlclient and PyMySQL both read the server's status flag locally.
        return bool(dbapi_connection.get_autocommit())

    # Where the driver reports the server's "transaction open" flag, it
    # alone tells (a raw BEGIN whatever its text); elsewhere the core
    # watches the statement text for one.
    djpool_watch_transaction_statements = _server_status is None
    djpool_in_transaction = staticmethod(_autocommit_off if _in_transaction is None else _in_transaction)
    if _server_status is not None:
        djpool_transaction_open = staticmethod(_transaction_open)

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
