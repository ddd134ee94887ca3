from __future__ import annotations

import os

import pytest

pytest.importorskip("MySQLdb")

PYMYSQL = os.environ.get("DJPOOL_TEST_DRIVER") == "pymysql"


def test_dialect_follows_the_driver():
    """mysqlclient gets SQLAlchemy's mysqldb dialect; PyMySQL as MySQLdb its pymysql dialect."""
    from django.db import connections

    from djpool.backends.mysql.base import USING_PYMYSQL, DatabaseWrapper

    entry = connections.configure_settings({"default": {"ENGINE": "djpool.backends.mysql", "NAME": "x"}})["default"]
    dialect = DatabaseWrapper(entry, "default").djpool_sqlalchemy_dialect()
    assert USING_PYMYSQL is PYMYSQL
    assert dialect.driver == ("pymysql" if PYMYSQL else "mysqldb")
    assert dialect.loaded_dbapi.__name__ == ("pymysql" if PYMYSQL else "MySQLdb")


def test_engine_loads_through_django():
    from django.db.utils import load_backend

    assert load_backend("djpool.backends.mysql").DatabaseWrapper.vendor == "mysql"
