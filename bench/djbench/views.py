"""The two views the gunicorn run requests: an ORM read and a bare ``SELECT 1``."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, HttpResponse

from djbench.models import Item


def orm_read(request: HttpRequest) -> HttpResponse:
    return HttpResponse(Item.objects.get(pk=1).name)


def select_one(request: HttpRequest) -> HttpResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        return HttpResponse(str(cursor.fetchone()[0]))
