"""What the deployment apps (WSGI, ASGI views and Celery tasks) do with the database.

Each unit of work says which server session served it (backend PID or
connection id) and over which span of ``time.monotonic()`` (one clock for
every process of the machine) it surely held it, so a test can prove that no
session served two units at once. The ``marker`` written into the session at
the start must read back unchanged at the end.
"""

from __future__ import annotations

import os
import time
from typing import Any

from django.db import connection, transaction

import djpool.core


def session_id() -> int:
    """The server session of this thread's connection (PostgreSQL backend PID, MySQL connection id)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()" if connection.vendor == "postgresql" else "SELECT CONNECTION_ID()")
        return int(cursor.fetchone()[0])


def set_marker(marker: str) -> int:
    """Write ``marker`` into the session (for this transaction on PostgreSQL); return the session id."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT set_config('djpool.marker', %s, true), pg_backend_pid()", [marker])
        else:
            cursor.execute("SET @djpool_marker = %s", [marker])
            cursor.execute("SELECT NULL, CONNECTION_ID()")
        return int(cursor.fetchone()[1])


def read_marker() -> tuple[int, str]:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_backend_pid(), current_setting('djpool.marker', true)")
        else:
            cursor.execute("SELECT CONNECTION_ID(), @djpool_marker")
        pid, marker = cursor.fetchone()
        return int(pid), marker.decode() if isinstance(marker, bytes) else marker


def server_sleep(seconds: float) -> None:
    """Wait ``seconds`` in a query: the driver waits for the server's answer.

    Under gevent only a green driver (psycopg 3, psycopg2 with psycogreen,
    PyMySQL) lets the worker's other greenlets run meanwhile; a blocking one
    (mysqlclient, psycopg2 alone) stops them all.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(%s)" if connection.vendor == "postgresql" else "SELECT SLEEP(%s)", [seconds])
        cursor.fetchall()


def hold(marker: str, seconds: float) -> dict[str, Any]:
    """One transaction holding a connection ``seconds`` long, waiting on the server.

    In both pool modes the transaction holds one connection throughout.
    """
    started = time.monotonic()
    with transaction.atomic():
        first = set_marker(marker)
        held_from = time.monotonic()
        server_sleep(seconds)
        held_until = time.monotonic()
        second, seen = read_marker()
    return {
        "pids": [first, second],
        "marker": seen,
        "held": [held_from, held_until],
        "waited": held_from - started,
        "worker": os.getpid(),
    }


def pool_stats() -> dict[str, Any]:
    return {"worker": os.getpid(), **djpool.core.stats("default")}


def make_psycopg2_green() -> None:
    """Under gevent, psycopg2 waits through gevent's hub only with psycogreen's wait callback.

    gunicorn's gevent worker and ``celery -P gevent`` monkey-patch before
    this module is imported; psycopg 3 and PyMySQL then need nothing more.
    """
    try:
        from gevent import monkey
    except ImportError:
        return
    if not monkey.is_module_patched("socket"):
        return
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return
    from psycogreen.gevent import patch_psycopg

    patch_psycopg()
