"""Round trips on a psycopg2 connection that give up after a deadline.

psycopg2 calls libpq's blocking functions: when the server or the network
path to it stops answering (a failover, a dropped NAT entry: no RST, no
FIN), ``ping`` and ``rollback()`` wait until the kernel gives up, many
minutes. libpq's non-blocking interface, which psycopg 3 drives in Python,
is reachable from psycopg2 too: its connection gives the address of its
``PGconn`` (``pgconn_ptr``, psycopg2 2.8+), and the functions are looked up
through psycopg2's own extension module, so they are those of the libpq
that holds that ``PGconn`` (psycopg2-binary carries one of its own, which
may differ from the system's and from psycopg 3's).

Only statements that leave psycopg2's view of the connection true are sent
this way: an empty statement (the ping), and what leaves the transaction
state as psycopg2 believes it. Where the functions cannot be found
(a platform whose loader does not search an extension's libraries),
:func:`load` returns None and the pool's round trips stay unbounded, as it
logs when a pool is created.
"""

from __future__ import annotations

import ctypes
import time
from typing import Any

from djpool.core.bounded import NoAnswer, remaining, wait_readable, wait_writable

__all__ = ["Libpq", "load"]

# libpq's PGRES_FATAL_ERROR, PG_DIAG_SQLSTATE and PG_DIAG_MESSAGE_PRIMARY.
_FATAL_ERROR = 7
_SQLSTATE = ord("C")
_MESSAGE_PRIMARY = ord("M")


class Libpq:
    """The few functions of psycopg2's libpq that a bounded round trip needs."""

    def __init__(self, library: ctypes.CDLL, driver: Any) -> None:
        pointer, text, number = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
        self._driver = driver
        self._functions: dict[str, Any] = {}
        for name, result, arguments in (
            ("PQsendQuery", number, (pointer, text)),
            ("PQflush", number, (pointer,)),
            ("PQconsumeInput", number, (pointer,)),
            ("PQisBusy", number, (pointer,)),
            ("PQgetResult", pointer, (pointer,)),
            ("PQresultStatus", number, (pointer,)),
            ("PQresultErrorMessage", text, (pointer,)),
            ("PQresultErrorField", text, (pointer, number)),
            ("PQclear", None, (pointer,)),
            ("PQerrorMessage", text, (pointer,)),
            ("PQsocket", number, (pointer,)),
            ("PQisnonblocking", number, (pointer,)),
            ("PQsetnonblocking", number, (pointer, number)),
        ):
            function = getattr(library, name)
            function.restype, function.argtypes = result, arguments
            self._functions[name] = function

    def run_within(self, dbapi_connection: Any, query: bytes, timeout: float) -> None:
        """Send ``query`` on a psycopg2 connection and read its answer, giving up after ``timeout`` seconds.

        Raises :class:`NoAnswer` when the time runs out (the connection is
        then left mid-statement: the pool closes it), psycopg2's
        OperationalError when libpq reports the connection broken, and for a
        statement the server refused the class psycopg2 raises for its
        SQLSTATE (e.g. ``errors.InvalidParameterValue``, which Django wraps
        as ``DataError``; psycopg2 lets no one else set its ``pgcode``).
        """
        f = self._functions
        pgconn = ctypes.c_void_p(dbapi_connection.pgconn_ptr)
        deadline = time.monotonic() + timeout
        was_nonblocking = f["PQisnonblocking"](pgconn)
        if not was_nonblocking and f["PQsetnonblocking"](pgconn, 1) != 0:
            raise self._error(pgconn)
        try:
            if not f["PQsendQuery"](pgconn, query):
                raise self._error(pgconn)
            socket = f["PQsocket"](pgconn)
            while (flushed := f["PQflush"](pgconn)) == 1:
                if not wait_writable(socket, remaining(deadline)):
                    raise NoAnswer(f"the server took no data for {timeout:g} s")
            if flushed < 0:
                raise self._error(pgconn)
            while True:
                if not f["PQconsumeInput"](pgconn):
                    raise self._error(pgconn)
                if not f["PQisBusy"](pgconn):
                    break
                if not wait_readable(socket, remaining(deadline)):
                    raise NoAnswer(f"no answer from the server within {timeout:g} s")
            failed = None
            while result := f["PQgetResult"](pgconn):
                if f["PQresultStatus"](result) == _FATAL_ERROR and failed is None:
                    failed = self._refused(result)
                f["PQclear"](result)
            if failed is not None:
                raise failed
        finally:
            # Never blocks: libpq first flushes what is left to send, still
            # in non-blocking mode, and keeps that mode if it cannot (an
            # unanswered connection, which the pool closes).
            if not was_nonblocking:
                f["PQsetnonblocking"](pgconn, 0)

    def ping_within(self, dbapi_connection: Any, timeout: float) -> None:
        """An empty statement: the server answers, nothing changes."""
        self.run_within(dbapi_connection, b";", timeout)

    def rollback_within(self, dbapi_connection: Any, timeout: float) -> None:
        """Roll back a psycopg2 connection, its round trips bounded by ``timeout`` seconds.

        A transaction psycopg2 began itself (autocommit off) must end through
        its ``rollback()``, which also resets psycopg2's own state: a bounded
        ping first makes sure the server answers (a second round trip, only
        when such a transaction is rolled back; the rollback itself is then
        unbounded, one round trip after an answer). One opened with a raw
        BEGIN, which psycopg2 does not know of, gets a bounded ROLLBACK.
        """
        if dbapi_connection.status == self._driver.extensions.STATUS_BEGIN:
            self.ping_within(dbapi_connection, timeout)
            dbapi_connection.rollback()
        else:
            self.run_within(dbapi_connection, b"ROLLBACK", timeout)

    def _refused(self, result: int) -> Exception:
        f = self._functions
        # The server's message without libpq's "ERROR:  " prefix, as psycopg2 gives it.
        raw = f["PQresultErrorField"](result, _MESSAGE_PRIMARY) or f["PQresultErrorMessage"](result) or b""
        message = raw.decode("utf-8", "replace").strip()
        sqlstate = f["PQresultErrorField"](result, _SQLSTATE)
        try:
            error_class = self._driver.errors.lookup(sqlstate.decode()) if sqlstate else self._driver.OperationalError
        except KeyError:
            error_class = self._driver.OperationalError
        return error_class(message)  # type: ignore[no-any-return]

    def _error(self, pgconn: ctypes.c_void_p) -> Exception:
        message = (self._functions["PQerrorMessage"](pgconn) or b"").decode("utf-8", "replace").strip()
        return self._driver.OperationalError(message or "the connection to the server is broken")  # type: ignore[no-any-return]


def load(psycopg2_module: Any) -> Libpq | None:
    """psycopg2's libpq functions, or None where they cannot be reached (the round trips stay unbounded)."""
    try:
        import psycopg2.errors  # noqa: F401 - the classes by SQLSTATE (_refused)
        import psycopg2.extensions  # noqa: F401 - STATUS_BEGIN (rollback_within)
        from psycopg2 import _psycopg

        library = ctypes.CDLL(_psycopg.__file__)
        return Libpq(library, psycopg2_module)
    except (ImportError, OSError, AttributeError):
        return None
