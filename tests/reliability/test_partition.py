"""A silent network failure never holds a request longer than TIMEOUT (issue 20).

Between the pool and the real server sits a userspace TCP proxy (its own
process, started and stopped by PID) that can stop forwarding while keeping
both sockets open: a partition as the pool sees it. With ``TIMEOUT`` 5 and
``connect_timeout`` 3, before this work a pre-ping blocked for the whole
partition, the requests behind it failed with ``PoolTimeout`` for as long,
and ``request_finished`` blocked in the rollback of a returned connection.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import OperationalError, connections

from djpool.core import stats
from tests.reliability.conftest import backend_pid
from tests.reliability.freezeproxy import FreezeProxy
from tests.servers import BACKEND

pytestmark = [pytest.mark.server_backed, pytest.mark.slow]

TIMEOUT = 5.0
CONNECT_TIMEOUT = 3
SLACK = 1.0


@pytest.fixture
def proxy(server: Any) -> Iterator[FreezeProxy]:
    if BACKEND == "postgresql":
        from djpool.backends.postgresql.base import DatabaseWrapper

        # psycopg2's libpq is driven through ctypes: found wherever the tests run.
        assert DatabaseWrapper.djpool_ping_within is not None and DatabaseWrapper.djpool_rollback_within is not None
    proxy = FreezeProxy(server.port)
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def partitioned_alias(make_alias: Any, proxy: FreezeProxy) -> Any:
    def make(mode: str = "session", options: dict[str, Any] | None = None, **pool_options: Any) -> str:
        return make_alias(
            {"POOL_SIZE": 2, "MAX_OVERFLOW": 0, "TIMEOUT": TIMEOUT, "POOL_MODE": mode, **pool_options},
            PORT=proxy.port,
            OPTIONS={"connect_timeout": CONNECT_TIMEOUT, **(options or {})},
        )

    return make


def timed(call: Any) -> tuple[float, BaseException | None]:
    started = time.monotonic()
    try:
        call()
    except BaseException as error:  # noqa: BLE001 - returned to the test
        return time.monotonic() - started, error
    return time.monotonic() - started, None


def query(alias: str) -> None:
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connections[alias].close()


def open_connections(alias: str, count: int) -> list[int]:
    """Open ``count`` pooled connections at once (then idle); return their backend PIDs."""
    pids: list[int] = []
    barrier = threading.Barrier(count)

    def hold() -> None:
        try:
            pids.append(backend_pid(connections[alias]))
            barrier.wait(10)
        finally:
            connections[alias].close()

    threads = [threading.Thread(target=hold) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(pids) == count
    return pids


def session_id_of(dbapi_connection: Any) -> int:
    """The server's id for a driver connection's session: PostgreSQL's backend PID, MySQL's connection id."""
    return int(dbapi_connection.info.backend_pid if BACKEND == "postgresql" else dbapi_connection.thread_id())


def wait_for_the_session_to_end(server: Any, session_id: int) -> None:
    """An abandoned session ends on the server once its goodbye gets through (within 5 s of a thaw)."""
    deadline = time.monotonic() + 5
    while server.query(
        "SELECT count(*) FROM pg_stat_activity WHERE pid = %s"
        if server.vendor == "postgresql"
        else "SELECT count(*) FROM information_schema.processlist WHERE id = %s",
        [session_id],
    )[0][0]:
        assert time.monotonic() < deadline, "the abandoned session never ended on the server"
        time.sleep(0.05)


def assert_the_setup_gives_up(alias: str, proxy: FreezeProxy, statement: str, first: Any = None) -> int:
    """A request (after ``first()``, in the same thread) opens a new connection and the network
    stops right then: Django's setup of it must fail within VALIDATION_TIMEOUT (1 s here), naming
    ``statement``, and the connection be closed at once. Returns its session's id."""
    from djpool.core import signals

    opened: list[int] = []
    armed = threading.Event()
    outcome: list[tuple[float, BaseException | None]] = []

    def freeze_once_opened(sender: Any, alias: str, dbapi_connection: Any, **kwargs: Any) -> None:
        if alias == alias_under_test and armed.is_set() and not opened:
            opened.append(session_id_of(dbapi_connection))
            proxy.freeze()

    def request() -> None:
        if first is not None:
            first()
        armed.set()
        outcome.append(timed(lambda: query(alias_under_test)))

    alias_under_test = alias
    signals.connection_opened.connect(freeze_once_opened)
    # In a thread: without the bound the setup waits for the server, and this fails.
    worker = threading.Thread(target=request)
    try:
        worker.start()
        assert armed.wait(10)
        worker.join(1 + SLACK)
        assert outcome, f"{statement} on a new connection was not bounded by VALIDATION_TIMEOUT"
        took, error = outcome[0]
        assert isinstance(error, OperationalError), (took, error)
        assert statement in str(error) and "VALIDATION_TIMEOUT" in str(error), error
        figures = stats(alias)
        assert figures["checked_out"] == 0 and figures["validation_timeouts"] == 1, figures
        # Closed at once, while the network is still down.
        assert figures["invalidations"] == 1 and figures["idle"] == 0, figures
    finally:
        signals.connection_opened.disconnect(freeze_once_opened)
        proxy.thaw()
        worker.join(30)
    return opened[0]


