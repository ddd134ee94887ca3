"""A small Django app served by 32 threads through djpool, against a local server.

    hatch run demo:postgresql      # or: hatch run demo:mysql

It runs real WSGI request cycles (Django's WSGIHandler, as gunicorn calls
it: request_started, a view that reads and writes through the ORM, and
request_finished when the server closes the response) and prints what the
pool did and what the database server saw. (Django's test Client would not
do: it keeps connections open across requests on purpose.)

The server may be shared with other programs, so the demo counts only its own
sessions: the server session ids (PostgreSQL backend PIDs, MariaDB connection
ids) of the connections its pool opened, looked up in pg_stat_activity or
information_schema.PROCESSLIST by a separate watcher connection.
"""

from __future__ import annotations

import sys
import threading
import time

import django
from django.conf import settings
from django.urls import path

VENDOR = sys.argv[1] if len(sys.argv) > 1 else "postgresql"
SERVERS = {
    "postgresql": {"ENGINE": "djpool.backends.postgresql", "NAME": "test", "USER": "postgres", "HOST": "127.0.0.1", "PORT": 5432},
    "mysql": {"ENGINE": "djpool.backends.mysql", "NAME": "test", "USER": "root", "HOST": "127.0.0.1", "PORT": 3306},
}
if VENDOR not in SERVERS:
    sys.exit(f"usage: demo.py [postgresql|mysql]; got {VENDOR!r}")

settings.configure(
    DEBUG=False,
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["testserver"],
    DATABASES={"default": {**SERVERS[VENDOR], "POOL_OPTIONS": {"POOL_SIZE": 4, "MAX_OVERFLOW": 2, "TIMEOUT": 30}}},
    INSTALLED_APPS=["django.contrib.contenttypes"],
    USE_TZ=True,
)
django.setup()

from django.db import connection, models  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.core.handlers.wsgi import WSGIHandler  # noqa: E402
from django.test import RequestFactory  # noqa: E402

import djpool.core  # noqa: E402
from djpool.core import signals  # noqa: E402

#: Server session ids of the connections the pool opened (read from the
#: driver, without a query): the demo's own sessions, whatever else runs there.
OPENED_SESSIONS: set[int] = set()


def session_id(dbapi_connection) -> int:
    """The server's id for a driver connection: psycopg, psycopg2 or mysqlclient."""
    if VENDOR == "mysql":
        return dbapi_connection.thread_id()
    info = getattr(dbapi_connection, "info", None)
    backend_pid = getattr(info, "backend_pid", None)  # psycopg 3
    return backend_pid if backend_pid is not None else dbapi_connection.get_backend_pid()  # psycopg2


def remember_session(sender, dbapi_connection, **kwargs) -> None:
    OPENED_SESSIONS.add(session_id(dbapi_connection))


signals.connection_opened.connect(remember_session)


class Visit(models.Model):
    thread = models.IntegerField()
    backend_pid = models.IntegerField()

    class Meta:
        app_label = "contenttypes"
        db_table = "djpool_demo_visit"


def view(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()" if connection.vendor == "postgresql" else "SELECT CONNECTION_ID()")
        pid = cursor.fetchone()[0]
    Visit.objects.create(thread=int(request.GET["t"]), backend_pid=pid)
    return JsonResponse({"pid": pid, "visits": Visit.objects.count()})


urlpatterns = [path("", view)]


def main() -> None:
    with connection.schema_editor() as editor:
        editor.execute(editor.sql_delete_table % {"table": editor.quote_name(Visit._meta.db_table)}) if Visit._meta.db_table in connection.introspection.table_names() else None
        editor.create_model(Visit)
    connection.close()

    threads, requests_per_thread = 32, 25
    peak = [0]

    # The watcher's own connection, outside the pool (so not counted).
    from django.db import connections

    probe = connections.create_connection("default")
    watcher_connection = probe.djpool_open_dbapi_connection(probe.get_connection_params())
    if VENDOR == "mysql":
        watcher_connection.autocommit(True)
    else:
        watcher_connection.autocommit = True  # each count sees the server now, not a snapshot

    def count_own_sessions() -> int:
        """How many of the pool's sessions the server lists now."""
        ids = sorted(OPENED_SESSIONS)
        if not ids:
            return 0
        cursor = watcher_connection.cursor()
        try:
            if VENDOR == "postgresql":
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", [ids])
            else:
                cursor.execute(
                    f"SELECT count(*) FROM information_schema.processlist WHERE id IN ({', '.join(['%s'] * len(ids))})",
                    ids,
                )
            return int(cursor.fetchone()[0])
        finally:
            cursor.close()

    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], count_own_sessions())
            time.sleep(0.05)

    handler = WSGIHandler()

    def client_thread(number: int) -> None:
        environ = RequestFactory()._base_environ(PATH_INFO="/", QUERY_STRING=f"t={number}")
        statuses = []
        for _ in range(requests_per_thread):
            response = handler(dict(environ, **{"wsgi.input": environ["wsgi.input"]}), lambda status, headers: statuses.append(status))
            response.close()  # what the WSGI server does; sends request_finished
        assert statuses == ["200 OK"] * requests_per_thread, statuses[:3]

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.perf_counter()
    workers = [threading.Thread(target=client_thread, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    stop.set()
    watcher.join()

    pids = set(Visit.objects.values_list("backend_pid", flat=True))
    rows = Visit.objects.count()
    title = f"{connection.display_name} {'.'.join(map(str, connection.get_database_version()))}"
    with connection.schema_editor() as editor:
        editor.delete_model(Visit)
    connection.close()  # the main thread gives its connection back too

    stats = djpool.core.stats("default")
    print(f"djpool demo on {title}")
    print(f"  {threads} threads x {requests_per_thread} requests = {threads * requests_per_thread} requests in {elapsed:.2f} s")
    print(f"  rows written: {rows}, served by {len(pids)} server sessions")
    print(f"  server sessions opened by this pool: {len(OPENED_SESSIONS)}")
    print(f"  peak of them open on the server at once: {peak[0]} (limit POOL_SIZE 4 + MAX_OVERFLOW 2 = 6)")
    print("  djpool.core.stats('default'):")
    for key, value in stats.items():
        print(f"    {key:16} {value:.4f}" if isinstance(value, float) else f"    {key:16} {value}")
    djpool.core.dispose()
    deadline = time.monotonic() + 5  # the server lists a closed session until its process ends
    while (still_open := count_own_sessions()) and time.monotonic() < deadline:
        time.sleep(0.05)
    print(f"  after djpool.core.dispose(): {still_open} of them still open on the server")
    watcher_connection.close()


if __name__ == "__main__":
    main()
