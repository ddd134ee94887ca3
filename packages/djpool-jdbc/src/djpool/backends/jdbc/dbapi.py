"""A PEP 249 module over JDBC, in the shape Django's backends expect.

It sits on a bridge (``jpype.dbapi2`` or JayDeBeApi, see
:mod:`djpool.backends.jdbc.bridges`) and adds what Django needs from a
driver: ``%s`` and ``%(name)s`` parameters, one exception hierarchy mapped
from SQLState, Python types in and out, the ``autocommit`` attribute, and
``Connection.is_valid()`` for the pool. This module is the ``Database``
attribute of every djpool JDBC ``DatabaseWrapper``.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import math
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from djpool.backends.jdbc import jvm
from djpool.backends.jdbc.bridges import Bridge, get_bridge
from djpool.backends.jdbc.errors import (
    DatabaseError,
    DataError,
    Error,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    Warning,
    translate_error,
)
from djpool.backends.jdbc.placeholders import PlaceholderError, translate
from djpool.core.bounded import NoAnswer

__all__ = [
    "apilevel",
    "threadsafety",
    "paramstyle",
    "connect",
    "Connection",
    "Cursor",
    "Warning",
    "Error",
    "InterfaceError",
    "DatabaseError",
    "DataError",
    "OperationalError",
    "IntegrityError",
    "InternalError",
    "ProgrammingError",
    "NotSupportedError",
    "Binary",
    "Date",
    "Time",
    "Timestamp",
    "DateFromTicks",
    "TimeFromTicks",
    "TimestampFromTicks",
]

apilevel = "2.0"
threadsafety = 1
paramstyle = "format"  # and "pyformat" with a mapping

_INSERT = re.compile(r"\s*INSERT\b", re.IGNORECASE)

# PEP 249 constructors: plain Python values, which the bridges bind.
Binary = bytes
Date = datetime.date
Time = datetime.time
Timestamp = datetime.datetime


def DateFromTicks(ticks: float) -> datetime.date:  # noqa: N802 - the PEP 249 name
    return datetime.date.fromtimestamp(ticks)


def TimeFromTicks(ticks: float) -> datetime.time:  # noqa: N802
    return datetime.datetime.fromtimestamp(ticks).time()


def TimestampFromTicks(ticks: float) -> datetime.datetime:  # noqa: N802
    return datetime.datetime.fromtimestamp(ticks)


def connect(
    url: str,
    *,
    driver: str | None = None,
    properties: Mapping[str, str] | None = None,
    class_path: Sequence[str] = (),
    bridge: str = "jpype",
    autocommit: bool = False,
    mysql_syntax: bool = False,
    generated_keys: bool = False,
    where: str = "JDBC",
) -> Connection:
    """Open a JDBC connection (starting the JVM first if needed).

    :param url: the JDBC URL.
    :param driver: driver class to load first (drivers that register
      themselves through ``META-INF/services`` do not need it).
    :param properties: driver properties (``user``, ``password``, …).
    :param class_path: jars to put on the class path if the JVM is not
      running yet.
    :param bridge: ``"jpype"`` (``jpype.dbapi2``) or ``"jaydebeapi"``.
    :param mysql_syntax: the server reads backslash escapes and ``#``
      comments (MySQL, MariaDB, OceanBase MySQL mode).
    :param generated_keys: ask for generated keys on INSERT so that
      ``cursor.lastrowid`` is set.
    :param where: what to name in configuration errors.
    """
    implementation = get_bridge(bridge)
    jvm.start_jvm(class_path)
    jvm.attach_thread()
    if driver:
        jvm.load_driver(driver, where)
    try:
        raw = implementation.connect(url, properties or {})
    except implementation.error_classes() as error:
        raise _translate(error) from error
    connection = Connection(raw, implementation, mysql_syntax=mysql_syntax, generated_keys=generated_keys)
    connection.autocommit = autocommit
    return connection


def _translate(error: BaseException) -> Error:
    import jpype

    return translate_error(error, jpype.java.sql.SQLException)


class Connection:
    """A DB-API connection over one ``java.sql.Connection``."""

    Warning = Warning
    Error = Error
    InterfaceError = InterfaceError
    DatabaseError = DatabaseError
    DataError = DataError
    OperationalError = OperationalError
    IntegrityError = IntegrityError
    InternalError = InternalError
    ProgrammingError = ProgrammingError
    NotSupportedError = NotSupportedError

    def __init__(self, raw: Any, bridge: Bridge, *, mysql_syntax: bool = False, generated_keys: bool = False) -> None:
        self.raw = raw
        self.bridge = bridge
        self.mysql_syntax = mysql_syntax
        self.generated_keys = generated_keys and bridge.supports_generated_keys
        self.jconnection = bridge.jconnection(raw)
        self._errors = bridge.error_classes()

    def __repr__(self) -> str:
        return f"<djpool JDBC connection via {self.bridge.name}{' (closed)' if self.closed else ''}>"

    @contextlib.contextmanager
    def translated_errors(self) -> Iterator[None]:
        """Re-raise the bridge's and Java's exceptions as this module's."""
        try:
            yield
        except self._errors as error:
            raise _translate(error) from error
        except PlaceholderError as error:
            raise ProgrammingError(str(error)) from None

    # ##### PEP 249 #####

    def cursor(self) -> Cursor:
        with self.translated_errors():
            return Cursor(self, self.raw.cursor())

    def commit(self) -> None:
        with self.translated_errors():
            if not self.jconnection.getAutoCommit():
                self.jconnection.commit()

    def rollback(self) -> None:
        with self.translated_errors():
            if not self.jconnection.getAutoCommit():
                self.jconnection.rollback()

    def close(self) -> None:
        with self.translated_errors():
            if not self.jconnection.isClosed():
                self.raw.close()

    # ##### What Django and the pool need besides #####

    @property
    def autocommit(self) -> bool:
        with self.translated_errors():
            return bool(self.jconnection.getAutoCommit())

    @autocommit.setter
    def autocommit(self, value: bool) -> None:
        with self.translated_errors():
            self.jconnection.setAutoCommit(bool(value))

    @property
    def closed(self) -> bool:
        """True once closed, and also once the JVM has shut down (at interpreter exit)."""
        import jpype

        if not jpype.isJVMStarted():
            return True
        try:
            return bool(self.jconnection.isClosed())
        except self._errors:
            return True

    def ping_within(self, timeout: float) -> None:
        """``Connection.isValid(seconds)``: raise NoAnswer if the driver waited out the time, an error if invalid."""
        seconds = max(1, math.ceil(timeout))  # isValid() takes whole seconds; 0 means no limit
        started = time.monotonic()
        if self.is_valid(seconds):
            return
        if time.monotonic() - started >= 0.9 * seconds:
            raise NoAnswer(f"Connection.isValid({seconds}) got no answer")
        raise OperationalError("Connection.isValid() says the connection is no longer valid")

    def rollback_within(self, timeout: float) -> None:
        """``rollback()`` under ``Connection.setNetworkTimeout()``: no answer in time raises NoAnswer."""
        started = time.monotonic()
        with self.translated_errors():
            if self.jconnection.getAutoCommit():
                return
            previous = self.jconnection.getNetworkTimeout()
            self.jconnection.setNetworkTimeout(_direct_executor(), max(1, math.ceil(timeout * 1000)))
        try:
            with self.translated_errors():
                self.jconnection.rollback()
        except Error as error:
            if time.monotonic() - started >= 0.9 * timeout:
                raise NoAnswer(str(error)) from error
            raise
        with self.translated_errors():
            self.jconnection.setNetworkTimeout(_direct_executor(), previous)

    def is_valid(self, timeout: int = 5) -> bool:
        """``Connection.isValid()``: a round trip the driver chooses (or its protocol ping)."""
        try:
            return not self.closed and bool(self.jconnection.isValid(timeout))
        except self._errors:
            return False

    @functools.cached_property
    def identifier_quote(self) -> str:
        """The driver's quote for identifiers (``"``; MySQL's is a backtick)."""
        with self.translated_errors():
            quote = str(self.jconnection.getMetaData().getIdentifierQuoteString()).strip()
        return quote or '"'

    def database_version(self) -> tuple[int, int]:
        """``(major, minor)`` as the driver reports the server's version."""
        with self.translated_errors():
            meta = self.jconnection.getMetaData()
            return int(meta.getDatabaseMajorVersion()), int(meta.getDatabaseMinorVersion())

    def database_product(self) -> tuple[str, str]:
        """``(product name, product version)`` from the driver's metadata."""
        with self.translated_errors():
            meta = self.jconnection.getMetaData()
            return str(meta.getDatabaseProductName()), str(meta.getDatabaseProductVersion())


