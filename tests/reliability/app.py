"""Views for the request-cycle tests, and a WSGI driver that calls Django as a server would.

Each view takes the database alias from ``?db=`` and fails in its own way,
so one load run covers every place a request can raise. The driver calls
``WSGIHandler`` and closes the response, which sends ``request_finished``
and gives the connection back: what gunicorn does, and what Django's test
Client deliberately does not.
"""

from __future__ import annotations

from typing import Any

from django.db import connections, transaction
from django.http import HttpResponse, JsonResponse
from django.urls import path

from tests.testapp.models import Item


class Planned(Exception):
    """The error a view raises on purpose."""


def _alias(request: Any) -> str:
    return request.GET["db"]


def _name(request: Any, kind: str) -> str:
    return f"{kind}-{request.GET['n']}"


def commit(request: Any) -> HttpResponse:
    """A committed write: must be in the database afterwards."""
    db = _alias(request)
    with transaction.atomic(using=db):
        Item.objects.using(db).create(name=_name(request, "ok"))
    return HttpResponse("ok")


def raise_in_atomic(request: Any) -> HttpResponse:
    db = _alias(request)
    with transaction.atomic(using=db):
        Item.objects.using(db).create(name=_name(request, "rb-atomic"))
        raise Planned("in atomic()")


def raise_with_open_transaction(request: Any) -> HttpResponse:
    """Autocommit off, a write, then an error: the pool must roll it back."""
    db = _alias(request)
    transaction.set_autocommit(False, using=db)
    Item.objects.using(db).create(name=_name(request, "rb-open"))
    raise Planned("with a transaction open")


def raise_in_on_commit(request: Any) -> HttpResponse:
    """The write commits, then its on_commit hook raises."""
    db = _alias(request)

    def hook() -> None:
        raise Planned("in on_commit")

    with transaction.atomic(using=db):
        Item.objects.using(db).create(name=_name(request, "oc"))
        transaction.on_commit(hook, using=db)
    return HttpResponse("not reached")


def raise_while_iterating(request: Any) -> HttpResponse:
    """A server-side cursor (PostgreSQL) or streamed result, left open by an error."""
    db = _alias(request)
    with transaction.atomic(using=db):
        Item.objects.using(db).create(name=_name(request, "rb-cursor"))
        for _ in Item.objects.using(db).all().iterator(chunk_size=1):
            raise Planned("while iterating")
    return HttpResponse("empty table")


def raise_while_iterating_outside_atomic(request: Any) -> HttpResponse:
    db = _alias(request)
    for _ in Item.objects.using(db).all().iterator(chunk_size=1):
        raise Planned("while iterating, autocommit")
    return HttpResponse("empty table")


def raise_holding_an_iterator(request: Any) -> HttpResponse:
    """The open server-side cursor stays referenced from this frame (and so from the traceback)."""
    db = _alias(request)
    rows = Item.objects.using(db).all().iterator(chunk_size=1)
    next(rows)
    raise Planned("holding a half-read iterator")


def raise_holding_an_iterator_in_atomic(request: Any) -> HttpResponse:
    db = _alias(request)
    with transaction.atomic(using=db):
        rows = Item.objects.using(db).all().iterator(chunk_size=1)
        next(rows)
        raise Planned("holding a half-read iterator in atomic()")


def database_error(request: Any) -> HttpResponse:
    """An error from the server itself, inside a transaction that wrote."""
    db = _alias(request)
    with transaction.atomic(using=db):
        Item.objects.using(db).create(name=_name(request, "rb-dberror"))
        with connections[db].cursor() as cursor:
            cursor.execute("SELECT * FROM djpool_no_such_table")
    return HttpResponse("not reached")


def backend_pid(request: Any) -> JsonResponse:
    db = _alias(request)
    conn = connections[db]
    with conn.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()" if conn.vendor == "postgresql" else "SELECT CONNECTION_ID()")
        pid = int(cursor.fetchone()[0])
    return JsonResponse({"pid": pid})


def server_error(request: Any) -> HttpResponse:
    return HttpResponse("error", status=500)


handler500 = server_error

urlpatterns = [
    path("commit", commit),
    path("atomic", raise_in_atomic),
    path("open", raise_with_open_transaction),
    path("on_commit", raise_in_on_commit),
    path("iterate", raise_while_iterating),
    path("iterate_autocommit", raise_while_iterating_outside_atomic),
    path("dberror", database_error),
    path("iterator_kept", raise_holding_an_iterator),
    path("iterator_kept_atomic", raise_holding_an_iterator_in_atomic),
    path("pid", backend_pid),
]


class WSGIClient:
    """Drive ``WSGIHandler`` like a WSGI server: one full request cycle per call."""

    def __init__(self) -> None:
        from django.core.handlers.wsgi import WSGIHandler
        from django.test import RequestFactory

        self.handler = WSGIHandler()
        self._environ = RequestFactory()._base_environ()

    def get(self, route: str, **query: Any) -> tuple[int, bytes]:
        from io import BytesIO
        from urllib.parse import urlencode

        environ = dict(self._environ, PATH_INFO=f"/{route}", QUERY_STRING=urlencode(query))
        environ["wsgi.input"] = BytesIO()
        statuses: list[str] = []
        response = self.handler(environ, lambda status, headers, exc_info=None: statuses.append(status))
        try:
            body = b"".join(response)
        finally:
            response.close()  # sends request_finished: the connection goes back
        return int(statuses[0].split()[0]), body
