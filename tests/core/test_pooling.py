"""Core pooling behaviour, asserted through what the server sees.

These run against whichever server DJPOOL_TEST_BACKEND selects.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connections, transaction

from djpool.core import PoolTimeout, stats
from tests.conftest import run_in_threads

pytestmark = pytest.mark.server_backed


def backend_pid(connection) -> int:
    from tests.conftest import SERVER

    with connection.cursor() as cursor:
        cursor.execute(SERVER.pid_query)
        return int(cursor.fetchone()[0])


def test_connection_is_reused_across_requests(make_alias, server):
    alias = make_alias({"POOL_SIZE": 2})
    conn = connections[alias]
    pids = []
    for _ in range(5):
        pids.append(backend_pid(conn))
        conn.close()
    assert len(set(pids)) == 1
    assert stats(alias)["connects"] == 1
    assert stats(alias)["checkouts"] == 5
    assert pids[0] in server.session_ids()


def test_django_holds_the_real_driver_connection(make_alias):
    conn = connections[make_alias()]
    conn.ensure_connection()
    module = type(conn.connection).__module__
    assert module.split(".")[0] in {"psycopg", "psycopg2", "MySQLdb", "pymysql"}
    conn.close()


def test_server_connections_stay_within_pool_bounds(make_alias, server):
    alias = make_alias({"POOL_SIZE": 2, "MAX_OVERFLOW": 1, "TIMEOUT": 30})
    baseline = server.connection_count()
    peak = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak.append(server.connection_count())
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()

    def work(i):
        conn = connections[alias]
        for _ in range(5):
            with conn.cursor() as cursor:
                cursor.execute("SELECT 1")
            time.sleep(0.005)
            conn.close()

    try:
        run_in_threads(12, work)
    finally:
        stop.set()
        watcher.join()
    assert max(peak) - baseline <= 3
    figures = stats(alias)
    assert figures["checked_out"] == 0
    assert figures["connects"] <= 3
    assert figures["checkouts"] == 60


def test_exhaustion_raises_a_clear_error(make_alias):
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "TIMEOUT": 0.2})
    holder = connections[alias]
    holder.ensure_connection()
    try:
        def other(i):
            connections[alias].ensure_connection()

        with pytest.raises(PoolTimeout) as info:
            run_in_threads(1, other)
    finally:
        holder.close()
    message = str(info.value)
    assert repr(alias) in message
    assert "1 (POOL_SIZE) + 0 (MAX_OVERFLOW)" in message
    assert "0.2 s (TIMEOUT)" in message
    assert stats(alias)["timeouts"] == 1


def test_uncommitted_work_is_rolled_back_on_return(make_alias):
    from tests.testapp.models import Item

    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0})
    conn = connections[alias]
    conn.set_autocommit(False)
    Item.objects.using(alias).create(name="uncommitted")
    pid = backend_pid(conn)
    conn.close()  # without commit
    conn.connect()
    assert backend_pid(conn) == pid
    assert conn.get_autocommit() is True
    assert not Item.objects.using(alias).filter(name="uncommitted").exists()
    conn.close()


def test_committed_work_survives(make_alias):
    from tests.testapp.models import Item

    alias = make_alias()
    with transaction.atomic(using=alias):
        Item.objects.using(alias).create(name="committed")
    connections[alias].close()
    assert Item.objects.using(alias).filter(name="committed").exists()
    Item.objects.using(alias).filter(name="committed").delete()
    connections[alias].close()


def test_connection_killed_by_server_is_replaced(make_alias, server):
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "PRE_PING_IDLE": 0})
    conn = connections[alias]
    first = backend_pid(conn)
    conn.close()
    server.kill(first)
    time.sleep(0.2)
    second = backend_pid(conn)
    conn.close()
    assert second != first
    assert stats(alias)["invalidations"] >= 1


def test_a_return_whose_transaction_state_cannot_be_read_closes_the_connection(make_alias, server, monkeypatch):
    """The return's short way asks the driver whether a rollback is needed; if that fails, the
    connection is closed (as when its rollback fails), never kept nor lost to the pool."""
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "TIMEOUT": 2})
    conn = connections[alias]
    first = backend_pid(conn)
    pool = conn._djpool_lease.pool

    def unreadable(dbapi_connection):
        raise RuntimeError("driver state unreadable")

    monkeypatch.setattr(pool.dialect, "in_transaction", unreadable)
    conn.close()
    monkeypatch.undo()
    deadline = time.monotonic() + 5
    while first in server.session_ids() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert first not in server.session_ids()
    figures = stats(alias)
    assert figures["checked_out"] == 0
    assert figures["idle"] == 0
    # Its slot is free: the only connection the pool may open is a new one.
    second = backend_pid(conn)
    conn.close()
    assert second != first


def test_test_database_switch_gets_its_own_pool(make_alias, server):
    """Changing NAME (as the test runner does) must never reuse connections to the old database."""
    other_db = server.database + "_other"
    server.create_database(other_db)
    try:
        alias = make_alias()
        conn = connections[alias]
        backend_pid(conn)
        conn.close()
        conn.settings_dict["NAME"] = other_db
        with conn.cursor() as cursor:
            cursor.execute("SELECT current_database()" if server.vendor == "postgresql" else "SELECT DATABASE()")
            assert cursor.fetchone()[0] == other_db
        conn.close()
        assert stats(alias)["pools"] == 2
    finally:
        from djpool.core import registry

        registry.close_all()
        server.drop_database(other_db)


@pytest.mark.parametrize(
    "pool_options, expected",
    [
        ({"POOL_SIZE": "ten"}, "['POOL_SIZE'] must be an integer of 1 or more; got 'ten' (str)."),
        ({"POOL_SIZE": 0}, "['POOL_SIZE'] must be an integer of 1 or more; got 0 (int)."),
        ({"POOL_SIZE": True}, "['POOL_SIZE'] must be an integer of 1 or more; got True (bool)."),
        ({"MAX_OVERFLOW": -2}, "['MAX_OVERFLOW'] must be an integer of 0 or more, or -1 for no limit; got -2 (int)."),
        ({"TIMEOUT": 0}, "['TIMEOUT'] must be a number of seconds greater than 0; got 0 (int)."),
        ({"RECYCLE": "1h"}, "['RECYCLE'] must be a number of seconds greater than 0, or None (or -1) to never recycle; got '1h' (str)."),
        ({"PRE_PING": "yes"}, "['PRE_PING'] must be True or False; got 'yes' (str)."),
        ({"POOL_MODE": "statement"}, "['POOL_MODE'] must be 'session' or 'transaction'; got 'statement' (str)."),
        ({"pool_size": 5}, "unknown key 'pool_size'. POOL_OPTIONS keys are upper-case: use 'POOL_SIZE'."),
        ({"POOL_SIZ": 5}, "unknown key 'POOL_SIZ'. Did you mean 'POOL_SIZE'?"),
    ],
)
def test_bad_pool_options_are_refused(make_alias, pool_options, expected):
    alias = make_alias(pool_options)
    with pytest.raises(ImproperlyConfigured) as info:
        connections[alias].ensure_connection()
    assert f"DATABASES[{alias!r}]['POOL_OPTIONS']" in str(info.value)
    assert expected in str(info.value)


def test_djangos_own_pool_option_is_refused(make_alias):
    alias = make_alias(OPTIONS={"pool": True})
    with pytest.raises(ImproperlyConfigured, match=r"OPTIONS\['pool'\] turns on Django's own connection pool"):
        connections[alias].ensure_connection()