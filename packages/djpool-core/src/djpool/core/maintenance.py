"""The process's one background thread: housekeeping, leak detection, orphan returns.

Three jobs share one daemon thread (``djpool-maintenance``), so a process runs
at most one djpool thread:

* **Housekeeping** (pools with ``MIN_IDLE`` or ``IDLE_TIMEOUT``): open
  ``MIN_IDLE`` connections when a pool is created and after failures, close
  connections idle longer than ``IDLE_TIMEOUT``, replace idle connections at
  their ``RECYCLE`` age. It only touches idle connections and never blocks a
  checkout.
* **Leak detection** (pools with ``LEAK_DETECTION``): report checkouts held
  longer than the threshold, every quarter of the smallest threshold (at most
  every second).
* **Orphan returns**: a connection whose holder went away without giving it
  back (its thread ended, or its wrapper was garbage-collected) is reported
  from a finalizer. A finalizer may run inside another thread's pool lock,
  or while a thread is being torn down, where neither a server round trip
  (the rollback) nor logging belongs; so it only queues the pool here, and
  this thread checks the connection in at once.

The thread runs only while it has work: it starts with the first pool that
needs housekeeping or leak detection, or the first orphan, and ends a few
seconds after its last job. A forked child starts afresh.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from djpool.core.container import ConnectionPool
    from djpool.core.leaks import LeakDetector

__all__ = ["housekeep", "stop_housekeeping", "watch_leaks", "return_soon"]

logger = logging.getLogger("djpool.housekeeping")

# Seconds between housekeeping rounds; a round over a pool costs a lock and a
# few comparisons. IDLE_TIMEOUT below a few seconds shortens it.
MAX_INTERVAL = 0.5
MIN_INTERVAL = 0.05
# Leak scans run every quarter of the smallest threshold, at most every second.
MAX_SCAN_INTERVAL = 1.0
# With nothing left to do, the thread lingers this long before it ends, so
# that a process whose threads keep ending without closing does not start a
# thread for each orphan.
LINGER = 5.0


class _Maintenance:
    def __init__(self) -> None:
        # Reentrant: a finalizer reporting an orphan can run (garbage
        # collection) while this thread already holds the lock.
        self._lock = threading.RLock()
        self._pools: set[ConnectionPool] = set()
        self._detectors: weakref.WeakSet[LeakDetector] = weakref.WeakSet()
        # Pools with orphans to check in; appended from finalizers.
        self._orphans: collections.deque[ConnectionPool] = collections.deque()
        # A bare lock used as a binary semaphore: released to wake the
        # thread. Unlike an Event it allocates nothing, so a finalizer that
        # runs inside it (garbage collection) cannot deadlock on it.
        self._signal = threading.Lock()
        self._signal.acquire()
        self._thread: threading.Thread | None = None
        self._housekeep_now = False
        self._stopping = False

    # ##### What the pools ask for #####

    def housekeep(self, pool: ConnectionPool) -> None:
        """Keep ``pool`` at its MIN_IDLE / IDLE_TIMEOUT / RECYCLE sizes from now on (a round runs at once)."""
        with self._lock:
            if self._stopping:
                return
            self._pools.add(pool)
            self._housekeep_now = True
            self._ensure_thread()
        self._wake()

    def stop_housekeeping(self, pool: ConnectionPool) -> None:
        with self._lock:
            self._pools.discard(pool)
        self._wake()

    def watch_leaks(self, detector: LeakDetector) -> None:
        """Scan ``detector`` for overdue checkouts while it lives."""
        with self._lock:
            self._detectors.add(detector)
            self._ensure_thread()
        self._wake()  # a smaller threshold may need a shorter interval

    def return_soon(self, pool: ConnectionPool) -> None:
        """``pool`` has orphans: check them in now, from this thread.

        Safe from any finalizer: a deque append, a reentrant lock and a
        lock release (a thread is started only if none runs).
        """
        self._orphans.append(pool)
        if self._thread is None:
            with self._lock:
                self._ensure_thread()
        self._wake()

    def stop(self) -> None:
        """At interpreter exit: the registry closes the pools; do nothing more."""
        with self._lock:
            self._stopping = True
            self._pools.clear()
        self._wake()

    def reset_after_fork(self) -> None:
        """In a forked child: the thread did not survive the fork, and a lock may have been held."""
        self.__init__()  # type: ignore[misc]

    # ##### The thread #####

    def _wake(self) -> None:
        try:
            self._signal.release()
        except RuntimeError:
            pass  # already signalled

    def _ensure_thread(self) -> None:
        """Start the thread if it is not running (call with the lock held)."""
        if self._thread is not None or self._stopping:
            return
        thread = threading.Thread(target=self._run, name="djpool-maintenance", daemon=True)
        self._thread = thread
        try:
            thread.start()
        except RuntimeError:
            # Interpreter shutdown: the pools are being closed anyway.
            self._thread = None

    def _run(self) -> None:
        next_housekeeping = next_scan = 0.0
        idle_since = time.monotonic()
        while True:
            self._return_orphans()
            with self._lock:
                pools = list(self._pools)
                detectors = list(self._detectors)
                if self._housekeep_now:
                    self._housekeep_now = False
                    next_housekeeping = 0.0
            now = time.monotonic()
            if pools or detectors:
                idle_since = now
            elif self._orphans:
                continue
            elif now - idle_since >= LINGER or self._stopping:
                with self._lock:
                    if not (self._pools or self._detectors or self._orphans):
                        self._thread = None
                        return
                continue
            if pools and now >= next_housekeeping:
                for pool in pools:
                    try:
                        pool.housekeep()
                    except Exception:
                        # A database that is down must not kill the thread;
                        # the next round tries again.
                        logger.warning(
                            "Housekeeping of pool %r failed; retrying in the next round", pool.alias, exc_info=True
                        )
                next_housekeeping = time.monotonic() + _housekeeping_interval(pools)
            if detectors and now >= next_scan:
                for detector in detectors:
                    try:
                        detector.scan(now)
                    except Exception:
                        logging.getLogger("djpool.leaks").exception(
                            "The leak detector failed on database %r", detector.alias
                        )
                next_scan = time.monotonic() + _scan_interval(detectors)
            del detectors
            deadlines = [LINGER + idle_since]
            if pools:
                deadlines.append(next_housekeeping)
            if self._detectors:
                deadlines.append(next_scan)
            self._signal.acquire(timeout=max(0.0, min(deadlines) - time.monotonic()))

    def _return_orphans(self) -> None:
        while True:
            try:
                pool = self._orphans.popleft()
            except IndexError:
                return
            try:
                pool.take_back_orphans()
            except Exception:
                logger.warning("Returning orphaned connections of pool %r failed", pool.alias, exc_info=True)


def _housekeeping_interval(pools: list[ConnectionPool]) -> float:
    interval = MAX_INTERVAL
    for pool in pools:
        if pool.options.idle_timeout is not None:
            interval = min(interval, pool.options.idle_timeout / 4)
    return max(interval, MIN_INTERVAL)


def _scan_interval(detectors: list[LeakDetector]) -> float:
    return min([MAX_SCAN_INTERVAL, *(detector.threshold / 4 for detector in detectors)])


_maintenance = _Maintenance()
housekeep = _maintenance.housekeep
stop_housekeeping = _maintenance.stop_housekeeping
watch_leaks = _maintenance.watch_leaks
return_soon = _maintenance.return_soon

atexit.register(_maintenance.stop)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_maintenance.reset_after_fork)
