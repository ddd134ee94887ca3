"""djpool.backends.oracle: pooling behaviour, asserted through what the server sees.

Tests taking ``oracle`` run against the stand-in driver and, when ORACLE_DSN
is set, against a real Oracle (see conftest.py). Tests taking ``fake`` need
failures or records only the stand-in can produce on cue.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections, transaction

from djpool.core import PoolTimeout, stats

from tests.conftest import run_in_threads
from tests.oracle.conftest import FAKE_SETTINGS

oracledb = pytest.importorskip("oracledb")
from tests.oracle.fake_oracledb import check_connect_arguments  # noqa: E402  (needs oracledb)


def session_id(connection) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT SYS_CONTEXT('USERENV', 'SID') FROM DUAL")
        return int(cursor.fetchone()[0])


def nls(connection, name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT value FROM nls_session_parameters WHERE parameter = %s", [name])
        return cursor.fetchone()[0]


# ##### Shared bodies: stand-in and real server #####


def test_django_holds_the_real_driver_connection(oracle):
    conn = connections[oracle.make_alias()]
    conn.ensure_connection()
    assert type(conn.connection) is oracle.connection_class
    assert type(conn.djpool_sqlalchemy_dialect()).__name__ == "OracleDialect_oracledb"
    conn.close()


def test_connection_is_reused_across_requests(oracle):
    alias = oracle.make_alias({"POOL_SIZE": 2})
    conn = connections[alias]
    sids = []
    for _ in range(5):
        sids.append(session_id(conn))
        conn.close()
    assert len(set(sids)) == 1
    assert sids[0] in oracle.session_ids()
    assert stats(alias)["connects"] == 1
    assert stats(alias)["checkouts"] == 5


def test_server_sessions_stay_within_pool_bounds(oracle):
    alias = oracle.make_alias({"POOL_SIZE": 2, "MAX_OVERFLOW": 1, "TIMEOUT": 30})
    baseline = len(oracle.session_ids())
    peak = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak.append(len(oracle.session_ids()))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()

    def work(i):
        conn = connections[alias]
        for _ in range(5):
            session_id(conn)
            time.sleep(0.005)
            conn.close()

    try:
        run_in_threads(8, work)
    finally:
        stop.set()
        watcher.join()
    assert max(peak) - baseline <= 3
    if oracle.name == "fake":
        assert oracle.server.peak_sessions <= 3
    figures = stats(alias)
    assert figures["checked_out"] == 0
    assert figures["connects"] <= 3
    assert figures["checkouts"] == 40


def test_exhaustion_raises_a_clear_error(oracle):
    alias = oracle.make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "TIMEOUT": 0.2})
    holder = connections[alias]
    holder.ensure_connection()
    try:
        with pytest.raises(PoolTimeout) as info:
            run_in_threads(1, lambda i: connections[alias].ensure_connection())
    finally:
        holder.close()
    assert "1 (POOL_SIZE) + 0 (MAX_OVERFLOW) connections were checked out for 0.2 s (TIMEOUT)" in str(info.value)
    assert repr(alias) in str(info.value)
    assert stats(alias)["timeouts"] == 1


def test_session_killed_by_the_server_is_replaced_by_the_pre_ping(oracle, caplog):
    alias = oracle.make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "PRE_PING_IDLE": 0})
    conn = connections[alias]
    first = session_id(conn)
    conn.close()
    oracle.kill(first)
    time.sleep(0.2)
    with caplog.at_level(logging.INFO, logger="djpool.pool"):
        second = session_id(conn)  # no DPY-4011 reaches Django
    conn.close()
    # The python-oracledb dialect recognised the error as a disconnect: an
    # expected replacement, not the warning an unknown ping failure gets.
    assert [r.levelname for r in caplog.records if r.name == "djpool.pool"] == ["INFO"]
    assert second != first
    assert first not in oracle.session_ids()
    assert stats(alias)["invalidations"] == 1
    assert stats(alias)["connects"] == 2


def test_uncommitted_work_is_rolled_back_on_return(oracle):
    from tests.testapp.models import Item

    alias = oracle.make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0})
    conn = connections[alias]
    conn.set_autocommit(False)
    Item.objects.using(alias).create(name="uncommitted")
    sid = session_id(conn)
    before = oracle.stat(sid, "user rollbacks")
    conn.close()  # without commit
    assert oracle.stat(sid, "user rollbacks") == before + 1
    conn.connect()
    assert session_id(conn) == sid
    assert conn.get_autocommit() is True
    assert conn.connection.autocommit is True
    assert not Item.objects.using(alias).filter(name="uncommitted").exists()
    conn.close()


def test_no_rollback_is_sent_for_an_idle_connection(oracle):
    alias = oracle.make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0})
    conn = connections[alias]
    sid = session_id(conn)
    conn.close()
    before = oracle.stat(sid, "user rollbacks")
    for _ in range(3):
        assert session_id(conn) == sid
        conn.close()
    # python-oracledb < 2.0 cannot tell; the pool then rolls back every time.
    expected = 0 if hasattr(oracledb.Connection, "transaction_in_progress") else 3
    assert oracle.stat(sid, "user rollbacks") == before + expected


def test_autocommit_is_restored_after_a_transaction(oracle):
    from tests.testapp.models import Item

    alias = oracle.make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0})
    conn = connections[alias]
    with transaction.atomic(using=alias):
        Item.objects.using(alias).create(name="in-atomic")
        assert conn.connection.autocommit is False
    Item.objects.using(alias).filter(name="in-atomic").delete()
    conn.close()
    conn.ensure_connection()
    # True, a bool, as with the stock backend (the predecessor handed back 1).
    assert conn.connection.autocommit is True
    conn.close()


def test_django_session_setup_runs_once_per_raw_connection(oracle):
    alias = oracle.make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0})
    conn = connections[alias]
    sid = session_id(conn)
    assert nls(conn, "NLS_TERRITORY") == "AMERICA"  # Django's init ran on the new session
    assert nls(conn, "NLS_DATE_FORMAT") == "YYYY-MM-DD HH24:MI:SS"
    with conn.cursor() as cursor:
        cursor.execute("SELECT SESSIONTIMEZONE FROM DUAL")
        assert cursor.fetchone()[0] == "UTC"  # USE_TZ = True
    with conn.cursor() as cursor:
        cursor.execute("ALTER SESSION SET NLS_TERRITORY = 'GERMANY'")
    conn.close()
    for _ in range(3):
        assert session_id(conn) == sid
        # Had Django's init run again on checkout, it would be AMERICA again.
        assert nls(conn, "NLS_TERRITORY") == "GERMANY"
        conn.close()
    if oracle.name == "fake":
        assert len(oracle.server.executed(sid, "ALTER SESSION SET NLS_TERRITORY = 'AMERICA'")) == 1


def test_a_wrapper_reusing_a_connection_gets_the_like_operators(oracle):
    """Django probes LIKE support once per wrapper; another thread's wrapper reuses the answer."""
    alias = oracle.make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0})
    first = run_in_threads(
        1, lambda i: (session_id(connections[alias]), connections[alias].__dict__.get("operators"))
    )[0]

    def second_thread(i):
        wrapper = connections[alias]
        sid = session_id(wrapper)
        return sid, wrapper.__dict__.get("operators"), wrapper.__dict__.get("pattern_ops")

    sid, operators, pattern_ops = run_in_threads(1, second_thread)[0]
    assert sid == first[0]
    assert operators is first[1] is not None
    assert pattern_ops is not None
    if oracle.name == "fake":
        probes = [sql for sql in oracle.server.executed(sid) if sql.startswith("SELECT 1 FROM DUAL WHERE DUMMY LIKE")]
        assert len(probes) == 1


