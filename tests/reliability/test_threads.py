"""Many threads over a small pool: no errors, fair progress, bounded server sessions."""

from __future__ import annotations

import time

import pytest
from django.db import connections

from djpool.core import stats
from tests.conftest import run_in_threads
from tests.reliability.conftest import PeakWatcher, jain_fairness

pytestmark = pytest.mark.server_backed


@pytest.mark.slow
def test_64_threads_over_a_pool_of_5_plus_5(make_alias, server):
    pool_size, max_overflow, timeout, threads, duration = 5, 5, 30, 64, 3.0
    alias = make_alias({"POOL_SIZE": pool_size, "MAX_OVERFLOW": max_overflow, "TIMEOUT": timeout})
    sleep_sql = "SELECT pg_sleep(0.003)" if server.vendor == "postgresql" else "SELECT SLEEP(0.003)"
    baseline = server.connection_count()
    deadline = time.monotonic() + duration

    def work(i: int) -> tuple[int, float]:
        conn = connections[alias]
        done, longest_wait = 0, 0.0
        while time.monotonic() < deadline:
            asked = time.monotonic()
            conn.ensure_connection()
            longest_wait = max(longest_wait, time.monotonic() - asked)
            with conn.cursor() as cursor:
                cursor.execute(sleep_sql)
            conn.close()
            done += 1
        return done, longest_wait

    with PeakWatcher(server.connection_count) as watcher:
        results = run_in_threads(threads, work)  # re-raises the first error, if any

    counts = [done for done, _ in results]
    waits = [wait for _, wait in results]
    assert min(counts) > 0, counts
    assert max(waits) < timeout, max(waits)
    fairness = jain_fairness(counts)
    assert fairness >= 0.9, (fairness, sorted(counts))
    assert watcher.peak - baseline <= pool_size + max_overflow
    figures = stats(alias)
    assert figures["checked_out"] == 0 and figures["timeouts"] == 0, figures
    assert figures["checkouts"] == sum(counts)
    assert figures["waits"] > 0, "the pool was never contended: the test proves nothing"


@pytest.mark.parametrize("opened_by", ["set_autocommit", "raw SQL"])
def test_a_thread_that_ends_holding_a_connection_gives_it_back(make_alias, server, opened_by):
    """Threads that never call close_old_connections() must not leak pool slots.

    The wrapper of an ended thread is only garbage: once collected, its
    connection is back in the pool, rolled back, on the same server session
    (also a transaction opened with raw SQL, which MySQL's driver cannot see).
    """
    import gc
    import threading

    from tests.reliability.conftest import backend_pid

    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "TIMEOUT": 5})
    with connections[alias].cursor() as cursor:
        cursor.execute("CREATE TABLE djpool_orphan (n integer)")
    connections[alias].close()
    held: list[int] = []

    def hold_and_end() -> None:
        conn = connections[alias]
        if opened_by == "set_autocommit":
            conn.set_autocommit(False)
        with conn.cursor() as cursor:
            if opened_by == "raw SQL":
                cursor.execute("START TRANSACTION")
            cursor.execute("INSERT INTO djpool_orphan VALUES (1)")
        held.append(backend_pid(conn))
        # no commit, no close: the thread just ends

    thread = threading.Thread(target=hold_and_end)
    thread.start()
    thread.join()
    assert held
    gc.collect()
    assert stats(alias)["checked_out"] == 0
    conn = connections[alias]
    try:
        assert backend_pid(conn) == held[0]  # the one connection, reused
        with conn.cursor() as cursor:
            # Its own uncommitted row would still be visible to that session.
            cursor.execute("SELECT count(*) FROM djpool_orphan")
            assert cursor.fetchone()[0] == 0
            cursor.execute("DROP TABLE djpool_orphan")
    finally:
        conn.close()
