"""The observability arguments of djpool.core.signals: wait_time, pinged, connect_time, connection_reset."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections

from djpool.core import registry, signals
from tests.conftest import hold_in_thread

pytestmark = pytest.mark.server_backed

WATCHED = ("connection_opened", "connection_checked_out", "connection_reset")


@pytest.fixture
def events() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    seen: list[tuple[str, dict[str, Any]]] = []
    receivers = []
    for name in WATCHED:

        def receive(sender: Any, signal: Any, _name: str = name, **kwargs: Any) -> None:
            seen.append((_name, kwargs))

        getattr(signals, name).connect(receive, weak=False)
        receivers.append((name, receive))
    yield seen
    for name, receive in receivers:
        getattr(signals, name).disconnect(receive)


def of(events: list[tuple[str, dict[str, Any]]], name: str, alias: str) -> list[dict[str, Any]]:
    return [kwargs for event, kwargs in events if event == name and kwargs["alias"] == alias]


def pid(alias: str) -> int:
    from tests.conftest import SERVER

    with connections[alias].cursor() as cursor:
        cursor.execute(SERVER.pid_query)
        return int(cursor.fetchone()[0])


def test_connect_time_wait_time_and_pinged(make_alias, events, server):
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "PRE_PING_IDLE": 0, "TIMEOUT": 5})
    first = pid(alias)
    connections[alias].close()
    [opened] = of(events, "connection_opened", alias)
    assert 0 < opened["connect_time"] < 5
    [checkout] = of(events, "connection_checked_out", alias)
    # The first checkout opened the connection: its wait includes the connect; no ping of a new one.
    assert opened["connect_time"] <= checkout["wait_time"] < 5
    assert checkout["pinged"] is False

    # Second checkout: PRE_PING_IDLE = 0 pings it, the same server session.
    assert pid(alias) == first and first in server.session_ids()
    connections[alias].close()
    assert of(events, "connection_checked_out", alias)[1]["pinged"] is True

    # A checkout that waits for another thread's connection: wait_time covers the wait.
    release = threading.Event()
    holder = hold_in_thread(alias, release)
    threading.Timer(0.2, release.set).start()
    pid(alias)
    connections[alias].close()
    holder.join(10)
    waited = of(events, "connection_checked_out", alias)[-1]["wait_time"]
    assert 0.15 <= waited < 5
    assert registry.stats(alias)["wait_time_max"] <= waited


def test_connection_reset_says_whether_it_rolled_back(make_alias, events, server):
    alias = make_alias({"POOL_SIZE": 1})
    connection = connections[alias]
    pid(alias)
    connection.close()
    assert [e["rolled_back"] for e in of(events, "connection_reset", alias)] == [False]

    # A transaction left open by the request: rolled back on return, and the server agrees.
    connection.set_autocommit(False)
    session = pid(alias)
    if server.vendor == "postgresql":
        [(state,)] = server.query("SELECT state FROM pg_stat_activity WHERE pid = %s", [session])
        assert state == "idle in transaction"
    connection.close()
    resets = of(events, "connection_reset", alias)
    assert [e["rolled_back"] for e in resets] == [False, True]
    assert resets[-1]["full_reset"] is False
    if server.vendor == "postgresql":
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            [(state,)] = server.query("SELECT state FROM pg_stat_activity WHERE pid = %s", [session])
            if state == "idle":
                break
            time.sleep(0.02)
        assert state == "idle"


def test_full_reset_is_reported(make_alias, events):
    alias = make_alias({"POOL_SIZE": 1, "RESET_ON_RETURN": "full"})
    pid(alias)
    connections[alias].close()
    [reset] = of(events, "connection_reset", alias)
    assert reset["full_reset"] is True
