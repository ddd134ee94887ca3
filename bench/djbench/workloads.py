"""In-process request cycles, timed, on any number of threads.

A request is what a WSGI server makes Django do: ``request_started``, the
view's queries, ``request_finished`` (where Django closes or returns the
connection). The raw baselines run the same signals around their own
checkout, so every configuration pays the same fixed costs.

Those signals visit every alias in ``DATABASES`` (``close_old_connections()``
checks each for a connection of this thread): about 3.5 µs per alias per
request. The benchmark has a configuration per alias, twenty and more, where
a project has a few, so each alias is in ``DATABASES`` only while its
configuration runs (:func:`registered`); otherwise that cost, paid alike by
every configuration, would outweigh what is measured.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from djbench.configs import Config, Sizing
from djbench.servers import Server

SELECT = "select"
ORM = "orm"


@dataclass(frozen=True)
class Workload:
    """What one request does: ``query`` (SELECT 1 or an ORM read), and with
    ``work`` > 0, that many seconds of non-database work and a second query."""

    query: str = SELECT
    work: float = 0.0


@dataclass
class Target:
    """A configuration bound to a server, a database of its own and a pool size."""

    key: str
    config: Config
    server: Server
    database: str
    sizing: Sizing
    #: The DATABASES entry with Django's defaults filled in (set by the benchmark's setup).
    entry: dict[str, Any] | None = field(default=None, repr=False)
    _sa_pool: Any = field(default=None, repr=False)

    @property
    def alias(self) -> str:
        return self.key

    def databases_entry(self) -> dict[str, Any] | None:
        if self.config.settings is None:
            return None
        return self.config.settings(self.server, self.database, self.sizing)

    def client(self, workload: Workload) -> Client:
        if self.config.kind == "driver":
            return DriverClient(self, workload)
        if self.config.kind == "sqlalchemy":
            return SQLAlchemyClient(self, workload)
        return DjangoClient(self, workload)

    def sqlalchemy_pool(self) -> Any:
        if self._sa_pool is None:
            from sqlalchemy.pool import QueuePool

            self._sa_pool = QueuePool(
                lambda: self.server.connect(self.database),
                pool_size=self.sizing.size,
                max_overflow=self.sizing.overflow,
                timeout=self.sizing.timeout,
            )
        return self._sa_pool

    def dispose(self) -> None:
        """Close this configuration's pool, so the next run starts from nothing."""
        name = self.config.name
        if self._sa_pool is not None:
            self._sa_pool.dispose()
            self._sa_pool = None
        elif name.startswith("djpool"):
            from djpool.core import registry

            registry.close_all(self.alias)
        elif name in ("native", "realpool"):
            from django.db import connections

            with registered([self]):
                connections[self.alias].close_pool()
        elif name == "predecessor":
            from dj_db_conn_pool.core import pool_container

            with pool_container.lock:
                pool = pool_container.pop(self.alias, None)
            if pool is not None:
                pool.dispose()


@contextmanager
def registered(targets: list[Target]) -> Iterator[None]:
    """Put the targets' aliases in ``DATABASES`` for the duration.

    A thread's wrapper for an alias outlives the alias's removal (Django
    keeps wrappers per thread, by name), so a configuration that keeps its
    connection open between turns still has it when its alias is back.
    """
    from django.db import connections

    added = {t.alias: t.entry for t in targets if t.entry is not None and t.alias not in connections.settings}
    connections.settings.update(added)
    try:
        yield
    finally:
        for alias in added:
            del connections.settings[alias]


