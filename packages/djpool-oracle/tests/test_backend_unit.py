from __future__ import annotations

import sys

import django
import pytest
from django.core.exceptions import ImproperlyConfigured

oracledb = pytest.importorskip("oracledb")


def make_wrapper(**settings):
    from django.db import connections

    from djpool.backends.oracle.base import DatabaseWrapper

    entry = connections.configure_settings(
        {"default": {"ENGINE": "djpool.backends.oracle", "NAME": "FREEPDB1", "USER": "u", "PASSWORD": "p", **settings}}
    )["default"]
    return DatabaseWrapper(entry, "default")


def driver_error(number):
    """The exception python-oracledb itself raises for DPY-<number>."""
    try:
        from oracledb.errors import _raise_err  # private: skip rather than guess if it moves
    except ImportError:
        pytest.skip("python-oracledb's error factory (oracledb.errors._raise_err) is not available")
    try:
        _raise_err(number)
    except oracledb.Error as error:
        return error
    raise AssertionError("no error raised")


def test_engine_loads_through_django():
    from django.db.utils import load_backend

    assert load_backend("djpool.backends.oracle").DatabaseWrapper.vendor == "oracle"


def test_dialect_is_sqlalchemys_python_oracledb_dialect():
    dialect = make_wrapper().djpool_sqlalchemy_dialect()
    assert dialect.driver == "oracledb"
    assert dialect.loaded_dbapi is oracledb


def test_thin_or_thick_mode_is_left_to_the_application(monkeypatch):
    calls = []
    monkeypatch.setattr(oracledb, "init_oracle_client", lambda **kwargs: calls.append(kwargs))
    make_wrapper().djpool_sqlalchemy_dialect()
    assert calls == []


@pytest.mark.parametrize("number", [1001, 4011], ids=["DPY-1001", "DPY-4011"])
def test_dialect_counts_driver_disconnects(number):
    error = driver_error(number)
    assert str(error).startswith(f"DPY-{number}:")
    assert make_wrapper().djpool_sqlalchemy_dialect().is_disconnect(error, None, None)


def test_dialect_does_not_count_other_errors_as_disconnects():
    error = oracledb.DatabaseError("ORA-00942: table or view does not exist")
    assert not make_wrapper().djpool_sqlalchemy_dialect().is_disconnect(error, None, None)


def test_wrapper_state_covers_what_djangos_init_sets_on_the_wrapper():
    from djpool.backends.oracle.base import DatabaseWrapper

    assert set(DatabaseWrapper.djpool_wrapper_state) == {"operators", "pattern_ops"}


def test_in_transaction_trusts_the_driver_and_assumes_yes_without_it():
    from djpool.backends.oracle.base import DatabaseWrapper

    class Idle:
        transaction_in_progress = False

    class Busy:
        transaction_in_progress = True

    assert DatabaseWrapper.djpool_in_transaction(Idle()) is False
    assert DatabaseWrapper.djpool_in_transaction(Busy()) is True
    assert DatabaseWrapper.djpool_in_transaction(object()) is True  # python-oracledb < 2.0


def test_pool_key_includes_the_connection_target():
    wrapper = make_wrapper(HOST="db.example.com", PORT=1521, OPTIONS={"use_returning_into": False})
    params = wrapper.get_connection_params()
    assert params["user"] == "u" and params["password"] == "p"
    assert "(HOST=db.example.com)(PORT=1521)" in params["dsn"]
    assert "use_returning_into" not in params


def test_full_reset_is_refused():
    expected = r"\['RESET_ON_RETURN'\] = 'full' is not supported by ENGINE 'djpool.backends.oracle'"
    with pytest.raises(ImproperlyConfigured, match=expected):
        make_wrapper(POOL_OPTIONS={"RESET_ON_RETURN": "full"}).ensure_connection()


def test_old_oracledb_is_refused(monkeypatch):
    from djpool.backends.oracle import base

    monkeypatch.setattr(oracledb, "__version__", "1.3.1")
    with pytest.raises(ImproperlyConfigured) as info:
        base._load_oracledb()
    assert str(info.value) == "python-oracledb 1.3.2 or newer is required; you have 1.3.1."


@pytest.mark.skipif(django.VERSION >= (5, 0), reason="Django 5.0+ imports python-oracledb itself")
def test_django_42_runs_on_python_oracledb():
    import djpool.backends.oracle.base  # noqa: F401

    assert sys.modules["cx_Oracle"] is oracledb
    from django.db.backends.oracle import base

    assert base.Database is oracledb
    # inspectdb's type map for cx_Oracle 8+, whose API python-oracledb has.
    introspection = make_wrapper().introspection
    assert introspection.data_types_reverse[oracledb.DB_TYPE_DATE] == "DateField"


def test_incompatible_core_is_reported(monkeypatch):
    from djpool.core import compat

    monkeypatch.setattr(compat, "core_version", "9.0.0")
    with pytest.raises(ImproperlyConfigured) as info:
        compat.require_core("djpool-oracle", "0.1.0", "0.1", "1")
    assert "djpool-oracle 0.1.0 requires djpool-core>=0.1,<1; you have djpool-core 9.0.0." in str(info.value)