def test_insert_returning_into_gives_the_pk(oracle):
    from tests.testapp.models import Item

    alias = oracle.make_alias()
    first = Item.objects.using(alias).create(name="ret1")
    second = Item.objects.using(alias).create(name="ret2")
    Item.objects.using(alias).filter(pk__in=[first.pk, second.pk]).delete()
    connections[alias].close()
    assert isinstance(first.pk, int) and isinstance(second.pk, int)
    assert second.pk > first.pk
    if oracle.name == "fake":
        inserts = [s for s in oracle.server.statements if s[1].startswith('INSERT INTO "TESTAPP_ITEM"')]
        assert (first.pk, second.pk) == (1, 2)
        assert all('RETURNING "TESTAPP_ITEM"."ID" INTO' in sql for _, sql, _ in inserts)


def test_transaction_mode_releases_the_session_between_transactions(oracle):
    alias = oracle.make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "POOL_MODE": "transaction", "TIMEOUT": 2})
    conn = connections[alias]
    first = session_id(conn)
    assert conn.connection is None  # given back when the cursor closed
    assert "operators" in conn.__dict__  # kept on the wrapper, no reconnect to read it
    # With one slot, another thread can only run if this wrapper let go.
    assert run_in_threads(1, lambda i: session_id(connections[alias]))[0] == first
    with transaction.atomic(using=alias):
        assert session_id(conn) == first
        assert conn.connection is not None
        assert session_id(conn) == first
    assert conn.connection is None
    assert stats(alias)["connects"] == 1


