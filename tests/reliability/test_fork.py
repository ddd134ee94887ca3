"""Fork safety: a child forked while the parent holds pooled connections (idle and checked out).

The child must open its own sessions (other server-side PIDs), never touch
the parent's sockets, and closing everything in the child must leave the
parent's sessions open and working. Forks come from ``os.fork``,
``multiprocessing`` (fork start method) and ``gunicorn --preload``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

from djpool.core import stats
from tests.conftest import run_in_threads
from tests.reliability import forkwork
from tests.reliability.conftest import backend_pid
from tests.reliability.privateserver import free_port

pytestmark = [
    pytest.mark.server_backed,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def parent_holding(make_alias: Any) -> Iterator[tuple[str, int, int]]:
    """An alias whose pool, in this process, has one connection checked out and one idle."""
    alias = make_alias({"POOL_SIZE": 2, "MAX_OVERFLOW": 0, "TIMEOUT": 5})
    held = backend_pid(connections[alias])  # stays checked out by this thread's wrapper
    (idle,) = run_in_threads(1, lambda i: backend_pid(connections[alias]))
    assert held != idle
    assert stats(alias)["checked_out"] == 1 and stats(alias)["idle"] == 1
    yield alias, held, idle
    connections[alias].close()


def assert_parent_unharmed(alias: str, held: int, idle: int, child_pids: list[int], server: Any) -> None:
    assert len(child_pids) >= 3 and len(set(child_pids)) >= 2, child_pids
    assert not set(child_pids) & {held, idle}, "the child used a connection of the parent"
    sessions = server.session_ids()
    assert {held, idle} <= sessions, "closing in the child closed the parent's sessions"
    assert not set(child_pids) & sessions, "the child's own sessions outlived it"
    # The parent's checked-out connection still works, and so does the idle one.
    assert backend_pid(connections[alias]) == held
    assert run_in_threads(1, lambda i: backend_pid(connections[alias])) == [idle]
    assert stats(alias)["connects"] == 2


def test_os_fork(parent_holding, server):
    alias, held, idle = parent_holding
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        status = 0
        try:
            os.close(read_end)
            result = forkwork.child_work(alias)
        except BaseException as error:  # noqa: BLE001
            result, status = {"error": repr(error)}, 1
        try:
            os.write(write_end, json.dumps(result).encode())
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        result = json.loads(pipe.read() or "{}")
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and "error" not in result, result
    assert result["pools_after_fork"] == 0
    assert_parent_unharmed(alias, held, idle, result["pids"], server)


def test_multiprocessing_fork(parent_holding, server):
    alias, held, idle = parent_holding
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    children = [context.Process(target=forkwork.child_main, args=(alias, queue)) for _ in range(2)]
    for child in children:
        child.start()
    results = [queue.get(timeout=60) for _ in children]
    for child in children:
        child.join(60)
        assert child.exitcode == 0
    assert all("error" not in result for result in results), results
    child_pids = [pid for result in results for pid in result["pids"]]
    assert_parent_unharmed(alias, held, idle, child_pids, server)


def _read_report(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _wait_for(condition: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


@pytest.mark.slow
def test_gunicorn_preload(server, tmp_path):
    pytest.importorskip("gunicorn")
    port = free_port()
    report = tmp_path / "report.jsonl"
    database = server.settings(POOL_OPTIONS={"POOL_SIZE": 2, "MAX_OVERFLOW": 0, "TIMEOUT": 10})
    env = dict(
        os.environ,
        DJPOOL_REL_DATABASE=json.dumps(database),
        DJPOOL_REL_REPORT=str(report),
        PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    master = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--preload", "--workers", "2", "--bind", f"127.0.0.1:{port}",
         "--config", "python:tests.reliability.gunicorn_conf", "--graceful-timeout", "5",
         "--log-level", "warning", "tests.reliability.gunicorn_app:application"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        preload = _wait_for(lambda: [e for e in _read_report(report) if e["event"] == "preload"])[0]
        assert preload["process"] == master.pid

        def get(_: int) -> dict[str, Any]:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/pid", timeout=10) as response:
                        return json.loads(response.read())
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)

        with ThreadPoolExecutor(4) as executor:
            answers = list(executor.map(get, range(40)))
        workers = {answer["worker"] for answer in answers}
        child_pids = {answer["pid"] for answer in answers}
        assert master.pid not in workers
        assert not child_pids & {preload["held"], preload["idle"]}, "a worker used the master's connection"
        assert len(child_pids) <= 2 * len(workers)

        # A worker exits (and finalizes whatever it inherited); the master's
        # connections must still be open on the server and answer it.
        victim = next(iter(workers))
        os.kill(victim, signal.SIGTERM)
        after = _wait_for(lambda: [e for e in _read_report(report) if e["event"] == "child_exit"])[0]
        assert after["worker"] == victim
        assert "error" not in after, after
        assert (after["held"], after["idle"]) == (preload["held"], preload["idle"])
        assert {preload["held"], preload["idle"]} <= server.session_ids()
    finally:
        master.send_signal(signal.SIGTERM)
        try:
            _, stderr = master.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            master.kill()
            _, stderr = master.communicate()
    assert master.returncode == 0, stderr.decode()[-2000:]
    # Everything the master and its workers opened is closed once they are gone.
    _wait_for(lambda: not server.session_ids() & ({preload["held"], preload["idle"]} | child_pids), timeout=10)
