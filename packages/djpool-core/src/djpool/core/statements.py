"""What djpool reads of the statements a pooled connection's cursors run.

Django opens and ends its transactions through the driver (autocommit off,
``commit()``), which the pool sees. Raw SQL can do the same behind its back:
a ``BEGIN`` run while Django's autocommit is on, where the driver does not
report the transaction (JDBC; mysqlclient on Oracle's libmysqlclient); and,
in transaction mode, a session-level ``SET`` that would reach the next
request given the connection. The cursor classes here look at each
statement's text (a three-character prefilter; the regular expression only
where that could match) and tell the wrapper
(``_djpool_saw_raw_statement()``); transaction mode's cursor also tells it
when it closes, to give the connection back after the last one.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

__all__ = ["RAW_STATEMENT", "ReleasingCursor", "StatementWatchingCursor", "watching_class"]

# What djpool looks for in SQL run outside Django's transactions: a raw
# transaction's start (not a PL/SQL block or MariaDB's BEGIN NOT ATOMIC,
# which also open with BEGIN) and end (ROLLBACK TO a savepoint, and COMMIT or
# ROLLBACK AND CHAIN, which opens the next one, end nothing), and, for
# transaction mode's warning, a session-level SET (SET LOCAL, SET TRANSACTION
# and SET CONSTRAINTS last one transaction).
RAW_STATEMENT = re.compile(
    r"\s*(?:"
    r"(?P<begin>START\s+TRANSACTION\b|BEGIN(?:\s+(?:WORK|TRANSACTION))?"
    r"(?=\s*(?:;|\Z|ISOLATION\b|READ\b|DEFERRABLE\b|NOT\s+DEFERRABLE\b)))"
    r"|(?P<end>COMMIT|ROLLBACK|END|ABORT)\b(?!(?:\s+WORK|\s+TRANSACTION)?\s+(?:TO|AND\s+CHAIN)\b)"
    r"|(?P<set>SET)\s+(?!LOCAL\b|TRANSACTION\b|CONSTRAINTS\b)"
    r")",
    re.IGNORECASE,
)
# The first three characters of what RAW_STATEMENT can match, in any case
# (after leading space, which is left to the regex).
RAW_STATEMENT_STARTS = frozenset(
    "".join(chars)
    for word in ("START", "BEGIN", "COMMIT", "ROLLBACK", "END", "ABORT", "SET")
    for chars in itertools.product(*((c.lower(), c.upper()) for c in word[:3]))
)
_SPACE = frozenset(" \t\n\r\f\v")


class StatementWatchingCursor:
    """Tell the wrapper about raw transaction statements and session-level SETs."""

    cursor: Any
    db: Any

    def execute(self, sql: Any, params: Any = None) -> Any:
        db = self.db
        if (
            (type(sql) is str or isinstance(sql, str))  # a call only for str subclasses
            and (sql[:3] in RAW_STATEMENT_STARTS or sql[:1] in _SPACE)  # most statements: no regex
            and db.autocommit
            and not db.in_atomic_block
            and not db._djpool_connecting  # Django's own per-connection setup
            and (match := RAW_STATEMENT.match(sql)) is not None
        ):
            db._djpool_saw_raw_statement(match.lastgroup, sql)
        return super().execute(sql, params)  # type: ignore[misc]


class ReleasingCursor(StatementWatchingCursor):
    """Also tell the wrapper when the cursor closes, so transaction mode can release."""

    _djpool_closed = False

    def close(self) -> None:
        try:
            self.cursor.close()
        finally:
            if not self._djpool_closed:
                self._djpool_closed = True
                self.db._djpool_cursor_closed()


_watching_classes: dict[tuple[type, type], type] = {}


def watching_class(watcher: type, cls: type) -> type:
    """``cls`` (a vendor's cursor wrapper class) with ``watcher``'s execute() (and close())."""
    watching = _watching_classes.get((watcher, cls))
    if watching is None:
        if issubclass(cls, watcher):
            watching = cls
        else:
            name = f"{watcher.__name__.lstrip('_').replace('Cursor', '')}{cls.__name__}"
            watching = type(name, (watcher, cls), {})
        watching = _watching_classes.setdefault((watcher, cls), watching)
    return watching
