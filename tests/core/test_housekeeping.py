"""MIN_IDLE, IDLE_TIMEOUT and RECYCLE jitter, done by the background housekeeper.

Asserted through the server's own session list, with no request in between.
"""

from __future__ import annotations

import os
import threading
import time

import pytest
from django.db import connections

from djpool.core import registry, stats
from tests.conftest import run_in_threads

pytestmark = pytest.mark.server_backed


def wait_for(condition, timeout: float = 8.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def hold_all(alias: str, count: int) -> None:
    """Check out ``count`` connections at once (a burst), then give them back."""
    barrier = threading.Barrier(count)

    def burst(i):
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
            barrier.wait(10)

    run_in_threads(count, burst)


def test_idle_connections_shrink_to_min_idle(make_alias, server):
    alias = make_alias({"POOL_SIZE": 10, "MAX_OVERFLOW": 0, "MIN_IDLE": 2, "IDLE_TIMEOUT": 1})
    baseline = server.connection_count()
    hold_all(alias, 10)
    assert server.connection_count() - baseline == 10
    assert wait_for(lambda: server.connection_count() - baseline == 2)
    time.sleep(1.5)  # and it stays there
    assert server.connection_count() - baseline == 2
    assert stats(alias)["idle_closed"] == 8


def test_idle_timeout_alone_shrinks_to_zero(make_alias, server):
    alias = make_alias({"POOL_SIZE": 4, "MAX_OVERFLOW": 0, "IDLE_TIMEOUT": 0.5})
    baseline = server.connection_count()
    hold_all(alias, 4)
    assert wait_for(lambda: server.connection_count() == baseline)
    # The next request simply opens a new connection.
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT 1")
    connections[alias].close()


def test_min_idle_warms_up_in_the_background(make_alias, server):
    alias = make_alias({"POOL_SIZE": 5, "MAX_OVERFLOW": 0, "MIN_IDLE": 3})
    baseline_ids = server.session_ids()
    with connections[alias].cursor() as cursor:  # creates the pool
        cursor.execute("SELECT 1")
    connections[alias].close()
    # Session ids, not counts: sessions of earlier tests' pools may still be
    # exiting on the server.
    assert wait_for(lambda: len(server.session_ids() - baseline_ids) == 3 and stats(alias)["connects"] == 3, timeout=5)
    # The request opened one (or took a warm one); the housekeeper the rest.
    assert stats(alias)["warmup_connects"] in (2, 3)
    time.sleep(0.6)  # a housekeeping round later, still exactly 3
    assert len(server.session_ids() - baseline_ids) == 3


def test_min_idle_tops_up_after_connections_die(make_alias, server):
    alias = make_alias({"POOL_SIZE": 4, "MAX_OVERFLOW": 0, "MIN_IDLE": 2, "IDLE_TIMEOUT": 0.5, "PRE_PING_IDLE": 0})
    baseline_ids = server.session_ids()
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT 1")
    connections[alias].close()
    assert wait_for(lambda: len(server.session_ids() - baseline_ids) == 2)
    first = server.session_ids() - baseline_ids
    for session in first:
        server.kill(session)
    # Dead idle connections are found by the next checkout's ping; the pool
    # then opens replacements and the housekeeper keeps two open.
    for _ in range(2):
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
        connections[alias].close()
    assert wait_for(lambda: len(server.session_ids() - baseline_ids) == 2)
    assert not (server.session_ids() & first)


def test_checked_out_connection_is_never_closed_by_housekeeping(make_alias, server):
    alias = make_alias({"POOL_SIZE": 2, "MAX_OVERFLOW": 0, "IDLE_TIMEOUT": 0.2, "RECYCLE": 0.5})
    conn = connections[alias]
    with conn.cursor() as cursor:
        cursor.execute(server.pid_query)
        pid = cursor.fetchone()[0]
    time.sleep(1.5)  # several housekeeping rounds, past IDLE_TIMEOUT and RECYCLE
    with conn.cursor() as cursor:
        cursor.execute(server.pid_query)
        assert cursor.fetchone()[0] == pid
    conn.close()


def test_idle_connections_are_recycled_in_the_background(make_alias, server):
    alias = make_alias({"POOL_SIZE": 3, "MAX_OVERFLOW": 0, "MIN_IDLE": 2, "RECYCLE": 1})
    baseline_ids = server.session_ids()
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT 1")
    connections[alias].close()
    assert wait_for(lambda: len(server.session_ids() - baseline_ids) == 2)
    first = server.session_ids() - baseline_ids
    assert wait_for(lambda: not (server.session_ids() & first), timeout=5)
    assert wait_for(lambda: len(server.session_ids() - baseline_ids) == 2)
    assert stats(alias)["recycled"] >= 2


def test_recycle_ages_are_spread(make_alias):
    """Connections opened together get recycle deadlines up to 10% apart."""
    alias = make_alias({"POOL_SIZE": 20, "MAX_OVERFLOW": 0, "RECYCLE": 100})
    hold_all(alias, 20)
    (pool,) = registry.pools(alias)
    opened_at = time.time()
    offsets = [opened_at - record.starttime for record in pool.pool._records]
    assert len(offsets) == 20
    assert all(0 <= offset <= 10 + 5 for offset in offsets)  # jitter ≤ 10 s, + test time
    assert max(offsets) - min(offsets) > 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_housekeeps_its_own_connections_only(make_alias, server):
    alias = make_alias({"POOL_SIZE": 3, "MAX_OVERFLOW": 0, "MIN_IDLE": 2})
    baseline_ids = server.session_ids()
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT 1")
    connections[alias].close()
    assert wait_for(lambda: len(server.session_ids() - baseline_ids) == 2)
    parent_sessions = server.session_ids() - baseline_ids

    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        status = 1
        try:
            os.close(read_end)
            with connections[alias].cursor() as cursor:
                cursor.execute(server.pid_query)
                mine = cursor.fetchone()[0]
            connections[alias].close()
            ok = wait_for(lambda: len(server.session_ids() - baseline_ids - parent_sessions) == 2, timeout=5)
            os.write(write_end, f"{mine} {int(ok)}".encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    _, status = os.waitpid(child, 0)
    message = os.read(read_end, 100).decode().split()
    os.close(read_end)
    assert status == 0
    child_session, child_warmed = int(message[0]), message[1] == "1"
    assert child_session not in parent_sessions
    assert child_warmed
    # The parent's connections were neither used nor closed by the child.
    assert parent_sessions <= server.session_ids()
    with connections[alias].cursor() as cursor:
        cursor.execute(server.pid_query)
        assert cursor.fetchone()[0] in parent_sessions
    connections[alias].close()
