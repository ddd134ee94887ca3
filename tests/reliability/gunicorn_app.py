"""A Django app for ``gunicorn --preload``: the master holds pooled connections when it forks.

Settings come from the environment: ``DJPOOL_REL_DATABASE`` (a JSON
DATABASES entry) and ``DJPOOL_REL_REPORT`` (a file the master appends JSON
lines to). At import, which ``--preload`` does in the master, this thread
keeps one connection checked out and another thread leaves one idle in the
pool; ``gunicorn_conf.child_exit`` uses both again after a worker exits.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

from tests.reliability import server_settings

server_settings.configure(__name__)

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.db import connections  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402


def backend_pid() -> int:
    conn = connections["default"]
    with conn.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()" if conn.vendor == "postgresql" else "SELECT CONNECTION_ID()")
        return int(cursor.fetchone()[0])


def idle_pid() -> int:
    """Check out a connection in another thread (the idle one), return its PID, give it back."""
    result: list[int] = []

    def run() -> None:
        try:
            result.append(backend_pid())
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    return result[0]


def report(**entry: Any) -> None:
    with open(os.environ["DJPOOL_REL_REPORT"], "a") as file:
        file.write(json.dumps({"process": os.getpid(), **entry}) + "\n")


def pid_view(request: Any) -> JsonResponse:
    return JsonResponse({"pid": backend_pid(), "worker": os.getpid()})


urlpatterns = [path("pid", pid_view)]

application = get_wsgi_application()

# The master's connections at fork time: one checked out (held by this
# thread's wrapper, never given back), one idle in the pool.
report(event="preload", held=backend_pid(), idle=idle_pid())
