"""Celery 5 workers (prefork, threads, gevent pools) on a real broker (Redis) and the real database server.

Each worker gets its own queue; tasks are sent by name from this process,
which never imports the worker's app module (nor Django settings of its own
for it). What the server sees (session count sampled throughout, the
session of every task, the sessions of the worker's main process opened
before it forked) and what ``stats()`` says in each worker process afterwards
(asked through a task) must agree: connections back at each task's end,
sessions bounded per process, none shared between processes, none left once
the worker has stopped.
"""

from __future__ import annotations

import gc
import json
import socket
import subprocess
import sys
import uuid
from typing import Any

import pytest

from tests.deployment.conftest import (
    DRIVER,
    REPO,
    assert_sessions_never_shared,
    process_env,
    server_side_limit,
    stop,
    wait_until,
)
from tests.reliability.conftest import PeakWatcher
from tests.servers import BACKEND

pytestmark = pytest.mark.server_backed

REDIS = "redis://127.0.0.1:6379/0"
POOL_SIZE, MAX_OVERFLOW, TIMEOUT = 2, 1, 20


def redis_running() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def celery_client() -> Any:
    celery = pytest.importorskip("celery")
    pytest.importorskip("redis")
    if not redis_running():
        pytest.skip("needs Redis on 127.0.0.1:6379 (the broker)")
    client = celery.Celery("djpool_deployment_client", broker=REDIS, backend=REDIS)
    yield client
    gc.collect()  # AsyncResults unsubscribe from the result backend while it is still there
    client.close()


SHAPES = {
    # pool: (celery worker arguments, processes that run tasks); tasks at once per process
    # (1, 6, 30) above POOL_SIZE + MAX_OVERFLOW but for prefork
    "prefork": (["-P", "prefork", "-c", "2"], 2),
    "threads": (["-P", "threads", "-c", "6"], 1),
    "gevent": (["-P", "gevent", "-c", "30"], 1),
}


