"""A stand-in for ``oracledb.connect()``: the Oracle server these tests cannot run.

Only ``connect`` is replaced. Django's Oracle backend, SQLAlchemy's
python-oracledb dialect and djpool keep the real ``oracledb`` module: its
exception classes, type constants and ``makedsn()``. Errors are built with
python-oracledb's own error factory, so they carry the real codes and
messages (``DPY-4011: the database or network closed the connection``).

Keyword arguments are checked against the real ``connect()`` signature, so an
option the installed python-oracledb rejects is rejected here too.

The server side is small on purpose: sessions with an id, per-session counters
named like Oracle's ``V$SESSTAT`` statistics, ``ALTER SESSION`` NLS values,
an id sequence per table for ``INSERT … RETURNING … INTO``, and a log of every
statement with its binds. Anything else a query asks for returns no rows.
"""

from __future__ import annotations

import inspect
import itertools
import re
import threading
from collections import Counter
from typing import Any

import oracledb

VERSION = "19.3.0.0.0"
_connect_signature = inspect.signature(oracledb.connect)


def driver_error(number: int, **args: Any) -> oracledb.Error:
    """The exception python-oracledb raises for DPY-<number> (``args`` fill its message)."""
    try:
        from oracledb import errors

        error = errors._create_err(number, **args)  # private API; fallback below
        return error.exc_type(error)  # type: ignore[no-any-return]
    except (ImportError, AttributeError, TypeError):
        cls = oracledb.InterfaceError if number == 1001 else oracledb.DatabaseError
        return cls(f"DPY-{number}: (raised by the test stand-in)")


def check_connect_arguments(dsn: str | None = None, **kwargs: Any) -> None:
    """Raise the TypeError the installed python-oracledb raises for an unknown option."""
    _connect_signature.bind(dsn, **kwargs)
    # python-oracledb 1.x's connect() takes **kwargs and hands them to ConnectParams.
    oracledb.ConnectParams(**{k: v for k, v in kwargs.items() if k not in _NOT_CONNECT_PARAMS})


_NOT_CONNECT_PARAMS = {"pool", "pool_alias", "conn_class", "params", "handle"}
NOT_CONNECTED = 1001  # DPY-1001: not connected to database
CONNECTION_CLOSED = 4011  # DPY-4011: the database or network closed the connection
CALL_TIMEOUT_EXCEEDED = 4024  # DPY-4024: call timeout of N ms exceeded
CONNECT_FAILED = 6005  # DPY-6005: cannot connect to database