# ##### Configuration #####


def test_djangos_own_pool_option_is_refused(fake):
    alias = fake.make_alias(OPTIONS={"pool": True})
    with pytest.raises(ImproperlyConfigured, match=r"OPTIONS\['pool'\] turns on Django's own connection pool"):
        connections[alias].ensure_connection()
def test_full_reset_is_refused_when_configured(fake):
    alias = fake.make_alias({"RESET_ON_RETURN": "full"})
    with pytest.raises(ImproperlyConfigured) as info:
        connections[alias].ensure_connection()
    message = str(info.value)
    assert message.startswith(f"DATABASES[{alias!r}]['POOL_OPTIONS']['RESET_ON_RETURN'] = 'full' is not supported")
    assert "ENGINE 'djpool.backends.oracle'" in message
    assert "Use 'rollback' (the default)" in message
    assert fake.server.connect_calls == []


def test_bad_pool_options_are_refused(fake):
    alias = fake.make_alias({"POOL_SIZE": "ten"})
    expected = r"\['POOL_SIZE'\] must be an integer of 1 or more; got 'ten' \(str\)"
    with pytest.raises(ImproperlyConfigured, match=expected):
        connections[alias].ensure_connection()
@pytest.mark.parametrize(
    "settings",
    [
        pytest.param({}, id="NAME-with-HOST-and-PORT"),
        pytest.param({"NAME": "db.example.com:1521/FREEPDB1", "HOST": "", "PORT": ""}, id="easy-connect"),
        pytest.param({"NAME": "ORCLPDB_HA", "HOST": "", "PORT": ""}, id="tns-alias"),
        pytest.param({"OPTIONS": {"expire_time": 2, "use_returning_into": False}}, id="driver-options"),
        pytest.param({"OPTIONS": {"threaded": True}}, id="threaded"),
        pytest.param({"OPTIONS": {"encoding": "UTF-8"}}, id="encoding"),
    ],
)
def test_connect_arguments_are_those_of_djangos_stock_backend(fake, settings):
    """Same DATABASES entry, stock ENGINE vs pooled: same connect() call, or the same error."""
    outcomes = []
    for engine in ("django.db.backends.oracle", "djpool.backends.oracle"):
        wrapper = connections[fake.make_alias(ENGINE=engine, **settings)]
        fake.server.connect_calls.clear()
        try:
            wrapper.ensure_connection()
        except TypeError as error:  # what python-oracledb raises for an unknown option
            outcomes.append(("error", str(error)))
        else:
            outcomes.append(("connect", list(fake.server.connect_calls)))
        finally:
            wrapper.close()
    assert outcomes[0] == outcomes[1]
    # Whichever the installed python-oracledb does: python-oracledb 1.x
    # accepts cx_Oracle's threaded and encoding (and ignores them); newer
    # versions reject them.
    options = {key: value for key, value in settings.get("OPTIONS", {}).items() if key != "use_returning_into"}
    try:
        check_connect_arguments("dsn", user="u", password="p", **options)
        accepted = True
    except TypeError:
        accepted = False
    kind, detail = outcomes[1]
    assert kind == ("connect" if accepted else "error")
    if kind == "connect":
        assert len(detail) == 1
        assert detail[0]["password"] == FAKE_SETTINGS["PASSWORD"]
    else:
        assert repr(next(iter(options))) in detail


