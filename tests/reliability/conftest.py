"""Fixtures for the reliability suite: a WSGI app, a private server, load helpers."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.servers import BACKEND, SERVER_BACKENDS


@pytest.fixture
def wsgi() -> Iterator[Any]:
    """Django serving ``tests.reliability.app``; returns a :class:`WSGIClient`.

    ``django.request`` logs every 500 with its traceback; thousands of planned
    errors would only slow the run down, so it is silenced here.
    """
    from django.test import override_settings

    from tests.reliability.app import WSGIClient

    request_logger = logging.getLogger("django.request")
    disabled = request_logger.disabled
    request_logger.disabled = True
    with override_settings(ROOT_URLCONF="tests.reliability.app", ALLOWED_HOSTS=["*"], DEBUG=False):
        try:
            yield WSGIClient()
        finally:
            request_logger.disabled = disabled


@pytest.fixture
def items(make_alias: Any) -> Iterator[Any]:
    """The Item model's table, holding only three "seed-" rows; emptied afterwards."""
    from django.db import connections

    from tests.testapp.models import Item

    Item.objects.all().delete()
    Item.objects.bulk_create([Item(name=f"seed-{n}") for n in range(3)])
    connections["default"].close()
    yield Item
    Item.objects.all().delete()
    connections["default"].close()


@pytest.fixture(scope="session")
def private_server() -> Iterator[Any]:
    """A private server of the selected vendor, for restarts and password checks."""
    if BACKEND not in SERVER_BACKENDS:
        pytest.skip("needs PostgreSQL or MySQL")
    from tests.reliability.privateserver import PrivateServer

    server = PrivateServer(BACKEND, password="relpw" + secrets.token_hex(8))
    try:
        yield server
    finally:
        server.destroy()


def backend_pid(connection: Any) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()" if connection.vendor == "postgresql" else "SELECT CONNECTION_ID()")
        return int(cursor.fetchone()[0])


class PeakWatcher:
    """Sample a server-side connection count in the background; keep the maximum."""

    def __init__(self, count: Callable[[], int], interval: float = 0.02) -> None:
        self._count = count
        self._interval = interval
        self._stop = threading.Event()
        self.samples: list[int] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(self._count())
            except Exception:
                pass  # the server may be down on purpose
            time.sleep(self._interval)

    def __enter__(self) -> PeakWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> int:
        assert self.samples, "the watcher took no sample"
        return max(self.samples)


class PoolCloses:
    """When the pools began closing each server session, by session id.

    A server lists a session for a moment after its client closed it (its
    thread has yet to read the goodbye), more so on a busy machine. A sample
    of the server's sessions taken after a pool closed one must not count it
    as the pool's; :meth:`held` gives what the pools held when the sample began.
    SQLAlchemy's ``close`` event fires just before the driver's ``close()``.
    """

    def __init__(self) -> None:
        self.closed_at: dict[int, float] = {}
        # Session ids by id() of the driver connection, read when it opened:
        # at close the driver may no longer say (psycopg2's get_backend_pid()
        # raises once the server has closed the connection).
        self._sessions: dict[int, int] = {}
        # What went wrong in a listener: raised at exit, never into the pool.
        self._errors: list[str] = []

    def _session_of(self, dbapi_connection: Any) -> int | None:
        from djpool.core.contrib.debug_toolbar import driver_session_id

        session = driver_session_id(dbapi_connection)  # None, never raises, once closed
        if session is None:
            self._errors.append(f"the driver of {dbapi_connection!r} does not know its session id")
            return None
        return int(session)

    def _connected(self, dbapi_connection: Any, *args: Any) -> None:
        session = self._session_of(dbapi_connection)
        if session is not None:
            self._sessions[id(dbapi_connection)] = session

    def _closed(self, dbapi_connection: Any, *args: Any) -> None:
        session = self._sessions.pop(id(dbapi_connection), None)
        if session is None:  # opened before this watch began
            session = self._session_of(dbapi_connection)
        if session is not None:
            self.closed_at.setdefault(session, time.monotonic())

    _LISTENERS = (("connect", "_connected"), ("close", "_closed"), ("close_detached", "_closed"))

    def __enter__(self) -> PoolCloses:
        from sqlalchemy import event
        from sqlalchemy.pool import Pool

        for name, method in self._LISTENERS:
            event.listen(Pool, name, getattr(self, method))
        return self

    def __exit__(self, *exc: Any) -> None:
        from sqlalchemy import event
        from sqlalchemy.pool import Pool

        for name, method in self._LISTENERS:
            event.remove(Pool, name, getattr(self, method))
        assert not self._errors, self._errors[:5]

    def held(self, listed: set[int], sampled_at: float) -> set[int]:
        """The sessions of ``listed`` (read from the server after ``sampled_at``) no pool had begun to close by then."""
        return {sid for sid in listed if self.closed_at.get(sid, sampled_at + 1) > sampled_at}


def held_sessions(closes: PoolCloses, listed: Callable[[], set[int]]) -> Callable[[], int]:
    """A :class:`PeakWatcher` count: of the session ids ``listed()`` reads from
    the server, those no pool had begun to close when the sample began."""

    def count() -> int:
        sampled_at = time.monotonic()
        return len(closes.held(listed(), sampled_at))

    return count


def jain_fairness(values: list[float]) -> float:
    """Jain's index: 1.0 when every thread got the same share, 1/n when one got all."""
    total = sum(values)
    squares = sum(value * value for value in values)
    return total * total / (len(values) * squares) if squares else 1.0
