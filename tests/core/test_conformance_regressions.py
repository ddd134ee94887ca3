"""Regressions found by running Django's own test suite with the pooled ENGINEs.

Each test here is a pooled-only failure that ``conformance/run.py`` showed
(Django's test named in the docstring), reduced to what the server sees. They
run on whichever server DJPOOL_TEST_BACKEND selects.
"""

from __future__ import annotations

import copy
from unittest import mock

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connections

from djpool.core import stats

pytestmark = pytest.mark.server_backed


def backend_pid(connection) -> int:
    from tests.conftest import SERVER

    with connection.cursor() as cursor:
        cursor.execute(SERVER.pid_query)
        return int(cursor.fetchone()[0])


def copy_with_options(connection, **options):
    """A second wrapper for the same alias with other OPTIONS (as Django's tests build them)."""
    other = connection.copy()
    other.settings_dict = copy.deepcopy(connection.settings_dict)
    other.settings_dict["OPTIONS"].update(options)
    return other


def test_failed_health_check_discards_the_connection(make_alias, server):
    """backends.base.test_base.ConnectionHealthChecksTests.test_health_checks_enabled"""
    alias = make_alias({"POOL_SIZE": 2}, CONN_HEALTH_CHECKS=True, CONN_MAX_AGE=None)
    conn = connections[alias]
    old_pid = backend_pid(conn)
    conn.close_if_unusable_or_obsolete()  # request_finished: persistent, kept
    assert backend_pid(conn) == old_pid
    conn.close_if_unusable_or_obsolete()

    with mock.patch.object(conn, "is_usable", return_value=False) as is_usable:
        new_pid = backend_pid(conn)  # request_started health check fails
    is_usable.assert_called_once_with()
    assert new_pid != old_pid
    assert old_pid not in server.session_ids()
    assert stats(alias)["invalidations"] == 1
    conn.close()


def test_unusable_connection_after_errors_is_discarded(make_alias, server):
    """close_if_unusable_or_obsolete() after a database error, when is_usable() says no."""
    alias = make_alias({"POOL_SIZE": 2})
    conn = connections[alias]
    old_pid = backend_pid(conn)
    conn.errors_occurred = True
    with mock.patch.object(conn, "is_usable", return_value=False):
        conn.close_if_unusable_or_obsolete()
    assert conn.connection is None
    assert old_pid not in server.session_ids()
    assert backend_pid(conn) != old_pid
    conn.close()


def test_usable_connection_after_errors_goes_back_to_the_pool(make_alias, server):
    """The other branch: a connection that passes is_usable() is kept and reused."""
    alias = make_alias({"POOL_SIZE": 2})
    conn = connections[alias]
    old_pid = backend_pid(conn)
    conn.errors_occurred = True
    conn.close_if_unusable_or_obsolete()  # CONN_MAX_AGE=0: obsolete, given back
    assert conn.connection is None
    assert old_pid in server.session_ids()
    assert backend_pid(conn) == old_pid
    assert stats(alias)["invalidations"] == 0
    conn.close()


def isolation_level_sql() -> str:
    from tests.conftest import SERVER

    if SERVER.vendor == "postgresql":
        return "SHOW transaction_isolation"
    return "SELECT @@session.tx_isolation"


def test_wrappers_with_other_options_get_their_own_connections(make_alias, server):
    """backends.postgresql.tests.Tests.test_connect_isolation_level"""
    alias = make_alias({"POOL_SIZE": 2})
    conn = connections[alias]
    first_pid = backend_pid(conn)
    conn.close()  # idle in the pool now

    other = copy_with_options(conn, isolation_level="serializable")
    if server.vendor == "postgresql":
        from django.db.backends.postgresql.psycopg_any import IsolationLevel

        other.settings_dict["OPTIONS"]["isolation_level"] = IsolationLevel.SERIALIZABLE
    try:
        other.set_autocommit(False)
        with other.cursor() as cursor:
            cursor.execute(isolation_level_sql())
            level = cursor.fetchone()[0]
        assert level.replace("-", " ").lower() == "serializable"
        assert backend_pid(other) != first_pid
    finally:
        other.close()
    # The original settings still get their own (default isolation) connection.
    assert backend_pid(conn) == first_pid
    conn.close()


def test_invalid_isolation_level_raises_even_with_an_idle_connection(make_alias):
    """backends.postgresql.tests.Tests.test_connect_invalid_isolation_level"""
    alias = make_alias({"POOL_SIZE": 2})
    conn = connections[alias]
    conn.ensure_connection()
    conn.close()
    other = copy_with_options(conn, isolation_level="-1")
    with pytest.raises(ImproperlyConfigured):
        other.ensure_connection()
    other.close()


