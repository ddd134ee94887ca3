"""Python values to JDBC parameters, and Java values back to Python.

Django passes ``Decimal``, ``datetime``/``date``/``time``, ``bytes``/
``memoryview`` and ``str`` subclasses (``SafeString``, Oracle's
``Oracle_datetime``) as parameters and expects the same types back. Both
bridges fall short: ``jpype.dbapi2`` picks a setter by the value's *exact*
type (no setter for ``Decimal`` or any subclass), and JayDeBeApi binds
everything with ``setObject()`` (``date`` fails, ``Decimal`` becomes a
lossy ``double``, ``bytes`` a string) and fetches dates as ``str`` and
decimals as ``float``.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Any

__all__ = ["to_plain_python", "to_java", "java_to_python"]


def to_plain_python(value: Any) -> Any:
    """Turn subclasses and aware datetimes into the base types the bridges bind.

    ``Decimal`` is left as it is; each bridge binds it as ``BigDecimal``.
    """
    if value is None:
        return None
    kind = type(value)
    if kind in (str, int, float, bool, bytes, decimal.Decimal):
        return value
    if isinstance(value, str):
        return value[:]  # a plain str: str(SafeString) returns the SafeString itself
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, decimal.Decimal):
        return decimal.Decimal(value)
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            # The JVM runs in UTC (see djpool.backends.jdbc.jvm).
            value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return datetime.datetime(
            value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond
        )
    if isinstance(value, datetime.date):
        return datetime.date(value.year, value.month, value.day)
    if isinstance(value, datetime.time):
        return datetime.time(value.hour, value.minute, value.second, value.microsecond)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def to_java(value: Any) -> Any:
    """A parameter as the Java object ``PreparedStatement.setObject()`` binds correctly."""
    import jpype

    value = to_plain_python(value)
    if value is None or isinstance(value, (str, bool)):
        return value
    java = jpype.java
    if isinstance(value, int):
        return java.lang.Long(value)
    if isinstance(value, float):
        return java.lang.Double(value)
    if isinstance(value, decimal.Decimal):
        return java.math.BigDecimal(str(value))
    if isinstance(value, bytes):
        return jpype.JArray(jpype.JByte)(value)
    if isinstance(value, datetime.datetime):
        local = java.time.LocalDateTime.of(
            value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond * 1000
        )
        return java.sql.Timestamp.valueOf(local)
    if isinstance(value, datetime.date):
        return java.sql.Date.valueOf(java.time.LocalDate.of(value.year, value.month, value.day))
    if isinstance(value, datetime.time):
        return java.sql.Time.valueOf(java.time.LocalTime.of(value.hour, value.minute, value.second))
    return value


def java_to_python(value: Any) -> Any:
    """A value read with ``ResultSet.getObject()``, as the Python type Django expects."""
    import jpype

    if value is None or isinstance(value, (str, float, bool)) and not isinstance(value, jpype.JObject):
        return value
    java = jpype.java
    if isinstance(value, java.lang.String):
        return str(value)
    if isinstance(value, java.math.BigDecimal):
        return decimal.Decimal(str(value.toPlainString()))
    if isinstance(value, (java.lang.Integer, java.lang.Long, java.lang.Short, java.lang.Byte, java.math.BigInteger)):
        return int(str(value))
    if isinstance(value, (java.lang.Double, java.lang.Float)):
        return float(value.doubleValue())
    if isinstance(value, java.lang.Boolean):
        return bool(value.booleanValue())
    if isinstance(value, java.sql.Timestamp):
        return _local_datetime(value.toLocalDateTime())
    if isinstance(value, java.sql.Date):
        local = value.toLocalDate()
        return datetime.date(local.getYear(), local.getMonthValue(), local.getDayOfMonth())
    if isinstance(value, java.sql.Time):
        local = value.toLocalTime()
        return datetime.time(local.getHour(), local.getMinute(), local.getSecond())
    if isinstance(value, java.time.LocalDateTime):
        return _local_datetime(value)
    if isinstance(value, java.sql.Clob):
        return str(value.getSubString(1, int(value.length())))
    if isinstance(value, java.sql.Blob):
        return bytes(value.getBytes(1, int(value.length())))
    if isinstance(value, jpype.JArray):
        return bytes(value)
    if isinstance(value, java.util.UUID):
        return uuid.UUID(str(value))
    if isinstance(value, int):
        return int(value)
    return value


def _local_datetime(local: Any) -> datetime.datetime:
    return datetime.datetime(
        local.getYear(),
        local.getMonthValue(),
        local.getDayOfMonth(),
        local.getHour(),
        local.getMinute(),
        local.getSecond(),
        local.getNano() // 1000,
    )
