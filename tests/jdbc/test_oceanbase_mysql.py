"""ENGINE djpool.backends.jdbc.oceanbase.mysql: Django's MySQL backend over JDBC.

Run on MariaDB through MariaDB Connector/J, and on a real OceanBase engine
(seekdb from the pylibseekdb wheel, OceanBase 4.3 MySQL mode) through the
same driver, which OceanBase's own driver was ported from.
"""

from __future__ import annotations

import datetime
import decimal

import pytest
from django.db import IntegrityError, connections, models, transaction
from django.test.utils import CaptureQueriesContext

from djpool.core import stats
from tests.jdbc import servers

pytest.importorskip("MySQLdb", reason="Django's MySQL backend modules import mysqlclient")


class JdbcAuthor(models.Model):
    name = models.CharField(max_length=50, unique=True)
    rating = models.DecimalField(max_digits=20, decimal_places=6, default=decimal.Decimal("0"))
    born = models.DateField(null=True)
    seen = models.DateTimeField(null=True)
    bio = models.TextField(default="")
    photo = models.BinaryField(null=True)
    active = models.BooleanField(default=True)

    class Meta:
        app_label = "testapp"


class JdbcBook(models.Model):
    author = models.ForeignKey(JdbcAuthor, on_delete=models.CASCADE)
    title = models.CharField(max_length=100)
    pages = models.IntegerField(default=0)

    class Meta:
        app_label = "testapp"


def mariadb_entry() -> dict:
    server = servers.MARIADB
    return {
        "ENGINE": "djpool.backends.jdbc.oceanbase.mysql",
        "NAME": server.database,
        "USER": "root",
        "HOST": servers.HOST,
        "PORT": server.port,
        "JDBC_DRIVER": "org.mariadb.jdbc.Driver",
        "JDBC_URL": f"jdbc:mariadb://{servers.HOST}:{server.port}/{server.database}",
    }


@pytest.fixture(params=["mariadb-connector-j", "oceanbase-seekdb"])
def target(request, jdbc_alias):
    """(alias, server) for Django's MySQL backend over JDBC on MariaDB or seekdb."""
    if request.param == "oceanbase-seekdb":
        server = request.getfixturevalue("seekdb")
        entry = {
            **mariadb_entry(),
            "NAME": server.database,
            "PORT": server.port,
            # Connector/J accepts the jdbc:mysql: scheme too.
            "JDBC_URL": f"jdbc:mysql://{servers.HOST}:{server.port}/{server.database}",
        }
    else:
        server, entry = servers.MARIADB, mariadb_entry()
    alias = jdbc_alias({**entry, "POOL_OPTIONS": {"POOL_SIZE": 2, "MAX_OVERFLOW": 1, "TIMEOUT": 10}})
    connection = connections[alias]
    with connection.schema_editor() as editor:
        editor.create_model(JdbcAuthor)
        editor.create_model(JdbcBook)
    yield alias, server
    with connections[alias].schema_editor() as editor:
        editor.delete_model(JdbcBook)
        editor.delete_model(JdbcAuthor)
    connections[alias].close()


def test_crud_bulk_and_iteration_terminate(target):
    alias, _ = target
    authors = JdbcAuthor.objects.using(alias)
    ann = authors.create(name="ann", rating=decimal.Decimal("12345678901234.123456"))
    assert isinstance(ann.pk, int) and ann.pk > 0  # from JDBC generated keys
    authors.bulk_create([JdbcAuthor(name=f"bulk{i}") for i in range(250)])
    assert authors.count() == 251
    # Iteration fetches with fetchmany() until it returns the empty value:
    # with Django's MySQL "()" it would never stop.
    assert sum(1 for _ in authors.iterator(chunk_size=100)) == 251
    assert len(list(authors.all())) == 251
    assert [a.name for a in authors.order_by("name")[1:3]] == ["bulk0", "bulk1"]
    assert authors.filter(name__startswith="bulk").update(active=False) == 250
    # Matched rows, as Django expects, even when nothing changes.
    assert authors.filter(name__startswith="bulk").update(active=False) == 250
    deleted, _ = authors.filter(active=False).delete()
    assert deleted == 250
    assert authors.get(pk=ann.pk).rating == decimal.Decimal("12345678901234.123456")


def test_types_round_trip(target):
    alias, _ = target
    seen = datetime.datetime(2024, 3, 10, 2, 30, 1, 123456, tzinfo=datetime.timezone.utc)
    photo = bytes(range(256)) * 40
    bio = "naïve ‘quotes’ \\ and 'single' " * 3000
    author = JdbcAuthor.objects.using(alias).create(
        name="types", born=datetime.date(1990, 5, 17), seen=seen, bio=bio, photo=photo
    )
    again = JdbcAuthor.objects.using(alias).get(pk=author.pk)
    assert again.born == datetime.date(1990, 5, 17)
    assert again.seen == seen  # datetime(6), naive UTC on the wire: the JVM runs in UTC
    assert bytes(again.photo) == photo
    assert again.bio == bio
    assert JdbcAuthor.objects.using(alias).filter(bio__contains="‘quotes’ \\ and").count() == 1
    assert JdbcAuthor.objects.using(alias).filter(name__icontains="YPE").get().pk == author.pk


