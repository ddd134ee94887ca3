"""ENGINE ``djpool.backends.postgis`` on a real PostGIS: GeoDjango through the pool.

The predecessor's PostGIS ENGINE used SQLAlchemy's generic ``PGDialect``,
which cannot ping: the first request after the server closed an idle pooled
connection failed with OperationalError.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.db import connections
from django.db.utils import OperationalError

pytestmark = pytest.mark.postgresql


def backend_pid(alias: str) -> int:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def wait_until_gone(server, database: str, pid: int) -> None:
    for _ in range(100):
        if pid not in server.session_ids(database):
            return
        time.sleep(0.05)
    raise AssertionError(f"the server did not end session {pid}")


@pytest.fixture
def place_alias(make_gis_alias, place_model) -> Any:
    """An alias whose database has the Place table, created by GeoDjango's schema editor."""
    alias = make_gis_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "TIMEOUT": 5})
    with connections[alias].schema_editor() as editor:
        editor.create_model(place_model)
    connections[alias].close()
    yield alias
    with connections[alias].schema_editor() as editor:
        editor.delete_model(place_model)
    connections[alias].close()


def test_engine_is_geodjango_on_the_pool(make_gis_alias):
    from django.contrib.gis.db.backends.postgis.base import DatabaseWrapper as GeoDjangoWrapper

    from djpool.core.mixins import PooledDatabaseWrapperMixin

    conn = connections[make_gis_alias()]
    assert isinstance(conn, GeoDjangoWrapper)
    assert isinstance(conn, PooledDatabaseWrapperMixin)
    assert conn.ops.spatial_version >= (3, 0, 0)
    # Same driver dialect as djpool.backends.postgresql, not the generic PGDialect.
    assert conn.djpool_sqlalchemy_dialect().driver in ("psycopg", "psycopg2")
    conn.close()


def test_geometry_column_is_created_by_the_schema_editor(place_alias, server, gis_database):
    conn = server.admin_connect(gis_database)
    try:
        cursor = conn.cursor()
        cursor.execute(
            "SELECT f_geometry_column, type, srid FROM geometry_columns WHERE f_table_name = %s ORDER BY 1",
            ["djpool_gis_place"],
        )
        columns = cursor.fetchall()
    finally:
        conn.close()
    assert columns == [("area", "POLYGON", 4326), ("point", "POINT", 4326)]


def test_geometry_round_trip_and_spatial_lookup(place_alias, place_model):
    from django.contrib.gis.geos import Point, Polygon

    Place = place_model
    square = Polygon(((0, 0), (0, 10), (10, 10), (10, 0), (0, 0)), srid=4326)
    Place.objects.using(place_alias).create(name="inside", point=Point(2.5, 3.25, srid=4326), area=square)
    Place.objects.using(place_alias).create(name="outside", point=Point(20, 30, srid=4326))
    connections[place_alias].close()

    inside = Place.objects.using(place_alias).get(name="inside")
    assert (inside.point.x, inside.point.y, inside.point.srid) == (2.5, 3.25, 4326)
    assert inside.area.equals(square)
    connections[place_alias].close()

    within = Place.objects.using(place_alias).filter(point__within=square).values_list("name", flat=True)
    assert list(within) == ["inside"]
    contains = Place.objects.using(place_alias).filter(area__contains=Point(9, 9, srid=4326))
    assert [place.name for place in contains] == ["inside"]
    connections[place_alias].close()


def test_requests_reuse_one_server_session(place_alias, place_model, server, gis_database):
    from django.contrib.gis.geos import Point

    pids = set()
    for i in range(5):
        place_model.objects.using(place_alias).create(name=f"p{i}", point=Point(i, i, srid=4326))
        pids.add(backend_pid(place_alias))
        connections[place_alias].close()
    assert len(pids) == 1
    assert server.session_ids(gis_database) == pids
    assert place_model.objects.using(place_alias).count() == 5
    connections[place_alias].close()


def test_recovers_when_the_server_kills_an_idle_pooled_connection(make_gis_alias, place_alias, place_model, server, gis_database):
    from django.contrib.gis.geos import Point

    place_model.objects.using(place_alias).create(name="before", point=Point(1, 1, srid=4326))
    old_pid = backend_pid(place_alias)
    connections[place_alias].close()

    server.kill(old_pid)
    wait_until_gone(server, gis_database, old_pid)
    time.sleep(1.1)  # past the default PRE_PING_IDLE (1 s)

    # The first request after the kill succeeds, on a new session whose
    # geometry adapters GeoDjango registered again.
    place = place_model.objects.using(place_alias).get(name="before")
    assert place.point == Point(1, 1, srid=4326)
    new_pid = backend_pid(place_alias)
    connections[place_alias].close()
    assert new_pid != old_pid
    assert server.session_ids(gis_database) == {new_pid}


def test_without_pre_ping_the_kill_reaches_the_request(make_gis_alias, place_alias, place_model, server, gis_database):
    """The control for the test above: the predecessor's behaviour."""
    alias = make_gis_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "PRE_PING": False})
    old_pid = backend_pid(alias)
    connections[alias].close()
    server.kill(old_pid)
    wait_until_gone(server, gis_database, old_pid)

    with pytest.raises(OperationalError):
        place_model.objects.using(alias).count()
    connections[alias].close()
    # The failed connection was not given back as good: the next request works.
    assert place_model.objects.using(alias).count() == 0
    assert backend_pid(alias) != old_pid
    connections[alias].close()
