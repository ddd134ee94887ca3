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
