"""What one Django connection wrapper holds from the pool, and its safety nets.

The wrapper checks out a pool entry (SQLAlchemy's connection record) directly,
without SQLAlchemy's per-checkout proxy object: that proxy costs a few
microseconds on every checkout and checkin, most of a request's pool
overhead. :class:`Lease` keeps the proxy's one service that matters, giving
back a connection whose holder went away without closing it, and does it
sooner:

* **When the thread that took it ends.** Django keeps a thread's wrappers in
  reference cycles, so an ended thread's wrapper is freed only by a full pass
  of the cyclic garbage collector, which can be minutes away in a large
  process; until then the pool is one connection short (Django without a
  pool loses nothing but a server session). Each thread that holds a lease
  gets a sentinel in a ``threading.local``, freed by reference counting the
  moment the thread ends: it hands the thread's connections back. (A greenlet
  under gevent's monkey-patching gets its own, freed when the greenlet ends.)
* **When the wrapper is garbage-collected** holding one: a finalizer, as
  before, for wrappers that outlive their thread (a copied async context).

Both only queue the connection (:meth:`ConnectionPool.return_orphan`):
finalizers run inside other code (a pool lock, a thread's teardown), where no
round trip or logging belongs. The maintenance thread, or the next checkout
that would otherwise wait, checks it in, rolled back.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.pool import ConnectionPoolEntry

    from djpool.core.container import ConnectionPool

__all__ = ["Lease", "reclaim_from_ended_threads"]

# Serializes the two ways an orphan is found (its thread's sentinel, its
# wrapper's finalizer), which can run at once in two threads. Reentrant: the
# garbage collector can run a finalizer while this thread holds it.
_orphan_lock = threading.RLock()

_get_ident = threading.get_ident

# Per thread (per greenlet under gevent): the _ThreadEnd sentinel.
_local = threading.local()
# Every live sentinel, for the checkout that would wait (see
# reclaim_from_ended_threads).
_sentinels: weakref.WeakSet[_ThreadEnd] = weakref.WeakSet()


class _ThreadEnd:
    """Kept only in a ``threading.local``: freed, and run, as soon as its thread ends."""

    __slots__ = ("ident", "name", "thread", "leases", "__weakref__")

    def __init__(self) -> None:
        thread = threading.current_thread()
        self.ident = _get_ident()
        self.name = thread.name
        # Only a thread started by threading can be asked whether it ended.
        self.thread: weakref.ref[threading.Thread] | None = (
            None
            if isinstance(thread, (threading._MainThread, threading._DummyThread))  # type: ignore[attr-defined]
            else weakref.ref(thread)
        )
        # Leases this thread took; a lease that moved to another thread
        # (shared wrappers) is told apart by its owner.
        self.leases: weakref.WeakSet[Lease] = weakref.WeakSet()

    def ended(self) -> None:
        for lease in list(self.leases):
            lease.owner_ended(self.ident, self.name)
        self.leases.clear()

    def __del__(self) -> None:
        # Runs in the ending thread, during its teardown. At interpreter
        # exit the registry has closed the pools already.
        if not sys.is_finalizing():
            self.ended()

    def has_ended(self) -> bool:
        """True once its thread is known to have finished (its locals may not be freed yet)."""
        thread = self.thread() if self.thread is not None else None
        return thread is not None and not thread.is_alive()


class Lease:
    """The pool entry a wrapper holds (``record``) and the pool it came from.

    It must not refer to the wrapper strongly: the finalizer keeps it alive
    after the wrapper is gone.
    """

    __slots__ = ("pool", "record", "owner", "owner_name", "_wrapper", "__weakref__")

    def __init__(self, wrapper: Any = None) -> None:
        self.pool: ConnectionPool | None = None
        self.record: ConnectionPoolEntry | None = None
        # threading.get_ident() of the thread whose sentinel watches this lease.
        self.owner: int | None = None
        self.owner_name: str | None = None
        self._wrapper = weakref.ref(wrapper) if wrapper is not None else None

    @classmethod
    def for_wrapper(cls, wrapper: Any) -> Lease:
        """A lease whose connection goes back to its pool when ``wrapper``'s thread ends or it is collected."""
        lease = cls(wrapper)
        finalizer = weakref.finalize(wrapper, lease.wrapper_collected)
        # At interpreter exit the registry closes every pool instead.
        finalizer.atexit = False
        return lease

    def take(self, pool: ConnectionPool, record: ConnectionPoolEntry) -> None:
        self.pool = pool
        self.record = record
        if self.owner != _get_ident():
            self._watch_thread()

    def _watch_thread(self) -> None:
        """Register with this thread's sentinel (once per thread the lease is used in)."""
        try:
            sentinel = _local.sentinel
        except AttributeError:
            sentinel = _local.sentinel = _ThreadEnd()
            _sentinels.add(sentinel)
        sentinel.leases.add(self)
        self.owner = sentinel.ident
        self.owner_name = sentinel.name

    def give_up(self) -> tuple[ConnectionPool | None, ConnectionPoolEntry | None]:
        """Forget the checkout and return it, for the caller to check in."""
        pool, record = self.pool, self.record
        self.pool = None
        self.record = None
        return pool, record

    # ##### Safety nets #####

    def owner_ended(self, ident: int, thread_name: str) -> None:
        """The thread ``ident`` ended: give back what it still holds through this lease."""
        if self.owner != ident:
            return  # the lease moved to another thread
        self.owner = None
        wrapper = self._wrapper() if self._wrapper is not None else None
        if wrapper is not None and getattr(wrapper, "allow_thread_sharing", False):
            # Another thread may be using the wrapper (inc_thread_sharing()):
            # it gives the connection back, or the garbage collector does.
            return
        if wrapper is not None and self.record is not None:
            # Unreachable for Django (its thread is gone), but never let it
            # reach the connection that another thread may hold next.
            wrapper.djpool_connection_reclaimed()
        self._orphaned(thread_name)

    def wrapper_collected(self) -> None:
        """The wrapper was garbage-collected: give back what it still held."""
        self._orphaned(self.owner_name)

    def _orphaned(self, thread_name: str | None) -> bool:
        with _orphan_lock:
            pool, record = self.give_up()
        if pool is None or record is None or pool.pid != os.getpid():
            # Nothing held, or a forked child's copy of a parent's checkout.
            return False
        pool.return_orphan(record, thread_name)
        return True


# Busy pools make many checkouts wait: the scan below runs at most this often.
SCAN_INTERVAL = 0.01
_last_scan = 0.0


def reclaim_from_ended_threads() -> int:
    """Give back connections of threads that have finished but whose sentinel has not run yet.

    The sentinel runs when the thread's locals are freed, at the very end of
    its teardown; a checkout that would otherwise wait calls this first (at
    most every ``SCAN_INTERVAL`` seconds in the process). Only threads
    started by :mod:`threading` are asked (never the main thread, nor foreign
    or dummy threads, which cannot say whether they ended).
    """
    global _last_scan
    now = time.monotonic()
    if now - _last_scan < SCAN_INTERVAL:
        return 0
    _last_scan = now
    found = 0
    for sentinel in list(_sentinels):
        if sentinel.leases and sentinel.has_ended():
            found += len(sentinel.leases)
            sentinel.ended()
    return found


if hasattr(os, "register_at_fork"):
    # Sentinels of the parent's threads: those threads do not exist in the
    # child, and their checkouts belong to the parent.
    os.register_at_fork(after_in_child=_sentinels.clear)
