"""Graceful shutdown: dispose() and interpreter exit close idle connections only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from django.db import connections

from djpool.core import dispose, stats

pytestmark = pytest.mark.server_backed


def backend_pid(connection) -> int:
    from tests.conftest import SERVER

    with connection.cursor() as cursor:
        cursor.execute(SERVER.pid_query)
        return int(cursor.fetchone()[0])


def gone(server, pid: int, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while pid in server.session_ids():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_dispose_closes_idle_connections_and_leaves_checked_out_ones(make_alias, server):
    alias = make_alias({"POOL_SIZE": 2, "MAX_OVERFLOW": 0})
    idle_pid: list[int] = []

    def request() -> None:
        try:
            idle_pid.append(backend_pid(connections[alias]))
        finally:
            connections[alias].close()

    held_pid = backend_pid(connections[alias])  # held by this thread's "request"
    thread = threading.Thread(target=request)
    thread.start()
    thread.join(10)
    assert stats(alias)["idle"] == 1

    assert dispose(alias) == 1
    assert gone(server, idle_pid[0])
    # The running request's connection was not touched: same session, still usable.
    assert backend_pid(connections[alias]) == held_pid
    connections[alias].close()
    assert held_pid in server.session_ids()
    assert stats(alias)["idle"] == 1


EXIT_SCRIPT = textwrap.dedent(
    """
    import atexit, json, sys, threading, time

    report = {}

    def after_djpool():
        # Registered before djpool is imported, so atexit runs it after djpool's handler.
        from tests.servers import make_server
        server = make_server()
        server.database = sys.argv[1]
        deadline = time.monotonic() + 5
        while report["idle_pid"] in server.session_ids() and time.monotonic() < deadline:
            time.sleep(0.02)
        sessions = server.session_ids()
        report["idle_closed"] = report["idle_pid"] not in sessions
        report["held_open"] = report["held_pid"] in sessions
        cursor = held_connection[0].cursor()
        cursor.execute(server.pid_query)
        report["held_usable"] = int(cursor.fetchone()[0]) == report["held_pid"]
        print(json.dumps(report), flush=True)

    atexit.register(after_djpool)

    import django
    from django.conf import settings
    from tests.servers import make_server

    server = make_server()
    server.database = sys.argv[1]
    settings.configure(DATABASES={"default": server.settings(POOL_OPTIONS={"POOL_SIZE": 2})}, USE_TZ=True)
    django.setup()
    from django.db import connections

    def pid():
        with connections["default"].cursor() as cursor:
            cursor.execute(server.pid_query)
            return int(cursor.fetchone()[0])

    held_connection = []
    taken = threading.Event()

    def running_request():
        report["held_pid"] = pid()
        held_connection.append(connections["default"].connection)
        taken.set()
        time.sleep(3600)  # still running when the interpreter exits

    threading.Thread(target=running_request, daemon=True).start()
    taken.wait(10)
    report["idle_pid"] = pid()
    connections["default"].close()  # back to the pool: idle
    """
)


def test_interpreter_exit_closes_idle_connections_only(server, tmp_path):
    script = tmp_path / "exit_script.py"
    script.write_text(EXIT_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, str(script), server.database], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["idle_pid"] != report["held_pid"]
    assert report == {**report, "idle_closed": True, "held_open": True, "held_usable": True}
    assert gone(server, report["held_pid"])  # and the server lets go of it once the process is gone
