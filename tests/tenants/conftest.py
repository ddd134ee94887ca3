"""django-tenants on PostgreSQL: Django configured for tenants, in a pytest process of its own.

Selected by ``DJPOOL_TEST_BACKEND=tenants`` (the shared ``tests/conftest.py``
then leaves Django alone, as it does for the server-less backends). It creates
``djpool_tenants_<pid>`` on the PostgreSQL server, migrates the public schema,
and creates two tenants (schemas ``tenant_a`` and ``tenant_b``) plus the public
tenant, each with a domain and notes of its own. With any other backend, the
tests here are skipped.
"""

from __future__ import annotations

import os

import django
import pytest
from django.conf import settings

from tests.servers import BACKEND, make_server

SERVER = make_server("postgresql") if BACKEND == "tenants" else None
DATABASE = f"djpool_tenants_{os.getpid()}"
#: schema name -> (domain, the notes stored in that schema)
TENANTS = {
    "public": ("public.test", ["public:1", "public:2"]),
    "tenant_a": ("a.test", ["a:1", "a:2", "a:3"]),
    "tenant_b": ("b.test", ["b:1"]),
}
POOL_OPTIONS = {"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "TIMEOUT": 30}


def pytest_configure(config: pytest.Config) -> None:
    if SERVER is None or settings.configured:
        return
    SERVER.create_database(DATABASE)
    shared_apps = ["django_tenants", "tests.tenants.customers", "django.contrib.contenttypes", "tests.tenants.notes"]
    tenant_apps = ["django.contrib.contenttypes", "tests.tenants.notes"]
    settings.configure(
        DATABASES={
            "default": SERVER.settings(
                ENGINE="djpool.backends.postgresql.django_tenants", NAME=DATABASE, POOL_OPTIONS=dict(POOL_OPTIONS)
            )
        },
        DATABASE_ROUTERS=["django_tenants.routers.TenantSyncRouter"],
        SHARED_APPS=shared_apps,
        TENANT_APPS=tenant_apps,
        INSTALLED_APPS=list(dict.fromkeys(shared_apps + tenant_apps)),
        TENANT_MODEL="customers.Client",
        TENANT_DOMAIN_MODEL="customers.Domain",
        MIDDLEWARE=["django_tenants.middleware.main.TenantMainMiddleware"],
        ROOT_URLCONF="tests.tenants.urls",
        ALLOWED_HOSTS=["*"],
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        LOGGING_CONFIG=None,
    )
    django.setup()
    from django.core.management import call_command
    from django.db import connection, connections

    from djpool.core import registry
    from tests.tenants.customers.models import Client, Domain
    from tests.tenants.notes.models import Note

    call_command("migrate_schemas", shared=True, interactive=False, verbosity=0)
    for schema, (domain, notes) in TENANTS.items():
        tenant = Client(schema_name=schema, name=schema)
        tenant.save(verbosity=0)  # creates the schema and migrates it
        Domain.objects.create(domain=domain, tenant=tenant, is_primary=True)
        connection.set_tenant(tenant)
        Note.objects.bulk_create(Note(text=text) for text in notes)
        connection.set_schema_to_public()
    connections.close_all()
    registry.close_all()


def pytest_unconfigure(config: pytest.Config) -> None:
    if SERVER is None or not settings.configured:
        return
    from django.db import connections

    from djpool.core import registry

    connections.close_all()
    registry.close_all()
    SERVER.drop_database(DATABASE)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if SERVER is not None:
        return
    skip = pytest.mark.skip(reason=f"needs DJPOOL_TEST_BACKEND=tenants; got {BACKEND}")
    for item in items:
        if item.path.is_relative_to(config.rootpath / "tests" / "tenants"):
            item.add_marker(skip)
