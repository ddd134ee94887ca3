"""At a request boundary the connection goes back to the pool and the wrapper stays parked.

Stock Django closes its connection when a request ends (``CONN_MAX_AGE = 0``)
and connects again in the next one. djpool gives the connection back there
too, but the next request's first cursor takes one from the same pool without
Django's ``connect()``. These tests hold it to what must not change: the
wrapper never touches the connection it gave back, changed settings take
effect, explicit ``close()`` and ``connect()`` behave as stock, and
``connection_created`` is sent once per request, in both modes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import pytest
from django.core.signals import request_finished, request_started
from django.db import connections
from django.db.backends.signals import connection_created
from django.test import override_settings

from djpool.core import PoolTimeout, stats
from tests.conftest import hold_in_thread

pytestmark = pytest.mark.server_backed

MODES = ["session", "transaction"]


@contextmanager
def request() -> Iterator[None]:
    """What a WSGI server makes Django do around a view."""
    request_started.send(sender=None)
    try:
        yield
    finally:
        request_finished.send(sender=None)


def query(conn, sql: str = "SELECT 1"):
    with conn.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


def session_id(conn, server) -> int:
    return int(query(conn, server.pid_query))


@contextmanager
def counting_connects(conn) -> Iterator[mock.MagicMock]:
    with mock.patch.object(conn, "connect", wraps=conn.connect) as connect:
        yield connect


@contextmanager
def counting_created(alias: str) -> Iterator[list[object]]:
    created: list[object] = []

    def count(sender, connection, **kwargs):
        if connection.alias == alias:
            created.append(connection)

    connection_created.connect(count)
    try:
        yield created
    finally:
        connection_created.disconnect(count)


@pytest.mark.parametrize("mode", MODES)
def test_next_request_takes_a_connection_without_connect(make_alias, server, mode):
    alias = make_alias({"POOL_MODE": mode, "POOL_SIZE": 1, "MAX_OVERFLOW": 0})
    conn = connections[alias]
    with counting_connects(conn) as connect, counting_created(alias) as created:
        pids = []
        for _ in range(4):
            with request():
                pids.append(session_id(conn, server))
                query(conn)
            # Given back at the end of each request, as stock closes it.
            assert stats(alias)["checked_out"] == 0
            assert conn.connection is None
        assert connect.call_count == 1
        # Once per request, in both modes (not once per take-back).
        assert len(created) == 4
    assert len(set(pids)) == 1
    assert pids[0] in server.session_ids()
    assert stats(alias)["connects"] == 1


def test_a_parked_wrapper_never_uses_the_connection_it_gave_back(make_alias, server):
    """Another thread holds the only connection: the parked wrapper waits for
    it (and times out), it does not reuse the one it had."""
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "TIMEOUT": 0.5})
    conn = connections[alias]
    with request():
        mine = session_id(conn, server)
    release = threading.Event()
    holder = hold_in_thread(alias, release)
    try:
        with request(), pytest.raises(PoolTimeout):
            query(conn)
    finally:
        release.set()
        holder.join(10)
    with request():
        assert session_id(conn, server) == mine  # the one pooled connection, back in the pool
    assert stats(alias)["connects"] == 1


@pytest.mark.parametrize("mode", MODES)
def test_settings_changed_between_requests_take_effect(make_alias, server, mode):
    """The test runner switches NAME in place; the next request connects to the new database."""
    other = f"{server.database}_boundary"
    server.create_database(other)
    alias = make_alias({"POOL_MODE": mode})
    conn = connections[alias]
    current = "SELECT current_database()" if server.vendor == "postgresql" else "SELECT DATABASE()"
    try:
        with request():
            assert query(conn, current) == server.database
        conn.settings_dict["NAME"] = other
        with counting_connects(conn) as connect, request():
            assert query(conn, current) == other
        assert connect.call_count == 1
        assert other in {row[0] for row in _sessions_by_database(server)}
    finally:
        conn.settings_dict["NAME"] = server.database
        conn.close()
        from djpool.core import registry

        registry.close_all(alias)
        server.drop_database(other)


def _sessions_by_database(server):
    if server.vendor == "postgresql":
        return server.query("SELECT datname FROM pg_stat_activity WHERE datname IS NOT NULL")
    return server.query("SELECT db FROM information_schema.processlist WHERE db IS NOT NULL")


@pytest.mark.parametrize("mode", MODES)
def test_nested_options_changed_in_place_take_effect(make_alias, server, mode):
    alias = make_alias({"POOL_MODE": mode}, OPTIONS={})
    conn = connections[alias]
    with request():
        query(conn)
    conn.settings_dict["OPTIONS"]["connect_timeout"] = 7
    try:
        with counting_connects(conn) as connect, request():
            query(conn)
        assert connect.call_count == 1
    finally:
        del conn.settings_dict["OPTIONS"]["connect_timeout"]
        conn.close()


def test_overridden_settings_take_effect_in_the_next_request(make_alias, server):
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 1})
    conn = connections[alias]
    with request():
        query(conn)
    with override_settings(USE_TZ=False, TIME_ZONE="Asia/Tokyo"):
        with counting_connects(conn) as connect, request():
            if server.vendor == "postgresql":
                assert query(conn, "SHOW TIME ZONE") == "Asia/Tokyo"
            else:
                query(conn)
        assert connect.call_count == 1
    conn.close()


@pytest.mark.parametrize("mode", MODES)
def test_explicit_close_and_connect_behave_as_stock(make_alias, server, mode):
    alias = make_alias({"POOL_MODE": mode})
    conn = connections[alias]
    with request():
        query(conn)
    with counting_connects(conn) as connect:
        conn.close()  # a parked wrapper closed: its next use connects anew
        with request():
            query(conn)
        assert connect.call_count == 1
        conn.connect()  # explicitly, between requests
        assert connect.call_count == 2
        assert conn.connection is not None
        assert stats(alias)["checked_out"] == 1
    conn.close()
    assert stats(alias)["checked_out"] == 0


def test_conn_max_age_keeps_the_connection_until_it_is_obsolete(make_alias, server):
    """Session mode with CONN_MAX_AGE > 0: held across requests until close_at,
    then given back; the next take-back starts a new CONN_MAX_AGE period."""
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0}, CONN_MAX_AGE=60)
    conn = connections[alias]
    with counting_connects(conn) as connect:
        with request():
            first = session_id(conn, server)
        assert stats(alias)["checked_out"] == 1  # kept, as stock keeps it
        with request():
            assert session_id(conn, server) == first
            conn.close_at = time.monotonic() - 1  # its age is up during this request
        assert stats(alias)["checked_out"] == 0  # given back at the end
        with request():
            query(conn)
        assert conn.close_at > time.monotonic() + 50
        assert stats(alias)["checked_out"] == 1
        assert connect.call_count == 1
    conn.close()


def test_autocommit_off_setting_holds_across_take_backs(make_alias, server):
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0}, AUTOCOMMIT=False)
    conn = connections[alias]
    with counting_connects(conn) as connect:
        for _ in range(2):
            with request():
                query(conn)
                assert conn.get_autocommit() is False
                assert conn.djpool_driver_autocommit(conn.connection) is False
        assert connect.call_count == 1
    conn.close()


def test_connection_given_back_out_of_autocommit_is_taken_back_in_it(make_alias, server):
    """A request that turned autocommit off and never back: Django closes its
    connection (stock path), which goes back with the driver out of
    autocommit. A parked wrapper that takes it gets it in autocommit."""
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0})
    conn = connections[alias]
    with request():
        mine = session_id(conn, server)

    def other_request() -> None:
        other = connections[alias]
        try:
            with request():
                other.set_autocommit(False)
                assert session_id(other, server) == mine
        finally:
            connections.close_all()

    thread = threading.Thread(target=other_request)
    thread.start()
    thread.join(10)
    with counting_connects(conn) as connect, request():
        assert session_id(conn, server) == mine
        assert conn.djpool_driver_autocommit(conn.connection) is True
        assert connect.call_count == 0
    conn.close()


def test_request_with_a_database_error_connects_anew(make_alias, server):
    """Django checks a connection that saw an error at the request's end: the
    stock path (is_usable(), close) runs, and the next request connects."""
    from django.db import DatabaseError

    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0})
    conn = connections[alias]
    with counting_connects(conn) as connect:
        with request():
            with pytest.raises(DatabaseError):
                query(conn, "SELECT * FROM djpool_no_such_table")
        assert stats(alias)["checked_out"] == 0
        with request():
            query(conn)
        assert connect.call_count == 2


@contextmanager
def counting_checkouts() -> Iterator[mock.MagicMock]:
    from djpool.core.container import ConnectionPool

    with mock.patch.object(ConnectionPool, "checkout", autospec=True, side_effect=ConnectionPool.checkout) as checkout:
        yield checkout


@pytest.mark.parametrize("mode", MODES)
def test_a_parked_wrapper_takes_back_its_own_connection_without_a_checkout(make_alias, server, mode):
    """Nobody took the connection it gave back: it is the one taken back,
    without the pool's checkout, and still counted as one."""
    alias = make_alias({"POOL_MODE": mode, "POOL_SIZE": 2, "MAX_OVERFLOW": 0})
    conn = connections[alias]
    with request():
        mine = session_id(conn, server)
    checkouts = stats(alias)["checkouts"]
    with counting_checkouts() as checkout:
        for _ in range(3):
            with request():
                assert session_id(conn, server) == mine
            assert stats(alias)["checked_out"] == 0
            assert stats(alias)["idle"] == 1
            assert conn.connection is None
        assert checkout.call_count == 0
    assert stats(alias)["checkouts"] == checkouts + 3
    assert stats(alias)["taken_back"] == 3
    assert stats(alias)["connects"] == 1
    assert mine in server.session_ids()


