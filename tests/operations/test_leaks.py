"""LEAK_DETECTION: a connection held too long is reported once, with where it was taken."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connections

from djpool.core import leaks, registry
from djpool.core.options import parse_pool_options

pytestmark = pytest.mark.server_backed


def backend_pid(connection) -> int:
    from tests.conftest import SERVER

    with connection.cursor() as cursor:
        cursor.execute(SERVER.pid_query)
        return int(cursor.fetchone()[0])


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def take_connection_and_forget_it(alias: str) -> int:
    """The 'leak': a request that opens a cursor and never closes its connection."""
    return backend_pid(connections[alias])


def test_leak_is_reported_once_with_the_checkout_stack(make_alias, server, leak_log):
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "LEAK_DETECTION": 0.2})
    pid = take_connection_and_forget_it(alias)
    assert wait_for(lambda: leak_log.messages(logging.WARNING), timeout=3)
    time.sleep(0.5)  # several more scans: still one report
    warnings = [r for r in leak_log.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert warnings[0].name == "djpool.leaks"
    assert f"Possible connection leak on database {alias!r}" in message
    assert "LEAK_DETECTION = 0.2 s" in message
    assert f"by thread {threading.current_thread().name!r}" in message
    # The stack names the code that took the connection, not djpool's internals.
    assert "in take_connection_and_forget_it" in message
    assert "return backend_pid(connections[alias])" in message
    assert "djpool/core/container.py" not in message
    # Reporting takes nothing away: the holder keeps its server session.
    assert backend_pid(connections[alias]) == pid
    assert pid in server.session_ids()
    connections[alias].close()
    assert any("was returned after" in m for m in leak_log.messages(logging.INFO))
    assert registry.pools(alias)[0].leaks.outstanding() == 0


def test_leak_in_another_thread_names_that_thread(make_alias, leak_log):
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "LEAK_DETECTION": 0.1})
    taken = threading.Event()
    release = threading.Event()

    def worker() -> None:
        take_connection_and_forget_it(alias)
        taken.set()
        release.wait(10)
        connections[alias].close()

    thread = threading.Thread(target=worker, name="request-worker-7")
    thread.start()
    try:
        assert taken.wait(5)
        assert wait_for(lambda: leak_log.messages(logging.WARNING), timeout=3)
    finally:
        release.set()
        thread.join(10)
    assert "by thread 'request-worker-7'" in leak_log.messages(logging.WARNING)[0]


def test_connections_returned_in_time_are_not_reported(make_alias, leak_log):
    # A threshold far above a query's time, even on a loaded machine.
    alias = make_alias({"POOL_SIZE": 2, "LEAK_DETECTION": 1.0})
    for _ in range(5):
        backend_pid(connections[alias])
        connections[alias].close()
    time.sleep(1.5)
    assert leak_log.messages(logging.WARNING) == []
    assert registry.pools(alias)[0].leaks.outstanding() == 0


def test_off_by_default_and_nothing_runs_on_checkout(make_alias, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("checkout tracking ran with LEAK_DETECTION off and no receivers")

    monkeypatch.setattr(leaks, "on_checkout", fail)
    monkeypatch.setattr(leaks, "on_checkin", fail)
    monkeypatch.setattr(leaks, "_capture_stack", fail)
    alias = make_alias({"POOL_SIZE": 1})
    backend_pid(connections[alias])
    pool = registry.pools(alias)[0]
    assert pool.leaks is None
    assert leaks.CHECKOUT not in pool.pool._records.copy().pop().record_info
    connections[alias].close()
    assert pool.stats()["checkouts"] == 1


def test_leak_detection_option_validation():
    assert parse_pool_options("default", {}).leak_detection is None
    assert parse_pool_options("default", {"LEAK_DETECTION": 0}).leak_detection is None
    assert parse_pool_options("default", {"LEAK_DETECTION": None}).leak_detection is None
    assert parse_pool_options("default", {"LEAK_DETECTION": 30}).leak_detection == 30.0
    with pytest.raises(ImproperlyConfigured) as raised:
        parse_pool_options("default", {"LEAK_DETECTION": "30"})
    assert str(raised.value) == (
        "DATABASES['default']['POOL_OPTIONS']['LEAK_DETECTION'] must be a number of seconds "
        "greater than 0, or None (or 0) for off; got '30' (str)."
    )
    with pytest.raises(ImproperlyConfigured, match="got -1 "):
        parse_pool_options("default", {"LEAK_DETECTION": -1})
