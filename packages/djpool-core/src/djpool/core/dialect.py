"""The SQLAlchemy dialect the pool talks to, with djpool's reset rules.

SQLAlchemy's pool calls four dialect methods on a DB-API connection: ping,
rollback (the reset on return), close and ``is_disconnect``. The vendor's own
SQLAlchemy dialect (``psycopg``, ``mysqldb``, ``oracledb``, …) knows which
driver errors mean the connection is gone. This adapter delegates to it and
adds what the predecessor lacked:

* the rollback on return runs only when the driver reports an open
  transaction, so an idle connection costs no extra round trip;
* ``RESET_ON_RETURN = "full"`` also wipes the session (``DISCARD ALL`` and
  the like), and marks the connection so Django initialises it again;
* the pre-ping and the reset run within a time limit where the vendor can
  bound them (:mod:`djpool.core.bounded`), so a silent network cannot hang
  a checkout or a request's end;
* in a forked child, connections of the parent are never touched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

__all__ = ["PoolDialect", "INITIALIZED_STATE"]

logger = logging.getLogger("djpool.pool")

# Key in a pooled connection's info dict: the Django wrapper attributes that
# init_connection_state() produced for this DB-API connection. Its presence
# means Django's per-connection setup has run on it.
INITIALIZED_STATE = "djpool.initialized_state"


def _dbapi_connection(connection: Any) -> Any:
    """SQLAlchemy passes the pool's proxy to reset methods and the raw connection to others."""
    return getattr(connection, "dbapi_connection", connection)


class PoolDialect:
    """Delegate to a SQLAlchemy dialect, with conditional reset and fork awareness.

    :param dialect: the vendor's SQLAlchemy dialect, with its DB-API module
      loaded.
    :param in_transaction: ``(dbapi_connection) -> bool``; True when a
      rollback is needed (when in doubt, True).
    :param full_reset: ``(dbapi_connection) -> None`` that clears session
      state, or None when ``RESET_ON_RETURN`` is ``"rollback"``.
    :param rollback: ``(dbapi_connection) -> None`` that rolls back the
      server's transaction, where the driver's ``rollback()`` may not (None:
      the SQLAlchemy dialect's).
    :param ping_within: ``(dbapi_connection, timeout) -> None``, a round trip
      that raises :class:`~djpool.core.bounded.NoAnswer` after ``timeout``
      seconds and the driver's error if the connection is dead; None where
      the driver cannot bound it (the dialect's ping runs unbounded).
    :param rollback_within: the same for the rollback on return.
    """

    is_async = False
    has_terminate = False

    def __init__(
        self,
        dialect: Any,
        in_transaction: Callable[[Any], bool],
        full_reset: Callable[[Any], None] | None = None,
        rollback: Callable[[Any], None] | None = None,
        ping_within: Callable[[Any, float], None] | None = None,
        rollback_within: Callable[[Any, float], None] | None = None,
        autocommit_within: tuple[bool, Callable[[Any, bool, float], None]] | None = None,
    ) -> None:
        self.dialect = dialect
        self.loaded_dbapi = dialect.loaded_dbapi
        #: The vendor's ``in_transaction`` (read on every return).
        self.in_transaction = in_transaction
        self._full_reset = full_reset
        self._rollback = rollback or dialect.do_rollback
        self._ping_within = ping_within
        self._rollback_within = rollback_within
        #: (the mode AUTOCOMMIT wants, the vendor's bounded setter), or None.
        self.autocommit_within = autocommit_within
        self.abandoned = False

    def reset(
        self, dbapi_connection: Any, info: dict[str, Any] | None, rollback: bool = False, timeout: float | None = None
    ) -> bool:
        """Make a returned connection safe for its next holder; True if it was rolled back.

        ``info`` is the pool entry's info dict: a full reset removes the
        mark that Django's per-connection setup has run on it. ``rollback``
        rolls back whatever the driver reports. With ``timeout``, each round
        trip gives up after that many seconds (:class:`NoAnswer`) where the
        vendor can bound it. Where setting autocommit is a round trip
        (MySQL), the connection also goes back in AUTOCOMMIT's mode, so that
        the next holder's take-back sends nothing without a bound.
        """
        if self.abandoned:
            return False
        answered = False
        rolled_back = rollback or self.in_transaction(dbapi_connection)
        if rolled_back:
            if timeout is not None and self._rollback_within is not None:
                self._rollback_within(dbapi_connection, timeout)
                answered = True
            else:
                self._rollback(dbapi_connection)
        if self._full_reset is not None:
            # Its round trips are the vendor's own: a bounded one first
            # makes sure the server is there to answer them.
            if timeout is not None and self._ping_within is not None and not answered:
                self._ping_within(dbapi_connection, timeout)
            self._full_reset(dbapi_connection)
            if info is not None:
                info.pop(INITIALIZED_STATE, None)
        if timeout is not None and self.autocommit_within is not None:
            wanted, set_within = self.autocommit_within
            # In another mode only if given back inside a transaction Django
            # opened (autocommit off: rolled back above), or, with AUTOCOMMIT
            # off, after set_autocommit(True): checked then, locally.
            if rolled_back or not wanted:
                set_within(dbapi_connection, wanted, timeout)
        return rolled_back

    def do_rollback(self, connection: Any) -> None:
        # SQLAlchemy's reset on return, for checkouts through pool.connect().
        self.reset(_dbapi_connection(connection), getattr(connection, "info", None))

    def do_commit(self, connection: Any) -> None:
        if not self.abandoned:
            self.dialect.do_commit(_dbapi_connection(connection))

    def do_close(self, dbapi_connection: Any) -> None:
        if not self.abandoned:
            self.dialect.do_close(dbapi_connection)

    def do_terminate(self, dbapi_connection: Any) -> None:
        self.do_close(dbapi_connection)

    def do_ping(self, dbapi_connection: Any) -> bool:
        return bool(self.dialect.do_ping(dbapi_connection))

    def is_disconnect(self, error: BaseException, connection: Any, cursor: Any) -> bool:
        return bool(self.dialect.is_disconnect(error, connection, cursor))

    def ping(self, dbapi_connection: Any, timeout: float | None = None) -> bool:
        """True if the connection answers; False if the driver says it is gone.

        Any other error is treated as a dead connection too: a connection the
        pool cannot vouch for must not be handed to Django. With ``timeout``,
        no answer within that many seconds raises :class:`NoAnswer` (where
        the vendor can bound the ping).
        """
        try:
            if timeout is not None and self._ping_within is not None:
                self._ping_within(dbapi_connection, timeout)
                return True
            return self.do_ping(dbapi_connection)
        except self.loaded_dbapi.Error as error:
            if not self.is_disconnect(error, dbapi_connection, None):
                logger.warning("Pre-ping failed with a non-disconnect error; replacing the connection: %s", error)
            return False

    def _do_ping_w_event(self, dbapi_connection: Any) -> bool:
        return self.ping(dbapi_connection)

    def get_driver_connection(self, connection: Any) -> Any:
        return self.dialect.get_driver_connection(connection)
