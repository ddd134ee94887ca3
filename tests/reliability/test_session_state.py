"""Session state between requests.

By default a connection comes back rolled back, with Django's per-connection
settings as Django set them. With ``RESET_ON_RETURN = "full"`` raw session
state (SET, temporary tables, locks, ...) is wiped too, and Django's
initialisation runs again before the next use. Each item is also run with
the default ``"rollback"`` to show the state would otherwise survive.
"""

from __future__ import annotations

import ctypes
import datetime
import os
from typing import Any

import pytest
from django.db import connections, transaction
from django.db.backends.utils import CursorWrapper

from djpool.core import stats
from tests.reliability.conftest import backend_pid

pytestmark = pytest.mark.server_backed

UTC = datetime.timezone.utc


def scalar(connection: Any, sql: str, params: Any = None) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        value = cursor.fetchone()[0]
    return value.decode() if isinstance(value, bytes) else value


def two_requests(alias: str, first: Any, second: Any) -> Any:
    """Run ``first`` and ``second`` as two requests on the pool's single connection."""
    conn = connections[alias]
    pid = backend_pid(conn)
    first(conn)
    conn.close()
    assert backend_pid(conn) == pid, "not the same connection: the test proves nothing"
    try:
        return second(conn)
    finally:
        conn.close()


# ##### Default: rolled back, Django's settings as Django expects them #####


@pytest.fixture
def pg_role(server: Any) -> Any:
    if server.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    role = f"djpool_rel_role_{os.getpid()}"
    server.query(f"DROP ROLE IF EXISTS {role}")
    server.query(f"CREATE ROLE {role} NOLOGIN")
    grants = [f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}", f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}"]
    _run_in_test_database(server, grants)
    yield role
    _run_in_test_database(server, [f"DROP OWNED BY {role}"])
    server.query(f"DROP ROLE IF EXISTS {role}")


def _run_in_test_database(server: Any, statements: list[str]) -> None:
    conn = server.admin_connect(server.database)
    try:
        cursor = conn.cursor()
        for statement in statements:
            cursor.execute(statement)
        cursor.close()
    finally:
        conn.close()


@pytest.mark.postgresql
def test_postgresql_connection_comes_back_as_django_set_it(make_alias, pg_role, items):
    from django.db.backends.postgresql.psycopg_any import IsolationLevel

    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0}, OPTIONS={"isolation_level": IsolationLevel.SERIALIZABLE, "assume_role": pg_role})

    def first(conn: Any) -> None:
        assert scalar(conn, "SELECT current_user") == pg_role
        transaction.set_autocommit(False, using=alias)
        items.objects.using(alias).create(name="left-open")
        with conn.cursor() as cursor:
            cursor.execute("SET LOCAL TIME ZONE 'Asia/Tokyo'")
            cursor.execute("SET LOCAL ROLE NONE")
            cursor.execute("SET LOCAL search_path TO pg_catalog")
        # the request ends with the transaction open and autocommit off

    def second(conn: Any) -> None:
        assert conn.get_autocommit() is True
        assert scalar(conn, "SELECT count(*) FROM testapp_item WHERE name = 'left-open'") == 0
        assert scalar(conn, "SHOW TIME ZONE") == "UTC"
        with transaction.atomic(using=alias):  # the driver begins with the configured level
            assert scalar(conn, "SHOW transaction_isolation") == "serializable"
        assert scalar(conn, "SELECT current_user") == pg_role
        assert scalar(conn, "SHOW search_path") == '"$user", public'
        assert scalar(conn, "SELECT %s::timestamptz::text", [datetime.datetime(2020, 1, 1, 12, tzinfo=UTC)]) == "2020-01-01 12:00:00+00"

    two_requests(alias, first, second)
    assert stats(alias)["connects"] == 1