@pytest.mark.parametrize("mode", ["session", "transaction"])
def test_requests_during_a_partition_fail_within_timeout_and_recover_at_once(partitioned_alias, proxy, server, mode):
    alias = partitioned_alias(mode, PRE_PING_IDLE=0.2)
    open_connections(alias, 2)
    time.sleep(0.3)  # idle past PRE_PING_IDLE: the next checkout pings
    proxy.freeze()
    try:
        results: list[tuple[float, BaseException | None]] = []

        def request() -> None:
            results.append(timed(lambda: query(alias)))

        # More requests than connections, at once: some ping, some wait, some connect.
        threads = [threading.Thread(target=request) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert len(results) == 5
        for took, error in results:
            assert took <= TIMEOUT + SLACK, (took, error)
            assert isinstance(error, OperationalError), (took, error)
        messages = " ".join(str(error) + " ".join(getattr(error, "__notes__", [])) for _, error in results)
        assert repr(alias) in messages or alias in messages, messages
        assert "did not answer a health check" in messages, messages
    finally:
        proxy.thaw()
    took, error = timed(lambda: query(alias))
    assert error is None and took < 1.0, (took, error)
    figures = stats(alias)
    assert figures["checked_out"] == 0, figures
    assert figures["validation_timeouts"] >= 1 and figures["invalidations"] >= 1, figures


def test_opening_a_connection_into_a_silent_network_is_bounded(partitioned_alias, proxy):
    """The network stops before a new connection's handshake: the kernel completes the TCP connect
    and the server's greeting never comes. Opening gives up after connect_timeout, with the
    driver's error and the pool's note (PyMySQL's connect_timeout bounded the TCP connect only)."""
    alias = partitioned_alias()
    proxy.freeze()
    outcome: list[tuple[float, BaseException | None]] = []
    # In a thread: without the bound the handshake waits for the server, and this fails.
    worker = threading.Thread(target=lambda: outcome.append(timed(lambda: query(alias))))
    try:
        worker.start()
        worker.join(CONNECT_TIMEOUT + SLACK)
        assert outcome, "opening a connection was not bounded by connect_timeout"
        took, error = outcome[0]
        assert isinstance(error, OperationalError) and took >= CONNECT_TIMEOUT - 0.5, (took, error)
        notes = " ".join(getattr(error.__cause__, "__notes__", []))
        assert not hasattr(error, "add_note") or f"new connection for database {alias!r}" in notes, notes
        # A pool that never connected is not kept (as after a wrong password).
        assert stats(alias) == {}, stats(alias)
    finally:
        proxy.thaw()
        worker.join(30)
    took, error = timed(lambda: query(alias))
    assert error is None and stats(alias)["connects"] == 1, (took, error)


@pytest.mark.parametrize("mode", ["session", "transaction"])
def test_a_request_ending_inside_a_transaction_returns_within_validation_timeout(
    partitioned_alias, proxy, server, mode, caplog
):
    """request_finished must not wait in the rollback for a server that does not answer."""
    alias = partitioned_alias(mode, VALIDATION_TIMEOUT=2)
    conn = connections[alias]
    conn.set_autocommit(False)
    pid = backend_pid(conn)
    proxy.freeze()
    try:
        with caplog.at_level(logging.WARNING, logger="djpool.pool"):
            took, error = timed(conn.close)  # what request_finished does
        assert error is None, error
        assert took <= 2 + SLACK, took
        figures = stats(alias)
        assert figures["checked_out"] == 0 and figures["validation_timeouts"] == 1, figures
        # Nothing is raised: the warning is the operator's word of it.
        assert f"Database {alias!r} did not answer the reset of a returned connection within 2 s" in caplog.text
    finally:
        proxy.thaw()
    # That connection was closed, never handed out again: the next one is a new session.
    assert backend_pid(connections[alias]) != pid
    connections[alias].close()
    wait_for_the_session_to_end(server, pid)


def test_the_end_of_a_request_that_saw_an_error_is_bounded(partitioned_alias, proxy, server, caplog):
    """At the end of a request that saw a database error Django checks the connection (is_usable()),
    where stock Django with CONN_MAX_AGE = 0 would only close it. The network stops just before: the
    check gives up after VALIDATION_TIMEOUT and the connection is closed, never handed out."""
    from django.db import ProgrammingError

    alias = partitioned_alias(VALIDATION_TIMEOUT=1)
    sessions: list[int] = []
    frozen = threading.Event()
    outcome: list[tuple[float, BaseException | None]] = []

    def request() -> None:
        conn = connections[alias]
        sessions.append(backend_pid(conn))
        with pytest.raises(ProgrammingError), conn.cursor() as cursor:
            cursor.execute("SELECT * FROM djpool_no_such_table")
        assert conn.errors_occurred
        proxy.freeze()
        frozen.set()
        with caplog.at_level(logging.WARNING, logger="djpool.pool"):
            outcome.append(timed(conn.close_if_unusable_or_obsolete))  # what request_finished runs
        conn.close()

    # In a thread: without the bound the check waits for the server, and this fails.
    worker = threading.Thread(target=request)
    try:
        worker.start()
        assert frozen.wait(10)
        worker.join(1 + SLACK)
        assert outcome, "the check at the end of the request was not bounded by VALIDATION_TIMEOUT"
        took, error = outcome[0]
        assert error is None, (took, error)
        figures = stats(alias)
        assert figures["checked_out"] == 0 and figures["validation_timeouts"] == 1, figures
        assert figures["invalidations"] == 1 and figures["idle"] == 0, figures
        assert f"Database {alias!r} did not answer Django's check of a pooled connection within 1 s" in caplog.text
    finally:
        proxy.thaw()
        worker.join(30)
    wait_for_the_session_to_end(server, sessions[0])
    assert backend_pid(connections[alias]) != sessions[0]
    connections[alias].close()


def test_every_checkout_ping_is_bounded_with_pre_ping_idle_zero(partitioned_alias, proxy):
    alias = partitioned_alias(PRE_PING_IDLE=0)
    open_connections(alias, 1)
    proxy.freeze()
    try:
        took, error = timed(lambda: query(alias))
        assert isinstance(error, OperationalError) and took <= TIMEOUT + SLACK, (took, error)
    finally:
        proxy.thaw()
    took, error = timed(lambda: query(alias))
    assert error is None and took < 1.0, (took, error)


def test_a_time_zone_set_again_on_a_pooled_connection_is_bounded(partitioned_alias, proxy, server):
    """TIME_ZONE changed while a request held a pooled connection: its SET TIME ZONE, sent when the
    connection is next used, gives up after VALIDATION_TIMEOUT, and that connection is closed.

    (Idle connections are closed on such a change: Django 5.1+ closes the pool.)
    """
    if BACKEND != "postgresql":
        pytest.skip("only PostgreSQL sets the time zone on a reused connection again")
    from django.test import override_settings

    def in_thread(call: Any, wait: float = 30) -> list[tuple[float, BaseException | None]]:
        outcome: list[tuple[float, BaseException | None]] = []
        worker = threading.Thread(target=lambda: outcome.append(timed(call)))
        worker.start()
        worker.join(wait)
        workers.append(worker)
        return outcome

    workers: list[threading.Thread] = []
    # Without USE_TZ, psycopg's adapters (part of the pool's key) do not depend on TIME_ZONE, so
    # the change reaches the same pool.
    with override_settings(USE_TZ=False, TIME_ZONE="UTC"):
        alias = partitioned_alias(VALIDATION_TIMEOUT=1, PRE_PING_IDLE=60)
        held = threading.Event()
        change_made = threading.Event()
        pids: list[int] = []

        def hold_across_the_change() -> None:
            pids.append(backend_pid(connections[alias]))
            held.set()
            change_made.wait(10)
            connections[alias].close()

        holder = threading.Thread(target=hold_across_the_change)
        holder.start()
        assert held.wait(10)
        try:
            with override_settings(TIME_ZONE="Asia/Tokyo"):
                change_made.set()
                holder.join(10)
                proxy.freeze()
                # In a thread: without the bound the SET waits for the server, and this fails.
                outcome = in_thread(lambda: query(alias), wait=1 + SLACK)
                assert outcome, "SET TIME ZONE was not bounded by VALIDATION_TIMEOUT"
                took, error = outcome[0]
                assert isinstance(error, OperationalError), (took, error)
                assert "SET TIME ZONE" in str(error) and "VALIDATION_TIMEOUT" in str(error), error
                figures = stats(alias)
                assert figures["checked_out"] == 0 and figures["validation_timeouts"] == 1, figures
                proxy.thaw()

                def new_session_in_tokyo() -> None:
                    conn = connections[alias]
                    # That connection was closed, never handed out again.
                    assert backend_pid(conn) != pids[0]
                    with conn.cursor() as cursor:
                        cursor.execute("SHOW TIME ZONE")
                        assert cursor.fetchone()[0] == "Asia/Tokyo"
                    conn.close()

                outcome = in_thread(new_session_in_tokyo)
                assert outcome and outcome[0][1] is None, outcome
        finally:
            change_made.set()
            proxy.thaw()
            for worker in [holder, *workers]:
                worker.join(30)


@pytest.mark.parametrize("statement", ["SET TIME ZONE", "SET ROLE"])
def test_a_new_connections_setup_is_bounded(partitioned_alias, proxy, server, statement):
    """The network stops between opening a connection and Django's setup of it (its time zone, its
    role): the setup gives up after VALIDATION_TIMEOUT, and that session is closed."""
    if BACKEND != "postgresql":
        pytest.skip("PostgreSQL's setup statements (MySQL's: test_a_new_mysql_connections_setup_is_bounded)")
    import django
    from django.test import override_settings

    options: dict[str, Any] = {}
    # A time zone the server's sessions do not start in makes Django set it on every new connection;
    # the one they start in, only the role.
    time_zone = "Asia/Tokyo"
    if statement == "SET ROLE":
        if django.VERSION < (5, 2):
            pytest.skip("OPTIONS['assume_role'] is Django 5.2+")
        server.query(
            "DO $$ BEGIN CREATE ROLE djpool_partition_role; EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
        options["assume_role"] = "djpool_partition_role"
        time_zone = server.query("SHOW TIME ZONE")[0][0]
    with override_settings(USE_TZ=False, TIME_ZONE=time_zone):
        alias = partitioned_alias(VALIDATION_TIMEOUT=1, options=options)
        abandoned = assert_the_setup_gives_up(alias, proxy, statement)
        # It is never handed out: it ends on the server, and the next session is new and set up.
        wait_for_the_session_to_end(server, abandoned)
        conn = connections[alias]
        try:
            assert backend_pid(conn) != abandoned
            with conn.cursor() as cursor:
                cursor.execute("SELECT current_setting('TimeZone'), current_user")
                assert cursor.fetchone() == (time_zone, options.get("assume_role", server.user))
        finally:
            conn.close()


@pytest.mark.parametrize("statement", ["SELECT VERSION()", "SET SESSION TRANSACTION ISOLATION LEVEL"])
def test_a_new_mysql_connections_setup_is_bounded(partitioned_alias, proxy, server, statement):
    """The network stops between opening a connection and Django's setup of it: on a wrapper's first
    connection, the read of the server's data; on a later one, the isolation level. The setup gives
    up after VALIDATION_TIMEOUT, and that connection is closed at once, never handed out."""
    if BACKEND != "mysql":
        pytest.skip("MySQL's setup statements (PostgreSQL's: test_a_new_connections_setup_is_bounded)")
    from djpool.core import registry

    alias = partitioned_alias(VALIDATION_TIMEOUT=1)

    def read_the_servers_data_first() -> None:
        # This thread's wrapper reads the server's data on its first connection, unfrozen; the pool
        # then has none idle, so the next request opens a new connection for the wrapper.
        query(alias)
        registry.dispose(alias)

    first = read_the_servers_data_first if statement.startswith("SET") else None
    abandoned = assert_the_setup_gives_up(alias, proxy, statement, first)
    # It is never handed out: it ends on the server, and the next session is new and set up.
    wait_for_the_session_to_end(server, abandoned)
    conn = connections[alias]
    try:
        assert backend_pid(conn) != abandoned
        with conn.cursor() as cursor:
            cursor.execute("SELECT @@SESSION.tx_isolation" if conn.mysql_is_mariadb else "SELECT @@SESSION.transaction_isolation")
            assert cursor.fetchone()[0] == "READ-COMMITTED"  # Django's default, set by its setup
    finally:
        conn.close()
