"""django-tenants through the pool: no request ever runs in another tenant's schema.

One pooled connection is shared by several threads serving alternating
requests for tenant A, tenant B and the public schema, through Django's
WSGIHandler and django-tenants' own middleware. Every statement reports the
server's ``current_schema()`` and backend PID, and every ORM read returns the
notes stored in one schema, so a request that reached another tenant's schema
shows up as foreign rows.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.tenants.conftest import POOL_OPTIONS, TENANTS

DOMAIN_TO_SCHEMA = {domain: schema for schema, (domain, _) in TENANTS.items()}


@pytest.fixture
def pool_options() -> Iterator[Any]:
    """Set the default alias's POOL_OPTIONS for the threads a test starts; restore after."""
    from django.db import connections

    from djpool.core import registry

    def apply(**options: Any) -> None:
        connections.settings["default"]["POOL_OPTIONS"] = {**POOL_OPTIONS, **options}
        connections.close_all()
        registry.close_all()

    yield apply
    apply()


def serve(hosts: list[str]) -> list[dict[str, Any]]:
    """Run one WSGI request per host, as a WSGI server does, and return the JSON bodies."""
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import RequestFactory

    handler = WSGIHandler()
    bodies = []
    for host in hosts:
        environ = RequestFactory()._base_environ(PATH_INFO="/", HTTP_HOST=host)
        statuses: list[str] = []
        response = handler(environ, lambda status, headers, statuses=statuses: statuses.append(status))
        try:
            body = b"".join(response)
        finally:
            response.close()  # sends request_finished: Django closes its connection
        assert statuses == ["200 OK"], (host, statuses, body[:300])
        bodies.append(json.loads(body))
    return bodies


def serve_in_threads(threads: int, requests_per_thread: int) -> list[tuple[str, dict[str, Any]]]:
    domains = [domain for domain, _ in TENANTS.values()]
    results: list[tuple[str, dict[str, Any]]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(number: int) -> None:
        # Each thread alternates tenants, starting from a different one.
        hosts = list(itertools.islice(itertools.cycle(domains[number % 3 :] + domains[: number % 3]), requests_per_thread))
        try:
            bodies = serve(hosts)
        except BaseException as error:  # noqa: BLE001 - re-raised below
            errors.append(error)
            return
        with lock:
            results.extend(zip(hosts, bodies))

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    if errors:
        raise errors[0]
    return results


def assert_isolated(results: list[tuple[str, dict[str, Any]]]) -> set[int]:
    pids = set()
    for host, body in results:
        schema = DOMAIN_TO_SCHEMA[host]
        expected = sorted(TENANTS[schema][1])
        assert body["tenant"] == schema
        for seen in body["seen"]:
            assert (seen["schema"], seen["notes"]) == (schema, expected), (host, body)
            pids.add(seen["pid"])
    return pids


@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
@pytest.mark.parametrize("reset_on_return", ["rollback", "full"])
@pytest.mark.parametrize("limit_set_calls", [True, False], ids=["limit_set_calls", "set_every_cursor"])
def test_alternating_tenants_on_one_pooled_connection(pool_options, limit_set_calls, reset_on_return, pool_mode):
    from django.test import override_settings

    from tests.tenants.conftest import DATABASE
    from tests.tenants.conftest import SERVER as server

    pool_options(RESET_ON_RETURN=reset_on_return, POOL_MODE=pool_mode)
    with override_settings(TENANT_LIMIT_SET_CALLS=limit_set_calls):
        results = serve_in_threads(threads=4, requests_per_thread=12)
        # The pool's one connection is still open and is the only session.
        sessions = server.session_ids(DATABASE)

    assert len(results) == 48
    pids = assert_isolated(results)
    assert len(pids) == 1, f"a pool of one connection used {len(pids)} server sessions"
    assert sessions == pids


@pytest.mark.parametrize("limit_set_calls", [True, False], ids=["limit_set_calls", "set_every_cursor"])
def test_a_tenant_wrapper_never_trusts_the_search_path_of_a_connection_it_gave_back(pool_options, limit_set_calls):
    """Deterministic interleaving: A queries, B takes the same connection, A queries again.

    With POOL_MODE="transaction" the connection goes back after each statement
    without close(), so django-tenants' own reset on close() does not run.
    """
    from django.db import connections
    from django.test import override_settings

    from tests.tenants.customers.models import Client
    from tests.tenants.notes.models import Note

    pool_options(POOL_MODE="transaction")
    tenant_a = Client.objects.get(schema_name="tenant_a")
    tenant_b = Client.objects.get(schema_name="tenant_b")
    connections.close_all()
    with override_settings(TENANT_LIMIT_SET_CALLS=limit_set_calls):
        wrapper_a = connections.create_connection("default")
        wrapper_b = connections.create_connection("default")
        wrapper_a.set_tenant(tenant_a)
        wrapper_b.set_tenant(tenant_b)

        def notes(wrapper: Any) -> tuple[int, list[str]]:
            with wrapper.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid(), current_schema()")
                pid, schema = cursor.fetchone()
                cursor.execute(f"SELECT text FROM {Note._meta.db_table} ORDER BY text")
                return pid, [schema, *(row[0] for row in cursor.fetchall())]

        try:
            pid_a1, seen_a1 = notes(wrapper_a)
            pid_b, seen_b = notes(wrapper_b)
            pid_a2, seen_a2 = notes(wrapper_a)
        finally:
            wrapper_a.close()
            wrapper_b.close()
    assert pid_a1 == pid_b == pid_a2  # one pooled connection, taken in turn
    assert seen_a1 == seen_a2 == ["tenant_a", "a:1", "a:2", "a:3"]
    assert seen_b == ["tenant_b", "b:1"]


def test_original_backend_that_is_already_pooled_is_refused():
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import django
        from django.conf import settings
        settings.configure(ORIGINAL_BACKEND="djpool.backends.postgresql", INSTALLED_APPS=["django.contrib.contenttypes"])
        django.setup()
        try:
            import djpool.backends.postgresql.django_tenants.base
        except Exception as error:
            print(type(error).__name__, error)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == (
        "ImproperlyConfigured settings.ORIGINAL_BACKEND = 'djpool.backends.postgresql' is already a "
        "pooled backend. With ENGINE 'djpool.backends.postgresql.django_tenants', set ORIGINAL_BACKEND "
        "to Django's backend: 'django.db.backends.postgresql' (the default) or "
        "'django.contrib.gis.db.backends.postgis'."
    ), result.stderr[-2000:]
