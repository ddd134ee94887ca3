"""POOL_MODE = "transaction": the connection goes back to the pool between transactions.

Each test checks, through the pool's counters and the server's session ids, that a
connection is held exactly as long as a transaction or an open cursor needs it.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connections, transaction

from djpool.core import PoolTimeout, registry, stats
from tests.conftest import run_in_threads

pytestmark = pytest.mark.server_backed

TRANSACTION_MODE = {"POOL_MODE": "transaction", "POOL_SIZE": 2, "MAX_OVERFLOW": 0, "TIMEOUT": 5}


def session_id(conn, server) -> int:
    with conn.cursor() as cursor:
        cursor.execute(server.pid_query)
        return int(cursor.fetchone()[0])


def test_connection_goes_back_when_the_cursor_closes(make_alias, server):
    alias = make_alias(TRANSACTION_MODE)
    conn = connections[alias]
    with conn.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert stats(alias)["checked_out"] == 1
    assert stats(alias)["checked_out"] == 0
    assert conn.connection is None
    # And is taken again transparently.
    with conn.cursor() as cursor:
        cursor.execute("SELECT 2")
        assert cursor.fetchone()[0] == 2
    assert stats(alias)["checked_out"] == 0
    assert stats(alias)["connects"] == 1


def test_orm_queries_release_between_statements(make_alias):
    from tests.testapp.models import Item

    alias = make_alias(TRANSACTION_MODE)
    Item.objects.using(alias).create(name="tx-orm")
    assert stats(alias)["checked_out"] == 0
    assert Item.objects.using(alias).filter(name="tx-orm").count() == 1
    assert stats(alias)["checked_out"] == 0
    Item.objects.using(alias).filter(name="tx-orm").delete()
    assert stats(alias)["checked_out"] == 0


def test_wrapper_stays_connected_to_django_between_transactions(make_alias):
    """Taking the connection back between transactions is not a new Django
    connection: no connect(), no connection_created, until the request ends
    (close(), or close_old_connections() at a request boundary)."""
    from django.db import close_old_connections
    from django.db.backends.signals import connection_created

    alias = make_alias(TRANSACTION_MODE)
    conn = connections[alias]
    created = []

    def count(sender, connection, **kwargs):
        if connection.alias == alias:
            created.append(connection)

    def query() -> None:
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1")

    connection_created.connect(count)
    try:
        for _ in range(3):
            query()
        with transaction.atomic(using=alias):
            query()
        assert stats(alias)["checkouts"] == 4
        assert len(created) == 1
        conn.close()
        query()
        assert len(created) == 2
        close_old_connections()  # request_finished, with the connection handed back
        query()
        assert len(created) == 3
        assert stats(alias)["checked_out"] == 0
    finally:
        connection_created.disconnect(count)


def test_connection_opened_on_take_back_gets_djangos_setup(make_alias, server):
    """A take-back that has to open a new connection (the idle ones were
    closed meanwhile) still runs Django's per-connection setup on it."""
    if server.vendor == "postgresql":
        alias = make_alias(TRANSACTION_MODE, TIME_ZONE="Asia/Tokyo")
        check, expected = "SHOW TIME ZONE", "Asia/Tokyo"
    else:
        alias = make_alias(TRANSACTION_MODE, OPTIONS={"isolation_level": "read committed"})
        check, expected = "SELECT @@session.tx_isolation", "READ-COMMITTED"
    conn = connections[alias]
    first = session_id(conn, server)
    assert registry.dispose(alias) == 1
    with conn.cursor() as cursor:
        cursor.execute(check)
        assert cursor.fetchone()[0] == expected
    assert session_id(conn, server) != first
    assert stats(alias)["connects"] == 2


def test_atomic_block_runs_on_one_session_and_holds_it(make_alias, server):
    alias = make_alias(TRANSACTION_MODE)
    conn = connections[alias]
    with transaction.atomic(using=alias):
        ids = {session_id(conn, server) for _ in range(3)}
        with transaction.atomic(using=alias):  # savepoint
            ids.add(session_id(conn, server))
        assert stats(alias)["checked_out"] == 1
    assert len(ids) == 1
    assert stats(alias)["checked_out"] == 0


