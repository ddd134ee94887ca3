"""PEP 249 exceptions for JDBC, and the mapping from Java's ``SQLException``.

Neither bridge reports errors the way Django expects. ``jpype.dbapi2`` lets
the raw ``java.sql.SQLException`` through (a ``dbapi2.Error``, not a
``DatabaseError``), and JayDeBeApi turns every one into ``DatabaseError``.
Django decides between ``IntegrityError``, ``DataError`` and the rest by the
exception class, so this module classifies by SQLState, which every JDBC
driver reports (PostgreSQL ``23505``, MySQL and Oracle ``23000`` for a
duplicate key), and gives both bridges one set of classes.
"""

from __future__ import annotations

from typing import Any

__all__ = [
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
    "class_for_sqlstate",
    "translate_error",
]


class Warning(Exception):  # noqa: A001 - the PEP 249 name
    pass


class Error(Exception):
    """Base class of the JDBC backends' database errors.

    ``sqlstate`` and ``vendor_code`` are the Java exception's
    ``getSQLState()`` and ``getErrorCode()`` (None when it had none).
    """

    sqlstate: str | None = None
    vendor_code: int | None = None


class InterfaceError(Error):
    pass


class DatabaseError(Error):
    pass


class DataError(DatabaseError):
    pass


class OperationalError(DatabaseError):
    pass


class IntegrityError(DatabaseError):
    pass


class InternalError(DatabaseError):
    pass


class ProgrammingError(DatabaseError):
    pass


class NotSupportedError(DatabaseError):
    pass


# SQLState class (first two characters) → exception class. SQL:2016 and
# JDBC's SQLException subclasses use the same classes.
_BY_CLASS: dict[str, type[DatabaseError]] = {
    "08": OperationalError,  # connection exception
    "0A": NotSupportedError,  # feature not supported
    "22": DataError,  # data exception
    "23": IntegrityError,  # integrity constraint violation
    "40": OperationalError,  # transaction rollback (deadlock, serialization failure)
    "42": ProgrammingError,  # syntax error or access rule violation
}

_BY_NAME: dict[str, type[Error]] = {
    cls.__name__: cls
    for cls in (
        InterfaceError,
        DatabaseError,
        DataError,
        OperationalError,
        IntegrityError,
        InternalError,
        ProgrammingError,
        NotSupportedError,
    )
}


def class_for_sqlstate(sqlstate: str | None) -> type[DatabaseError]:
    """The PEP 249 class for a SQLState; ``DatabaseError`` when unknown."""
    if not sqlstate:
        return DatabaseError
    return _BY_CLASS.get(sqlstate[:2].upper(), DatabaseError)


def _find_sql_exception(error: BaseException, sql_exception: Any) -> Any:
    """The SQLException behind ``error``: itself, its cause, or an argument."""
    seen: set[int] = set()
    candidate: Any = error
    while candidate is not None and id(candidate) not in seen:
        seen.add(id(candidate))
        if isinstance(candidate, sql_exception):
            return candidate
        for arg in getattr(candidate, "args", ()):
            if isinstance(arg, sql_exception):
                return arg
        candidate = candidate.__cause__ or candidate.__context__
    return None


def translate_error(error: BaseException, sql_exception: Any) -> Error:
    """Return the exception of this module that stands for a bridge's ``error``.

    ``sql_exception`` is the ``java.sql.SQLException`` class. The result's
    ``__cause__`` should be set by the caller (``raise … from error``).
    """
    if isinstance(error, Error):
        return error
    java = _find_sql_exception(error, sql_exception) if sql_exception is not None else None
    if java is not None:
        sqlstate = str(java.getSQLState()) if java.getSQLState() is not None else None
        message = str(java.getMessage() or java.getClass().getName())
        translated: Error = class_for_sqlstate(sqlstate)(message)
        translated.sqlstate = sqlstate
        translated.vendor_code = int(java.getErrorCode())
        return translated
    # A bridge's own error (closed cursor, wrong parameter count): keep its kind.
    for cls in type(error).__mro__:
        if cls.__name__ in _BY_NAME:
            return _BY_NAME[cls.__name__](*error.args)
    return InterfaceError(str(error))