class Client:
    """One thread's view of a target: ``request()`` runs one request cycle."""

    def __init__(self, target: Target, workload: Workload) -> None:
        from django.core.handlers.wsgi import WSGIHandler
        from django.core.signals import request_finished, request_started

        self.target = target
        self.workload = workload
        self._started = request_started
        self._finished = request_finished
        self._sender = WSGIHandler

    def request(self) -> None:
        self._started.send(sender=self._sender)
        try:
            self.query()
            if self.workload.work:
                time.sleep(self.workload.work)
                self.query()
        finally:
            self._finished.send(sender=self._sender)

    def query(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Close what this thread holds (called in the thread)."""


class DjangoClient(Client):
    def __init__(self, target: Target, workload: Workload) -> None:
        super().__init__(target, workload)
        from django.db import connections

        from djbench.models import Item

        self._connections = connections
        self._objects = Item.objects.using(target.alias)
        if workload.query == ORM:
            self.query = self._orm  # type: ignore[method-assign]

    def query(self) -> None:
        with self._connections[self.target.alias].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()

    def _orm(self) -> None:
        self._objects.get(pk=1)

    def close(self) -> None:
        self._connections[self.target.alias].close()


class DriverClient(Client):
    def __init__(self, target: Target, workload: Workload) -> None:
        super().__init__(target, workload)
        self._connection = target.server.connect(target.database)

    def query(self) -> None:
        cursor = self._connection.cursor()
        cursor.execute("SELECT 1")
        cursor.fetchone()
        cursor.close()

    def close(self) -> None:
        self._connection.close()


class SQLAlchemyClient(Client):
    def __init__(self, target: Target, workload: Workload) -> None:
        super().__init__(target, workload)
        self._pool = target.sqlalchemy_pool()

    def query(self) -> None:
        connection = self._pool.connect()
        try:
            cursor = connection.cursor()
            cursor.execute("SELECT 1")
            cursor.fetchone()
            cursor.close()
        finally:
            connection.close()


@dataclass
class Run:
    """What ``threads`` threads did in ``elapsed`` seconds."""

    threads: int
    elapsed: float
    latencies: list[float]
    per_thread: list[int]
    errors: list[str]

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0

    @property
    def fairness(self) -> float:
        """Jain's index over the requests each thread completed: 1 is perfectly even."""
        total = sum(self.per_thread)
        squares = sum(n * n for n in self.per_thread)
        return total * total / (len(self.per_thread) * squares) if squares else 0.0


def run_threads(target: Target, workload: Workload, threads: int, duration: float, warmup: int = 1) -> Run:
    """Run request cycles on ``threads`` fresh threads for ``duration`` seconds.

    Each thread first makes ``warmup`` untimed requests (opening its
    connection) and all start timing together. Requests that end after the
    deadline still count if they started before it.
    """
    barrier = threading.Barrier(threads + 1)
    stop = threading.Event()
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors: list[str] = []
    deadline = [0.0]

    def work(index: int) -> None:
        client = None
        try:
            client = target.client(workload)
            for _ in range(warmup):
                client.request()
        except Exception as error:  # reported, not raised: one bad config must not end the run
            errors.append(f"{type(error).__name__}: {error}")
        try:
            barrier.wait()
        except threading.BrokenBarrierError:  # the run was interrupted
            pass
        mine = latencies[index]
        clock = time.perf_counter
        try:
            if client is not None:
                while not stop.is_set():
                    started = clock()
                    client.request()
                    ended = clock()
                    if started < deadline[0] or not stop.is_set():
                        mine.append(ended - started)
        except Exception as error:
            errors.append(f"{type(error).__name__}: {error}")
        finally:
            if client is not None:
                try:
                    client.close()
                except Exception as error:
                    errors.append(f"close: {type(error).__name__}: {error}")

    workers = [threading.Thread(target=work, args=(i,), name=f"bench-{i}", daemon=True) for i in range(threads)]
    with registered([target]):
        for worker in workers:
            worker.start()
        try:
            barrier.wait()
            started = time.perf_counter()
            deadline[0] = started + duration
            time.sleep(duration)
        finally:
            # Also when interrupted (SIGTERM): the threads stop, and the run can clean up.
            stop.set()
            barrier.abort()
            for worker in workers:
                worker.join()
    return Run(threads, duration, [x for mine in latencies for x in mine], [len(mine) for mine in latencies], errors)


def count_statements(targets: list[Target], requests: int, trials: int = 9) -> dict[str, float]:
    """Statements (round trips) the server saw per request, for each target.

    One thread per target makes a few requests to open its connection, then
    ``requests`` counted ones between two readings of the server's counter.
    """
    results: dict[str, float] = {}
    per_db = [t for t in targets if not t.server.counter_is_global]
    if per_db:
        # PostgreSQL: one database per target, so all are counted at once. A
        # backend publishes its counts when it exits, so each step ends with
        # every session closed; the difference between a short and a long
        # step cancels what opening and closing the connections cost.
        server = per_db[0].server
        readings = [{t.key: server.statement_counter(t.database) for t in per_db}]
        for n in (10, 10 + requests):
            clients = Clients(per_db, Workload())
            clients.run(n)
            clients.close()
            for target in per_db:
                target.dispose()
            _wait_for_no_sessions(server, [t.database for t in per_db])
            readings.append({t.key: server.statement_counter(t.database) for t in per_db})
        for t in per_db:
            short, long = readings[1][t.key] - readings[0][t.key], readings[2][t.key] - readings[1][t.key]
            results[t.key] = (long - short) / requests
    for target in (t for t in targets if t.server.counter_is_global):
        # MySQL: server-wide counters; other clients can only add, keep the least.
        target.dispose()
        clients = Clients([target], Workload())
        clients.run(3)
        # Short windows, so that some of them see no other client's statements.
        window = min(requests, 20)
        seen = []
        for _ in range(trials):
            before = target.server.statement_counter(target.database)
            clients.run(window)
            seen.append(target.server.statement_counter(target.database) - before - 1)
        results[target.key] = min(seen) / window
        clients.close()
    for target in targets:
        target.dispose()
    return results


def _wait_for_no_sessions(server: Server, databases: list[str], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = server.connection_counts()
        if not any(counts.get(name) for name in databases):
            time.sleep(0.1)  # the last backend's exit, and its counts, land
            return
        time.sleep(0.05)


class Clients:
    """One long-lived thread per target, driven in lock step from the caller's thread.

    :meth:`run` makes every target's thread run some requests (all at once);
    :meth:`run_one` makes one target's thread run them while the others
    wait, which lets configurations take turns in small batches, so load
    from the rest of the machine falls on all of them alike. Each request's
    duration is kept in :attr:`latencies`.
    """

    def __init__(self, targets: list[Target], workload: Workload) -> None:
        self.targets = targets
        self.latencies: dict[str, list[float]] = {t.key: [] for t in targets}
        self._jobs: dict[str, tuple[threading.Event, threading.Event, list[Any]]] = {}
        self._threads = []
        for target in targets:
            go, done, box = threading.Event(), threading.Event(), [0]
            thread = threading.Thread(target=self._serve, args=(target, workload, go, done, box), daemon=True)
            thread.start()
            self._jobs[target.key] = (go, done, box)
            self._threads.append(thread)

    def _serve(self, target: Target, workload: Workload, go: threading.Event, done: threading.Event, box: list[Any]) -> None:
        client = None
        latencies = self.latencies[target.key]
        clock = time.perf_counter
        try:
            client = target.client(workload)
            while True:
                go.wait()
                go.clear()
                if box[0] is None:
                    return
                for _ in range(box[0]):
                    started = clock()
                    client.request()
                    latencies.append(clock() - started)
                done.set()
        except Exception as error:
            box.append(error)
        finally:
            if client is not None:
                client.close()
            done.set()

    def _start(self, key: str, requests: int | None) -> None:
        go, done, box = self._jobs[key]
        done.clear()
        box[0] = requests
        go.set()

    def _wait(self, key: str) -> None:
        _, done, box = self._jobs[key]
        done.wait()
        if len(box) > 1:
            raise RuntimeError(f"{key}: {type(box[1]).__name__}: {box[1]}")

    def run(self, requests: int | None) -> None:
        with registered(self.targets):
            for key in self._jobs:
                self._start(key, requests)
            for key in self._jobs:
                self._wait(key)

    def run_one(self, key: str, requests: int) -> None:
        with registered([t for t in self.targets if t.key == key]):
            self._start(key, requests)
            self._wait(key)

    def reset(self) -> None:
        for latencies in self.latencies.values():
            latencies.clear()

    def close(self) -> None:
        self.run(None)
        for thread in self._threads:
            thread.join()