def test_relations_aggregates_and_raw(target):
    alias, _ = target
    ann = JdbcAuthor.objects.using(alias).create(name="ann")
    JdbcBook.objects.using(alias).bulk_create([JdbcBook(author=ann, title=f"t{i}", pages=i) for i in range(5)])
    assert JdbcBook.objects.using(alias).filter(author__name="ann").aggregate(models.Sum("pages"))["pages__sum"] == 10
    assert list(
        JdbcBook.objects.using(alias).filter(pages__gte=3).values_list("title", flat=True).order_by("title")
    ) == ["t3", "t4"]
    assert JdbcAuthor.objects.using(alias).filter(jdbcbook__pages=4).exists()
    obj, created = JdbcAuthor.objects.using(alias).get_or_create(name="bob")
    assert created and JdbcAuthor.objects.using(alias).get_or_create(name="bob") == (obj, False)
    table = JdbcAuthor._meta.db_table
    rows = list(JdbcAuthor.objects.using(alias).raw(f"SELECT * FROM {table} WHERE name = %(name)s", {"name": "bob"}))
    assert [row.pk for row in rows] == [obj.pk]


def test_integrity_error_and_transactions(target):
    alias, _ = target
    authors = JdbcAuthor.objects.using(alias)
    authors.create(name="dup")
    with pytest.raises(IntegrityError):
        with transaction.atomic(using=alias):
            authors.create(name="dup")
    with pytest.raises(RuntimeError):
        with transaction.atomic(using=alias):
            authors.create(name="rolled back")
            raise RuntimeError
    with transaction.atomic(using=alias):
        authors.create(name="outer")
        try:
            with transaction.atomic(using=alias):
                authors.create(name="outer")  # duplicate: only the savepoint rolls back
        except IntegrityError:
            pass
        list(authors.select_for_update().filter(name="outer"))
    assert sorted(authors.values_list("name", flat=True)) == ["dup", "outer"]


def test_queries_are_logged_with_their_sql(target):
    alias, _ = target
    connection = connections[alias]
    with CaptureQueriesContext(connection) as captured:
        JdbcAuthor.objects.using(alias).filter(name="nobody").count()
    assert "COUNT(*)" in captured[-1]["sql"]
    assert "?" in captured[-1]["sql"]  # the statement as sent to the driver


def test_pool_reuses_server_sessions(target):
    alias, server = target
    connection = connections[alias]
    connection.close()
    ids = []
    for _ in range(3):
        with connection.cursor() as cursor:
            cursor.execute("SELECT CONNECTION_ID()")
            ids.append(int(cursor.fetchone()[0]))
        connection.close()
    assert len(set(ids)) == 1
    assert ids[0] in server.session_ids()
    assert stats(alias)["invalidations"] == 0


def test_server_version_is_accepted(target):
    alias, server = target
    connection = connections[alias]
    connection.ensure_connection()
    version = connection.mysql_server_info
    if server is servers.MARIADB:
        assert "MariaDB" in version
    else:
        assert "OceanBase" in version and connection.mysql_version[:2] == (5, 7)
    connection.close()


def test_raw_sql_oceanbase_engine_on_seekdb(seekdb, jdbc_alias):
    # ENGINE djpool.backends.jdbc.oceanbase: OceanBase's defaults, here with
    # the driver and URL overridden to what exists in CI.
    alias = jdbc_alias(
        {
            "ENGINE": "djpool.backends.jdbc.oceanbase",
            "NAME": seekdb.database,
            "USER": "root",
            "JDBC_DRIVER": "org.mariadb.jdbc.Driver",
            "JDBC_URL": f"jdbc:mariadb://{servers.HOST}:{seekdb.port}/{seekdb.database}",
            "POOL_OPTIONS": {"POOL_SIZE": 1},
        }
    )
    connection = connections[alias]
    ids = set()
    for _ in range(3):
        with connection.cursor() as cursor:
            cursor.execute("SELECT VERSION(), CONNECTION_ID(), %(a)s", {"a": "50%"})
            version, session, echoed = cursor.fetchone()
            ids.add(int(session))
            assert connection.ops.quote_name("t") == "`t`"  # the driver's identifier quote
        connection.close()
    assert "OceanBase" in version and echoed == "50%"
    assert len(ids) == 1 and ids <= seekdb.session_ids()


def test_init_command_runs_once_per_server_connection(jdbc_alias):
    # mysqlclient's OPTIONS["init_command"], replayed over JDBC by init_connection_state().
    alias = jdbc_alias(
        {**mariadb_entry(), "OPTIONS": {"init_command": "SET @djpool_init = 42"}, "POOL_OPTIONS": {"POOL_SIZE": 1}}
    )
    connection = connections[alias]
    with connection.cursor() as cursor:
        cursor.execute("SELECT @djpool_init")
        assert int(cursor.fetchone()[0]) == 42
        cursor.execute("SET @djpool_init = 7")
    connection.close()
    # Same server connection, and the setup did not run again on checkout.
    with connection.cursor() as cursor:
        cursor.execute("SELECT @djpool_init")
        assert int(cursor.fetchone()[0]) == 7
    connection.close()
    assert stats(alias)["connects"] == 1
