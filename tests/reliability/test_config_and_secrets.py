"""Bad input and secrets.

Every malformed POOL_OPTIONS value and DATABASES combination is refused with
an ImproperlyConfigured naming the setting, the value and what is allowed
(tests/core covers the first few; these are the rest). Connection failures
give Django's OperationalError and leave no pool behind. A marker password
must never appear in logs (djpool, sqlalchemy at DEBUG, ECHO), reprs, stats,
exception messages or ``manage.py check`` output.
"""

from __future__ import annotations

import io
import logging
import math
import os
import secrets
import time
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connections
from django.db.utils import OperationalError

import djpool.core
from djpool.core import PoolTimeout, registry
from tests.conftest import run_in_threads
from tests.reliability.conftest import backend_pid
from tests.reliability.privateserver import PASSWORD_USER, free_port

pytestmark = pytest.mark.server_backed

NUMBER = "a number of seconds greater than 0"


@pytest.mark.parametrize(
    "key, value, allowed",
    [
        ("POOL_SIZE", 2.5, "an integer of 1 or more"),
        ("POOL_SIZE", None, "an integer of 1 or more"),
        ("POOL_SIZE", -1, "an integer of 1 or more"),
        ("POOL_SIZE", "5", "an integer of 1 or more"),
        ("MAX_OVERFLOW", "5", "an integer of 0 or more, or -1 for no limit"),
        ("MAX_OVERFLOW", 1.5, "an integer of 0 or more, or -1 for no limit"),
        ("MAX_OVERFLOW", None, "an integer of 0 or more, or -1 for no limit"),
        ("MAX_OVERFLOW", False, "an integer of 0 or more, or -1 for no limit"),
        ("RECYCLE", 0, f"{NUMBER}, or None (or -1) to never recycle"),
        ("RECYCLE", -5, f"{NUMBER}, or None (or -1) to never recycle"),
        ("RECYCLE", True, f"{NUMBER}, or None (or -1) to never recycle"),
        ("RECYCLE", math.nan, f"{NUMBER}, or None (or -1) to never recycle"),
        ("RECYCLE", math.inf, f"{NUMBER}, or None (or -1) to never recycle"),
        ("TIMEOUT", -1, NUMBER),
        ("TIMEOUT", "30", NUMBER),
        ("TIMEOUT", None, NUMBER),
        ("TIMEOUT", True, NUMBER),
        ("TIMEOUT", math.inf, NUMBER),
        ("PRE_PING", 1, "True or False"),
        ("PRE_PING", None, "True or False"),
        ("PRE_PING_IDLE", -1, "a number of seconds, 0 or more"),
        ("PRE_PING_IDLE", "1", "a number of seconds, 0 or more"),
        ("PRE_PING_IDLE", math.nan, "a number of seconds, 0 or more"),
        ("ECHO", "info", 'True, False or "debug"'),
        ("ECHO", 1, 'True, False or "debug"'),
        ("USE_LIFO", "true", "True or False"),
        ("USE_LIFO", 0, "True or False"),
        ("POOL_MODE", None, "'session' or 'transaction'"),
        ("POOL_MODE", "Transaction", "'session' or 'transaction'"),
        ("RESET_ON_RETURN", "none", "'rollback' or 'full'"),
        ("RESET_ON_RETURN", True, "'rollback' or 'full'"),
        ("RESET_ON_RETURN", None, "'rollback' or 'full'"),
        ("LEAK_DETECTION", -1, f"{NUMBER}, or None (or 0) for off"),
        ("LEAK_DETECTION", "30", f"{NUMBER}, or None (or 0) for off"),
        ("LEAK_DETECTION", True, f"{NUMBER}, or None (or 0) for off"),
        ("MIN_IDLE", -1, "an integer of 0 or more, at most POOL_SIZE"),
        ("MIN_IDLE", 1.0, "an integer of 0 or more, at most POOL_SIZE"),
        ("MIN_IDLE", None, "an integer of 0 or more, at most POOL_SIZE"),
        ("IDLE_TIMEOUT", 0, f"{NUMBER}, or None (off)"),
        ("IDLE_TIMEOUT", "60", f"{NUMBER}, or None (off)"),
        ("IDLE_TIMEOUT", math.nan, f"{NUMBER}, or None (off)"),
    ],
)
def test_each_bad_value_is_refused(key, value, allowed, make_alias):
    alias = make_alias({key: value})
    with pytest.raises(ImproperlyConfigured) as info:
        connections[alias].ensure_connection()
    assert str(info.value) == (
        f"DATABASES[{alias!r}]['POOL_OPTIONS'][{key!r}] must be {allowed}; got {value!r} ({type(value).__name__})."
    )
    assert registry.pools(alias) == []


