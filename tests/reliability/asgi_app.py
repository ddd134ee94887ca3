"""A Django ASGI app with async views, for a real ASGI server (uvicorn) in the ASGI test.

Settings: :mod:`tests.reliability.server_settings`. The
``marker`` view puts a per-request value into the database session, yields
to the event loop, and reads it back: if another request had used the same
connection meanwhile, the value or the backend PID would differ.
"""

from __future__ import annotations

import asyncio
import faulthandler
import signal
import time
from typing import Any

from tests.reliability import server_settings

# The test sends SIGUSR1 when a request hangs: every thread's stack goes to stderr.
faulthandler.register(signal.SIGUSR1, all_threads=True)

server_settings.configure(__name__)

from asgiref.sync import sync_to_async  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.db import connection  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402

import djpool.core  # noqa: E402


def _set_marker(marker: str) -> int:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT set_config('djpool.marker', %s, false)", [marker])
            cursor.execute("SELECT pg_backend_pid()")
        else:
            cursor.execute("SET @djpool_marker = %s", [marker])
            cursor.execute("SELECT CONNECTION_ID()")
        return int(cursor.fetchone()[0])


def _read_marker() -> tuple[int, str]:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_backend_pid(), current_setting('djpool.marker', true)")
        else:
            cursor.execute("SELECT CONNECTION_ID(), @djpool_marker")
        pid, marker = cursor.fetchone()
        return int(pid), marker.decode() if isinstance(marker, bytes) else marker


async def marker_view(request: Any) -> JsonResponse:
    marker = request.GET["m"]
    first_pid = await sync_to_async(_set_marker)(marker)
    # Between these two instants this request surely holds the connection.
    held_from = time.monotonic()
    await asyncio.sleep(0.01)  # let other requests run in between
    held_until = time.monotonic()
    second_pid, seen = await sync_to_async(_read_marker)()
    return JsonResponse({"pids": [first_pid, second_pid], "marker": seen, "held": [held_from, held_until]})


async def stats_view(request: Any) -> JsonResponse:
    return JsonResponse(djpool.core.stats("default"))


urlpatterns = [path("marker", marker_view), path("stats", stats_view)]

application = get_asgi_application()
