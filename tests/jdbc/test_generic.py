"""The generic JDBC ENGINE and the shared machinery, on PostgreSQL and MariaDB over their JDBC drivers.

Every test runs through both DB-API bridges: jpype.dbapi2 and JayDeBeApi.

Pooling is asserted through the server: its session ids (pg_backend_pid(),
CONNECTION_ID()) and its count of sessions on this run's database.
"""

from __future__ import annotations

import datetime
import decimal
import threading
import time

import pytest
from django.db import connections, transaction
from django.db.utils import DatabaseError, DataError, IntegrityError, ProgrammingError
from django.utils.safestring import SafeString

from djpool.core import PoolTimeout, stats
from tests.conftest import run_in_threads
from tests.jdbc import servers

# Test ids name the JDBC drivers: ids "postgresql"/"mysql" would be keywords
# that tests/conftest.py skips outside their own server's run.
SERVERS = {"pgjdbc": servers.POSTGRESQL, "mariadb-connector-j": servers.MARIADB}


@pytest.fixture(params=sorted(SERVERS))
def server(request):
    return SERVERS[request.param]


@pytest.fixture(params=["jpype", "jaydebeapi"])
def bridge(request):
    if request.param == "jaydebeapi":
        pytest.importorskip("jaydebeapi")
    return request.param


@pytest.fixture
def alias(server, bridge, jdbc_alias):
    def make(pool_options=None, **extra):
        return jdbc_alias(servers.jdbc_settings(server, POOL_OPTIONS=pool_options or {}, JDBC_BRIDGE=bridge, **extra))

    return make


def session_id(connection, server) -> int:
    with connection.cursor() as cursor:
        cursor.execute(server.pid_query)
        return int(cursor.fetchone()[0])


def test_django_gets_a_jdbc_connection(alias, server):
    conn = connections[alias()]
    conn.ensure_connection()
    assert type(conn.connection).__module__ == "djpool.backends.jdbc.dbapi"
    assert str(conn.connection.jconnection.getMetaData().getURL()).startswith("jdbc:")
    conn.close()


def test_connection_is_reused(alias, server):
    name = alias({"POOL_SIZE": 2})
    conn = connections[name]
    ids = []
    for _ in range(4):
        ids.append(session_id(conn, server))
        conn.close()
    assert len(set(ids)) == 1
    assert ids[0] in server.session_ids()
    assert stats(name)["connects"] == 1
    assert stats(name)["invalidations"] == 0


def test_pool_bounds_hold_under_threads(alias, server):
    name = alias({"POOL_SIZE": 2, "MAX_OVERFLOW": 1, "TIMEOUT": 30})
    baseline = server.connection_count()
    peak = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak.append(server.connection_count())
            time.sleep(0.02)

    def work(i):
        conn = connections[name]
        seen = set()
        for _ in range(5):
            with conn.cursor() as cursor:
                cursor.execute("SELECT %s", [i])
                assert int(cursor.fetchone()[0]) == i
            seen.add(session_id(conn, server))
            conn.close()
        return seen

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        results = run_in_threads(8, work)
    finally:
        stop.set()
        watcher.join()
    sessions = set().union(*results)
    figures = stats(name)
    # The bound: never more than POOL_SIZE + MAX_OVERFLOW sessions at once.
    assert max(peak) - baseline <= 3
    assert figures["checkouts"] == 8 * 5
    # Sessions over the run: the first three, plus one for each overflow
    # connection closed on return (2 already idle, nobody waiting) or
    # discarded as broken, whose slot a later checkout opened again.
    replaced = figures["overflow_closed"] + figures["invalidations"]
    assert figures["connects"] <= 3 + replaced
    assert len(sessions) <= 3 + replaced
    # And what the pool calls closed is closed on the server: of the
    # sessions used, only the POOL_SIZE idle ones stay open.
    deadline = time.monotonic() + 5
    while len(sessions & server.session_ids()) > 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(sessions & server.session_ids()) <= 2


