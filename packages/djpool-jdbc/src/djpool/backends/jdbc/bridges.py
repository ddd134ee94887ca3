"""The two Python-to-JDBC bridges, behind one small interface.

``jpype.dbapi2`` (part of JPype1) is the default: it returns Python types,
shares connections between threads and reports generated keys. JayDeBeApi
is supported for projects that already use it; its defects (non-daemon
thread attachment that hangs the interpreter at exit, ``setObject()`` for
every parameter, dates fetched as ``str`` and decimals as ``float``) are
worked around here: djpool opens the Java connection itself, binds Java
objects and reads every column through :func:`conversions.java_to_python`.
"""

from __future__ import annotations

import decimal
from collections.abc import Mapping, Sequence
from typing import Any

from djpool.backends.jdbc import conversions

__all__ = ["Bridge", "JPypeBridge", "JayDeBeApiBridge", "BRIDGES", "get_bridge"]


class Bridge:
    """How one DB-API bridge opens, executes and reports errors."""

    name = ""
    #: Extra that installs it, for error messages.
    extra = ""
    supports_generated_keys = False

    def module(self) -> Any:
        raise NotImplementedError

    def error_classes(self) -> tuple[type[BaseException], ...]:
        """Exceptions the bridge raises, to be translated (Java's included)."""
        import jpype

        return (self.module().Error, jpype.JException)

    def connect(self, url: str, properties: Mapping[str, str]) -> Any:
        raise NotImplementedError

    def jconnection(self, connection: Any) -> Any:
        """The ``java.sql.Connection`` behind a bridge connection."""
        raise NotImplementedError

    def adapt(self, value: Any) -> Any:
        return conversions.to_plain_python(value)

    def execute(self, cursor: Any, sql: str, params: Sequence[Any], keys: bool) -> None:
        cursor.execute(sql, params)

    def executemany(self, cursor: Any, sql: str, seq_of_params: list[list[Any]]) -> None:
        cursor.executemany(sql, seq_of_params)

    def lastrowid(self, cursor: Any) -> Any:
        return None


class JPypeBridge(Bridge):
    name = "jpype"
    extra = "jpype"
    supports_generated_keys = True

    def module(self) -> Any:
        import jpype.dbapi2

        return jpype.dbapi2

    def connect(self, url: str, properties: Mapping[str, str]) -> Any:
        import jpype
        from jpype import dbapi2

        java = jpype.java
        converters = dict(dbapi2._default_converters)  # noqa: SLF001 - the documented defaults
        for kind in (jpype.JInt, jpype.JLong, jpype.JShort, jpype.JByte):
            converters[kind] = int
        for kind in (jpype.JDouble, jpype.JFloat):
            converters[kind] = float
        converters[jpype.JBoolean] = bool
        for kind in (
            java.lang.Integer,
            java.lang.Long,
            java.lang.Short,
            java.lang.Byte,
            java.lang.Double,
            java.lang.Float,
            java.lang.Boolean,
            java.math.BigInteger,
            java.util.UUID,
            java.time.LocalDateTime,
        ):
            converters[kind] = conversions.java_to_python
        adapters = {decimal.Decimal: lambda value: java.math.BigDecimal(str(value))}
        return dbapi2.connect(url, driver_args=dict(properties), adapters=adapters, converters=converters)

    def jconnection(self, connection: Any) -> Any:
        return connection.connection

    def execute(self, cursor: Any, sql: str, params: Sequence[Any], keys: bool) -> None:
        cursor.execute(sql, params, keys=keys)

    def lastrowid(self, cursor: Any) -> Any:
        return cursor.lastrowid


class _AllColumns(dict):  # type: ignore[type-arg]
    """JayDeBeApi's converter table: every SQL type read with getObject() and converted."""

    def get(self, key: Any, default: Any = None) -> Any:
        return _read_column


def _read_column(result_set: Any, column: int) -> Any:
    return conversions.java_to_python(result_set.getObject(column))


class JayDeBeApiBridge(Bridge):
    name = "jaydebeapi"
    extra = "jaydebeapi"

    def module(self) -> Any:
        import jaydebeapi

        return jaydebeapi

    def connect(self, url: str, properties: Mapping[str, str]) -> Any:
        import jpype

        jaydebeapi = self.module()
        info = jpype.java.util.Properties()
        for key, value in properties.items():
            info.setProperty(key, value)
        # Not jaydebeapi.connect(): it would attach this thread as a
        # non-daemon Java thread (the exit hang) and might start the JVM
        # with other options.
        jconnection = jpype.java.sql.DriverManager.getConnection(url, info)
        return jaydebeapi.Connection(jconnection, _AllColumns())

    def jconnection(self, connection: Any) -> Any:
        return connection.jconn

    def adapt(self, value: Any) -> Any:
        return conversions.to_java(value)


BRIDGES: dict[str, Bridge] = {bridge.name: bridge for bridge in (JPypeBridge(), JayDeBeApiBridge())}


def get_bridge(name: str) -> Bridge:
    return BRIDGES[name]