def test_reused_connection_follows_time_zone(make_alias, server):
    """backends.postgresql.tests.Tests.test_connect_and_rollback"""
    if server.vendor != "postgresql":
        pytest.skip("only PostgreSQL sets a session time zone from TIME_ZONE")
    alias = make_alias({"POOL_SIZE": 1})
    conn = connections[alias]
    with conn.cursor() as cursor:
        pid = backend_pid(conn)
        cursor.execute("SET TIME ZONE 'Asia/Tokyo'")
    conn.close()

    assert backend_pid(conn) == pid  # the same session ...
    with conn.cursor() as cursor:
        cursor.execute("SHOW TIME ZONE")
        assert cursor.fetchone()[0] == conn.timezone_name  # ... set as Django expects
    conn.close()


def test_is_usable_after_close_is_false_and_the_session_goes_back(make_alias, server):
    """backends.tests.BackendTestCase.test_is_usable_after_database_disconnects (MySQL)"""
    alias = make_alias({"POOL_SIZE": 1})
    conn = connections[alias]
    pid = backend_pid(conn)
    conn._close()  # how Django's test emulates the server closing the connection
    assert conn.is_usable() is False
    conn.close()
    assert pid in server.session_ids()  # given back, not closed ...
    assert backend_pid(conn) == pid  # ... and handed out again
    conn.close()


def test_query_after_close_in_atomic_raises_interface_error(make_alias, server):
    """Stock: close() in atomic() leaves a closed connection; using it raises InterfaceError."""
    from django.db import InterfaceError, transaction

    alias = make_alias({"POOL_SIZE": 1})
    conn = connections[alias]
    pid = backend_pid(conn)
    with pytest.raises(InterfaceError):
        with transaction.atomic(using=alias):
            conn.close()
            with conn.cursor() as cursor:
                cursor.execute("SELECT 1")
    assert conn.connection is None
    assert backend_pid(conn) == pid
    conn.close()


def test_explicit_init_connection_state_runs_django_setup_again(make_alias, server):
    """backends.mysql.tests.IsolationLevelTests.test_auto_is_null_auto_config"""
    if server.vendor == "postgresql":
        alias = make_alias({"POOL_SIZE": 1})
        conn = connections[alias]
        conn.ensure_connection()
        with conn.cursor() as cursor:
            cursor.execute("SET TIME ZONE 'Asia/Tokyo'")
            conn.init_connection_state()
            cursor.execute("SHOW TIME ZONE")
            assert cursor.fetchone()[0] == conn.timezone_name
    else:
        alias = make_alias({"POOL_SIZE": 1}, OPTIONS={"isolation_level": "read committed"})
        conn = connections[alias]
        conn.ensure_connection()
        with conn.cursor() as cursor:
            cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE")
            conn.init_connection_state()
            cursor.execute("SELECT @@session.tx_isolation")
            assert cursor.fetchone()[0] == "READ-COMMITTED"
    conn.close()


def test_transaction_mode_keeps_the_vendor_debug_cursor(make_alias, server):
    """backends.postgresql.tests.Tests.test_copy_cursors (POOL_MODE='transaction')"""
    from django.db import transaction

    alias = make_alias({"POOL_MODE": "transaction", "POOL_SIZE": 1})
    conn = connections[alias]
    vendor_class = type(conn.make_debug_cursor(None))
    conn.force_debug_cursor = True
    try:
        with transaction.atomic(using=alias):
            with conn.cursor() as cursor:
                assert isinstance(cursor, vendor_class)  # e.g. PostgreSQL's, which logs copy()
                pid = backend_pid(conn)
                if server.vendor == "postgresql" and hasattr(cursor.cursor, "copy"):
                    with cursor.copy("COPY (SELECT 1) TO STDOUT") as copy:
                        for _ in copy:
                            pass
                    assert conn.queries[-1]["sql"] == "COPY (SELECT 1) TO STDOUT"
        # Outside the transaction the session went back to the pool.
        assert conn.connection is None
        assert pid in server.session_ids()
    finally:
        conn.force_debug_cursor = False
        conn.close()


def test_transaction_mode_holds_the_session_while_constraint_checks_are_off(make_alias, server):
    """migrations.test_operations.OperationTests.test_run_python (MySQL, POOL_MODE='transaction')"""
    from django.db import transaction

    if server.vendor != "mysql":
        pytest.skip("only MySQL turns constraint checks off for the session")
    alias = make_alias({"POOL_MODE": "transaction", "POOL_SIZE": 2, "MAX_OVERFLOW": 0})
    conn = connections[alias]
    other = conn.copy()
    with transaction.atomic(using=alias):  # two sessions in the pool, both idle after
        backend_pid(conn)
        backend_pid(other)
    other.close()
    assert stats(alias)["connects"] == 2

    with conn.constraint_checks_disabled():
        pids = {backend_pid(conn) for _ in range(3)}
        with conn.cursor() as cursor:
            cursor.execute("SELECT @@session.foreign_key_checks")
            assert cursor.fetchone()[0] == 0
    assert len(pids) == 1  # every statement ran on the session that had the checks off
    assert conn.connection is None  # and it went back afterwards
    with conn.cursor() as cursor:
        cursor.execute("SELECT @@session.foreign_key_checks")
        assert cursor.fetchone()[0] == 1
    conn.close()