@pytest.mark.parametrize("pool_options", [["POOL_SIZE", 5], "POOL_SIZE=5", 5, ("POOL_SIZE", 5)])
def test_pool_options_must_be_a_dict(pool_options, make_alias):
    alias = make_alias()
    connections.settings[alias]["POOL_OPTIONS"] = pool_options
    with pytest.raises(ImproperlyConfigured) as info:
        connections[alias].ensure_connection()
    assert str(info.value) == f"DATABASES[{alias!r}]['POOL_OPTIONS'] must be a dict; got {pool_options!r} ({type(pool_options).__name__})."


@pytest.mark.parametrize("key", [1, None, ("POOL_SIZE",)])
def test_non_string_keys_are_refused(key, make_alias):
    alias = make_alias({key: 5})
    with pytest.raises(ImproperlyConfigured, match=r"unknown key .*Allowed keys: POOL_SIZE, MAX_OVERFLOW"):
        connections[alias].ensure_connection()
def test_min_idle_above_pool_size_is_refused(make_alias):
    alias = make_alias({"POOL_SIZE": 2, "MIN_IDLE": 3})
    with pytest.raises(ImproperlyConfigured) as info:
        connections[alias].ensure_connection()
    assert str(info.value).startswith(
        f"DATABASES[{alias!r}]['POOL_OPTIONS']['MIN_IDLE'] must be at most POOL_SIZE (2); got 3."
    )


@pytest.mark.parametrize("conn_max_age", [60, None])
def test_transaction_mode_refuses_persistent_connections(conn_max_age, make_alias):
    alias = make_alias({"POOL_MODE": "transaction"}, CONN_MAX_AGE=conn_max_age)
    with pytest.raises(ImproperlyConfigured) as info:
        connections[alias].ensure_connection()
    message = str(info.value)
    assert f"DATABASES[{alias!r}]: CONN_MAX_AGE must be 0 with POOL_OPTIONS['POOL_MODE'] = 'transaction'; got {conn_max_age!r}." in message


def test_setup_refuses_bad_values_and_unknown_keywords():
    with pytest.raises(ImproperlyConfigured, match=r"djpool.core.setup\(\)\['POOL_SIZE'\] must be an integer of 1 or more; got 0"):
        djpool.core.setup(pool_size=0)
    with pytest.raises(ImproperlyConfigured, match=r"unknown keyword 'pool_sise'. Did you mean 'pool_size'\?"):
        djpool.core.setup(pool_sise=3)
    assert djpool.core.options.PoolOptions() == djpool.core.options.parse_pool_options("x", None)


# ##### Connection failures #####


def _private_alias(make_alias: Any, private_server: Any, **overrides: Any) -> str:
    settings = {**private_server.settings(), **overrides}
    return make_alias({"POOL_SIZE": 2, "MAX_OVERFLOW": 0, "TIMEOUT": 5}, **{k: settings[k] for k in ("NAME", "USER", "PASSWORD", "PORT", "HOST")})


def _assert_no_pool_left(alias: str) -> None:
    left = [(pool, pool.stats()) for pool in registry.pools(alias)]
    assert left == [], left


def test_wrong_password_then_fixed(make_alias, private_server):
    alias = _private_alias(make_alias, private_server, USER=PASSWORD_USER, PASSWORD="wrong" + private_server.password[::-1])
    conn = connections[alias]
    with pytest.raises(OperationalError) as info:
        conn.ensure_connection()
    assert type(info.value) is OperationalError  # Django's, as with the stock backend
    assert private_server.password not in str(info.value)
    _assert_no_pool_left(alias)
    # The fix: the right password. The next request works.
    conn.settings_dict["PASSWORD"] = private_server.password
    assert backend_pid(conn) in private_server.session_ids()
    conn.close()
    assert [pool.stats()["connects"] for pool in registry.pools(alias)] == [1]


def test_unreachable_host_then_reachable(make_alias, server):
    alias = make_alias({"POOL_SIZE": 2, "MAX_OVERFLOW": 0}, PORT=free_port())
    conn = connections[alias]
    with pytest.raises(OperationalError):
        conn.ensure_connection()
    _assert_no_pool_left(alias)
    conn.settings_dict["PORT"] = server.port
    assert backend_pid(conn) in server.session_ids()
    conn.close()
    assert len(registry.pools(alias)) == 1