class FakeServer:
    """What an Oracle server would know: sessions, their statements and counters."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sessions: dict[int, FakeConnection] = {}
        self.connect_calls: list[dict[str, Any]] = []
        self.statements: list[tuple[int, str, Any]] = []
        self.peak_sessions = 0
        self._sids = itertools.count(101)
        self._ids: dict[str, itertools.count[int]] = {}
        # A silent network between the client and this server (freeze()/thaw()).
        self.frozen = threading.Event()
        self.thawed = threading.Event()
        self.thawed.set()

    def freeze(self) -> None:
        """Stop answering, without closing anything: a partition as the client sees it."""
        self.thawed.clear()
        self.frozen.set()

    def thaw(self) -> None:
        self.frozen.clear()
        self.thawed.set()

    def connect(self, dsn: str | None = None, **kwargs: Any) -> FakeConnection:
        check_connect_arguments(dsn, **kwargs)
        if self.frozen.is_set() and not self.thawed.wait(float(kwargs.get("tcp_connect_timeout", 20.0))):
            raise driver_error(CONNECT_FAILED, connection_id="", reason="timed out (stand-in)")
        with self.lock:
            self.connect_calls.append({"dsn": dsn, **kwargs})
            connection = FakeConnection(self, next(self._sids), kwargs.get("user"))
            self.sessions[connection.sid] = connection
            self.peak_sessions = max(self.peak_sessions, len(self.sessions))
        return connection

    def kill(self, sid: int) -> None:
        """``ALTER SYSTEM KILL SESSION``: the client learns on its next round trip."""
        with self.lock:
            self.sessions.pop(sid).killed = True

    def restart(self) -> None:
        for sid in list(self.sessions):
            self.kill(sid)

    def executed(self, sid: int, sql_prefix: str = "") -> list[str]:
        return [sql for s, sql, _ in self.statements if s == sid and sql.startswith(sql_prefix)]

    def next_id(self, table: str) -> int:
        with self.lock:
            return next(self._ids.setdefault(table, itertools.count(1)))


class FakeConnection:
    thin = True

    def __init__(self, server: FakeServer, sid: int, user: str | None) -> None:
        self.server = server
        self.sid = sid
        self.username = user
        self.version = VERSION
        self.stmtcachesize = 20
        self.autocommit = False
        self.killed = False
        self.closed = False
        self.stats: Counter[str] = Counter()
        self.nls = {"NLS_TERRITORY": "UNITED KINGDOM", "NLS_DATE_FORMAT": "DD-MON-RR"}
        self._transaction = False
        # Milliseconds each round trip may take; 0: no limit (python-oracledb's default).
        self.call_timeout = 0

    def round_trip(self) -> None:
        """Fail the way python-oracledb does on a closed or killed connection.

        While the server is frozen (a silent network), a round trip waits as
        python-oracledb's would: until ``call_timeout`` runs out, which
        raises DPY-4024 and leaves the connection unusable, or, with no
        call_timeout, until the network comes back.
        """
        if self.closed:
            raise driver_error(NOT_CONNECTED)
        if self.server.frozen.is_set():
            if self.call_timeout:
                if self.server.thawed.wait(self.call_timeout / 1000):
                    return self.round_trip()
                self.closed = True
                raise driver_error(CALL_TIMEOUT_EXCEEDED, timeout=self.call_timeout)
            assert self.server.thawed.wait(120), "a round trip with no call_timeout waited 120 s"
        if self.killed:
            self.closed = True
            raise driver_error(CONNECTION_CLOSED)

    @property
    def transaction_in_progress(self) -> bool:
        if self.closed:
            raise driver_error(NOT_CONNECTED)
        return self._transaction

    def cursor(self) -> FakeCursor:
        if self.closed:
            raise driver_error(NOT_CONNECTED)
        return FakeCursor(self)

    def ping(self) -> None:
        self.round_trip()

    def commit(self) -> None:
        self.round_trip()
        self.stats["user commits"] += 1
        self._transaction = False

    def rollback(self) -> None:
        self.round_trip()
        self.stats["user rollbacks"] += 1
        self._transaction = False

    def close(self) -> None:
        if self.closed:
            raise driver_error(NOT_CONNECTED)
        self.closed = True
        with self.server.lock:
            self.server.sessions.pop(self.sid, None)


if not hasattr(oracledb.Connection, "transaction_in_progress"):
    del FakeConnection.transaction_in_progress  # python-oracledb < 2.0 has no such attribute


class FakeVar:
    """``Cursor.var()``: holds a bind's value; DML RETURNING fills it with a list."""

    def __init__(self, typ: Any, size: int = 0, arraysize: int = 1, outconverter: Any = None, **kwargs: Any) -> None:
        self.type = typ
        self.size = size
        self.outconverter = outconverter
        self.value: Any = None

    def getvalue(self, pos: int = 0) -> Any:
        return self.value

    def setvalue(self, pos: int, value: Any) -> None:
        self.value = value


_ALTER_SESSION = re.compile(r"ALTER SESSION SET (.*)", re.IGNORECASE | re.DOTALL)
_NLS_PAIR = re.compile(r"(\w+)\s*=\s*'([^']*)'")
_INSERT_RETURNING = re.compile(r'INSERT INTO\s+"?(\w+)"?.*\bRETURNING\b.*\bINTO\b', re.IGNORECASE | re.DOTALL)
_DML = re.compile(r"\s*(INSERT|UPDATE|DELETE|MERGE)\b", re.IGNORECASE)


