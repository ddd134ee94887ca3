"""SQLState → PEP 249 class, and the classes Django maps (no JVM needed)."""

from __future__ import annotations

import pytest
from django.db import utils

from djpool.backends.jdbc import dbapi, errors


@pytest.mark.parametrize(
    ("sqlstate", "expected"),
    [
        ("23505", errors.IntegrityError),  # PostgreSQL unique violation
        ("23000", errors.IntegrityError),  # MySQL 1062, Oracle ORA-00001
        ("22001", errors.DataError),
        ("42P01", errors.ProgrammingError),
        ("42S02", errors.ProgrammingError),
        ("08006", errors.OperationalError),
        ("40001", errors.OperationalError),
        ("0A000", errors.NotSupportedError),
        ("0a000", errors.NotSupportedError),
        ("HY000", errors.DatabaseError),
        ("", errors.DatabaseError),
        (None, errors.DatabaseError),
    ],
)
def test_sqlstate_classes(sqlstate, expected):
    assert errors.class_for_sqlstate(sqlstate) is expected


def test_bridge_errors_without_sqlstate_keep_their_kind():
    class ProgrammingError(Exception):  # a bridge's own class, same name
        pass

    translated = errors.translate_error(ProgrammingError("Cursor is closed"), None)
    assert type(translated) is errors.ProgrammingError
    assert type(errors.translate_error(RuntimeError("x"), None)) is errors.InterfaceError


def test_django_wraps_every_class():
    # Django's wrap_database_errors looks the classes up by name on Database.
    for name in (
        "DataError",
        "OperationalError",
        "IntegrityError",
        "InternalError",
        "ProgrammingError",
        "NotSupportedError",
        "DatabaseError",
        "InterfaceError",
        "Error",
    ):
        assert issubclass(getattr(dbapi, name), dbapi.Error)
        assert hasattr(utils, name)