def test_pool_timeout_when_exhausted(alias):
    name = alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "TIMEOUT": 0.5})
    holder = connections[name]
    holder.ensure_connection()
    errors = []

    def other():
        try:
            connections[name].ensure_connection()
        except PoolTimeout as error:
            errors.append(error)
        finally:
            connections[name].close()

    thread = threading.Thread(target=other)
    thread.start()
    thread.join(10)
    holder.close()
    assert len(errors) == 1
    assert "POOL_SIZE" in str(errors[0])


def test_killed_session_is_replaced(alias, server):
    name = alias({"POOL_SIZE": 1, "PRE_PING_IDLE": 0})
    conn = connections[name]
    first = session_id(conn, server)
    conn.close()
    server.kill(first)
    deadline = time.monotonic() + 5
    while first in server.session_ids() and time.monotonic() < deadline:
        time.sleep(0.05)
    second = session_id(conn, server)
    conn.close()
    assert second != first
    assert stats(name)["invalidations"] == 1


def test_rollback_on_return_outside_autocommit(alias, server):
    name = alias({"POOL_SIZE": 1})
    conn = connections[name]
    with conn.cursor() as cursor:
        cursor.execute("CREATE TABLE rb_off (n integer)")
    first = session_id(conn, server)
    conn.set_autocommit(False)
    with conn.cursor() as cursor:
        cursor.execute("INSERT INTO rb_off VALUES (%s)", [1])
    # Returned with the transaction open: the pool rolls it back.
    conn.close()
    with conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM rb_off")
        assert cursor.fetchone()[0] == 0
        cursor.execute("DROP TABLE rb_off")
    assert session_id(conn, server) == first
    conn.close()
    assert stats(name)["connects"] == 1


def test_autocommit_statements_survive_return(alias, server):
    name = alias({"POOL_SIZE": 1})
    conn = connections[name]
    with conn.cursor() as cursor:
        cursor.execute("CREATE TABLE rb_on (n integer)")
        cursor.execute("INSERT INTO rb_on VALUES (%s)", [1])
    first = session_id(conn, server)
    conn.close()
    with conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM rb_on")
        assert cursor.fetchone()[0] == 1
        cursor.execute("DROP TABLE rb_on")
    # Autocommit on: no rollback attempted, no "Exception during reset",
    # the connection stayed in the pool.
    assert session_id(conn, server) == first
    conn.close()
    assert stats(name)["invalidations"] == 0
    assert stats(name)["connects"] == 1


def test_atomic_commits_and_rolls_back(alias):
    conn = connections[alias()]
    with conn.cursor() as cursor:
        cursor.execute("CREATE TABLE tx (n integer)")
    with transaction.atomic(using=conn.alias):
        with conn.cursor() as cursor:
            cursor.execute("INSERT INTO tx VALUES (1)")
    with pytest.raises(RuntimeError):
        with transaction.atomic(using=conn.alias):
            with conn.cursor() as cursor:
                cursor.execute("INSERT INTO tx VALUES (2)")
            with transaction.atomic(using=conn.alias):  # a savepoint
                with conn.cursor() as cursor:
                    cursor.execute("INSERT INTO tx VALUES (3)")
            raise RuntimeError
    with conn.cursor() as cursor:
        cursor.execute("SELECT n FROM tx ORDER BY n")
        assert cursor.fetchall() == [(1,)]
        cursor.execute("DROP TABLE tx")
    conn.close()


# Django-style SQL and parameters → what the server must answer.
PARAMETER_CASES = [
    ("SELECT %s", [7], (7,)),
    ("SELECT %s, %s", ["a", "b"], ("a", "b")),
    ("SELECT %(x)s, %(y)s, %(x)s", {"x": 1, "y": 2}, (1, 2, 1)),
    ("SELECT '100%%', %s", [1], ("100%", 1)),
    ("SELECT '%s', %s", [1], ("%s", 1)),
    ("SELECT '%%s', %s", [1], ("%s", 1)),
    ("SELECT 'it''s %s', %s", [1], ("it's %s", 1)),
    ("SELECT %s /* %s */", [1], (1,)),
    ("SELECT %s -- %s\n", [1], (1,)),
]