def test_server_down_then_up_on_the_same_settings(make_alias, private_server):
    alias = _private_alias(make_alias, private_server)
    private_server.stop()
    try:
        for _ in range(3):
            with pytest.raises(OperationalError):
                run_in_threads(2, lambda i: connections[alias].ensure_connection())
        _assert_no_pool_left(alias)
    finally:
        private_server.start()
    pids = run_in_threads(2, lambda i: backend_pid(connections[alias]))
    assert set(pids) <= private_server.session_ids()
    figures = djpool.core.stats(alias)
    assert figures["checked_out"] == 0 and figures["pools"] == 1, figures


# ##### Secrets #####


@pytest.fixture
def secret_account(server: Any) -> Iterator[tuple[str, str]]:
    """A role / user with a marker password on the shared server; dropped afterwards."""
    name = f"djpool_rel_secret_{os.getpid()}"
    password = "Sekr1t" + secrets.token_hex(12)
    if server.vendor == "postgresql":
        server.query(f"DROP ROLE IF EXISTS {name}")
        server.query(f"CREATE ROLE {name} LOGIN SUPERUSER PASSWORD '{password}'")
    else:
        server.query(f"DROP USER IF EXISTS '{name}'@'%'")
        server.query(f"CREATE USER '{name}'@'%' IDENTIFIED BY '{password}'")
        server.query(f"GRANT ALL ON *.* TO '{name}'@'%'")
    try:
        yield name, password
    finally:
        registry.close_all()
        if server.vendor == "postgresql":
            server.query(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{name}'")
            server.query(f"DROP ROLE IF EXISTS {name}")
        else:
            server.query(f"DROP USER IF EXISTS '{name}'@'%'")


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Everything the djpool and sqlalchemy loggers say, at DEBUG, with tracebacks."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    handler.setLevel(logging.DEBUG)
    saved = []
    for name in ("djpool", "sqlalchemy", "django.db"):
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
    try:
        yield stream
    finally:
        for logger, level in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)


@pytest.mark.parametrize(
    "extra",
    [{"ECHO": True}, {"ECHO": "debug", "RESET_ON_RETURN": "full"}, {"MIN_IDLE": 1, "IDLE_TIMEOUT": 30, "LEAK_DETECTION": 0.05}],
    ids=["echo", "echo-debug-full-reset", "housekeeper-leak-detection"],
)
def test_password_never_shown(extra, make_alias, server, secret_account, captured_logs):
    """The full reset sends the password again on MySQL (COM_CHANGE_USER) at every checkin;
    the housekeeper opens connections (and logs failures) in its own thread."""
    user, password = secret_account
    alias = make_alias(
        {"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "TIMEOUT": 0.2, "PRE_PING_IDLE": 0, **extra},
        USER=user,
        PASSWORD=password,
    )
    shown: list[str] = []

    def show(value: Any) -> None:
        shown.append(value if isinstance(value, str) else repr(value))

    def show_error(error: BaseException) -> None:
        show(str(error))
        show("".join(traceback.format_exception(error)))

    conn = connections[alias]
    pid = backend_pid(conn)
    conn.close()
    # A connection killed while idle: the pre-ping replaces it (and logs it).
    server.kill(pid)
    backend_pid(conn)
    # Exhaustion: the PoolTimeout message.
    try:
        run_in_threads(1, lambda i: connections[alias].ensure_connection())
    except PoolTimeout as error:
        show_error(error)
    else:
        pytest.fail("expected PoolTimeout")
    # A query error, a connection killed while checked out.
    for sql in ("SELECT * FROM djpool_no_such_table", server.pid_query):
        if sql == server.pid_query:
            server.kill(backend_pid(conn))
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql)
        except Exception as error:  # noqa: BLE001
            show_error(error)
    conn.close()
    # A wrong password for the same user (MariaDB checks it; PostgreSQL trusts local connections).
    bad = make_alias(extra, USER=user, PASSWORD=password[::-1] + "x")
    try:
        connections[bad].ensure_connection()
    except Exception as error:  # noqa: BLE001
        show_error(error)
    connections[bad].close()
    if "MIN_IDLE" in extra:
        time.sleep(0.7)  # a housekeeper round or two (warm-up, leak report) gets logged

    out = io.StringIO()
    call_command("check", databases=[alias], stdout=out, stderr=out)
    show(out.getvalue())
    for pool in registry.pools():
        show(pool)
        show(pool.pool)
        show(pool.pool.status())
        show(pool.dialect)
        show(vars(pool.options))
    show(djpool.core.stats())
    show(conn)
    show(djpool.core.options.PoolOptions())
    show(captured_logs.getvalue())

    assert "Created new connection" in captured_logs.getvalue() or "connect" in captured_logs.getvalue().lower()
    assert len(captured_logs.getvalue()) > 200, "nothing was logged: the test proves nothing"
    for text in shown:
        assert password not in text, text
        assert password[::-1] not in text, text