@pytest.mark.mysql
def test_mysql_connection_comes_back_as_django_set_it(make_alias, items):
    alias = make_alias(
        {"POOL_SIZE": 1, "MAX_OVERFLOW": 0},
        OPTIONS={"isolation_level": "read committed", "init_command": "SET time_zone = '+00:00'"},
    )

    def first(conn: Any) -> None:
        transaction.set_autocommit(False, using=alias)
        items.objects.using(alias).create(name="left-open")

    def second(conn: Any) -> None:
        assert conn.get_autocommit() is True
        assert scalar(conn, "SELECT @@in_transaction") == 0
        assert scalar(conn, "SELECT count(*) FROM testapp_item WHERE name = 'left-open'") == 0
        assert scalar(conn, "SELECT @@session.tx_isolation") == "READ-COMMITTED"
        assert scalar(conn, "SELECT @@session.time_zone") == "+00:00"

    two_requests(alias, first, second)
    assert stats(alias)["connects"] == 1


@pytest.mark.parametrize("begin", ["BEGIN", "START TRANSACTION"])
def test_raw_transaction_left_open_comes_back_rolled_back(make_alias, server, items, begin):
    """A request that opens a transaction with raw SQL and ends inside it (an
    error between START TRANSACTION and COMMIT) must not pass it on: the next
    request's statements would run inside it, uncommitted. The driver reports
    it (libpq, PyMySQL, mysqlclient on MariaDB Connector/C); where it cannot,
    djpool reads the statements."""
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0})

    def first(conn: Any) -> None:
        with conn.cursor() as cursor:
            cursor.execute(begin)
            cursor.execute("INSERT INTO testapp_item (name, value) VALUES ('raw-left-open', 0)")
        # the request ends here, without COMMIT or ROLLBACK

    def second(conn: Any) -> None:
        if server.vendor == "mysql":
            assert scalar(conn, "SELECT @@in_transaction") == 0
        assert scalar(conn, "SELECT count(*) FROM testapp_item WHERE name = 'raw-left-open'") == 0

    two_requests(alias, first, second)


def test_raw_transaction_the_statement_text_hides_comes_back_rolled_back(make_alias, server, items):
    """A raw BEGIN no statement pattern reads (after a comment) is still
    rolled back at the end of the request, where the driver reports the
    server's transaction status: libpq, PyMySQL, and mysqlclient on MariaDB
    Connector/C (Debian's, CI's)."""
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0})
    if connections[alias].djpool_watch_transaction_statements:
        pytest.skip("this driver cannot report a transaction: djpool reads the statement text")

    def first(conn: Any) -> None:
        with conn.cursor() as cursor:
            cursor.execute("/* app */ START TRANSACTION")
            cursor.execute("INSERT INTO testapp_item (name, value) VALUES ('raw-hidden', 0)")
        if server.vendor == "mysql":
            assert scalar(conn, "SELECT @@in_transaction") == 1
            assert conn.djpool_transaction_open(conn.connection)

    def second(conn: Any) -> None:
        if server.vendor == "mysql":
            assert scalar(conn, "SELECT @@in_transaction") == 0
            assert not conn.djpool_transaction_open(conn.connection)
        assert scalar(conn, "SELECT count(*) FROM testapp_item WHERE name = 'raw-hidden'") == 0

    two_requests(alias, first, second)


@pytest.mark.mysql
def test_mysql_driver_reports_raw_transactions(make_alias):
    """mysqlclient built on MariaDB Connector/C (CI's, Debian's) and PyMySQL
    read the server's "transaction open" flag, so session mode watches no
    statement text (one call fewer per execute()). Elsewhere the watch stays."""
    from djpool.backends.mysql import base, status

    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0})
    conn = connections[alias]
    if base.USING_PYMYSQL:
        assert base._server_status is status.pymysql_server_status
    else:
        # Debian's mysqlclient links libmariadb, which has mariadb_get_info().
        assert base._server_status is status.mysqlclient_server_status is not None
    assert not conn.djpool_watch_transaction_statements
    with conn.cursor() as cursor:
        assert type(cursor) is CursorWrapper  # no watching subclass
        cursor.execute("SELECT 1")
        assert not conn.djpool_transaction_open(conn.connection)
        if not base.USING_PYMYSQL:
            # Read from the MYSQL struct once its field was found (not a
            # foreign call per return).
            assert type(conn.connection._djpool_server_status) is ctypes.c_uint
        cursor.execute("/* hidden from the statement text */ BEGIN")
        assert conn.djpool_transaction_open(conn.connection)
        assert conn.djpool_in_transaction(conn.connection)
        cursor.execute("SELECT @@in_transaction")
        assert cursor.fetchone()[0] == 1
        cursor.execute("COMMIT")
        assert not conn.djpool_transaction_open(conn.connection)
        assert not conn.djpool_in_transaction(conn.connection)
    conn.close()


