"""Checkout tracking: leak detection, and the hold times the checkin signal reports.

A connection that a request keeps far longer than requests take (a thread
that never closes its Django connection, a long-running loop inside
``atomic()``, ``CONN_MAX_AGE=None``) starves the pool slowly, and by the time
``PoolTimeout`` is raised the code that took it is long gone from any stack.
``POOL_OPTIONS["LEAK_DETECTION"] = <seconds>`` records, at each checkout,
where it happened; a connection still out after that many seconds is
reported once on the ``djpool.leaks`` logger (WARNING) with that stack, as
HikariCP's ``leakDetectionThreshold`` does. Nothing is closed or taken back:
the report is a diagnosis, the connection stays with its holder.

With ``LEAK_DETECTION`` off (the default) and no receiver on the checkout
signals, :class:`~djpool.core.container.ConnectionPool` never calls into
this module: no stack is captured, no thread runs, no time is read.

The process's maintenance thread (:mod:`djpool.core.maintenance`) checks the
pools that have leak detection on, every quarter of the smallest threshold
(at most every second), so a leak is reported between ``LEAK_DETECTION`` and
``1.25 × LEAK_DETECTION`` seconds (or one second more) after its checkout.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
import weakref
from typing import TYPE_CHECKING

from djpool.core import maintenance, signals

if TYPE_CHECKING:
    from sqlalchemy.pool import ConnectionPoolEntry

    from djpool.core.container import ConnectionPool

__all__ = ["LeakDetector", "on_checkout", "on_checkin"]

logger = logging.getLogger("djpool.leaks")

# Key in the pool entry's record_info (kept across invalidation, unlike
# info): the _Checkout of the request that holds the connection.
CHECKOUT = "djpool.checkout"

# Frames inside djpool's core are the same for every checkout: leave them out.
_CORE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class _Checkout:
    """One checkout: when, by which thread, and (with leak detection) from where."""

    __slots__ = ("started", "thread_name", "stack", "reported", "returned")

    def __init__(self, stack: traceback.StackSummary | None) -> None:
        self.started = time.monotonic()
        self.thread_name = threading.current_thread().name
        self.stack = stack
        self.reported = False
        self.returned = False


def _capture_stack() -> traceback.StackSummary:
    # lookup_lines=False: source lines are read only if a leak is reported.
    stack = traceback.StackSummary.extract(traceback.walk_stack(sys._getframe(2)), lookup_lines=False)
    frames = [frame for frame in stack if not frame.filename.startswith(_CORE_DIR)]
    frames.reverse()
    return traceback.StackSummary.from_list(frames)


# ##### Called by ConnectionPool (only when something is watching) #####


def on_checkout(
    pool: ConnectionPool, connection: ConnectionPoolEntry, started: float | None = None, pinged: bool = False
) -> None:
    """Record a checkout for the leak detector and the checkin signal; send the checkout signal.

    ``started``: ``time.monotonic()`` when the checkout began (None if it was
    not timed); ``pinged``: whether a pre-ping ran.
    """
    detector = pool.leaks
    checkout = _Checkout(_capture_stack() if detector is not None else None)
    record_info = connection.record_info
    if record_info is not None:
        record_info[CHECKOUT] = checkout
    if detector is not None:
        detector.watch(checkout)
    if signals.connection_checked_out.receivers:
        signals.send(
            signals.connection_checked_out,
            pool,
            dbapi_connection=connection.dbapi_connection,
            wait_time=None if started is None else checkout.started - started,
            pinged=pinged,
        )


def on_checkin(pool: ConnectionPool, connection: ConnectionPoolEntry) -> None:
    """Close the checkout's record, note a late return of a reported leak, send the checkin signal."""
    record_info = connection.record_info
    checkout: _Checkout | None = record_info.pop(CHECKOUT, None) if record_info is not None else None
    held_for = None
    if checkout is not None:
        held_for = time.monotonic() - checkout.started
        checkout.returned = True
        if pool.leaks is not None:
            pool.leaks.forget(checkout)
        if checkout.reported:
            logger.info(
                "The connection of database %r reported as a possible leak was returned after %.1f s",
                pool.alias,
                held_for,
            )
    if signals.connection_checked_in.receivers:
        signals.send(
            signals.connection_checked_in, pool, dbapi_connection=connection.dbapi_connection, held_for=held_for
        )


# ##### The detector #####


class LeakDetector:
    """Report checkouts of one pool that outlive ``threshold`` seconds, once each."""

    def __init__(self, pool: ConnectionPool, threshold: float) -> None:
        self.threshold = threshold
        self.alias = pool.alias
        self._pool = weakref.ref(pool)
        self._lock = threading.Lock()
        self._outstanding: set[_Checkout] = set()
        maintenance.watch_leaks(self)

    def watch(self, checkout: _Checkout) -> None:
        with self._lock:
            self._outstanding.add(checkout)

    def forget(self, checkout: _Checkout) -> None:
        with self._lock:
            self._outstanding.discard(checkout)

    def outstanding(self) -> int:
        """Checkouts being watched (not yet returned nor reported)."""
        return len(self._outstanding)

    def scan(self, now: float) -> None:
        """Report every checkout older than the threshold; stop watching it."""
        deadline = now - self.threshold
        with self._lock:
            overdue = [c for c in self._outstanding if c.started <= deadline and not c.returned]
            self._outstanding.difference_update(overdue)
        for checkout in overdue:
            checkout.reported = True
            self._report(checkout, now - checkout.started)

    def _report(self, checkout: _Checkout, held_for: float) -> None:
        stack = "".join(checkout.stack.format()) if checkout.stack is not None else "  (not recorded)\n"
        logger.warning(
            "Possible connection leak on database %r: a connection has been checked out for "
            "%.1f s (LEAK_DETECTION = %g s) by thread %r. It was checked out at "
            "(most recent call last):\n%s",
            self.alias,
            held_for,
            self.threshold,
            checkout.thread_name,
            stack,
        )
        pool = self._pool()
        if pool is not None and signals.connection_leaked.receivers:
            signals.send(
                signals.connection_leaked,
                pool,
                held_for=held_for,
                thread_name=checkout.thread_name,
                stack=checkout.stack,
            )
