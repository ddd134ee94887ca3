"""MySQL/MariaDB-specific behaviour of djpool.backends.mysql."""

from __future__ import annotations

import os

import pytest
from django.db import connections

pytestmark = pytest.mark.mysql

# The matrix's PyMySQL environment (tests/conftest.py installs it as MySQLdb).
DRIVER = "pymysql" if os.environ.get("DJPOOL_TEST_DRIVER") == "pymysql" else "MySQLdb"


def test_the_environment_runs_on_its_driver(make_alias):
    """The pooled connections are the driver's own: mysqlclient, or PyMySQL in its environment."""
    conn = connections[make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0})]
    conn.ensure_connection()
    try:
        assert type(conn.connection).__module__.split(".")[0] == DRIVER
        assert conn.djpool_sqlalchemy_dialect().driver == ("pymysql" if DRIVER == "pymysql" else "mysqldb")
    finally:
        conn.close()


def session_status(cursor, name: str) -> int:
    cursor.execute("SHOW SESSION STATUS LIKE %s", [name])
    return int(cursor.fetchone()[1])


def test_checkout_sends_no_extra_statements(make_alias):
    """No ping, no re-run of Django's SET, no ROLLBACK on a busy connection."""
    conn = connections[make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0})]
    with conn.cursor() as cursor:
        before = session_status(cursor, "Questions")
    conn.close()
    for _ in range(5):
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1")
        conn.close()
    with conn.cursor() as cursor:
        after = session_status(cursor, "Questions")
    conn.close()
    # SHOW STATUS itself counts once, plus the five SELECTs.
    assert after - before == 6


@pytest.mark.parametrize("autocommit_setting", [True, False])
def test_a_new_connection_is_opened_in_autocommit_mode(make_alias, autocommit_setting):
    """Both drivers connect with autocommit off unless told: a stock connection costs a SET inside
    the driver's connect and, with AUTOCOMMIT on, Django's SET back. A new pooled connection is
    opened in AUTOCOMMIT's mode, so the server sees neither (counted in the session's own SETs)."""
    from django.db.backends.mysql.base import DatabaseWrapper as StockWrapper

    def sets_of_a_new_session(conn) -> int:
        try:
            with conn.cursor() as cursor:
                assert conn.get_autocommit() is autocommit_setting
                assert bool(conn.connection.get_autocommit()) is autocommit_setting
                return session_status(cursor, "Com_set_option")
        finally:
            conn.close()

    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0}, AUTOCOMMIT=autocommit_setting)
    pooled = sets_of_a_new_session(connections[alias])
    stock = sets_of_a_new_session(StockWrapper(dict(connections[alias].settings_dict), "stock_probe"))
    assert pooled == stock - (2 if autocommit_setting else 0), (pooled, stock)


def test_a_session_lost_in_a_request_is_replaced_by_a_set_up_one(make_alias, server, monkeypatch):
    """The server ends a request's session and its query fails: at the request's end Django checks
    the connection with the driver's ping(). PyMySQL's, up to 1.1.2 (djpool-mysql[pymysql] allows
    1.1), reconnects: a new session without Django's setup went back to the pool as the old one.
    The pool's check never reconnects, so that connection is closed and the next request gets a
    new one, set up."""
    from django.core.signals import request_finished, request_started
    from django.db import OperationalError

    from djpool.core import stats
    from tests.reliability.conftest import backend_pid

    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0})
    conn = connections[alias]
    request_started.send(sender=None)
    lost = backend_pid(conn)
    if DRIVER == "pymysql":
        # Whatever PyMySQL is installed: a ping() that reconnects, as 1.1's does.
        ping = type(conn.connection).ping
        monkeypatch.setattr(type(conn.connection), "ping", lambda self, reconnect=True: ping(self, reconnect))
    server.kill(lost)
    with pytest.raises(OperationalError), conn.cursor() as cursor:
        cursor.execute("SELECT 1")
    request_finished.send(sender=None)
    request_started.send(sender=None)
    try:
        with conn.cursor() as cursor:
            variable = "tx_isolation" if conn.mysql_is_mariadb else "transaction_isolation"
            cursor.execute(f"SELECT CONNECTION_ID(), @@SESSION.{variable}")
            session, isolation = cursor.fetchone()
        assert session != lost and isolation == "READ-COMMITTED", (session, isolation)  # Django's default
        figures = stats(alias)
        assert figures["connects"] == 2 and figures["invalidations"] == 1, figures
    finally:
        request_finished.send(sender=None)
        conn.close()