@pytest.mark.mysql
@pytest.mark.parametrize("layout", ["known", "unknown"])
def test_mysqlclient_status_field_or_the_call_reads_the_server_flag(monkeypatch, server, layout):
    """The struct field is read only where its place was found for sure;
    a layout djpool does not recognize keeps mariadb_get_info(). Both agree
    with the server's @@in_transaction."""
    from djpool.backends.mysql import base, status

    if base.USING_PYMYSQL:
        pytest.skip("PyMySQL keeps the flags itself")
    if layout == "unknown":
        # As if the library's struct had another field between the two.
        monkeypatch.setattr(status, "_TO_PROTOCOL_VERSION", status._TO_PROTOCOL_VERSION + 8)
        monkeypatch.setattr(status, "_TO_SERVER_STATUS", status._TO_SERVER_STATUS + 8)
    conn = server.admin_connect(server.database)
    try:
        conn.autocommit(True)
        cursor = conn.cursor()
        assert not status.mysqlclient_server_status(conn) & status.SERVER_STATUS_IN_TRANS
        field = conn._djpool_server_status
        assert (type(field) is ctypes.c_uint) == (layout == "known")
        for sql, expected in (("/* hidden */ START TRANSACTION", True), ("SELECT 1", True), ("COMMIT", False)):
            cursor.execute(sql)
            cursor.fetchall()
            flags = status.mysqlclient_server_status(conn)
            assert bool(flags & status.SERVER_STATUS_IN_TRANS) is expected
            assert bool(flags & status.SERVER_STATUS_AUTOCOMMIT)  # and get_autocommit() agrees
            assert conn.get_autocommit()
            cursor.execute("SELECT @@in_transaction")
            assert cursor.fetchone()[0] == int(expected)
    finally:
        conn.close()


@pytest.mark.mysql
def test_mysqlclient_status_field_first_read_at_zero_follows_the_server(server):
    """A connection first read with autocommit off and no transaction open:
    every flag djpool reads is 0 there, and the field found at that value
    must still be the live one (not a copy, not taken for "not found")."""
    from djpool.backends.mysql import base, status

    if base.USING_PYMYSQL:
        pytest.skip("PyMySQL keeps the flags itself")
    conn = server.admin_connect(server.database)
    try:
        conn.autocommit(False)
        cursor = conn.cursor()
        cursor.execute("COMMIT")
        flags = status.mysqlclient_server_status(conn)
        assert not flags & (status.SERVER_STATUS_IN_TRANS | status.SERVER_STATUS_AUTOCOMMIT), flags
        assert type(conn._djpool_server_status) is ctypes.c_uint  # the field, found at 0
        assert base._in_transaction(conn)  # autocommit off: given back, it is rolled back
        conn.autocommit(True)
        assert status.mysqlclient_server_status(conn) & status.SERVER_STATUS_AUTOCOMMIT
        assert not base._in_transaction(conn)
        cursor.execute("/* hidden */ BEGIN")
        assert status.mysqlclient_server_status(conn) & status.SERVER_STATUS_IN_TRANS
        cursor.execute("SELECT @@in_transaction")
        assert cursor.fetchone()[0] == 1
        cursor.execute("ROLLBACK")
        assert not status.mysqlclient_server_status(conn) & status.SERVER_STATUS_IN_TRANS
    finally:
        conn.close()