def test_a_connection_another_request_used_meanwhile_is_checked_out_again(make_alias, server):
    """The connection a wrapper gave back is idle in the pool like any other:
    another thread's request takes it at once, and the wrapper's next
    request then checks one out as usual (the pool's reset and setup apply)."""
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "TIMEOUT": 5})
    conn = connections[alias]
    with request():
        mine = session_id(conn, server)
    seen: list[int] = []

    def other_request() -> None:
        other = connections[alias]
        with request():
            seen.append(session_id(other, server))
        # Ends parked with the connection given back (no close()).

    thread = threading.Thread(target=other_request)
    started = time.monotonic()
    thread.start()
    thread.join(10)
    assert seen == [mine]
    assert time.monotonic() - started < 2  # taken at once, never waited for
    assert stats(alias)["waits"] == 0
    taken_back = stats(alias)["taken_back"]
    with counting_checkouts() as checkout, request():
        assert session_id(conn, server) == mine
        assert checkout.call_count == 1
    assert stats(alias)["taken_back"] == taken_back
    assert stats(alias)["connects"] == 1


def test_a_connection_taken_back_after_pre_ping_idle_is_checked(make_alias, server):
    """Taking back its own connection skips no health check: idle for
    PRE_PING_IDLE, it is pinged, and one the server dropped is replaced."""
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "PRE_PING_IDLE": 0})
    conn = connections[alias]
    with request():
        mine = session_id(conn, server)
    server.kill(mine)
    with request():
        assert session_id(conn, server) != mine
    assert stats(alias)["connects"] == 2