class FakeCursor:
    def __init__(self, connection: FakeConnection) -> None:
        self.connection = connection
        self.arraysize = 100
        self.outputtypehandler: Any = None
        self.inputsizes: Any = None
        self.description: list[tuple[Any, ...]] | None = None
        self.rowcount = 0
        self.lastrowid = None
        self._rows: list[tuple[Any, ...]] = []

    def var(self, typ: Any, *args: Any, **kwargs: Any) -> FakeVar:
        return FakeVar(typ, *args, **kwargs)

    def setinputsizes(self, *args: Any, **kwargs: Any) -> None:
        self.inputsizes = kwargs or list(args)

    def execute(self, sql: str, parameters: Any = None, **kwargs: Any) -> FakeCursor | None:
        conn = self.connection
        conn.round_trip()
        binds = parameters if parameters is not None else kwargs
        conn.server.statements.append((conn.sid, sql, binds))
        conn.stats["execute count"] += 1
        rows = self._answer(sql, binds)
        if rows is None:  # not a query
            self.description, self._rows = None, []
            return None
        columns = len(rows[0]) if rows else 1
        self.description = [(f"C{i}", oracledb.DB_TYPE_NUMBER, None, None, None, None, True) for i in range(columns)]
        self._rows = [self._convert(row) for row in rows]
        self.rowcount = 0
        return self

    def executemany(self, sql: str, seq_of_parameters: list[Any]) -> None:
        for parameters in seq_of_parameters:
            self.execute(sql, parameters)

    def _answer(self, sql: str, binds: Any) -> list[tuple[Any, ...]] | None:
        conn = self.connection
        upper = sql.upper()
        if match := _ALTER_SESSION.match(sql):
            conn.nls.update((name.upper(), value) for name, value in _NLS_PAIR.findall(match.group(1)))
            return None
        if match := _INSERT_RETURNING.match(sql):
            for value in (binds.values() if isinstance(binds, dict) else binds):
                if isinstance(value, FakeVar):
                    value.value = [conn.server.next_id(match.group(1).upper())]
        if _DML.match(sql):
            self.rowcount = 1
            conn._transaction = not conn.autocommit
            return None
        if "SYS_CONTEXT('USERENV', 'SID')" in upper:
            return [(conn.sid,)]
        if "FROM NLS_SESSION_PARAMETERS" in upper:
            (name,) = binds.values() if isinstance(binds, dict) else binds
            return [(conn.nls[name],)]
        if upper.startswith("SELECT SESSIONTIMEZONE FROM DUAL"):
            return [(conn.nls.get("TIME_ZONE", "+01:00"),)]
        if upper.startswith("SELECT 1 FROM DUAL"):
            return [(1,)]
        if upper.lstrip().startswith(("SELECT", "WITH")):
            return []
        return None

    def _convert(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        # python-oracledb asks outputtypehandler how to fetch each column;
        # Django's handler fetches NUMBER as a string and converts it itself.
        if self.outputtypehandler is None:
            return row
        converted = []
        for value in row:
            if isinstance(value, int):  # a NUMBER column: precision 0, scale -127
                var = self.outputtypehandler(self, "C", oracledb.DB_TYPE_NUMBER, 0, 0, -127)
                if var is not None and var.outconverter is not None:
                    value = var.outconverter(str(value))
            converted.append(value)
        return tuple(converted)

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows.pop(0) if self._rows else None

    def fetchmany(self, size: int | None = None) -> list[tuple[Any, ...]]:
        size = self.arraysize if size is None else size
        rows, self._rows = self._rows[:size], self._rows[size:]
        return rows

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self._rows = self._rows, []
        return rows

    def __iter__(self) -> Any:
        while (row := self.fetchone()) is not None:
            yield row

    def close(self) -> None:
        pass