def test_manual_transaction_holds_until_autocommit_is_restored(make_alias, server):
    from tests.testapp.models import Item

    alias = make_alias(TRANSACTION_MODE)
    conn = connections[alias]
    conn.set_autocommit(False)
    first = session_id(conn, server)
    Item.objects.using(alias).create(name="tx-manual")
    assert session_id(conn, server) == first
    assert stats(alias)["checked_out"] == 1
    conn.commit()
    assert stats(alias)["checked_out"] == 1
    conn.set_autocommit(True)
    assert stats(alias)["checked_out"] == 0
    assert Item.objects.using(alias).filter(name="tx-manual").exists()
    Item.objects.using(alias).filter(name="tx-manual").delete()


def _insert_sql(conn) -> str:
    from tests.testapp.models import Item

    return f"INSERT INTO {conn.ops.quote_name(Item._meta.db_table)} (name, value) VALUES (%s, 0)"


@pytest.mark.parametrize("begin", ["BEGIN", "START TRANSACTION"])
@pytest.mark.parametrize("end", ["COMMIT", "ROLLBACK"])
def test_raw_transaction_holds_the_connection_until_it_ends(make_alias, server, begin, end):
    """A transaction opened with raw SQL outside atomic() keeps its connection
    until its COMMIT or ROLLBACK, as PgBouncer does: all its statements run on
    one server session, and its ROLLBACK undoes them (where the driver cannot
    see such a transaction, the statement text tells)."""
    from tests.testapp.models import Item

    alias = make_alias(TRANSACTION_MODE)
    conn = connections[alias]
    with conn.cursor() as cursor:
        cursor.execute(begin)
    assert stats(alias)["checked_out"] == 1
    first = session_id(conn, server)
    with conn.cursor() as cursor:
        cursor.execute(_insert_sql(conn), ["tx-raw"])
    assert session_id(conn, server) == first
    assert stats(alias)["checked_out"] == 1
    with conn.cursor() as cursor:
        cursor.execute(end.lower())
    assert stats(alias)["checked_out"] == 0
    assert Item.objects.using(alias).filter(name="tx-raw").exists() == (end == "COMMIT")
    Item.objects.using(alias).filter(name="tx-raw").delete()


@pytest.mark.parametrize(
    "sql, kind",
    [
        ("begin;", "begin"),
        ("  START TRANSACTION READ ONLY", "begin"),
        ("BEGIN ISOLATION LEVEL SERIALIZABLE", "begin"),
        ("commit work", "end"),
        ("ROLLBACK AND NO CHAIN", "end"),
        ("END", "end"),
        ("ROLLBACK TO SAVEPOINT s1", None),
        ("rollback work to s1", None),
        ("COMMIT AND CHAIN", None),  # the next transaction starts at once
        ("SET search_path TO app", "set"),
        ("SET LOCAL lock_timeout = 0", None),
        ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", None),
        ("BEGIN WORK", "begin"),
        ("BEGIN\n  my_procedure;\nEND;", None),  # a PL/SQL block
        ("BEGIN NOT ATOMIC SELECT 1; END", None),  # a MariaDB compound statement
        ("BEGINNING", None),
        ("SELECT 1", None),
    ],
)
def test_raw_statements_are_told_apart(sql, kind):
    from djpool.core.statements import RAW_STATEMENT

    match = RAW_STATEMENT.match(sql)
    assert (match.lastgroup if match else None) == kind


def test_raw_transaction_left_open_is_rolled_back_when_the_request_ends(make_alias, server):
    from tests.testapp.models import Item

    alias = make_alias({**TRANSACTION_MODE, "POOL_SIZE": 1})
    conn = connections[alias]
    with conn.cursor() as cursor:
        cursor.execute("BEGIN")
    with conn.cursor() as cursor:
        cursor.execute(_insert_sql(conn), ["tx-raw-open"])
    conn.close()  # the request ends without COMMIT
    assert stats(alias)["checked_out"] == 0
    # The same (only) connection: its next user is not inside the abandoned transaction.
    assert not Item.objects.using(alias).filter(name="tx-raw-open").exists()
    if server.vendor == "mysql":
        with conn.cursor() as cursor:
            cursor.execute("SELECT @@in_transaction")
            assert cursor.fetchone()[0] == 0