class Cursor:
    """A DB-API cursor: Django's placeholders, Python types, translated errors.

    ``_executed`` holds the last statement as sent (Django's MySQL
    ``last_executed_query()`` reads it).
    """

    def __init__(self, connection: Connection, raw: Any) -> None:
        self.connection = connection
        self.raw = raw
        self._executed: str | None = None
        self.lastrowid: Any = None

    @property
    def description(self) -> Any:
        with self.connection.translated_errors():
            return self.raw.description

    @property
    def rowcount(self) -> int:
        with self.connection.translated_errors():
            return int(self.raw.rowcount)

    @property
    def arraysize(self) -> int:
        return int(self.raw.arraysize)

    @arraysize.setter
    def arraysize(self, size: int) -> None:
        self.raw.arraysize = size

    def _statement(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None) -> tuple[str, list[Any]]:
        statement, args = translate(sql, params, mysql_syntax=self.connection.mysql_syntax)
        adapt = self.connection.bridge.adapt
        return statement, [adapt(value) for value in args]

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> Cursor:
        connection = self.connection
        with connection.translated_errors():
            statement, args = self._statement(sql, params)
            self._executed = statement
            self.lastrowid = None
            keys = connection.generated_keys and bool(_INSERT.match(statement))
            connection.bridge.execute(self.raw, statement, args, keys)
            if keys:
                try:
                    self.lastrowid = connection.bridge.lastrowid(self.raw)
                except (*connection._errors, TypeError):
                    self.lastrowid = None
        return self

    def executemany(self, sql: str, seq_of_params: Sequence[Sequence[Any] | Mapping[str, Any]]) -> Cursor:
        connection = self.connection
        with connection.translated_errors():
            rows = []
            statement = sql
            for params in seq_of_params:
                statement, args = self._statement(sql, params)
                rows.append(args)
            self._executed = statement
            self.lastrowid = None
            if rows:
                connection.bridge.executemany(self.raw, statement, rows)
        return self

    def fetchone(self) -> tuple[Any, ...] | None:
        with self.connection.translated_errors():
            row = self.raw.fetchone()
        return None if row is None else tuple(row)

    def fetchmany(self, size: int | None = None) -> list[tuple[Any, ...]]:
        with self.connection.translated_errors():
            rows = self.raw.fetchmany(self.arraysize if size is None else size)
        return [tuple(row) for row in rows]

    def fetchall(self) -> list[tuple[Any, ...]]:
        with self.connection.translated_errors():
            rows = self.raw.fetchall()
        return [tuple(row) for row in rows]

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        while (row := self.fetchone()) is not None:
            yield row

    def close(self) -> None:
        with self.connection.translated_errors():
            self.raw.close()

    def setinputsizes(self, sizes: Any) -> None:
        pass

    def setoutputsize(self, size: Any, column: Any = None) -> None:
        pass

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


@functools.lru_cache(maxsize=None)
def _direct_executor() -> Any:
    """A ``java.util.concurrent.Executor`` that runs its task in the calling thread.

    ``setNetworkTimeout()`` requires one (for aborting the connection); the
    drivers used here only arm a socket timeout with it.
    """
    import jpype

    @jpype.JImplements("java.util.concurrent.Executor")
    class DirectExecutor:
        @jpype.JOverride
        def execute(self, task: Any) -> None:
            task.run()

    return DirectExecutor()