@pytest.mark.parametrize(("sql", "params", "expected"), PARAMETER_CASES)
def test_parameters_are_translated(alias, sql, params, expected):
    conn = connections[alias()]
    with conn.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    conn.close()
    assert tuple(int(v) if isinstance(v, int) else v for v in row) == expected


def test_no_parameters_means_no_substitution(alias):
    conn = connections[alias()]
    with conn.cursor() as cursor:
        cursor.execute("SELECT '100%%'")
        assert cursor.fetchone()[0] == "100%%"
    conn.close()


def test_raw_named_parameters_and_executemany(alias):
    conn = connections[alias()]
    with conn.cursor() as cursor:
        cursor.execute("CREATE TABLE people (name varchar(20), age integer)")
        cursor.executemany("INSERT INTO people VALUES (%s, %s)", [("ann", 30), ("bob", 40)])
        cursor.executemany("INSERT INTO people VALUES (%(n)s, %(a)s)", [{"n": "cy", "a": 50}])
        cursor.execute("SELECT age FROM people WHERE name = %(name)s", params={"name": "bob"})
        assert cursor.fetchall() == [(40,)]
        cursor.execute("SELECT count(*) FROM people")
        assert cursor.fetchone()[0] == 3
        cursor.execute("DROP TABLE people")
    conn.close()


def test_types_round_trip(alias, server):
    conn = connections[alias()]
    is_pg = server.vendor == "postgresql"
    blob = "bytea" if is_pg else "longblob"
    clob = "text" if is_pg else "longtext"
    stamp = "timestamp" if is_pg else "datetime(6)"
    values = [
        decimal.Decimal("12345678901234.123456"),
        datetime.date(2024, 3, 10),
        datetime.datetime(2024, 3, 10, 2, 30, 1, 123456),  # a DST gap in New York: only UTC keeps it
        datetime.time(13, 14, 15),
        bytes(range(256)) * 400,
        "ü" * 70_000,
        SafeString("<b>safe</b>"),
        2**40,
        1.5,
        True,
    ]
    with conn.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE kinds (d numeric(20, 6), dt date, ts {stamp}, t time, b {blob}, "
            f"c {clob}, s varchar(50), big bigint, f double precision, flag boolean)"
        )
        cursor.execute("INSERT INTO kinds VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", values)
        cursor.execute("SELECT d, dt, ts, t, b, c, s, big, f, flag FROM kinds")
        row = cursor.fetchone()
        cursor.execute("DROP TABLE kinds")
    conn.close()
    assert row[0] == values[0] and type(row[0]) is decimal.Decimal
    assert row[1] == values[1] and type(row[1]) is datetime.date
    assert row[2] == values[2] and type(row[2]) is datetime.datetime
    assert row[3] == values[3]
    assert row[4] == values[4] and type(row[4]) is bytes
    assert row[5] == values[5]
    assert row[6] == "<b>safe</b>"
    assert row[7] == 2**40
    assert row[8] == 1.5
    assert bool(row[9]) is True


def test_sqlstate_maps_to_django_errors(alias, server):
    conn = connections[alias()]
    with conn.cursor() as cursor:
        cursor.execute("CREATE TABLE uniq (n integer PRIMARY KEY, s varchar(3))")
        cursor.execute("INSERT INTO uniq VALUES (1, 'a')")
    if server.vendor == "mysql":
        with conn.cursor() as cursor:
            cursor.execute("SET SESSION sql_mode = 'STRICT_ALL_TABLES'")
    with pytest.raises(IntegrityError) as integrity:
        with conn.cursor() as cursor:
            cursor.execute("INSERT INTO uniq VALUES (%s, 'b')", [1])
    assert integrity.value.__cause__.sqlstate.startswith("23")
    with pytest.raises(IntegrityError):
        with conn.cursor() as cursor:
            cursor.executemany("INSERT INTO uniq VALUES (%s, 'b')", [[2], [2]])
    with pytest.raises(DataError):
        with conn.cursor() as cursor:
            cursor.execute("INSERT INTO uniq VALUES (%s, %s)", [3, "too long"])
    with pytest.raises(ProgrammingError):
        with conn.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table")
    with pytest.raises(DatabaseError):
        with conn.cursor() as cursor:
            cursor.execute("SELECT %s", [])  # wrong parameter count
    with conn.cursor() as cursor:
        cursor.execute("DROP TABLE uniq")
    conn.close()