def test_switching_user_gets_a_pool_of_its_own(fake):
    """Django's test runner switches USER on the same alias; sessions must not be shared."""
    alias = fake.make_alias()
    conn = connections[alias]
    main_sid = session_id(conn)
    conn.close()
    conn.settings_dict["USER"] = "test_djpool"
    test_sid = session_id(conn)
    conn.close()
    assert test_sid != main_sid
    assert [call["user"] for call in fake.server.connect_calls] == ["djpool", "test_djpool"]
    assert stats(alias)["pools"] == 2


def test_password_is_never_logged(fake, caplog):
    alias = fake.make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "ECHO": "debug"})
    with caplog.at_level(logging.DEBUG):
        conn = connections[alias]
        session_id(conn)
        conn.close()
    assert caplog.records
    assert not [r for r in caplog.records if "fake-secret-9431" in r.getMessage()]


# ##### Failures only the stand-in produces on cue #####


def test_every_idle_session_is_replaced_after_a_database_restart(fake):
    alias = fake.make_alias({"POOL_SIZE": 2, "MAX_OVERFLOW": 0, "PRE_PING_IDLE": 0})
    both_checked_out = threading.Barrier(2, timeout=10)

    def request(i):
        sid = session_id(connections[alias])
        both_checked_out.wait()
        return sid

    before = set(run_in_threads(2, request))
    assert len(before) == 2
    fake.server.restart()
    after = set(run_in_threads(2, request))
    assert len(after) == 2 and not after & before
    assert stats(alias)["invalidations"] == 2


def test_a_dead_session_seen_by_django_is_not_handed_out_again(fake):
    """Without the pre-ping Django sees DPY-4011 once; the pool then drops the session."""
    alias = fake.make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "PRE_PING": False})
    conn = connections[alias]
    first = session_id(conn)
    conn.close()
    fake.kill(first)
    with pytest.raises(DatabaseError, match="DPY-4011"):
        session_id(conn)
    conn.close()
    assert session_id(conn) != first
    conn.close()
    assert stats(alias)["connects"] == 2


def test_a_connection_closed_underneath_is_replaced(fake):
    """DPY-1001 (not connected) on the pre-ping is a disconnect too."""
    alias = fake.make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "PRE_PING_IDLE": 0})
    conn = connections[alias]
    first = session_id(conn)
    raw = conn.connection
    conn.close()
    raw.closed = True  # as if the driver had closed it (the server never heard)
    assert session_id(conn) != first
    conn.close()
    assert stats(alias)["connects"] == 2


# ##### A silent network (issue 20): python-oracledb's call_timeout bounds the pool's round trips #####


def test_a_pre_ping_that_gets_no_answer_fails_within_timeout(fake):
    alias = fake.make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "TIMEOUT": 3, "PRE_PING_IDLE": 0})
    conn = connections[alias]
    first = session_id(conn)
    conn.close()
    fake.server.freeze()
    try:
        started = time.monotonic()
        with pytest.raises(PoolTimeout, match="did not answer a health check") as raised:
            session_id(conn)
        assert time.monotonic() - started <= 3 + 1
        assert repr(alias) in str(raised.value)
        conn.close()
    finally:
        fake.server.thaw()
    assert session_id(conn) != first  # the silent one was closed, never handed out again
    conn.close()
    figures = stats(alias)
    assert figures["validation_timeouts"] == 1 and figures["checked_out"] == 0, figures


def test_a_request_ending_in_a_transaction_during_a_partition_returns_within_validation_timeout(fake):
    alias = fake.make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "VALIDATION_TIMEOUT": 1})
    conn = connections[alias]
    conn.set_autocommit(False)
    with conn.cursor() as cursor:
        cursor.execute("INSERT INTO djpool_item (name) VALUES (%s)", ["x"])
    first = session_id(conn)
    fake.server.freeze()
    try:
        started = time.monotonic()
        conn.close()  # what request_finished does
        assert time.monotonic() - started <= 1 + 1
        assert stats(alias)["validation_timeouts"] == 1
    finally:
        fake.server.thaw()
    assert first not in fake.session_ids() or fake.server.sessions[first].closed
    assert session_id(conn) != first
    conn.close()
