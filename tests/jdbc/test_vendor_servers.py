"""Opt-in: the Oracle and OceanBase ENGINEs on real servers with the vendors' own JDBC drivers.

Neither Oracle's JDBC driver (Oracle Free Use Terms) nor OceanBase's
(oceanbase-client, Maven Central only) nor an Oracle-compatible server can be
installed in CI, so these run only when pointed at them:

* ``ORACLE_JDBC_JAR`` (path to ojdbc*.jar) and ``ORACLE_JDBC_URL``
  (``jdbc:oracle:thin:@//host:1521/FREEPDB1``), with ``ORACLE_JDBC_USER`` and
  ``ORACLE_JDBC_PASSWORD``;
* ``OCEANBASE_JDBC_JAR`` and ``OCEANBASE_JDBC_URL`` (``jdbc:oceanbase://host:2881/db``),
  with ``OCEANBASE_JDBC_USER``/``OCEANBASE_JDBC_PASSWORD``, and
  ``OCEANBASE_JDBC_MODE`` = ``mysql`` (default) or ``oracle``.

``ORACLE_JDBC_DRIVER``/``OCEANBASE_JDBC_DRIVER`` override the driver class.

The jars are added to the suite's CLASSPATH by tests/jdbc/servers.py.
"""

from __future__ import annotations

import decimal
import os

import pytest
from django.db import IntegrityError, connections, models, transaction

from djpool.core import stats


class JdbcVendorThing(models.Model):
    name = models.CharField(max_length=30, unique=True)
    amount = models.DecimalField(max_digits=20, decimal_places=6, default=decimal.Decimal("0"))

    class Meta:
        app_label = "testapp"


def vendor_entry(prefix: str, engine: str, driver: str) -> dict:
    missing = [name for name in (f"{prefix}_JDBC_JAR", f"{prefix}_JDBC_URL") if not os.environ.get(name)]
    if missing:
        pytest.skip(f"opt-in suite: set {' and '.join(missing)} to run against a real server with the vendor's driver")
    return {
        "ENGINE": engine,
        "NAME": "",
        "JDBC_DRIVER": os.environ.get(f"{prefix}_JDBC_DRIVER") or driver,
        "JDBC_URL": os.environ[f"{prefix}_JDBC_URL"],
        "USER": os.environ.get(f"{prefix}_JDBC_USER", ""),
        "PASSWORD": os.environ.get(f"{prefix}_JDBC_PASSWORD", ""),
        "POOL_OPTIONS": {"POOL_SIZE": 2, "MAX_OVERFLOW": 0},
    }


@pytest.fixture(params=["oracle", "oceanbase"])
def vendor_alias(request, jdbc_alias):
    if request.param == "oracle":
        pytest.importorskip("oracledb")
        entry = vendor_entry("ORACLE", "djpool.backends.jdbc.oracle", "oracle.jdbc.OracleDriver")
    else:
        mode = os.environ.get("OCEANBASE_JDBC_MODE", "mysql")
        pytest.importorskip("oracledb" if mode == "oracle" else "MySQLdb")
        entry = vendor_entry("OCEANBASE", f"djpool.backends.jdbc.oceanbase.{mode}", "com.oceanbase.jdbc.Driver")
    alias = jdbc_alias(entry)
    with connections[alias].schema_editor() as editor:
        editor.create_model(JdbcVendorThing)
    yield alias
    with connections[alias].schema_editor() as editor:
        editor.delete_model(JdbcVendorThing)
    connections[alias].close()


def session_id(connection) -> int:
    sql = (
        "SELECT SYS_CONTEXT('USERENV', 'SID') FROM DUAL" if connection.vendor == "oracle" else "SELECT CONNECTION_ID()"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return int(cursor.fetchone()[0])


def test_orm_and_pool_on_the_real_server(vendor_alias):
    things = JdbcVendorThing.objects.using(vendor_alias)
    first = things.create(name="a", amount=decimal.Decimal("12345678901234.123456"))
    assert isinstance(first.pk, int)
    things.bulk_create([JdbcVendorThing(name=f"b{i}") for i in range(20)])
    assert things.count() == 21
    assert sum(1 for _ in things.iterator(chunk_size=7)) == 21
    assert things.filter(name__startswith="b").update(amount=1) == 20
    assert things.get(pk=first.pk).amount == decimal.Decimal("12345678901234.123456")
    with pytest.raises(IntegrityError):
        with transaction.atomic(using=vendor_alias):
            things.create(name="a")
    connection = connections[vendor_alias]
    ids = set()
    for _ in range(3):
        connection.close()
        ids.add(session_id(connection))
    assert len(ids) == 1
    assert stats(vendor_alias)["invalidations"] == 0