def test_many_threads_share_one_pool(alias, server):
    name = alias({"POOL_SIZE": 3, "MAX_OVERFLOW": 0, "TIMEOUT": 30})

    def work(i):
        conn = connections[name]
        for j in range(10):
            with conn.cursor() as cursor:
                cursor.execute("SELECT %s", [i * 100 + j])
                assert int(cursor.fetchone()[0]) == i * 100 + j
            conn.close()
        return True

    assert all(run_in_threads(16, work))
    figures = stats(name)
    assert figures["checkouts"] == 160
    assert figures["connects"] <= 3
    assert server.connection_count() >= 1


def raw_connection(server, bridge):
    from djpool.backends.jdbc import dbapi

    return dbapi.connect(
        servers.jdbc_url(server),
        driver=servers.DRIVERS[server.vendor],
        properties={"user": server.user},
        bridge=bridge,
    )


def test_dialect_respects_jdbc_autocommit_and_closed_connections(server, bridge):
    from djpool.backends.jdbc.dialect import JDBCDialect

    dialect = JDBCDialect()
    conn = raw_connection(server, bridge)
    cursor = conn.cursor()
    cursor.execute("CREATE TABLE dia (n integer)")
    conn.commit()
    # Transaction open (autocommit off): do_rollback undoes the insert.
    cursor.execute("INSERT INTO dia VALUES (1)")
    dialect.do_rollback(conn)
    cursor.execute("SELECT count(*) FROM dia")
    assert cursor.fetchone()[0] == 0
    # Autocommit on: nothing to roll back, and no "Autocommit is enabled" error.
    conn.autocommit = True
    cursor.execute("INSERT INTO dia VALUES (2)")
    dialect.do_rollback(conn)
    cursor.execute("SELECT count(*) FROM dia")
    assert cursor.fetchone()[0] == 1
    cursor.execute("DROP TABLE dia")
    cursor.close()
    assert dialect.do_ping(conn) is True
    dialect.do_close(conn)
    assert conn.closed
    dialect.do_close(conn)  # closing twice is fine
    dialect.do_rollback(conn)  # so is the pool's reset of a closed connection
    assert dialect.do_ping(conn) is False


def test_dialect_ping_sees_a_killed_session(server, bridge):
    from djpool.backends.jdbc import dbapi
    from djpool.backends.jdbc.dialect import JDBCDialect

    dialect = JDBCDialect()
    conn = raw_connection(server, bridge)
    with conn.cursor() as cursor:
        cursor.execute(server.pid_query)
        session = int(cursor.fetchone()[0])
    assert dialect.do_ping(conn) is True
    server.kill(session)
    deadline = time.monotonic() + 5
    while session in server.session_ids() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert dialect.do_ping(conn) is False
    # Using it now fails with this package's errors, never a raw Java one.
    with pytest.raises(dbapi.Error):
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1")
    dialect.do_close(conn)
    assert conn.closed


def test_transaction_mode_gives_connections_back_between_transactions(alias, server):
    name = alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "POOL_MODE": "transaction"})
    conn = connections[name]
    with conn.cursor() as cursor:
        cursor.execute(server.pid_query)
    # The cursor closed outside a transaction: the connection went back.
    assert stats(name)["checked_out"] == 0
    with transaction.atomic(using=name):
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1")
        assert stats(name)["checked_out"] == 1
    assert stats(name)["checked_out"] == 0
    assert stats(name)["connects"] == 1
    conn.close()
