"""One background thread per process that keeps pools at the right size over time.

It opens ``MIN_IDLE`` connections when a pool is created (so the first
requests after a deploy do not pay the connect cost) and after failures,
closes connections idle longer than ``IDLE_TIMEOUT`` down to ``MIN_IDLE``, and
replaces idle connections that reached their ``RECYCLE`` age before a request
has to. It only ever touches idle connections, never blocks a checkout, and
runs only while some pool sets ``MIN_IDLE`` or ``IDLE_TIMEOUT``: a process
with default options has no such thread at all.
"""

from __future__ import annotations

import atexit
import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from djpool.core.container import ConnectionPool

__all__ = ["register", "unregister"]

logger = logging.getLogger("djpool.housekeeping")

# Seconds between rounds; a round over a pool costs a lock and a few
# comparisons. IDLE_TIMEOUT below a few seconds shortens it.
MAX_INTERVAL = 0.5
MIN_INTERVAL = 0.05


class Housekeeper:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pools: set[ConnectionPool] = set()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def register(self, pool: ConnectionPool) -> None:
        with self._lock:
            self._pools.add(pool)
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(target=self._run, name="djpool-housekeeper", daemon=True)
                self._thread.start()
        self._wake.set()

    def unregister(self, pool: ConnectionPool) -> None:
        with self._lock:
            self._pools.discard(pool)
        self._wake.set()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._pools.clear()
        self._wake.set()

    def reset_after_fork(self) -> None:
        """In a forked child: the thread did not survive the fork; start afresh."""
        self._lock = threading.Lock()
        self._pools = set()
        self._wake = threading.Event()
        self._thread = None

    def _interval(self, pools: list[ConnectionPool]) -> float:
        interval = MAX_INTERVAL
        for pool in pools:
            if pool.options.idle_timeout is not None:
                interval = min(interval, pool.options.idle_timeout / 4)
        return max(interval, MIN_INTERVAL)

    def _run(self) -> None:
        while True:
            with self._lock:
                pools = list(self._pools)
                if not pools:
                    self._thread = None
                    return
            for pool in pools:
                try:
                    pool.housekeep()
                except Exception:
                    # A database that is down must not kill the thread; the
                    # next round tries again.
                    logger.warning("Housekeeping of pool %r failed; retrying in the next round", pool.alias, exc_info=True)
            self._wake.wait(self._interval(pools))
            self._wake.clear()


_housekeeper = Housekeeper()
register = _housekeeper.register
unregister = _housekeeper.unregister
reset_after_fork = _housekeeper.reset_after_fork
atexit.register(_housekeeper.stop)
