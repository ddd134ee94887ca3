"""One Django app for every deployment shape: WSGI (gunicorn, uWSGI), ASGI (uvicorn, daphne), Celery.

Settings: :mod:`tests.reliability.server_settings` (the database under test
comes as JSON in ``DJPOOL_REL_DATABASE``), with ``tests.testapp`` for the
``Item`` model (its table is in the test database the pytest process made).

Each view that touches the database says which server session served it
(backend PID or connection id) and over which span of ``time.monotonic()``
(one clock for every process of the machine) it surely held it, so the test
can prove that no session served two requests at once. The ``marker`` put
into the session at the start must read back unchanged at the end.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from tests.reliability import server_settings


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


make_psycopg2_green()
server_settings.configure(__name__, installed_apps=["tests.testapp"])

from asgiref.sync import sync_to_async  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse  # noqa: E402
from django.urls import path  # noqa: E402

import djpool.core  # noqa: E402
from djpool.core import PoolTimeout  # noqa: E402
from tests.testapp.models import Item  # noqa: E402


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


def hold(marker: str, seconds: float) -> dict[str, Any]:
    """One transaction holding a connection ``seconds`` long (``time.sleep``: gevent patches it).

    In both pool modes the transaction holds one connection throughout.
    """
    started = time.monotonic()
    with transaction.atomic():
        first = set_marker(marker)
        held_from = time.monotonic()
        time.sleep(seconds)
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


# ##### WSGI views #####


def hold_view(request: HttpRequest) -> JsonResponse:
    started = time.monotonic()
    try:
        return JsonResponse(hold(request.GET["m"], float(request.GET.get("ms", "20")) / 1000))
    except PoolTimeout:
        # The pool's TIMEOUT ran out: the test checks how long the wait was.
        return JsonResponse({"timeout": time.monotonic() - started, "worker": os.getpid()}, status=503)


def stats_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse(pool_stats())


# ##### ASGI views: the async ORM and sync_to_async #####


async def amarker_view(request: HttpRequest) -> JsonResponse:
    """sync_to_async around a whole transaction, the event loop free in between."""
    answer = await sync_to_async(hold)(request.GET["m"], float(request.GET.get("ms", "10")) / 1000)
    await asyncio.sleep(0.005)
    return JsonResponse(answer)


async def aorm_view(request: HttpRequest) -> JsonResponse:
    """acreate, aget, acount, adelete: each query takes a connection and gives it back."""
    name = f"dep-{request.GET['m']}"
    item = await Item.objects.acreate(name=name, value=len(name))
    await asyncio.sleep(0.005)
    again = await Item.objects.aget(pk=item.pk)
    seeds = await Item.objects.filter(name__startswith="seed-").acount()
    await Item.objects.filter(pk=item.pk).adelete()
    return JsonResponse({"name": again.name, "seeds": seeds, "worker": os.getpid()})


async def astream_view(request: HttpRequest) -> StreamingHttpResponse:
    """A streaming response fed by ``aiterator()``: the connection is held while the body is sent."""

    async def rows() -> Any:
        yield b"["
        first = True
        async for item in Item.objects.filter(name__startswith="seed-").order_by("name").aiterator(chunk_size=2):
            yield (b"" if first else b",") + b'"' + item.name.encode() + b'"'
            first = False
            await asyncio.sleep(0.002)
        yield b"]"

    return StreamingHttpResponse(rows(), content_type="application/json")


async def astats_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse(pool_stats())


urlpatterns = [
    path("hold", hold_view),
    path("stats", stats_view),
    path("amarker", amarker_view),
    path("aorm", aorm_view),
    path("astream", astream_view),
    path("astats", astats_view),
]

application = get_wsgi_application()
asgi_application = get_asgi_application()
