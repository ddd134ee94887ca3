"""PostgreSQL-specific behaviour of djpool.backends.postgresql."""

from __future__ import annotations

import pytest
from django.db import connections, transaction

pytestmark = pytest.mark.postgresql


def test_raw_connection_features_work(make_alias):
    conn = connections[make_alias()]
    conn.ensure_connection()
    assert conn.connection.info.server_version >= 120000
    assert conn.pg_version >= 120000
    conn.close()


def test_server_side_cursor_iteration(make_alias):
    from tests.testapp.models import Item

    alias = make_alias()
    Item.objects.using(alias).bulk_create(Item(name=f"ssc{i}", value=i) for i in range(50))
    try:
        with transaction.atomic(using=alias):
            values = [item.value for item in Item.objects.using(alias).filter(name__startswith="ssc").order_by("value").iterator(chunk_size=7)]
        assert values == list(range(50))
    finally:
        Item.objects.using(alias).filter(name__startswith="ssc").delete()
        connections[alias].close()


def test_session_state_survives_by_default_and_full_reset_clears_it(make_alias):
    plain = connections[make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0})]
    with plain.cursor() as cursor:
        cursor.execute("SET search_path TO leaked")
    plain.close()
    with plain.cursor() as cursor:
        cursor.execute("SHOW search_path")
        assert cursor.fetchone()[0] == "leaked"
    plain.close()

    reset = connections[make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "RESET_ON_RETURN": "full"})]
    with reset.cursor() as cursor:
        cursor.execute("SET search_path TO leaked")
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    reset.close()
    with reset.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] == pid
        cursor.execute("SHOW search_path")
        assert cursor.fetchone()[0] != "leaked"
        # Django's own setup is applied again after the reset.
        cursor.execute("SHOW TIME ZONE")
        assert cursor.fetchone()[0] == "UTC"
    reset.close()


def test_no_rollback_is_sent_for_an_idle_connection(make_alias, server):
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0})
    conn = connections[alias]
    with conn.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    conn.close()
    (query,) = server.query("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid])[0]
    assert query == "SELECT pg_backend_pid()"


def test_threads_connecting_at_once_share_one_pool(make_alias, server):
    """psycopg 3: the first connections of many threads at once go to one pool, not one per adapters context.

    Django builds the adapters context through an lru_cache that threads
    calling it at once can each fill; the registry keys pools by the
    connection parameters, context included. Seen in gthread and uWSGI
    threads workers: a process with two pools, over POOL_SIZE + MAX_OVERFLOW.
    """
    import sys
    import threading

    from django.db.backends.postgresql import base

    from djpool.core import stats

    if not base.is_psycopg3:
        pytest.skip("psycopg2 has no adapters context")
    from django.db.backends.postgresql.psycopg_any import get_adapters_template

    threads_count = 16
    alias = make_alias({"POOL_SIZE": threads_count, "MAX_OVERFLOW": 0, "TIMEOUT": 10})
    barrier = threading.Barrier(threads_count)
    errors: list[BaseException] = []

    def connect() -> None:
        try:
            barrier.wait(10)
            connections[alias].ensure_connection()
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connections[alias].close()

    interval = sys.getswitchinterval()
    get_adapters_template.cache_clear()  # the first connections in this process, as in a new worker
    sys.setswitchinterval(1e-6)  # switch threads often enough for them to meet inside the cache
    try:
        threads = [threading.Thread(target=connect) for _ in range(threads_count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors
    assert stats(alias)["pools"] == 1, stats(alias)


def test_a_failed_setup_statement_raises_psycopgs_own_error_and_is_run_again(make_alias, server):
    """OPTIONS['assume_role'] naming no role: the SET ROLE djpool sends under VALIDATION_TIMEOUT fails with the
    error class psycopg's execute() would raise (its SQLSTATE's), and the connection given back is never handed
    out as set up: the next request runs the setup again (and fails again) on the same one server session."""
    import django
    from django.db import DataError
    from django.db.backends.postgresql import base

    from djpool.core import stats

    if django.VERSION < (5, 2):
        pytest.skip("OPTIONS['assume_role'] is Django 5.2+")
    application = "djpool-failed-setup"
    alias = make_alias(
        {"POOL_SIZE": 1, "MAX_OVERFLOW": 0},
        OPTIONS={"assume_role": "djpool_no_such_role", "application_name": application},
    )
    conn = connections[alias]
    for _ in range(2):
        with pytest.raises(DataError, match='role "djpool_no_such_role" does not exist') as raised:
            conn.ensure_connection()
        assert type(raised.value.__cause__) is base.Database.errors.InvalidParameterValue
        if base.is_psycopg3:  # psycopg2's pgcode is its own to set
            assert raised.value.__cause__.sqlstate == "22023"
        conn.close()  # what request_finished does
        assert stats(alias)["checked_out"] == 0
    assert stats(alias)["connects"] == 1
    query = "SELECT count(*), min(usename) FROM pg_stat_activity WHERE application_name = %s"
    assert server.query(query, [application])[0] == (1, server.user)


@pytest.mark.parametrize("began_by", ["psycopg2", "raw BEGIN"])
def test_psycopg2s_bounded_rollback_leaves_its_state_true(make_alias, server, began_by):
    """psycopg2's round trips go through its libpq without blocking (ctypes): a connection given back inside
    a transaction is rolled back on the server, and psycopg2's own view of it stays true, so the next
    holder's transactions begin (its BEGIN is sent) and its autocommit mode works."""
    from django.db.backends.postgresql import base

    from djpool.core import stats

    if base.is_psycopg3:
        pytest.skip("psycopg2's bounded round trips (psycopg 3's: its own non-blocking interface)")
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0})
    conn = connections[alias]
    if began_by == "psycopg2":
        conn.set_autocommit(False)
    with conn.cursor() as cursor:
        if began_by == "raw BEGIN":
            cursor.execute("BEGIN")
        cursor.execute("CREATE TEMPORARY TABLE djpool_rolled_back (id int)")
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    conn.close()  # what request_finished does: the pool rolls it back
    assert stats(alias)["idle"] == 1
    assert server.query("SELECT state FROM pg_stat_activity WHERE pid = %s", [pid]) == [("idle",)]
    conn.set_autocommit(False)
    with conn.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] == pid
        cursor.execute("SELECT to_regclass('djpool_rolled_back')")
        assert cursor.fetchone()[0] is None  # the table went with the rollback
        # psycopg2 began this transaction itself: its state was READY, not left in BEGIN.
        assert conn.connection.get_transaction_status() == base.Database.extensions.TRANSACTION_STATUS_INTRANS
    conn.rollback()
    conn.set_autocommit(True)
    conn.close()