@pytest.mark.parametrize(
    "opening, inside, closing, hidden",
    [
        pytest.param(["BEGIN", "SAVEPOINT s1"], ["ROLLBACK TO SAVEPOINT s1"], "COMMIT", False, id="rollback-to-savepoint"),
        # The driver's transaction status (libpq's; the MySQL server's flag,
        # through PyMySQL or MariaDB Connector/C) covers what no statement
        # pattern can.
        pytest.param(["/* app */ BEGIN"], ["SELECT 1"], "/* app */ COMMIT", True, id="hidden-begin"),
        pytest.param(["BEGIN"], ["SELECT 1"], "/* app */ COMMIT", True, id="hidden-commit"),
    ],
)
def test_raw_transaction_is_held_exactly_until_it_ends(make_alias, opening, inside, closing, hidden):
    alias = make_alias(TRANSACTION_MODE)
    conn = connections[alias]
    if hidden and conn.djpool_watch_transaction_statements:
        pytest.skip("this driver cannot report a transaction: djpool reads the statement text")
    for statements in (opening, inside):
        with conn.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
        assert stats(alias)["checked_out"] == 1
    with conn.cursor() as cursor:
        cursor.execute(closing)
    assert stats(alias)["checked_out"] == 0


def test_rollback_and_on_commit_behave_as_stock(make_alias):
    from tests.testapp.models import Item

    alias = make_alias(TRANSACTION_MODE)
    ran = []
    with pytest.raises(RuntimeError):
        with transaction.atomic(using=alias):
            Item.objects.using(alias).create(name="tx-rolled-back")
            transaction.on_commit(lambda: ran.append("rolled back"), using=alias)
            raise RuntimeError
    with transaction.atomic(using=alias):
        Item.objects.using(alias).create(name="tx-committed")
        # The hook itself queries: it runs after the commit, outside the transaction.
        transaction.on_commit(lambda: ran.append(Item.objects.using(alias).filter(name="tx-committed").count()), using=alias)
    assert ran == [1]
    assert not Item.objects.using(alias).filter(name="tx-rolled-back").exists()
    assert stats(alias)["checked_out"] == 0
    Item.objects.using(alias).filter(name="tx-committed").delete()


def test_select_for_update_and_durable(make_alias):
    from tests.testapp.models import Item

    alias = make_alias(TRANSACTION_MODE)
    item = Item.objects.using(alias).create(name="tx-lock")
    with transaction.atomic(using=alias, durable=True):
        locked = Item.objects.using(alias).select_for_update().get(pk=item.pk)
        locked.value = 7
        locked.save(using=alias)
    assert Item.objects.using(alias).get(pk=item.pk).value == 7
    item.delete(using=alias)
    assert stats(alias)["checked_out"] == 0


def test_iterator_holds_one_connection_until_exhausted(make_alias, server):
    from tests.testapp.models import Item

    alias = make_alias(TRANSACTION_MODE)
    Item.objects.using(alias).bulk_create(Item(name=f"tx-it{i}", value=i) for i in range(30))
    iterator = Item.objects.using(alias).filter(name__startswith="tx-it").order_by("value").iterator(chunk_size=4)
    values = [next(iterator).value]
    assert stats(alias)["checked_out"] == 1
    values.extend(item.value for item in iterator)
    assert values == list(range(30))
    assert stats(alias)["checked_out"] == 0
    Item.objects.using(alias).filter(name__startswith="tx-it").delete()


