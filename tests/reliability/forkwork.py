"""What a forked child does in the fork tests (importable, so multiprocessing can find it)."""

from __future__ import annotations

import gc
import threading
from typing import Any


def _pid(alias: str) -> int:
    from django.db import connections

    conn = connections[alias]
    with conn.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()" if conn.vendor == "postgresql" else "SELECT CONNECTION_ID()")
        return int(cursor.fetchone()[0])


def child_work(alias: str) -> dict[str, Any]:
    """Use the pool in the child (this thread's wrapper and a second thread), then close everything.

    Returns the backend PIDs the child's requests ran on, and how many pools
    the child saw right after the fork (the parent's must not be among them).
    """
    from django.db import connections

    from djpool.core import registry

    pools_after_fork = len(registry.pools(alias))
    pids = [_pid(alias)]  # this thread's wrapper held a parent connection at the fork
    held = connections[alias]
    held.close()
    pids.append(_pid(alias))
    barrier = threading.Barrier(2)

    def other() -> None:
        try:
            barrier.wait(5)
            pids.append(_pid(alias))
        finally:
            connections.close_all()

    thread = threading.Thread(target=other)
    thread.start()
    barrier.wait(5)
    thread.join(10)
    connections.close_all()
    # Close all the child can: its pools, and whatever is left of the parent's.
    registry.close_all()
    gc.collect()
    return {"pids": pids, "pools_after_fork": pools_after_fork}


def child_main(alias: str, queue: Any) -> None:
    """multiprocessing target: report through ``queue``."""
    try:
        queue.put(child_work(alias))
    except BaseException as error:  # noqa: BLE001 - reported to the parent
        queue.put({"error": repr(error)})