def test_a_raw_transaction_open_at_the_request_end_ends_before_the_connection_is_taken_back(make_alias, server):
    """The connection goes back through the reset on return, which rolls
    back the transaction the request left open; the next request of the same
    thread may then take that connection back, never the transaction."""
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0})
    conn = connections[alias]
    with request():
        query(conn, "SELECT 1")
        with conn.cursor() as cursor:
            cursor.execute("BEGIN")
        mine = session_id(conn, server)
    taken_back = stats(alias)["taken_back"]
    with request():
        assert session_id(conn, server) == mine
        # The server says no transaction is open (in one, now() would be the
        # time the last request's BEGIN ran).
        sql = "SELECT @@in_transaction = 0" if server.vendor == "mysql" else "SELECT now() = statement_timestamp()"
        assert query(conn, sql)
    assert stats(alias)["taken_back"] == taken_back + 1


def test_a_fully_reset_connection_is_checked_out_again(make_alias, server):
    """RESET_ON_RETURN = "full" clears the session and the saved setup: the
    next request checks the connection out, so that Django's setup runs."""
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "RESET_ON_RETURN": "full"})
    conn = connections[alias]
    with request():
        mine = session_id(conn, server)
    with counting_checkouts() as checkout, request():
        assert session_id(conn, server) == mine
        assert checkout.call_count == 1
    assert stats(alias)["taken_back"] == 0


@pytest.mark.parametrize("pre_ping", [True, False])
def test_a_connection_given_back_before_another_request_saw_an_error_is_checked(make_alias, server, pre_ping):
    """With PRE_PING, a database error seen since the wrapper gave its
    connection back (the server may have restarted) sends the take-back
    through the checkout, which pings the connection; without it, the
    connection is taken back as it is."""
    from django.db import DatabaseError

    alias = make_alias({"POOL_SIZE": 2, "MAX_OVERFLOW": 0, "PRE_PING": pre_ping})
    conn = connections[alias]
    # Wrappers of the same alias that a request's end does not close.
    other, third = connections.create_connection(alias), connections.create_connection(alias)
    try:
        with request():
            theirs = session_id(other, server)
            mine = session_id(conn, server)
        assert theirs != mine
        # The other holder gives its connection back after a database error,
        # and a third takes that one (the last given back), leaving this
        # wrapper's connection where a take-back finds it.
        with pytest.raises(DatabaseError):
            query(other, "SELECT * FROM djpool_no_such_table")
        other.close()
        assert session_id(third, server) == theirs
        taken_back = stats(alias)["taken_back"]
        with counting_checkouts() as checkout, request():
            assert session_id(conn, server) == mine
        assert checkout.call_count == (1 if pre_ping else 0)
        assert stats(alias)["taken_back"] == taken_back + (0 if pre_ping else 1)
    finally:
        other.close()
        third.close()


def test_a_connection_given_back_after_a_database_error_is_checked_before_its_next_use(make_alias, server):
    """Transaction mode gives the connection back after each statement; after
    one that raised a database error the connection is suspect, so the next
    statement checks it out again, which pings it (even with PRE_PING off),
    instead of taking it back untested."""
    from django.db import DatabaseError

    alias = make_alias({"POOL_MODE": "transaction", "POOL_SIZE": 1, "MAX_OVERFLOW": 0, "PRE_PING": False})
    conn = connections[alias]
    with request():
        mine = session_id(conn, server)
        with pytest.raises(DatabaseError):
            query(conn, "SELECT * FROM djpool_no_such_table")
        taken_back = stats(alias)["taken_back"]
        with counting_checkouts() as checkout:
            assert session_id(conn, server) == mine
        assert checkout.call_count == 1
        assert stats(alias)["taken_back"] == taken_back