def test_user_variables_and_full_reset(make_alias):
    plain = connections[make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0})]
    with plain.cursor() as cursor:
        cursor.execute("SET @leak = 42")
    plain.close()
    with plain.cursor() as cursor:
        cursor.execute("SELECT @leak")
        assert cursor.fetchone()[0] == 42
    plain.close()

    reset = connections[make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "RESET_ON_RETURN": "full"})]
    with reset.cursor() as cursor:
        cursor.execute("SET @leak = 42")
        cursor.execute("SELECT CONNECTION_ID(), @@character_set_client")
        session, charset = cursor.fetchone()
    reset.close()
    with reset.cursor() as cursor:
        cursor.execute("SELECT CONNECTION_ID(), @leak, @@character_set_client")
        row = cursor.fetchone()
    reset.close()
    assert row[0] == session
    assert row[1] is None
    # The reset keeps the connection's character set (Django sets it at connect).
    assert row[2] == charset


STANDALONE = """
import importlib.util, json, os, sys
assert importlib.util.find_spec("MySQLdb") is None, "mysqlclient is installed"
import django
from django.conf import settings
settings.configure(DATABASES={"default": json.loads(os.environ["DJPOOL_DATABASE"])})
django.setup()
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("SELECT CONNECTION_ID()")
    session = cursor.fetchone()[0]
print(json.dumps({"module": type(connection.connection).__module__, "mysqldb": sys.modules["MySQLdb"].__name__,
                  "session": session}))
connection.close()
"""


def test_pymysql_stands_in_for_missing_mysqlclient(server):
    """``djpool-mysql[pymysql]`` alone: the ENGINE installs PyMySQL as MySQLdb, no setup in settings."""
    if DRIVER != "pymysql":
        pytest.skip("the PyMySQL environment, where mysqlclient is not installed")
    import json
    import subprocess
    import sys

    database = server.settings(POOL_OPTIONS={"POOL_SIZE": 1, "MAX_OVERFLOW": 0})
    env = {key: value for key, value in os.environ.items() if key != "DJPOOL_TEST_DRIVER"}
    result = subprocess.run(
        [sys.executable, "-c", STANDALONE], env={**env, "DJPOOL_DATABASE": json.dumps(database)},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout)
    assert answer["module"].startswith("pymysql") and answer["mysqldb"] == "pymysql", answer
    assert answer["session"] > 0


@pytest.mark.parametrize("autocommit_setting", [True, False])
def test_connection_given_back_in_another_autocommit_mode_is_restored_on_its_return(
    make_alias, monkeypatch, autocommit_setting
):
    """A request that ends in the other autocommit mode (Django's own close
    path) gives its connection back in AUTOCOMMIT's mode again, set at the
    return within VALIDATION_TIMEOUT (after the rollback, if one was due), so
    the next request's connect sends no autocommit switch of its own."""
    from unittest import mock

    from django.core.signals import request_finished, request_started
    from django.db.backends.mysql.base import DatabaseWrapper as StockWrapper

    from djpool.backends.mysql.base import DatabaseWrapper

    restored: list[tuple[bool, float, bool]] = []
    setter = DatabaseWrapper.djpool_autocommit_within

    def recording(dbapi_connection, autocommit, timeout):
        setter(dbapi_connection, autocommit, timeout)
        restored.append((autocommit, timeout, bool(dbapi_connection.get_autocommit())))

    monkeypatch.setattr(DatabaseWrapper, "djpool_autocommit_within", staticmethod(recording))
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "VALIDATION_TIMEOUT": 2}, AUTOCOMMIT=autocommit_setting)
    conn = connections[alias]
    request_started.send(sender=None)
    conn.set_autocommit(not autocommit_setting)
    with conn.cursor() as cursor:
        before = session_status(cursor, "Questions")
        session = conn.connection.thread_id()
    request_finished.send(sender=None)  # the other mode: Django's own close path
    # The SET's answer carries the mode (the driver reads the server's status flag).
    assert restored[-1:] == [(autocommit_setting, 2.0, autocommit_setting)]

    switches = mock.patch.object(StockWrapper, "_set_autocommit", autospec=True, side_effect=StockWrapper._set_autocommit)
    request_started.send(sender=None)
    try:
        with switches as switch, conn.cursor() as cursor:
            assert conn.connection.thread_id() == session
            assert conn.get_autocommit() is autocommit_setting
            assert switch.call_count == 0
            # Since the first SHOW STATUS: the ROLLBACK (if a transaction was
            # open), the SET autocommit, this SHOW STATUS; nothing more.
            assert session_status(cursor, "Questions") - before == (3 if autocommit_setting else 2)
    finally:
        request_finished.send(sender=None)
        conn.close()
