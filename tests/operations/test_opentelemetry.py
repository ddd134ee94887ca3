"""djpool.core.contrib.opentelemetry against real pools, read through the SDK's in-memory reader.

The names, instrument kinds, units and attributes are those of OpenTelemetry's
semantic conventions for database client connection pools
(docs/database/database-metrics.md, ``db.client.connection.*``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections

from djpool.core import PoolTimeout, registry, signals
from tests.conftest import hold_in_thread

otel_sdk = pytest.importorskip("opentelemetry.sdk.metrics", reason="needs opentelemetry-sdk")
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import Histogram, InMemoryMetricReader, Sum  # noqa: E402

from djpool.core.contrib import opentelemetry as djpool_otel  # noqa: E402

pytestmark = pytest.mark.server_backed

POOL_NAME = "db.client.connection.pool.name"
STATE = "db.client.connection.state"

# name -> (data type, monotonic (sums only), unit, attribute keys): the conventions' table.
CONVENTIONS: dict[str, tuple[type, bool | None, str, set[str]]] = {
    "db.client.connection.count": (Sum, False, "{connection}", {POOL_NAME, STATE}),
    "db.client.connection.idle.max": (Sum, False, "{connection}", {POOL_NAME}),
    "db.client.connection.idle.min": (Sum, False, "{connection}", {POOL_NAME}),
    "db.client.connection.max": (Sum, False, "{connection}", {POOL_NAME}),
    "db.client.connection.pending_requests": (Sum, False, "{request}", {POOL_NAME}),
    "db.client.connection.timeouts": (Sum, True, "{timeout}", {POOL_NAME}),
    "db.client.connection.create_time": (Histogram, None, "s", {POOL_NAME}),
    "db.client.connection.wait_time": (Histogram, None, "s", {POOL_NAME}),
    "db.client.connection.use_time": (Histogram, None, "s", {POOL_NAME}),
}


class Metrics:
    """One collection from the reader, as {metric name: metric}."""

    def __init__(self, reader: InMemoryMetricReader) -> None:
        self.by_name: dict[str, Any] = {}
        data = reader.get_metrics_data()
        for resource_metrics in data.resource_metrics if data else []:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    self.by_name[metric.name] = metric

    def points(self, name: str, pool_name: str, **attributes: str) -> list[Any]:
        metric = self.by_name.get(name)
        if metric is None:
            return []
        wanted = {POOL_NAME: pool_name, **{key.replace("_", "."): value for key, value in attributes.items()}}
        return [p for p in metric.data.data_points if all(p.attributes.get(k) == v for k, v in wanted.items())]

    def value(self, name: str, pool_name: str, **attributes: str) -> Any:
        points = self.points(name, pool_name, **attributes)
        assert len(points) == 1, (name, points)
        return points[0].value

    def count(self, name: str, pool_name: str) -> int:
        points = self.points(name, pool_name)
        return sum(point.count for point in points)


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    djpool_otel.instrument(meter_provider=provider)
    try:
        yield reader
    finally:
        djpool_otel.uninstrument()
        provider.shutdown()


def backend_pid(alias: str) -> int:
    from tests.conftest import SERVER

    assert SERVER is not None
    with connections[alias].cursor() as cursor:
        cursor.execute(SERVER.pid_query)
        return int(cursor.fetchone()[0])


def wait_until(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_every_metric_has_the_conventions_name_kind_unit_and_attributes(make_alias, reader, server):
    alias = make_alias({"POOL_SIZE": 2, "MAX_OVERFLOW": 1, "MIN_IDLE": 1})
    backend_pid(alias)
    connections[alias].close()
    metrics = Metrics(reader)
    for name, (kind, monotonic, unit, keys) in CONVENTIONS.items():
        metric = metrics.by_name.get(name)
        assert metric is not None, f"{name} missing; got {sorted(metrics.by_name)}"
        assert isinstance(metric.data, kind), (name, metric.data)
        if monotonic is not None:
            assert metric.data.is_monotonic is monotonic, name
        assert metric.unit == unit, name
        assert metric.description, name
        ours = [p for p in metric.data.data_points if p.attributes.get(POOL_NAME) == alias]
        assert ours, name
        for point in ours:
            assert set(point.attributes) == keys, (name, dict(point.attributes))
    assert {p.attributes[STATE] for p in metrics.points("db.client.connection.count", alias)} == {"idle", "used"}
    assert metrics.value("db.client.connection.idle.max", alias) == 2
    assert metrics.value("db.client.connection.idle.min", alias) == 1
    assert metrics.value("db.client.connection.max", alias) == 3


def test_counts_match_stats_and_the_server_after_a_known_workload(make_alias, reader, server):
    """One connection, held by a thread; a second thread waits for it, a third times out."""
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "TIMEOUT": 1.0})
    # Sessions other pools (other aliases, earlier tests) keep on the database.
    others = server.session_ids()
    pool_stats = lambda: registry.stats(alias)  # noqa: E731
    release = threading.Event()
    holder = hold_in_thread(alias, release)

    # A waiter in line: pending_requests sees it while it waits.
    waiter_pid: list[int] = []

    def waits() -> None:
        try:
            waiter_pid.append(backend_pid(alias))
        finally:
            connections.close_all()

    waiter = threading.Thread(target=waits)
    waiter.start()
    assert wait_until(lambda: pool_stats()["waiting"] == 1)
    during = Metrics(reader)
    assert during.value("db.client.connection.pending_requests", alias) == 1
    assert during.value("db.client.connection.count", alias, db_client_connection_state="used") == 1
    assert during.value("db.client.connection.count", alias, db_client_connection_state="idle") == 0
    time.sleep(0.05)
    release.set()
    holder.join(10)
    waiter.join(10)
    assert len(waiter_pid) == 1

    # This thread holds the connection; another gives up after TIMEOUT.
    held_pid = backend_pid(alias)
    timed_out: list[BaseException] = []

    def times_out() -> None:
        try:
            backend_pid(alias)
        except PoolTimeout as error:
            timed_out.append(error)
        finally:
            connections.close_all()

    thread = threading.Thread(target=times_out)
    thread.start()
    thread.join(10)
    assert len(timed_out) == 1
    connections[alias].close()

    figures = pool_stats()
    metrics = Metrics(reader)
    assert (figures["checkouts"], figures["timeouts"], figures["waits"], figures["connects"]) == (3, 1, 2, 1)
    assert metrics.value("db.client.connection.timeouts", alias) == figures["timeouts"] == 1
    assert metrics.value("db.client.connection.pending_requests", alias) == figures["waiting"] == 0
    used = metrics.value("db.client.connection.count", alias, db_client_connection_state="used")
    idle = metrics.value("db.client.connection.count", alias, db_client_connection_state="idle")
    assert (used, idle) == (figures["checked_out"], figures["idle"]) == (0, 1)
    # What the server sees: one session, the one every checkout got.
    assert waiter_pid[0] == held_pid
    assert server.session_ids() - others == {held_pid}

    # One histogram point per checkout, per checkin, per connect.
    assert metrics.count("db.client.connection.wait_time", alias) == figures["checkouts"] == 3
    assert metrics.count("db.client.connection.use_time", alias) == 3
    assert metrics.count("db.client.connection.create_time", alias) == figures["connects"] == 1
    # The waiter waited at least the 50 ms the holder kept its connection after it queued;
    # the timed-out wait is no checkout, so it is not in wait_time.
    wait = metrics.points("db.client.connection.wait_time", alias)[0]
    assert 0.05 <= wait.max < 1.0
    assert wait.sum < figures["wait_time_total"]
    use = metrics.points("db.client.connection.use_time", alias)[0]
    assert use.max >= 0.05  # the holder kept it at least that long


def test_pool_name_fallback_form(make_alias, server):
    alias = make_alias({"POOL_SIZE": 1})
    # The fallback name is the server's address and database, which other
    # pools of this run share: close their idle connections first.
    connections.close_all()
    registry.dispose()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    djpool_otel.instrument(meter_provider=provider, pool_name="address")
    try:
        backend_pid(alias)
        connections[alias].close()
        metrics = Metrics(reader)
    finally:
        djpool_otel.uninstrument()
        provider.shutdown()
    expected = f"127.0.0.1:{server.port}/{server.database}"
    assert metrics.count("db.client.connection.wait_time", expected) == 1
    assert metrics.value("db.client.connection.count", expected, db_client_connection_state="idle") == 1


def test_bad_pool_name_is_refused():
    with pytest.raises(ValueError, match=r"pool_name.*'nickname'.*'alias', 'address'"):
        djpool_otel.instrument(pool_name="nickname")  # type: ignore[arg-type]


def test_nothing_recorded_and_no_receiver_when_not_instrumented(make_alias, server):
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    djpool_otel.instrument(meter_provider=provider)
    alias = make_alias({"POOL_SIZE": 1})
    backend_pid(alias)
    connections[alias].close()
    assert Metrics(reader).count("db.client.connection.wait_time", alias) == 1
    djpool_otel.uninstrument()
    try:
        assert not djpool_otel.is_instrumented()
        # No receiver: each pool event costs the pool one truth test, nothing is called.
        for signal in (signals.connection_opened, signals.connection_checked_out, signals.connection_checked_in):
            assert not signal.receivers
        for _ in range(3):
            backend_pid(alias)
            connections[alias].close()
        metrics = Metrics(reader)
        # The histogram still holds its one earlier point (cumulative), no new ones;
        # the gauges report nothing at all.
        assert metrics.count("db.client.connection.wait_time", alias) == 1
        assert metrics.count("db.client.connection.use_time", alias) == 1
        assert not metrics.points("db.client.connection.count", alias)
        assert registry.stats(alias)["checkouts"] == 4

        # Instrumenting again on the same provider resumes on the same instruments.
        djpool_otel.instrument(meter_provider=provider)
        backend_pid(alias)
        connections[alias].close()
        again = Metrics(reader)
        assert again.count("db.client.connection.wait_time", alias) == 2
        assert again.value("db.client.connection.count", alias, db_client_connection_state="idle") == 1
    finally:
        djpool_otel.uninstrument()
        provider.shutdown()
