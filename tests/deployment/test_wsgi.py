"""gunicorn's sync, gthread and gevent workers, and uWSGI's processes and threads, serving ``tests.deployment.app``.

Each shape: many concurrent clients over loopback against a view that holds
its connection inside a transaction for 20 ms. What the database server
sees (session count sampled throughout, the session of every request) and
what each worker's ``stats()`` reports afterwards must agree: at most
``POOL_SIZE + MAX_OVERFLOW`` sessions per worker process, no session serving
two requests at once, every connection back in the pool, no timeout.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.deployment.conftest import DRIVER, assert_sessions_never_shared, served, server_side_limit, wait_until
from tests.reliability.conftest import PeakWatcher, jain_fairness
from tests.servers import BACKEND

pytestmark = pytest.mark.server_backed

POOL_SIZE, MAX_OVERFLOW, TIMEOUT = 4, 2, 10


def needs_green_driver() -> None:
    """gevent needs a driver whose waits go through its hub."""
    pytest.importorskip("gevent")
    if BACKEND == "mysql" and DRIVER != "pymysql":
        pytest.skip("mysqlclient's C client blocks gevent's hub; the PyMySQL environment runs this on MySQL")


def gunicorn(worker_class: str, workers: int, *extra: str) -> list[str]:
    return [
        "gunicorn", "--bind", "127.0.0.1:{port}", "--worker-class", worker_class, "--workers", str(workers),
        "--graceful-timeout", "10", "--timeout", "60", "--log-level", "warning", *extra,
        "tests.deployment.app:application",
    ]


UWSGI = Path(sys.executable).with_name("uwsgi")  # pip's uwsgi, built for this interpreter


def uwsgi(*extra: str) -> list[str]:
    # lazy-apps off (the default): the master imports the app, then forks.
    return [
        str(UWSGI), "--http-socket", "127.0.0.1:{port}", "--module", "tests.deployment.app:application",
        "--virtualenv", sys.prefix, "--master", "--die-on-term", "--need-app", "--disable-logging",
        "--worker-reload-mercy", "10", *extra,
    ]


SHAPES = {
    # worker class: (gunicorn arguments, workers, clients, requests per client)
    "sync": (gunicorn("sync", 2), 2, 8, 6),
    "gthread": (gunicorn("gthread", 2, "--threads", "12"), 2, 32, 5),
    "gevent": (gunicorn("gevent", 1, "--worker-connections", "200"), 1, 120, 5),
    "uwsgi-processes": (uwsgi("--processes", "2"), 2, 8, 6),
    "uwsgi-threads": (uwsgi("--processes", "1", "--threads", "12", "--enable-threads"), 1, 24, 5),
}


def worker_stats(app: Any, workers: set[int], rounds: int = 20) -> dict[int, dict[str, Any]]:
    """``stats()`` of each worker process that served a request.

    Asked in rounds of concurrent requests that keep their worker busy for
    a moment: one asker at a time would reach whichever worker wins the
    accept race, which can be the same one every time (it did, 200 times).
    """
    figures: dict[int, dict[str, Any]] = {}
    with ThreadPoolExecutor(len(workers)) as executor:
        for _ in range(rounds):
            for status, answer in executor.map(lambda _: app.get("/stats?linger_ms=200"), range(len(workers))):
                assert status == 200, answer
                figures[answer["worker"]] = answer
            if workers <= set(figures):
                return figures
    raise AssertionError(f"workers {sorted(workers - set(figures))} never answered /stats in {rounds} rounds")


@pytest.mark.parametrize(
    ("worker_class", "mode"),
    [
        ("sync", "session"),
        ("gthread", "session"),
        pytest.param("gevent", "session", marks=pytest.mark.gevent),
        pytest.param("gevent", "transaction", marks=pytest.mark.gevent),
        ("uwsgi-processes", "session"),
        ("uwsgi-threads", "transaction"),
    ],
)
def test_worker_class_under_load(server, worker_class, mode):
    if worker_class.startswith("uwsgi"):
        if not UWSGI.exists():
            pytest.skip("uWSGI is not installed in this environment (pip's uwsgi builds it)")
    else:
        pytest.importorskip("gunicorn")
    if worker_class == "gevent":
        needs_green_driver()
    argv, workers, clients, per_client = SHAPES[worker_class]
    database = server.settings(
        POOL_OPTIONS={"POOL_SIZE": POOL_SIZE, "MAX_OVERFLOW": MAX_OVERFLOW, "TIMEOUT": TIMEOUT, "POOL_MODE": mode}
    )
    baseline = server.connection_count()

    def client(number: int) -> tuple[float, list[dict[str, Any]]]:
        started, answers = time.monotonic(), []
        for request in range(per_client):
            status, answer = app.get(f"/hold?ms=20&m=c{number}r{request}", timeout=60)
            assert status == 200, answer
            assert answer["marker"] == f"c{number}r{request}", answer  # nobody else wrote to its session
            answers.append(answer)
        return time.monotonic() - started, answers

    with served(argv, database) as app:
        with PeakWatcher(server.connection_count) as watcher, ThreadPoolExecutor(clients) as executor:
            results = list(executor.map(client, range(clients)))
        answers = [answer for _, batch in results for answer in batch]
        served_by = {answer["worker"] for answer in answers}
        figures = worker_stats(app, served_by)
        during = server.session_ids()

    # What the server saw: bounded per worker, never shared, really concurrent.
    limit = server_side_limit(workers * (POOL_SIZE + MAX_OVERFLOW), list(figures.values()))
    assert watcher.peak - baseline <= limit, (watcher.peak, baseline, figures)
    peak_held = assert_sessions_never_shared(answers)
    assert peak_held > 1, "requests never overlapped: the test proves nothing"
    for worker in served_by:
        own = [answer for answer in answers if answer["worker"] == worker]
        held_at_once = assert_sessions_never_shared(own)
        assert held_at_once <= POOL_SIZE + MAX_OVERFLOW, (worker, held_at_once, figures[worker])
        sessions = {answer["pids"][0] for answer in own}
        others = {answer["pids"][0] for answer in answers if answer["worker"] != worker}
        assert not sessions & others, "two worker processes used the same session"
    # Fair waits: nobody waited near TIMEOUT, clients' total times are alike.
    assert max(answer["waited"] for answer in answers) < TIMEOUT / 2
    assert jain_fairness([elapsed for elapsed, _ in results]) >= 0.8, [round(e, 2) for e, _ in results]

    # What each worker's pool says afterwards.
    for stats in figures.values():
        assert stats["pools"] == 1, stats  # one pool per process for the alias
        assert stats["checked_out"] == 0, stats  # nothing left checked out
        assert stats["timeouts"] == 0, stats
    assert sum(stats["checkouts"] for stats in figures.values()) >= len(answers)
    for worker, stats in figures.items():
        # The sessions a worker keeps open are its pool's idle connections (overflow ones closed).
        kept = {answer["pids"][0] for answer in answers if answer["worker"] == worker} & during
        assert len(kept) == stats["idle"] <= POOL_SIZE, (kept, stats)
    # The workers' sessions close with them.
    wait_until(lambda: server.connection_count() <= baseline, timeout=15)


@pytest.mark.gevent
def test_gevent_timeout_and_waits_are_cooperative(server):
    """One connection held 3 s; five greenlets of the same worker wait 1 s each at the same time and time out.

    Were the pool's wait a real blocking wait, the worker's hub (and the
    holder) would stop: the timeouts would come one after the other and the
    holder would finish late.
    """
    pytest.importorskip("gunicorn")
    needs_green_driver()
    database = server.settings(POOL_OPTIONS={"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "TIMEOUT": 1})
    with served(gunicorn("gevent", 1, "--worker-connections", "50"), database) as app:
        with ThreadPoolExecutor(6) as executor:
            holder = executor.submit(app.get, "/hold?ms=3000&m=holder")
            time.sleep(0.5)  # the holder has the only connection
            waiters = [executor.submit(lambda n: (app.get(f"/hold?ms=10&m=w{n}"), time.monotonic()), n) for n in range(5)]
            results = [waiter.result(60) for waiter in waiters]
            status, held = holder.result(60)
        assert status == 200, held
        for (status, answer), finished in results:
            assert status == 503, answer
            assert 0.9 <= answer["timeout"] < 2.0, answer  # TIMEOUT honoured, not exceeded
            assert finished < held["held"][1], "a wait ran the hub's other greenlets out"
        assert held["held"][1] - held["held"][0] < 3.5, held  # the holder was not held up by the waiters
        status, stats = app.get("/stats")
        assert stats["timeouts"] == 5 and stats["checked_out"] == 0 and stats["connects"] == 1, stats