@pytest.mark.parametrize("mode", ["transaction", "session"])
def test_few_connections_serve_many_threads(make_alias, server, mode):
    """Requests that spend time outside the database hold no connection meanwhile.

    12 threads x 3 requests, each with 0.2 s of non-database work between two
    queries, on 2 connections with TIMEOUT 0.5 s: transaction mode serves them
    all; session mode (the control) must time out.
    """
    alias = make_alias({**TRANSACTION_MODE, "POOL_MODE": mode, "TIMEOUT": 0.5})
    baseline = server.connection_count()

    def request(thread_number):
        conn = connections[alias]
        done = 0
        for _ in range(3):
            try:
                with conn.cursor() as cursor:
                    cursor.execute("SELECT 1")
                time.sleep(0.2)  # rendering, an API call...
                with conn.cursor() as cursor:
                    cursor.execute("SELECT 2")
                done += 1
            except PoolTimeout:
                pass
            finally:
                conn.close()  # request_finished
        return done

    done = run_in_threads(12, request)
    assert server.connection_count() - baseline <= 2
    assert stats(alias)["connects"] <= 2
    if mode == "transaction":
        assert done == [3] * 12
        assert stats(alias)["timeouts"] == 0
    else:
        assert stats(alias)["timeouts"] > 0


def test_other_threads_progress_while_one_holds_a_transaction(make_alias):
    alias = make_alias(TRANSACTION_MODE)
    holder_in = threading.Event()
    release = threading.Event()

    def holder():
        with transaction.atomic(using=alias):
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT 1")
            holder_in.set()
            release.wait(10)

    thread = threading.Thread(target=lambda: (holder(), connections.close_all()))
    thread.start()
    assert holder_in.wait(10)
    try:
        def short(i):
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT 1")
                return cursor.fetchone()[0]

        assert run_in_threads(6, short) == [1] * 6
    finally:
        release.set()
        thread.join(10)


def test_no_uncommitted_work_or_local_setting_reaches_the_next_user(make_alias, server):
    from tests.testapp.models import Item

    alias = make_alias({**TRANSACTION_MODE, "POOL_SIZE": 1})
    local_set = "SET LOCAL lock_timeout = '1234ms'" if server.vendor == "postgresql" else "SET @tx_marker = 1"
    with pytest.raises(RuntimeError):
        with transaction.atomic(using=alias):
            Item.objects.using(alias).create(name="tx-leak")
            with connections[alias].cursor() as cursor:
                cursor.execute(local_set)
            raise RuntimeError
    conn = connections[alias]
    assert not Item.objects.using(alias).filter(name="tx-leak").exists()
    if server.vendor == "postgresql":
        with conn.cursor() as cursor:
            cursor.execute("SHOW lock_timeout")
            assert cursor.fetchone()[0] != "1234ms"


def test_session_level_set_outside_a_transaction_is_warned_once(make_alias, caplog):
    from djpool.core import transaction_mode

    transaction_mode._warned_statements.clear()
    alias = make_alias(TRANSACTION_MODE)
    conn = connections[alias]
    statement = "SET @@session.sql_select_limit = 50" if conn.vendor == "mysql" else "SET statement_timeout = 12345"
    # Django's own setup on connect (MySQL: SET SESSION TRANSACTION ISOLATION
    # LEVEL ...) is not the user's session state: no warning for it.
    with caplog.at_level(logging.WARNING, logger="djpool.backends"):
        for _ in range(3):
            with conn.cursor() as cursor:
                cursor.execute(statement)
        with transaction.atomic(using=alias):
            with conn.cursor() as cursor:
                cursor.execute("SET LOCAL statement_timeout = 0" if conn.vendor == "postgresql" else "SELECT 1")
    warnings = [r for r in caplog.records if "changes the session outside a transaction" in r.getMessage()]
    assert len(warnings) == 1
    assert statement in warnings[0].getMessage()
    # Leave the shared connection as we found it.
    with conn.cursor() as cursor:
        cursor.execute("SET @@session.sql_select_limit = DEFAULT" if conn.vendor == "mysql" else "RESET statement_timeout")


def test_server_details_readable_after_hand_back(make_alias):
    conn = connections[make_alias(TRANSACTION_MODE)]
    with conn.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert conn.connection is None
    version = conn.get_database_version()
    assert version and version[0] > 0
    assert stats(conn.alias)["checked_out"] == 0


def test_conn_max_age_is_refused_with_transaction_mode(make_alias):
    alias = make_alias(TRANSACTION_MODE, CONN_MAX_AGE=60)
    with pytest.raises(ImproperlyConfigured, match=r"CONN_MAX_AGE must be 0 with POOL_OPTIONS\['POOL_MODE'\] = 'transaction'; got 60"):
        connections[alias].ensure_connection()