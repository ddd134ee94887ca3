"""PostGIS fixtures: a database of this run's own with the postgis extension.

The shared ``tests/conftest.py`` creates ``djpool_t<pid>`` without PostGIS and
configures Django with the plain PostgreSQL backend; GeoDjango needs neither
``django.contrib.gis`` in INSTALLED_APPS nor a default GIS database, so these
tests add aliases with ENGINE ``djpool.backends.postgis`` that point at
``djpool_gis_<pid>``, created here with ``CREATE EXTENSION postgis`` and
dropped at the end. Without GDAL/GEOS or the PostGIS extension on the server,
every test here is skipped with the reason.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.servers import Server

_alias_numbers = itertools.count()


def _missing_gis(server: Server) -> str | None:
    """Why GeoDjango cannot run here, or None."""
    from django.core.exceptions import ImproperlyConfigured

    try:
        from django.contrib.gis.gdal import gdal_version
        from django.contrib.gis.geos import geos_version

        gdal_version()
        geos_version()
    except (ImproperlyConfigured, OSError) as error:
        return f"GDAL/GEOS libraries are missing (Debian: apt-get install libgdal32 libgeos-c1v5): {error}"
    if not server.query("SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'"):
        return "the PostgreSQL server has no postgis extension (Debian: apt-get install postgresql-<major>-postgis-3)"
    return None


@pytest.fixture(scope="session")
def gis_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """Name of a database with the postgis extension, created for this run."""
    from tests.conftest import SERVER

    if SERVER is None or SERVER.vendor != "postgresql":
        pytest.skip("PostGIS needs DJPOOL_TEST_BACKEND=postgresql")
    reason = _missing_gis(SERVER)
    if reason:
        pytest.skip(reason)
    name = f"djpool_gis_{os.getpid()}"
    SERVER.create_database(name)
    conn = SERVER.admin_connect(name)
    try:
        conn.cursor().execute("CREATE EXTENSION postgis")
    finally:
        conn.close()
    yield name

    from django.db import connections

    from djpool.core import registry

    connections.close_all()
    registry.close_all()
    SERVER.drop_database(name)


@pytest.fixture
def make_gis_alias(gis_database: str, server: Server) -> Iterator[Callable[..., str]]:
    """Add a ``djpool.backends.postgis`` alias on the PostGIS database; clean up after."""
    from django.db import connections

    from djpool.core import registry

    created: list[str] = []

    def make(pool_options: dict[str, Any] | None = None, **extra: Any) -> str:
        alias = f"gis{next(_alias_numbers)}"
        entry = server.settings(
            ENGINE="djpool.backends.postgis", NAME=gis_database, POOL_OPTIONS=pool_options or {}, **extra
        )
        connections.settings[alias] = connections.configure_settings({"default": {}, alias: entry})[alias]
        created.append(alias)
        return alias

    yield make

    for alias in created:
        connections[alias].close()
        del connections[alias]
        registry.close_all(alias)
        del connections.settings[alias]


@pytest.fixture(scope="session")
def place_model(gis_database: str) -> Any:
    """A GeoDjango model in an app registry of its own (GDAL is loaded only once the skip checks passed)."""
    from django.apps.registry import Apps
    from django.contrib.gis.db import models

    class Place(models.Model):
        name = models.CharField(max_length=50)
        point = models.PointField(srid=4326)
        area = models.PolygonField(srid=4326, null=True)

        class Meta:
            apps = Apps()
            app_label = "djpool_gis"
            db_table = "djpool_gis_place"

    return Place
