"""One view for the tenants tests: what the request saw, as JSON."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import path


def where_am_i(request: HttpRequest) -> JsonResponse:
    from tests.tenants.notes.models import Note

    # Several statements per request: with POOL_MODE="transaction" each may
    # run on a connection another tenant used in between.
    seen = []
    for _ in range(3):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid(), current_schema()")
            pid, schema = cursor.fetchone()
        notes = sorted(Note.objects.values_list("text", flat=True))
        seen.append({"pid": pid, "schema": schema, "notes": notes})
    return JsonResponse({"tenant": request.tenant.schema_name, "seen": seen})


urlpatterns = [path("", where_am_i)]
