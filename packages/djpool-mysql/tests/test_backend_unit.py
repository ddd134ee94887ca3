from __future__ import annotations

import pytest

pytest.importorskip("MySQLdb")


def test_dialect_is_mysqldb():
    from django.db import connections

    from djpool.backends.mysql.base import DatabaseWrapper

    entry = connections.configure_settings({"default": {"ENGINE": "djpool.backends.mysql", "NAME": "x"}})["default"]
    dialect = DatabaseWrapper(entry, "default").djpool_sqlalchemy_dialect()
    assert dialect.driver == "mysqldb"
    assert dialect.loaded_dbapi.__name__ == "MySQLdb"


def test_engine_loads_through_django():
    from django.db.utils import load_backend

    assert load_backend("djpool.backends.mysql").DatabaseWrapper.vendor == "mysql"
