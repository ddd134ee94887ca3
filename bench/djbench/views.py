"""The views the gunicorn runs request: an ORM read, a bare ``SELECT 1``, a
request that spends most of its time away from the database, and a ping."""

from __future__ import annotations

import time

from django.db import connection
from django.http import HttpRequest, HttpResponse

from djbench.models import Item


def orm_read(request: HttpRequest) -> HttpResponse:
    return HttpResponse(Item.objects.get(pk=1).name)


def select_one(request: HttpRequest) -> HttpResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        return HttpResponse(str(cursor.fetchone()[0]))


def ping(request: HttpRequest) -> HttpResponse:
    """No database: tells that a worker serves, without opening a connection."""
    return HttpResponse("ok")


def _select_one() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        return int(cursor.fetchone()[0])


def work(request: HttpRequest) -> HttpResponse:
    """Query, ``ms`` milliseconds of other work (default 50), query.

    The other work is a ``time.sleep``, as a call to an external API is: the
    thread waits without the GIL and without needing the database. In session
    mode the request holds its connection throughout; in transaction mode only
    while each query runs, which is what the fixed-budget phase measures.
    """
    first = _select_one()
    time.sleep(float(request.GET.get("ms", "50")) / 1000)
    return HttpResponse(str(first + _select_one()))
