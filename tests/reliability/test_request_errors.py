"""Exceptions anywhere in a request: the connection always goes back, rolled back.

Real request cycles through ``WSGIHandler`` (see ``app.py``), 32 threads,
10,000 requests; afterwards the pool holds nothing, the server never saw more
than POOL_SIZE + MAX_OVERFLOW sessions, committed writes are all there and
rolled-back ones are not.
"""

from __future__ import annotations

import gc
import sys
import threading

import pytest
from django.core.signals import got_request_exception
from django.db import connections, transaction

from djpool.core import stats
from tests.reliability.conftest import PeakWatcher, PoolCloses, backend_pid, held_sessions

pytestmark = pytest.mark.server_backed

ROUTES = [
    "commit", "atomic", "open", "on_commit", "iterate", "iterate_autocommit",
    "iterator_kept", "iterator_kept_atomic", "dberror", "pid",
]
EXPECTED_STATUS = {"commit": 200, "pid": 200}


MODES = {
    "session": {},
    "transaction": {"POOL_MODE": "transaction"},
    "full-reset": {"RESET_ON_RETURN": "full"},
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("route", [r for r in ROUTES if r not in EXPECTED_STATUS])
def test_each_failure_returns_the_connection_rolled_back(route, mode, wsgi, items, make_alias, server):
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "TIMEOUT": 2, **MODES[mode]})
    status, _ = wsgi.get("pid", db=alias)
    assert status == 200
    pid_before = backend_pid(connections[alias])
    connections[alias].close()

    status, _ = wsgi.get(route, db=alias, n=1)
    assert status == 500
    assert stats(alias)["checked_out"] == 0

    # The single pooled connection is usable, idle, out of any transaction.
    conn = connections[alias]
    assert backend_pid(conn) == pid_before
    assert conn.get_autocommit() is True
    with conn.cursor() as cursor:
        if server.vendor == "postgresql":
            cursor.execute("SELECT state FROM pg_stat_activity WHERE pid = pg_backend_pid()")
            assert cursor.fetchone()[0] == "active"  # this very query; no "idle in transaction" left
            cursor.execute("SELECT count(*) FROM pg_cursors")
            assert cursor.fetchone()[0] == 0, "a server-side cursor survived the request"
        else:
            cursor.execute("SELECT @@in_transaction")
            assert cursor.fetchone()[0] == 0
    conn.close()
    names = set(items.objects.using(alias).exclude(name__startswith="seed-").values_list("name", flat=True))
    connections[alias].close()
    assert names == ({"oc-1"} if route == "on_commit" else set())


@pytest.mark.slow
@pytest.mark.parametrize("mode, total", [("session", 10_000), ("transaction", 2_000), ("full-reset", 2_000)])
def test_ten_thousand_failing_requests_across_32_threads(mode, total, wsgi, items, make_alias, server):
    pool_size, max_overflow, threads = 5, 5, 32
    alias = make_alias({"POOL_SIZE": pool_size, "MAX_OVERFLOW": max_overflow, "TIMEOUT": 60, **MODES[mode]})
    baseline = server.connection_count()
    statuses: dict[str, list[int]] = {route: [] for route in ROUTES}
    errors: list[BaseException] = []
    counter = iter(range(total))
    counter_lock = threading.Lock()

    def client() -> None:
        try:
            while True:
                with counter_lock:
                    n = next(counter, None)
                if n is None:
                    return
                route = ROUTES[n % len(ROUTES)]
                status, _ = wsgi.get(route, db=alias, n=n)
                statuses[route].append(status)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    # Like an error reporter, keep each thread's last exception (and with it
    # the traceback's frames) until that thread's next error.
    kept: dict[int, BaseException | None] = {}

    def keep(sender: object, **kwargs: object) -> None:
        kept[threading.get_ident()] = sys.exc_info()[1]

    got_request_exception.connect(keep, dispatch_uid="djpool-reliability-keep")
    try:
        # Sessions the pool closed (a request that broke its connection) are
        # left out while the server still lists them.
        with PoolCloses() as closes, PeakWatcher(held_sessions(closes, server.session_ids), interval=0.05) as watcher:
            workers = [threading.Thread(target=client) for _ in range(threads)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join(300)
    finally:
        got_request_exception.disconnect(dispatch_uid="djpool-reliability-keep")
        kept.clear()
    assert not errors, errors[:3]
    assert not any(worker.is_alive() for worker in workers)

    for route, seen in statuses.items():
        assert set(seen) == {EXPECTED_STATUS.get(route, 500)}, (route, sorted(set(seen)))
    assert sum(len(seen) for seen in statuses.values()) == total

    figures = stats(alias)
    assert figures["checked_out"] == 0, figures
    assert figures["checkouts"] >= total
    assert watcher.peak - baseline <= pool_size + max_overflow, (watcher.peak, baseline)
    # What stays open afterwards is the idle part of the pool, nothing more.
    assert server.connection_count() - baseline <= pool_size

    names = list(items.objects.using(alias).values_list("name", flat=True))
    connections[alias].close()
    per_route = total // len(ROUTES)
    assert per_route * len(ROUTES) == total
    assert len(names) == len(set(names))
    assert sum(name.startswith("ok-") for name in names) == per_route
    assert sum(name.startswith("oc-") for name in names) == per_route
    assert not [name for name in names if name.startswith("rb-")]


@pytest.mark.postgresql
@pytest.mark.parametrize("mode", ["session", "transaction"])
@pytest.mark.parametrize("route", ["iterator_kept", "iterator_kept_atomic"])
def test_half_read_iterator_kept_by_an_error_never_touches_the_next_request(route, mode, wsgi, items, make_alias, server):
    """The failed request's traceback keeps a half-read iterator() alive after the connection went back.

    When it is collected, Django closes the server-side cursor: that must not
    run CLOSE in the transaction of whichever request has the connection then.
    """
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "TIMEOUT": 2, **MODES[mode]})
    kept: list[BaseException | None] = []

    def keep(sender: object, **kwargs: object) -> None:
        kept.append(sys.exc_info()[1])

    got_request_exception.connect(keep, dispatch_uid="djpool-reliability-kept")
    try:
        assert wsgi.get(route, db=alias, n=1)[0] == 500
    finally:
        got_request_exception.disconnect(dispatch_uid="djpool-reliability-kept")
    assert len(kept) == 1 and kept[0].__traceback__ is not None

    conn = connections[alias]
    with transaction.atomic(using=alias):
        with conn.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_cursors")
            assert cursor.fetchone()[0] == 0, "the failed request's cursor is still open in this session"
        items.objects.using(alias).create(name="next-request")
        kept.clear()
        gc.collect()  # the iterator is finalized now, in the middle of this transaction
        assert items.objects.using(alias).filter(name="next-request").exists()
    conn.close()
    assert items.objects.filter(name="next-request").exists()
