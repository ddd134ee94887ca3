"""The SQLAlchemy dialect the pool uses for JDBC connections.

SQLAlchemy's ``DefaultDialect`` does not fit JDBC, and the pool stops
pooling without notice:

* its reset on return calls ``rollback()``, which ``jpype.dbapi2`` refuses
  while JDBC autocommit is on (Django's normal state); every return then
  logs "Exception during reset" and the connection is thrown away;
* its ping runs ``SELECT 1`` and does not recognise a JDBC error on a dead
  session as a disconnect.

Here the ping is ``java.sql.Connection.isValid()``, the rollback runs only on
an open connection outside autocommit, and closing skips closed connections.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine.default import DefaultDialect

from djpool.backends.jdbc import dbapi

__all__ = ["JDBCDialect"]


class JDBCDialect(DefaultDialect):
    """A dialect for the pool only: no SQL compilation is done with it."""

    name = "jdbc"
    driver = "djpool"
    supports_statement_cache = False

    #: Seconds ``isValid()`` may take before the connection counts as dead.
    ping_timeout = 5

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(dbapi=dbapi, **kwargs)

    def do_ping(self, dbapi_connection: dbapi.Connection) -> bool:
        return dbapi_connection.is_valid(self.ping_timeout)

    def do_rollback(self, dbapi_connection: dbapi.Connection) -> None:
        if not dbapi_connection.closed and not dbapi_connection.autocommit:
            dbapi_connection.rollback()

    def do_commit(self, dbapi_connection: dbapi.Connection) -> None:
        if not dbapi_connection.closed and not dbapi_connection.autocommit:
            dbapi_connection.commit()

    def do_close(self, dbapi_connection: dbapi.Connection) -> None:
        if not dbapi_connection.closed:
            dbapi_connection.close()

    def is_disconnect(self, e: Any, connection: Any, cursor: Any) -> bool:
        if isinstance(e, dbapi.Error) and (e.sqlstate or "").startswith("08"):
            return True
        raw = getattr(connection, "dbapi_connection", connection)
        return isinstance(raw, dbapi.Connection) and raw.closed
