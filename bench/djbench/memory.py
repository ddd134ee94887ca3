"""What a pool of idle connections costs in memory, and whether requests leak any.

Python-level allocations are traced with :mod:`tracemalloc`; the drivers'
C-level buffers (libpq, libmysqlclient) are the same in every configuration
and are not counted.
"""

from __future__ import annotations

import gc
import threading
import tracemalloc
from typing import Any

from djbench.workloads import Target, Workload


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def idle_pool_cost(pooled: Target, connections: int) -> dict[str, Any]:
    """Bytes held by ``connections`` driver connections, and by a pool holding as many idle.

    The driver connections are opened the way the backend opens them (Django's
    own ``get_new_connection()``, which also registers its type adapters on
    each), so the difference is what pooling adds.
    """
    from django.db import connections as django_connections
    tracemalloc.start()
    try:
        # Import and warm everything once so that only the connections are measured.
        warm = pooled.client(Workload())
        warm.request()
        warm.close()
        pooled.dispose()
        before = _traced()
        wrapper = django_connections[pooled.alias]
        params = wrapper.get_connection_params()
        raw = [wrapper.djpool_open_dbapi_connection(params) for _ in range(connections)]
        driver_bytes = _traced() - before
        for connection in raw:
            connection.close()
        del raw
        before = _traced()
        barrier = threading.Barrier(connections)

        def hold() -> None:
            client = pooled.client(Workload())
            client._started.send(sender=client._sender)
            client.query()
            barrier.wait()  # every thread holds a connection: the pool opens them all
            client._finished.send(sender=client._sender)
            client.close()

        threads = [threading.Thread(target=hold) for _ in range(connections)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        del threads
        pool_bytes = _traced() - before
    finally:
        tracemalloc.stop()
    pooled.dispose()
    return {"connections": connections, "driver_bytes": driver_bytes, "pool_bytes": pool_bytes}


def growth(target: Target, requests: int) -> dict[str, Any]:
    """Traced memory after a tenth of ``requests`` and after all of them (one thread)."""
    client = target.client(Workload())
    box: dict[str, Any] = {}

    def work() -> None:
        warmup = max(1, requests // 10)
        for _ in range(warmup):
            client.request()
        tracemalloc.start()
        box["start"] = _traced()
        for _ in range(requests - warmup):
            client.request()
        box["end"] = _traced()
        tracemalloc.stop()
        client.close()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    target.dispose()
    return {"requests": requests, "growth_bytes": box["end"] - box["start"]}