@pytest.mark.parametrize("pool", ["prefork", "threads", pytest.param("gevent", marks=pytest.mark.gevent)])
def test_celery_worker_pool(server, celery_client, tmp_path, pool):
    if pool == "gevent":
        pytest.importorskip("gevent")
        if BACKEND == "mysql" and DRIVER != "pymysql":
            pytest.skip("mysqlclient's C client blocks gevent's hub; the PyMySQL environment runs this on MySQL")
    args, processes = SHAPES[pool]
    # Under gevent, asgiref's sync thread is a greenlet of the loop's own OS
    # thread: Django sees the running event loop there and refuses the ORM
    # (SynchronousOnlyOperation), so asyncio.run() tasks are for the others.
    async_tasks = 0 if pool == "gevent" else 12
    queue = f"djpool-dep-{uuid.uuid4().hex[:12]}"
    report = tmp_path / "parent.jsonl"
    database = server.settings(POOL_OPTIONS={"POOL_SIZE": POOL_SIZE, "MAX_OVERFLOW": MAX_OVERFLOW, "TIMEOUT": TIMEOUT})
    env = process_env(
        database, DJPOOL_DEP_BROKER=REDIS, DJPOOL_DEP_RESULTS=REDIS, DJPOOL_DEP_QUEUE=queue,
        DJPOOL_REL_REPORT=str(report),
    )
    baseline = server.session_ids()
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.deployment.celery_app", "worker", *args, "-Q", queue,
         "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "warning", "-n", f"{queue}@%h"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )

    try:
        def send(name: str, *task_args: Any) -> Any:
            return celery_client.send_task(f"deployment.{name}", args=task_args, queue=queue)

        # Up: the first task's answer comes back (bounded).
        send("stats").get(timeout=90)
        parent = json.loads(report.read_text().splitlines()[0])
        assert parent["process"] == worker.pid

        with PeakWatcher(server.connection_count) as watcher:
            results = [send("hold", f"t{n}", 30) for n in range(40)]
            results += [send("async_orm", f"a{n}") for n in range(async_tasks)]
            answers = [result.get(timeout=120) for result in results]
            del results
        # Each task process's own view of its pool (asked until every one has answered).
        served_by = {answer["worker"] for answer in answers}
        figures: dict[int, dict[str, Any]] = {}
        for _ in range(20):
            for answer in [send("stats").get(timeout=60) for _ in range(2 * processes)]:
                figures[answer["worker"]] = answer
            if served_by <= set(figures):
                break
        during = server.session_ids()
    except BaseException:
        stop(worker)
        print(worker.stderr.read().decode(errors="replace")[-20000:])  # type: ignore[union-attr]
        raise

    # Sessions: bounded per process, never shared, the parent's never used by a child.
    assert len(served_by) <= processes
    if pool == "prefork":
        assert worker.pid not in served_by
    peak = assert_sessions_never_shared(answers)
    assert 1 < peak <= processes * (POOL_SIZE + MAX_OVERFLOW), "tasks never overlapped" if peak < 2 else peak
    limit = server_side_limit(processes * (POOL_SIZE + MAX_OVERFLOW), list(figures.values()))
    assert watcher.peak - len(baseline) <= limit + 2, (watcher.peak, figures)  # + the parent's two
    sessions_of = {process: {a["pids"][0] for a in answers if a["worker"] == process} for process in served_by}
    for process, sessions in sessions_of.items():
        for other, theirs in sessions_of.items():
            assert process == other or not sessions & theirs, "two worker processes used the same session"
        if pool == "prefork":
            assert not sessions & {parent["held"], parent["idle"]}, "a child used its parent's connection"
    if pool == "prefork":
        # The children closed what they inherited without closing it for the parent.
        assert {parent["held"], parent["idle"]} <= during
    markers = [answer["marker"] for answer in answers]
    assert markers == [f"t{n}" for n in range(40)] + [f"a{n}" for n in range(async_tasks)]  # nobody wrote in between
    assert all(answer["name"] == f"celery-{answer['marker']}" for answer in answers[40:])
    for stats in figures.values():
        assert stats["pools"] == 1, stats  # one pool for the alias in each process
        assert stats["checked_out"] == 0, stats  # every task gave its connection back, asyncio.run() ones too
        assert stats["timeouts"] == 0, stats

    # A warm shutdown: the worker and its processes exit, their sessions with them.
    stop(worker, timeout=60)
    stderr = worker.stderr.read().decode(errors="replace")  # type: ignore[union-attr]
    assert worker.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    wait_until(lambda: not (server.session_ids() - baseline), timeout=20)


def test_asyncio_run_holds_asgirefs_thread_connection_until_closed(make_alias, server):
    """Why the asyncio.run() task closes its connections itself (docs/deployment.md).

    With no outer event loop, ``sync_to_async`` runs the ORM in asgiref's one
    long-lived thread: closing the calling thread's connections (what Celery's
    fixup does after a task) leaves that one checked out; closing it from
    inside the coroutine gives it back.
    """
    import asyncio

    from asgiref.sync import sync_to_async
    from django.db import close_old_connections, connections

    from djpool.core import stats
    from tests.reliability.conftest import backend_pid

    alias = make_alias({"POOL_SIZE": 2, "MAX_OVERFLOW": 0, "TIMEOUT": 5})

    async def task(close: bool) -> int:
        try:
            return await sync_to_async(lambda: backend_pid(connections[alias]))()
        finally:
            if close:
                await sync_to_async(close_old_connections)()

    pids = []
    for _ in range(3):
        pids.append(asyncio.run(task(close=False)))
        connections.close_all()  # the task thread's, as Celery's fixup
        assert stats(alias)["checked_out"] == 1  # still held by asgiref's thread: bounded, not given back
    pids.append(asyncio.run(task(close=True)))
    assert stats(alias)["checked_out"] == 0
    assert len(set(pids)) == 1 and pids[0] in server.session_ids()  # one session throughout, back in the pool
