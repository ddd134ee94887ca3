"""PostgreSQL database backend for Django, with djpool's connection pool.

Django's own PostgreSQL backend runs unchanged; connections come from the
pool. The driver is chosen by Django's own rule: psycopg (3) if it can be
imported, else psycopg2. Requires psycopg >= 3.1.8 or psycopg2 >= 2.8.4.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from django.conf import settings
from django.db.backends.postgresql import base

from djpool.backends.postgresql import psycopg2_bounded
from djpool.backends.postgresql.__about__ import __version__
from djpool.core.bounded import NoAnswer, remaining, wait_readable, wait_writable
from djpool.core.compat import require_core
from djpool.core.mixins import PooledDatabaseWrapperMixin

# Keep in step with the djpool-core range in this package's pyproject.toml.
require_core("djpool-postgresql", __version__, minimum="0.1", below="1")

# psycopg and psycopg2 both report libpq's PQtransactionStatus; 0 is IDLE.
_TRANSACTION_IDLE = 0
# Django 5.1+ sets the time zone in _configure_timezone(); 4.2 in ensure_timezone().
_DJANGO_CONFIGURES_TIMEZONE = hasattr(base.DatabaseWrapper, "_configure_timezone")
# libpq's PGRES_FATAL_ERROR.
_FATAL_ERROR = 7


def _psycopg_run_within(dbapi_connection: Any, query: bytes, timeout: float) -> None:
    """Run ``query`` on a psycopg 3 connection, giving up after ``timeout`` seconds.

    psycopg's own calls wait for the server without a limit; libpq's
    non-blocking interface (which psycopg keeps its connections in) is
    driven here with a deadline on the socket instead.
    """
    deadline = time.monotonic() + timeout
    pgconn = dbapi_connection.pgconn
    pgconn.send_query(query)
    while pgconn.flush():
        if not wait_writable(pgconn.socket, remaining(deadline)):
            raise NoAnswer(f"the server took no data for {timeout:g} s")
    while True:
        pgconn.consume_input()
        if not pgconn.is_busy():
            break
        if not wait_readable(pgconn.socket, remaining(deadline)):
            raise NoAnswer(f"no answer from the server within {timeout:g} s")
    failed = None
    while (result := pgconn.get_result()) is not None:
        if result.status == _FATAL_ERROR:
            failed = result
    if failed is not None:
        raise _psycopg_error(failed)


def _psycopg_error(result: Any) -> Exception:
    """The error psycopg's own execute() raises for a failed result: the class of its SQLSTATE
    (Django's tests, and users, catch e.g. ``errors.InvalidParameterValue``), with ``diag``."""
    errors = base.Database.errors
    sqlstate = result.error_field(base.Database.pq.DiagnosticField.SQLSTATE)
    try:
        cls = errors.lookup(sqlstate.decode()) if sqlstate else base.Database.OperationalError
    except KeyError:
        cls = base.Database.OperationalError
    message = result.error_field(base.Database.pq.DiagnosticField.MESSAGE_PRIMARY) or result.error_message
    return cls(message.decode("utf-8", "replace").strip(), info=result)


def _psycopg_ping_within(dbapi_connection: Any, timeout: float) -> None:
    _psycopg_run_within(dbapi_connection, b";", timeout)


def _psycopg_rollback_within(dbapi_connection: Any, timeout: float) -> None:
    _psycopg_run_within(dbapi_connection, b"ROLLBACK", timeout)
    # What psycopg's own rollback() also does: statements it prepared in
    # the transaction are gone on the server.
    prepared = getattr(dbapi_connection, "_prepared", None)
    if prepared is not None:
        prepared.clear()


#: psycopg2's libpq, driven without blocking for the pool's round trips
#: (None with psycopg 3, or where it cannot be reached).
_psycopg2_libpq = None if base.is_psycopg3 else psycopg2_bounded.load(base.Database)

if base.is_psycopg3:
    _run_within, _ping_within, _rollback_within = _psycopg_run_within, _psycopg_ping_within, _psycopg_rollback_within
elif _psycopg2_libpq is not None:
    _run_within, _ping_within, _rollback_within = (
        _psycopg2_libpq.run_within,
        _psycopg2_libpq.ping_within,
        _psycopg2_libpq.rollback_within,
    )
else:
    _run_within = _ping_within = _rollback_within = None  # type: ignore[assignment]

# psycopg 3: one adapters context per (USE_TZ, time zone) for the process.
# Django makes it with an lru_cache, which threads connecting for the first
# time at once can each fill with a context of their own; the pool registry
# keys pools by the connection parameters, context included, so each would
# get a pool of its own (one process twice over POOL_SIZE + MAX_OVERFLOW).
_contexts: dict[tuple[Any, ...], Any] = {}
_contexts_lock = threading.Lock()


class PostgreSQLPoolMixin(PooledDatabaseWrapperMixin):
    """The PostgreSQL vendor hooks, shared by every PostgreSQL-based ENGINE
    (``postgresql``, ``postgis``, ``postgresql.django_tenants``)."""

    # Django's get_new_connection() sets it on the wrapper for each connection.
    djpool_wrapper_state = ("isolation_level",)
    # libpq reports a transaction opened with raw SQL (djpool_transaction_open).
    djpool_watch_transaction_statements = False
    # libpq driven without blocking (psycopg 3's own interface, psycopg2's
    # libpq through ctypes), so the pool's round trips get a deadline.
    djpool_ping_within = staticmethod(_ping_within) if _ping_within is not None else None
    djpool_rollback_within = staticmethod(_rollback_within) if _rollback_within is not None else None
    djpool_connect_timeout_option = "connect_timeout"

    def get_connection_params(self) -> dict[str, Any]:
        conn_params: dict[str, Any] = super().get_connection_params()  # type: ignore[misc]
        context = conn_params.get("context")
        if context is not None:
            key = (settings.USE_TZ, self.timezone)
            shared = _contexts.get(key)  # once set, read without the lock (every connect())
            if shared is None:
                with _contexts_lock:
                    shared = _contexts.setdefault(key, context)
            conn_params["context"] = shared
        return conn_params

    def djpool_sqlalchemy_dialect(self) -> Any:
        if base.is_psycopg3:
            from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg as Dialect
        else:
            from sqlalchemy.dialects.postgresql.psycopg2 import PGDialect_psycopg2 as Dialect
        return Dialect(dbapi=base.Database)

    #: (timezone_name, its bytes) last compared with a connection's: the
    #: name is Django's cached property, recomputed after a TIME_ZONE change.
    _djpool_timezone: tuple[str | None, bytes] = (None, b"")

    def djpool_refresh_connection_state(self) -> None:
        # TIME_ZONE may have been overridden since this connection was set up
        # (Django's setting_changed handler only reaches open connections).
        # The server's TimeZone is read from libpq, locally: a round trip only
        # on a change. On every checkout: one call, not psycopg's
        # connection.info (an object and a decode each time).
        timezone_name = self.timezone_name
        if not timezone_name:
            return
        if base.is_psycopg3:
            cached = self._djpool_timezone
            if cached[0] is not timezone_name:
                cached = self._djpool_timezone = (timezone_name, timezone_name.encode())
            if self.connection.pgconn.parameter_status(b"TimeZone") == cached[1]:
                return
            self._djpool_set_time_zone_within(timezone_name)
            return
        if self.connection.get_parameter_status("TimeZone") == timezone_name:
            return
        if self._djpool_bounds_setup(self.connection):
            self._djpool_set_time_zone_within(timezone_name)
            return
        # psycopg2 unbounded: Django's own SET (stock's, not this mixin's override).
        if _DJANGO_CONFIGURES_TIMEZONE:
            changed = base.DatabaseWrapper._configure_timezone(self, self.connection)
        else:  # Django < 5.1: ensure_timezone() does just that check.
            changed = base.DatabaseWrapper.ensure_timezone(self)
        if changed and not self.get_autocommit():
            self.connection.commit()

    # Django sets a new connection's time zone, and an open one's when a
    # TIME_ZONE override reaches it, in _configure_timezone() (5.1+) or
    # ensure_timezone() (4.2). On a pooled psycopg 3 connection the SET goes
    # the refresh's bounded way; sent outside psycopg's transaction
    # handling, it leaves nothing to commit.
    if _DJANGO_CONFIGURES_TIMEZONE:

        def _configure_timezone(self, connection: Any) -> bool:
            if self._djpool_bounds_setup(connection):
                self.djpool_refresh_connection_state()
                return False
            return super()._configure_timezone(connection)  # type: ignore[misc, no-any-return]

    else:

        def ensure_timezone(self) -> bool:
            if self._djpool_bounds_setup(self.connection):
                self.djpool_refresh_connection_state()
                return False
            return super().ensure_timezone()  # type: ignore[misc, no-any-return]

    if hasattr(base.DatabaseWrapper, "_configure_role"):  # Django 5.2+: OPTIONS["assume_role"]

        def _configure_role(self, connection: Any) -> bool:
            role = self.settings_dict["OPTIONS"].get("assume_role")
            if role and self._djpool_bounds_setup(connection):
                statement = self.ops.compose_sql("SET ROLE %s", [role])
                self._djpool_run_within("SET ROLE", statement.encode())
                return False
            return super()._configure_role(connection)  # type: ignore[misc, no-any-return]

    def _djpool_bounds_setup(self, connection: Any) -> bool:
        """Whether this connection's setup round trips get VALIDATION_TIMEOUT.

        Where the driver's round trips can be bounded, and only on the
        pooled connection this wrapper holds: the pool's deadline is its.
        """
        return _run_within is not None and self._djpool_pool_holding(connection) is not None

    def _djpool_set_time_zone_within(self, timezone_name: str) -> None:
        if base.is_psycopg3:
            literal = base.Database.pq.Escaping(self.connection.pgconn).escape_literal(timezone_name.encode())
        else:
            quoted = base.Database.extensions.QuotedString(timezone_name)
            quoted.prepare(self.connection)  # the connection's encoding and escaping, locally
            literal = quoted.getquoted()
        self._djpool_run_within("SET TIME ZONE", b"SET TIME ZONE " + literal)

    def _djpool_run_within(self, statement: str, query: bytes) -> None:
        """Run a setup statement on the pooled connection, giving up after VALIDATION_TIMEOUT.

        For the statements Django's per-connection setup sends (the time
        zone, the role), on a new connection and on a reused one whose
        TIME_ZONE changed. Sent outside the driver's transaction handling: on a
        connection just opened or taken back (none is open) it holds
        whatever the autocommit mode; a TIME_ZONE override reaching a
        connection inside a transaction sets it there, as Django's own SET
        would. A server that does not answer: the connection is closed at
        once and the driver's OperationalError raised
        (:meth:`_djpool_setup_unanswered`).
        """
        pool = self._djpool_lease.pool  # only on a connection taken from it
        assert pool is not None
        try:
            _run_within(self.connection, query, pool.validation_timeout)
        except NoAnswer as error:
            raise self._djpool_setup_unanswered(statement, error) from error

    def djpool_driver_autocommit(self, dbapi_connection: Any) -> bool | None:
        # psycopg and psycopg2 keep the mode client-side.
        return bool(dbapi_connection.autocommit)

    @staticmethod
    def djpool_in_transaction(dbapi_connection: Any) -> bool:
        # On every return to the pool: read libpq's status directly (psycopg's
        # connection.info builds an object and an enum on each access).
        if base.is_psycopg3:
            return bool(dbapi_connection.pgconn.transaction_status != _TRANSACTION_IDLE)
        return bool(dbapi_connection.get_transaction_status() != _TRANSACTION_IDLE)

    @staticmethod
    def djpool_rollback(dbapi_connection: Any) -> None:
        # psycopg2 rolls back only a transaction it began itself: with
        # autocommit on, after a raw BEGIN, its rollback() sends nothing.
        if not base.is_psycopg3 and dbapi_connection.autocommit:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("ROLLBACK")
        else:
            dbapi_connection.rollback()

    @staticmethod
    def djpool_transaction_open(dbapi_connection: Any) -> bool:
        # libpq knows: a raw BEGIN is seen whatever its text (e.g. after a comment).
        return PostgreSQLPoolMixin.djpool_in_transaction(dbapi_connection)

    def djpool_full_reset(self, dbapi_connection: Any, conn_params: dict[str, Any]) -> None:
        # DISCARD ALL: SET values (search_path, role, time zone), temporary
        # tables, prepared statements, advisory locks, LISTEN. It cannot run
        # in a transaction block, so switch to autocommit for it.
        autocommit = dbapi_connection.autocommit
        if not autocommit:
            dbapi_connection.autocommit = True
        try:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("DISCARD ALL")
        finally:
            if not autocommit:
                dbapi_connection.autocommit = False


class DatabaseWrapper(PostgreSQLPoolMixin, base.DatabaseWrapper):
    pass