@pytest.mark.mysql
def test_raw_transaction_committed_comes_back_without_a_rollback(make_alias, items):
    """The COMMIT is read too: a request whose raw transaction ended costs no ROLLBACK."""
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0})
    rollbacks = "SELECT variable_value FROM information_schema.session_status WHERE variable_name = 'COM_ROLLBACK'"
    seen: dict[str, int] = {}

    def first(conn: Any) -> None:
        seen["before"] = int(scalar(conn, rollbacks))
        with conn.cursor() as cursor:
            cursor.execute("START TRANSACTION")
            cursor.execute("INSERT INTO testapp_item (name, value) VALUES ('raw-committed', 0)")
            cursor.execute("COMMIT")

    def second(conn: Any) -> None:
        assert int(scalar(conn, rollbacks)) == seen["before"]
        assert scalar(conn, "SELECT count(*) FROM testapp_item WHERE name = 'raw-committed'") == 1

    two_requests(alias, first, second)
    items.objects.using(alias).filter(name="raw-committed").delete()


# ##### RESET_ON_RETURN = "full": raw session state, item by item #####

# name: (statements of the first request, query of the second, value if reset, value if not)
POSTGRESQL_STATE = {
    "search_path": (["SET search_path TO pg_catalog"], "SHOW search_path", '"$user", public', "pg_catalog"),
    "role": (["SET ROLE {role}"], "SELECT current_user::text", "postgres", "{role}"),
    "temp_table": (["CREATE TEMP TABLE djpool_rel_tmp (x int)"], "SELECT to_regclass('djpool_rel_tmp') IS NULL", True, False),
    "advisory_lock": (
        ["SELECT pg_advisory_lock(424242)"],
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
        0,
        1,
    ),
    "prepared_statement": (["PREPARE djpool_rel_ps AS SELECT 1"], "SELECT count(*) FROM pg_prepared_statements WHERE name = 'djpool_rel_ps'", 0, 1),
    "listen": (["LISTEN djpool_rel_channel"], "SELECT count(*) FROM pg_listening_channels()", 0, 1),
    "setting": (["SET statement_timeout = 12345"], "SHOW statement_timeout", "0", "12345ms"),
}

MYSQL_STATE = {
    "user_variable": (["SET @djpool_rel = 42"], "SELECT @djpool_rel", None, 42),
    # None: querying the table fails, it is gone.
    "temporary_table": (["CREATE TEMPORARY TABLE djpool_rel_tmp (x int)"], "SELECT count(*) FROM djpool_rel_tmp", None, 0),
    "session_variable": (["SET SESSION wait_timeout = 12345"], "SELECT @@session.wait_timeout = @@global.wait_timeout", 1, 0),
    "sql_mode": (["SET SESSION sql_mode = 'ANSI_QUOTES'"], "SELECT @@session.sql_mode = 'ANSI_QUOTES'", 0, 1),
}


def _state_cases(vendor: str) -> list[Any]:
    table = POSTGRESQL_STATE if vendor == "postgresql" else MYSQL_STATE
    return [
        pytest.param(vendor, name, mode, marks=getattr(pytest.mark, vendor), id=f"{vendor}-{name}-{mode}")
        for name in table
        for mode in ("full", "rollback")
    ]


@pytest.mark.parametrize("vendor, name, mode", _state_cases("postgresql") + _state_cases("mysql"))
def test_full_reset_clears_session_state(vendor, name, mode, make_alias, server, request):
    role = request.getfixturevalue("pg_role") if name == "role" else ""
    statements, query, if_reset, if_kept = (POSTGRESQL_STATE if vendor == "postgresql" else MYSQL_STATE)[name]
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "RESET_ON_RETURN": mode})

    def first(conn: Any) -> None:
        with conn.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement.format(role=role))

    def second(conn: Any) -> Any:
        if name == "temporary_table":
            from django.db import DatabaseError

            try:
                return scalar(conn, query)
            except DatabaseError:
                return None
        return scalar(conn, query)

    expected = if_reset if mode == "full" else if_kept
    expected = expected.format(role=role) if isinstance(expected, str) else expected
    try:
        assert two_requests(alias, first, second) == expected
    finally:
        if name == "advisory_lock" and mode == "rollback":
            connections[alias].close()
            from djpool.core import registry

            registry.close_all(alias)
    if name == "advisory_lock" and mode == "full":
        # Another session can take the lock: it was really released.
        assert server.query("SELECT pg_try_advisory_lock(424242), pg_advisory_unlock(424242)")[0] == (True, True)


