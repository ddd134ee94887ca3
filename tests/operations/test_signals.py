"""djpool.core.signals: events a user can count, with what the server saw."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from django.db import connections

from djpool.core import PoolTimeout, leaks, registry, signals

pytestmark = pytest.mark.server_backed

ALL = [
    "connection_opened",
    "connection_checked_out",
    "connection_checked_in",
    "connection_invalidated",
    "checkout_timed_out",
    "connection_leaked",
]


def backend_pid(connection) -> int:
    from tests.conftest import SERVER

    with connection.cursor() as cursor:
        cursor.execute(SERVER.pid_query)
        return int(cursor.fetchone()[0])


def pid_of(dbapi_connection) -> int:
    from tests.conftest import SERVER

    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(SERVER.pid_query)
        return int(cursor.fetchone()[0])
    finally:
        cursor.close()


class Recorder:
    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.events: list[tuple[str, dict]] = []

    def receiver(self, name: str):
        def receive(sender, signal, **kwargs):
            if kwargs["alias"] == self.alias:
                self.events.append((name, {"sender": sender, **kwargs}))

        return receive

    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def of(self, name: str) -> list[dict]:
        return [kwargs for event, kwargs in self.events if event == name]


@pytest.fixture
def recorder_for() -> Iterator:
    connected = []

    def make(alias: str) -> Recorder:
        recorder = Recorder(alias)
        for name in ALL:
            receiver = recorder.receiver(name)
            getattr(signals, name).connect(receiver, weak=False)
            connected.append((name, receiver))
        return recorder

    yield make
    for name, receiver in connected:
        getattr(signals, name).disconnect(receiver)


def test_lifecycle_signals_carry_the_server_session(make_alias, recorder_for, server):
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0})
    recorder = recorder_for(alias)
    conn = connections[alias]
    pid = backend_pid(conn)
    time.sleep(0.05)
    conn.close()
    assert recorder.names() == ["connection_opened", "connection_checked_out", "connection_checked_in"]
    opened = recorder.of("connection_opened")[0]
    assert opened["sender"] is type(conn)
    assert opened["pool"] is registry.pools(alias)[0]
    # The connection the signal named is the session the server sees for this request.
    assert pid_of(opened["dbapi_connection"]) == pid
    assert pid in server.session_ids()
    assert recorder.of("connection_checked_out")[0]["dbapi_connection"] is opened["dbapi_connection"]
    checked_in = recorder.of("connection_checked_in")[0]
    assert checked_in["dbapi_connection"] is opened["dbapi_connection"]
    assert 0.05 <= checked_in["held_for"] < 5

    # Reuse: no new connection, one more checkout and checkin.
    assert backend_pid(conn) == pid
    conn.close()
    assert recorder.names()[3:] == ["connection_checked_out", "connection_checked_in"]


def test_a_connection_taken_back_across_requests_sends_its_signals(make_alias, recorder_for, server):
    """A parked wrapper that takes back the connection it gave back (nobody
    else took it) skips the checkout, not its signals: one checkout and one
    checkin per request, naming the session the server sees."""
    from django.core.signals import request_finished, request_started

    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0})
    recorder = recorder_for(alias)
    conn = connections[alias]
    pids = []
    for _ in range(3):
        request_started.send(sender=None)
        try:
            pids.append(backend_pid(conn))
        finally:
            request_finished.send(sender=None)
    assert len(set(pids)) == 1
    assert pids[0] in server.session_ids()
    assert recorder.names() == ["connection_opened"] + ["connection_checked_out", "connection_checked_in"] * 3
    opened = recorder.of("connection_opened")[0]["dbapi_connection"]
    assert all(kwargs["dbapi_connection"] is opened for name, kwargs in recorder.events)
    assert all(kwargs["held_for"] is not None for kwargs in recorder.of("connection_checked_in"))
    assert pid_of(opened) == pids[0]


def test_invalidated_when_the_server_killed_the_session(make_alias, recorder_for, server):
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "PRE_PING_IDLE": 0})
    recorder = recorder_for(alias)
    conn = connections[alias]
    old_pid = backend_pid(conn)
    conn.close()
    server.kill(old_pid)
    assert server_gone(server, old_pid)
    new_pid = backend_pid(conn)
    conn.close()
    assert new_pid != old_pid
    invalidated = recorder.of("connection_invalidated")
    assert len(invalidated) == 1
    opened = recorder.of("connection_opened")
    assert len(opened) == 2
    assert pid_of(opened[1]["dbapi_connection"]) == new_pid
    assert registry.pools(alias)[0].stats()["invalidations"] == 1


def server_gone(server, pid: int) -> bool:
    deadline = time.monotonic() + 5
    while pid in server.session_ids():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_checkout_timed_out(make_alias, recorder_for):
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "TIMEOUT": 0.2})
    recorder = recorder_for(alias)
    backend_pid(connections[alias])  # held by this thread
    errors = []

    def other() -> None:
        try:
            backend_pid(connections[alias])
        except PoolTimeout as error:
            errors.append(error)
        finally:
            connections[alias].close()

    thread = threading.Thread(target=other)
    thread.start()
    thread.join(10)
    connections[alias].close()
    assert len(errors) == 1
    assert [event["timeout"] for event in recorder.of("checkout_timed_out")] == [0.2]
    assert "dbapi_connection" not in recorder.of("checkout_timed_out")[0]


def test_connection_leaked_signal(make_alias, recorder_for):
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "LEAK_DETECTION": 0.1})
    recorder = recorder_for(alias)
    backend_pid(connections[alias])
    deadline = time.monotonic() + 3
    while not recorder.of("connection_leaked") and time.monotonic() < deadline:
        time.sleep(0.02)
    connections[alias].close()
    leaked = recorder.of("connection_leaked")
    assert len(leaked) == 1
    assert leaked[0]["held_for"] >= 0.1
    assert leaked[0]["thread_name"] == threading.current_thread().name
    assert any(frame.name == "test_connection_leaked_signal" for frame in leaked[0]["stack"])


def test_a_failing_receiver_does_not_break_the_pool(make_alias, server):
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "TIMEOUT": 2})

    def broken(sender, **kwargs):
        raise RuntimeError("metrics backend is down")

    signals.connection_checked_out.connect(broken, weak=False)
    signals.connection_checked_in.connect(broken, weak=False)
    try:
        conn = connections[alias]
        pids = []
        for _ in range(3):
            pids.append(backend_pid(conn))
            conn.close()
    finally:
        signals.connection_checked_out.disconnect(broken)
        signals.connection_checked_in.disconnect(broken)
    # Every checkin happened: one session, reused, and it is idle in the pool.
    assert len(set(pids)) == 1
    assert registry.pools(alias)[0].stats()["idle"] == 1
    assert pids[0] in server.session_ids()


def test_no_receivers_no_work(make_alias, monkeypatch):
    calls = []
    monkeypatch.setattr(leaks, "on_checkout", lambda *args: calls.append(args))
    monkeypatch.setattr(leaks, "on_checkin", lambda *args: calls.append(args))
    alias = make_alias({"POOL_SIZE": 1})
    backend_pid(connections[alias])
    connections[alias].close()
    assert calls == []

    def receiver(sender, **kwargs):
        pass

    signals.connection_checked_in.connect(receiver)
    try:
        backend_pid(connections[alias])
        connections[alias].close()
    finally:
        signals.connection_checked_in.disconnect(receiver)
    assert len(calls) == 2  # checkout (to time the hold) and checkin
