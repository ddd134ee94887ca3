"""djpool.core.contrib.prometheus with the real prometheus_client."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connections

from djpool.core import PoolTimeout

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from djpool.core.contrib.prometheus import DjpoolCollector, register  # noqa: E402

pytestmark = pytest.mark.server_backed


def backend_pid(connection) -> int:
    from tests.conftest import SERVER

    with connection.cursor() as cursor:
        cursor.execute(SERVER.pid_query)
        return int(cursor.fetchone()[0])


def scrape(registry, alias: str) -> dict[str, float]:
    """{sample name: value} for ``alias`` from the exposition text, as Prometheus reads it."""
    text = prometheus_client.generate_latest(registry).decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("alias") == alias
    }


def test_metrics_follow_the_pool_and_the_server(make_alias, server):
    registry = prometheus_client.CollectorRegistry()
    collector = register(registry)
    assert isinstance(collector, DjpoolCollector)
    alias = make_alias({"POOL_SIZE": 2, "MAX_OVERFLOW": 0, "TIMEOUT": 0.2})
    assert scrape(registry, alias) == {}  # no pool in this process yet

    held = threading.Barrier(3)
    release = threading.Event()
    pids: list[int] = []

    def hold() -> None:
        try:
            pids.append(backend_pid(connections[alias]))
            held.wait(10)
            release.wait(10)
        finally:
            connections[alias].close()

    threads = [threading.Thread(target=hold) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        held.wait(10)
        busy = scrape(registry, alias)
        started = time.monotonic()
        with pytest.raises(PoolTimeout):
            backend_pid(connections[alias])
        timed_out_after = time.monotonic() - started
        connections[alias].close()
    finally:
        release.set()
        for thread in threads:
            thread.join(10)

    # Two requests hold two server sessions, and the metrics say so.
    assert len(set(pids)) == 2 and set(pids) <= server.session_ids()
    assert busy["djpool_connections_in_use"] == 2
    assert busy["djpool_connections_idle"] == 0
    assert busy["djpool_connects_total"] == 2
    assert busy["djpool_pool_size"] == 2
    assert busy["djpool_pool_max_connections"] == 2

    after = scrape(registry, alias)
    assert after["djpool_connections_in_use"] == 0
    assert after["djpool_connections_idle"] == 2
    assert after["djpool_checkouts_total"] == 2
    assert after["djpool_checkout_timeouts_total"] == 1
    assert after["djpool_waits_total"] == 1
    # The time in line: TIMEOUT, less what the checkout did before joining
    # it (looking for connections whose thread ended), never more than the
    # checkout took.
    assert timed_out_after >= 0.2
    assert 0.15 <= after["djpool_wait_seconds_total"] <= timed_out_after
    assert after["djpool_wait_seconds_max"] == after["djpool_wait_seconds_total"]
    assert after["djpool_requests_waiting"] == 0
    # Both stay idle (POOL_SIZE 2): none closed as overflow.
    assert after["djpool_overflow_closed_total"] == 0


def test_unbounded_pool_has_no_max_connections_sample(make_alias):
    registry = prometheus_client.CollectorRegistry()
    register(registry)
    alias = make_alias({"MAX_OVERFLOW": -1})
    backend_pid(connections[alias])
    connections[alias].close()
    samples = scrape(registry, alias)
    assert samples["djpool_connects_total"] == 1
    assert "djpool_pool_max_connections" not in samples