@pytest.mark.postgresql
def test_postgresql_full_reset_keeps_psycopg_prepared_statements_working(make_alias):
    """psycopg prepares a query it sees often; DISCARD ALL drops it on the server."""
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "RESET_ON_RETURN": "full"})

    def run(conn: Any) -> list[int]:
        return [scalar(conn, "SELECT %s::int + 1", [n]) for n in range(10)]

    assert two_requests(alias, run, run) == list(range(1, 11))


@pytest.fixture
def tokyo_database(server: Any) -> Any:
    """A PostgreSQL database whose sessions start in Asia/Tokyo unless Django sets the zone."""
    if server.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    name = f"djpool_rel_tz{os.getpid()}"
    server.create_database(name)
    server.query(f'ALTER DATABASE "{name}" SET timezone TO \'Asia/Tokyo\'')
    yield name
    from djpool.core import registry

    registry.dispose()
    server.drop_database(name)


@pytest.mark.postgresql
def test_postgresql_full_reset_then_django_sets_the_time_zone_again(make_alias, server, tokyo_database):
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "RESET_ON_RETURN": "full"}, NAME=tokyo_database)
    noon_utc = datetime.datetime(2020, 1, 1, 12, tzinfo=UTC)

    def first(conn: Any) -> None:
        assert scalar(conn, "SHOW TIME ZONE") == "UTC"
        with conn.cursor() as cursor:
            cursor.execute("SET TIME ZONE 'America/New_York'")
            cursor.execute("CREATE TEMP TABLE djpool_rel_marker (x int)")

    def second(conn: Any) -> tuple[Any, ...]:
        return (
            scalar(conn, "SELECT to_regclass('djpool_rel_marker') IS NULL"),  # DISCARD ALL ran
            scalar(conn, "SHOW TIME ZONE"),
            scalar(conn, "SELECT %s::timestamptz::text", [noon_utc]),
            scalar(conn, "SELECT '2020-01-01 12:00:00'::timestamptz"),
        )

    reset, zone, written, read = two_requests(alias, first, second)
    assert reset is True
    # DISCARD ALL alone would leave the database's default, Asia/Tokyo.
    assert zone == "UTC"
    assert written == "2020-01-01 12:00:00+00"
    assert read == noon_utc and read.utcoffset() == datetime.timedelta(0)


@pytest.mark.mysql
def test_mysql_full_reset_then_django_initialises_the_session_again(make_alias):
    alias = make_alias(
        {"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "RESET_ON_RETURN": "full"},
        OPTIONS={"isolation_level": "read committed", "init_command": "SET time_zone = '+00:00'"},
    )

    def first(conn: Any) -> None:
        with conn.cursor() as cursor:
            cursor.execute("SET SESSION time_zone = '+09:00'")
            cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE")
            cursor.execute("SET @djpool_rel_marker = 1")

    def second(conn: Any) -> tuple[Any, ...]:
        return (
            scalar(conn, "SELECT @djpool_rel_marker IS NULL"),  # COM_CHANGE_USER ran
            scalar(conn, "SELECT @@session.time_zone"),
            scalar(conn, "SELECT @@session.tx_isolation"),
            scalar(conn, "SELECT TIMESTAMPDIFF(MINUTE, UTC_TIMESTAMP(), NOW())"),
        )

    assert two_requests(alias, first, second) == (1, "+00:00", "READ-COMMITTED", 0)
