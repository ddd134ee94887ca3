"""One Django app for every deployment shape: WSGI (gunicorn, uWSGI), ASGI (uvicorn, daphne), Celery.

Settings: :mod:`tests.reliability.server_settings` (the database under test
comes as JSON in ``DJPOOL_REL_DATABASE``), with ``tests.testapp`` for the
``Item`` model (its table is in the test database the pytest process made).

The database work itself, and what each answer reports, is in
:mod:`tests.deployment.work`.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from tests.deployment.work import make_psycopg2_green
from tests.reliability import server_settings

make_psycopg2_green()
server_settings.configure(__name__, installed_apps=["tests.testapp"])

from asgiref.sync import sync_to_async  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse  # noqa: E402
from django.urls import path  # noqa: E402

from djpool.core import PoolTimeout  # noqa: E402
from tests.deployment.work import hold, pool_stats  # noqa: E402
from tests.testapp.models import Item  # noqa: E402


# ##### WSGI views #####


def hold_view(request: HttpRequest) -> JsonResponse:
    started = time.monotonic()
    try:
        return JsonResponse(hold(request.GET["m"], float(request.GET.get("ms", "20")) / 1000))
    except PoolTimeout:
        # The pool's TIMEOUT ran out: the test checks how long the wait was.
        return JsonResponse({"timeout": time.monotonic() - started, "worker": os.getpid()}, status=503)


def stats_view(request: HttpRequest) -> JsonResponse:
    """The pool's stats; ``?linger_ms=`` keeps the worker busy after reading them (at most 2 s).

    A sync worker busy lingering cannot accept the next request, so
    concurrent asks reach every worker instead of whichever wins the
    accept race each time.
    """
    answer = pool_stats()
    time.sleep(min(float(request.GET.get("linger_ms", "0")), 2000) / 1000)
    return JsonResponse(answer)


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
