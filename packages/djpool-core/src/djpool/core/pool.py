"""A bounded SQLAlchemy pool that hands connections to waiters in arrival order.

SQLAlchemy's ``QueuePool`` lets a thread that returns a connection take it
again before the threads already waiting for one wake up, so under contention
the threads that hold connections keep them and the others time out. This
pool keeps the same limits (``pool_size`` idle connections kept, up to
``max_overflow`` more while busy) but gives a returned connection, or the
right to open a new one, to the oldest waiter, as psycopg_pool does.

With one bound on that order (bounded barging): while the oldest waiter has
waited less than the barging window (twice the pool's recent mean wait,
within :data:`BARGE_WINDOW` and :data:`MAX_BARGE_WINDOW`), a connection
given back while no other is idle stays idle for a thread that is already running, and no
waiter is woken for it. Handing it straight to a waiter leaves it unused
until that thread is scheduled again, which under the GIL, with every
request thread runnable, takes as long as a query, and costs the process
two thread switches; with every checkout of a busy pool of few connections
waiting, that is what makes it queue (a convoy; measured: the benchmark's
workload phase). A waiter gets such a connection when the next one comes
back beside it (nobody running wanted the first), or at the end of its
window, when it looks for one itself; past the window, returns go to
waiters in order. So a waiter never waits beside an idle connection for
longer than its window.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, Callable

from sqlalchemy import exc
from sqlalchemy.pool import ConnectionPoolEntry, Pool

__all__ = ["FairQueuePool"]

# A waiter that is handed this instead of a record may open a new connection:
# a slot was freed while it waited (a connection was closed, not returned).
_MAY_CREATE = object()
#: The least barging window, in seconds: how long the oldest waiter may
#: have waited and still be overtaken by a thread that is running when a
#: connection comes back (see the module's docstring), and so the longest a
#: waiter waits beside an idle connection. The window is twice the pool's
#: moving mean wait, within this and :data:`MAX_BARGE_WINDOW`: it must
#: exceed a busy pool's usual wait for barging to happen at all, and a
#: fixed one flips between two states as the load moves (waits under it:
#: barging keeps them short; waits over it: every return goes to a waiter,
#: a convoy, and waits grow). Interleaved A/B runs of the benchmark's
#: workload (32 threads, 4 connections, transaction mode; checkouts waited
#: 4-7 ms with the earlier design) gave 8-11 % more requests per second
#: than that design, on both servers, with less CPU per request. The
#: earlier design woke the oldest waiter to race the running threads for
#: each return in a 2 ms window: under that load the waits were longer
#: than the window, so nearly every return went to a waiter.
BARGE_WINDOW = 0.01
#: The most barging window, in seconds (see :data:`BARGE_WINDOW`). It bounds
#: the tail: a waiter overtaken for the whole window waits that long, while
#: the threads that overtook it barely waited. With 64 threads on 10 + 10
#: connections (the benchmark's contention run, MariaDB), a 30 ms cap put the
#: 99th percentile request at 11.5-12.5x the median (which barged: 3-4 ms);
#: 20 ms, 7.6x in two runs; 15 ms, 1.7x (the median waited too). 20 ms
#: still exceeds twice the 6-8 ms waits of the workload that needed barging.
MAX_BARGE_WINDOW = 0.02
# The weight of each wait in the moving mean that sets the window.
_WAIT_WEIGHT = 0.05


class _Waiter:
    """A checkout waiting in line, woken by whoever hands it a record.

    A bare lock, taken at creation, is the cheapest thing a thread can block
    on with a timeout (an Event builds a Condition and more locks): under
    transaction mode most checkouts of a busy pool wait briefly.
    """

    __slots__ = ("_lock", "record", "since", "woken_at")

    def __init__(self, since: float) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self.record: Any = None
        #: time.monotonic() when it joined the line, and when it was last woken.
        self.since = since
        self.woken_at = since

    def wait(self, timeout: float) -> bool:
        """Block until woken (True) or ``timeout`` seconds pass (False)."""
        return self._lock.acquire(timeout=timeout)

    def wake(self) -> None:
        """Called once, with the pool lock held, after the waiter left the line."""
        self.woken_at = time.monotonic()
        self._lock.release()


class FairQueuePool(Pool):
    """A pool that limits open connections and serves waiters first-in, first-out
    (a thread that is running may overtake a waiter within the barging window).

    :param creator: callable returning a new DB-API connection (SQLAlchemy's
      creator signature, with or without the connection record argument).
    :param pool_size: connections kept open while idle, defaults to 5.
    :param max_overflow: connections opened beyond ``pool_size`` while the pool
      is busy and closed again when returned, defaults to 10; ``-1`` means no
      limit.
    :param timeout: seconds a checkout waits for a connection before raising
      :class:`sqlalchemy.exc.TimeoutError`, defaults to 30.
    :param use_lifo: hand out the most recently returned idle connection
      (lets the rest stay idle long enough to be recycled), defaults to False.
    :param on_wait: called with the seconds a checkout waited, only for
      checkouts that had to wait.
    :param reclaim: called, outside the lock, by a checkout that finds no
      idle connection and no free slot, before it waits: it may give back
      connections whose holders went away (returns how many it did).

    Other keyword arguments go to :class:`sqlalchemy.pool.Pool`.
    """

    def __init__(
        self,
        creator: Any,
        pool_size: int = 5,
        max_overflow: int = 10,
        timeout: float = 30.0,
        use_lifo: bool = False,
        on_wait: Callable[[float], None] | None = None,
        reclaim: Callable[[], int] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(creator, **kw)
        self._pool_size = pool_size
        self._max_overflow = max_overflow
        self._timeout = timeout
        self._use_lifo = use_lifo
        self._on_wait = on_wait
        self._reclaim = reclaim
        # Reentrant, as SQLAlchemy's own pool queue is: a signal handler (or
        # other code run between two bytecodes) may give a connection back
        # on the thread that holds the lock. Every locked section that adds a
        # waiter ends by serving waiters, so such a return never leaves a
        # connection idle beside a waiter.
        self._lock = threading.RLock()
        # Idle records with the time.monotonic() they were returned at; the
        # left end holds the longest idle.
        self._idle: collections.deque[tuple[ConnectionPoolEntry, float]] = collections.deque()
        self._waiters: collections.deque[_Waiter] = collections.deque()
        # Records that exist (idle, checked out, or being opened): the number
        # the limit applies to.
        self._records: set[ConnectionPoolEntry] = set()
        self._opening = 0
        # Records taken out of _records and being closed outside the lock:
        # their slots count until the close is done, so that a new connection
        # never opens while the old one is still open (never more than
        # POOL_SIZE + MAX_OVERFLOW connections from one process at once).
        self._closing = 0
        self._abandoned = False
        self._closed = False
        self._barge_window = BARGE_WINDOW
        self._barge_window_bounds = (BARGE_WINDOW, MAX_BARGE_WINDOW)
        self._mean_wait = 0.0
        # Hand-over figures (approximate: counted without the lock).
        #: Waiters handed a record (or a free slot) by another thread, and
        #: the seconds in all from their wake() to their running again.
        self.handovers = 0
        self.handover_latency_total = 0.0
        #: Checkouts that took an idle record ahead of waiters, and waiters
        #: whose barging window ended before they were handed one (they
        #: then look for an idle record themselves).
        self.barged = 0
        self.looked = 0
        #: Overflow connections closed on return because POOL_SIZE were
        #: already idle and nobody waited: the next burst opens new ones
        #: (churn; a steady rise says POOL_SIZE is below the usual load).
        self.overflow_closed = 0

    # ##### SQLAlchemy Pool API #####

    def _do_get(self, longest_idle: bool = False, deadline: float | None = None) -> ConnectionPoolEntry:
        """Take an idle record, a free slot, or wait in line for one.

        ``longest_idle`` takes the record idle the longest whatever
        ``use_lifo`` says (used to sweep idle connections for dead ones).
        ``deadline`` (``time.monotonic()``) is when to stop waiting; by
        default the pool's timeout from the moment the wait starts.
        """
        reclaim = self._reclaim
        while True:
            waiter = None
            with self._lock:
                if self._idle and (not self._waiters or self._oldest_waiter_in_window(time.monotonic())):
                    if self._waiters:
                        self.barged += 1
                    # (_pop_idle() inline: this is every checkout's path)
                    return (self._idle.popleft() if longest_idle or not self._use_lifo else self._idle.pop())[0]
                if self._has_capacity():
                    self._opening += 1
                    break
                if reclaim is None:
                    waiter = _Waiter(time.monotonic())
                    self._waiters.append(waiter)
                    # A return that ran inside this section (reentrant lock)
                    # after the idle test above found no waiter to serve:
                    # the record is idle beside this waiter, which is in its
                    # window (it looks at the window's end).
                    self._serve_waiters()
                    break
            # About to wait: first take back what holders that went away
            # still hold, then look again (once).
            reclaim()
            reclaim = None
        if waiter is None:
            return self._open_record()
        record = self._wait_in_line(waiter, longest_idle, waiter.since + self._timeout if deadline is None else deadline)
        if record is _MAY_CREATE:
            return self._open_record()
        return record  # type: ignore[no-any-return]

    def _wait_in_line(self, waiter: _Waiter, longest_idle: bool, deadline: float) -> Any:
        """Wait until ``waiter`` is handed a record (or _MAY_CREATE); raise at ``deadline``.

        At the end of its barging window a waiter not yet handed one wakes
        to look: a connection left idle for running threads that none took
        goes to the waiters past their window, in order.
        """
        look_at: float | None = waiter.since + self._barge_window
        try:
            while True:
                until = deadline if look_at is None else min(deadline, look_at)
                if waiter.wait(max(0.0, until - time.monotonic())):
                    break
                with self._lock:
                    if waiter.record is None and look_at is not None:
                        now = time.monotonic()
                        # The window follows the waits: it may have grown.
                        look_at = waiter.since + self._barge_window
                        if now >= look_at:
                            # Its window ended: idle records go to the
                            # waiters past their window, which every waiter
                            # ahead of this one is too. From now on returns
                            # come to it in order.
                            self.looked += 1
                            self._serve_waiters(now)
                            look_at = None
                            if waiter.record is not None:
                                # It served itself (not a hand-over): its
                                # lock is released.
                                waiter.wait(0)
                                return waiter.record
                        # (Within its window, the deadline, if it came, is
                        # handled below.)
                    if waiter.record is None:
                        if time.monotonic() < deadline:
                            continue
                        self._waiters.remove(waiter)
                        if self._idle:
                            # The deadline came within the window, beside an
                            # idle record: it is this waiter's to take.
                            return self._pop_idle(longest_idle)
                        raise exc.TimeoutError(
                            "FairQueuePool limit of size %d overflow %d reached, "
                            "connection timed out, timeout %0.2f"
                            % (self._pool_size, self._max_overflow, self._timeout)
                        )
                # Handed one just as the wait ran out: its lock is released.
                waiter.wait(0)
                break
            # Handed one by another thread. From wake() to running again:
            # how long a handed-over connection sat unused (scheduling, the
            # GIL).
            self.handovers += 1
            self.handover_latency_total += time.monotonic() - waiter.woken_at
            return waiter.record
        finally:
            waited = time.monotonic() - waiter.since
            self._follow_waits(waited)
            if self._on_wait is not None:
                self._on_wait(waited)

    def _follow_waits(self, waited: float) -> None:
        """Move the barging window to twice the mean wait, within its bounds (no lock: approximate)."""
        self._mean_wait += (waited - self._mean_wait) * _WAIT_WEIGHT
        least, most = self._barge_window_bounds
        self._barge_window = min(most, max(least, 2 * self._mean_wait))

    def _oldest_waiter_in_window(self, now: float) -> bool:
        """Whether the oldest waiter is still within its barging window at ``now`` (lock held, a waiter in line).

        While it is, a running thread may take an idle record ahead of the
        waiters, and a record given back may be left idle for one.

        Handing a returned connection to the oldest waiter makes it wait
        until that thread is scheduled again (under the GIL, behind every
        thread that is runnable), while a thread that is already running and
        wants one has to join the line: the connection idles, the line
        grows (a convoy). So for a short while a running thread may take it:
        as long as the oldest waiter has waited less than the barging window.
        After that, returns go to waiters in order again.
        """
        return now - self._waiters[0].since < self._barge_window

    def _leave_for_running_thread(self, now: float) -> bool:
        """Whether a record given back at ``now`` while threads wait stays idle for a running thread (lock held).

        Only while no other record is idle (a second one means no running
        thread came for the first: it goes to the oldest waiter), the oldest
        waiter is within its window, and another connection is checked out:
        its return will look again, so that a connection is never left idle
        beside a waiter only for the waiter's window to run out (with one
        connection, say, held by one thread while another waits).
        """
        return (
            not self._idle
            and self._oldest_waiter_in_window(now)
            and len(self._records) > 1
        )

    def _pop_idle(self, longest_idle: bool) -> ConnectionPoolEntry:
        return (self._idle.popleft() if longest_idle or not self._use_lifo else self._idle.pop())[0]

    def _serve_waiters(self, now: float | None = None) -> None:
        """Hand idle records to the waiters past their barging window, then free slots to any, in order (lock held).

        An idle record beside a waiter within its window was left for a
        running thread (:meth:`_leave_for_running_thread`); that waiter
        looks for it at its window's end.
        """
        if now is None:
            now = time.monotonic()
        while self._waiters and self._idle and not self._oldest_waiter_in_window(now):
            waiter = self._waiters.popleft()
            waiter.record = self._pop_idle(False)
            waiter.wake()
        self._pass_capacity_on()

    def _do_return_conn(
        self, record: ConnectionPoolEntry, returned_at: float | None = None
    ) -> tuple[ConnectionPoolEntry, float] | None:
        """Give ``record`` to the oldest waiter, or keep it idle since ``returned_at`` (default: now).

        Returns its idle entry when it was kept idle (None otherwise): the
        thread that returned it may take that one back (:meth:`take_back`).
        """
        if self._abandoned:
            # Forked child: the record's connection belongs to the parent.
            return None
        with self._lock:
            if record.dbapi_connection is None:
                # Invalidated: free its slot rather than keep an empty entry,
                # so that every idle record is an open connection (what
                # MIN_IDLE counts), and a waiter may open a new one.
                self._records.discard(record)
                self._pass_capacity_on()
                return None
            if self._waiters:
                now = time.monotonic() if returned_at is None else returned_at
                if self._leave_for_running_thread(now):
                    self._idle.append((record, now))
                    return None
                waiter = self._waiters.popleft()
                waiter.record = record
                waiter.wake()
                return None
            if len(self._idle) < self._pool_size and not self._closed:
                entry = (record, time.monotonic() if returned_at is None else returned_at)
                self._idle.append(entry)
                return entry
            self._records.discard(record)
            self._closing += 1
            if not self._closed:
                self.overflow_closed += 1
        # Overflow connection nobody waits for: close it outside the lock.
        self._close_then_free([record])
        return None

    def take_back(self, entry: tuple[ConnectionPoolEntry, float]) -> bool:
        """Take ``entry`` (from :meth:`_do_return_conn`) out of the idle records again; True if it was there.

        Only while it is the last one returned and no thread waits for one:
        then no other checkout took it and none is owed it. (For the thread
        that returned it, this is ``use_lifo``'s order: its own connection
        stays warm while the others idle, and can reach IDLE_TIMEOUT.)
        """
        with self._lock:
            idle = self._idle
            if idle and idle[-1] is entry and not self._waiters:
                idle.pop()
                return True
        return False

    def _close_then_free(self, records: list[ConnectionPoolEntry]) -> None:
        """Close records counted in ``_closing`` (lock not held), then free their slots."""
        try:
            for record in records:
                record.close()
        finally:
            with self._lock:
                self._closing -= len(records)
                for _ in records:
                    self._pass_capacity_on()

    def _open_record(self) -> ConnectionPoolEntry:
        """Open a connection in a slot already reserved by ``_opening``."""
        try:
            record = self._create_connection()
        except BaseException:
            with self._lock:
                self._opening -= 1
                self._pass_capacity_on()
            raise
        with self._lock:
            self._opening -= 1
            self._records.add(record)
        return record

    def _has_capacity(self) -> bool:
        if self._max_overflow < 0:
            return True
        limit = self._pool_size + self._max_overflow
        return len(self._records) + self._opening + self._closing < limit

    def _pass_capacity_on(self) -> None:
        """Give a freed slot to the oldest waiter (call with the lock held)."""
        while self._waiters and self._has_capacity():
            self._opening += 1
            waiter = self._waiters.popleft()
            waiter.record = _MAY_CREATE
            waiter.wake()

    def close_idle(self, keep: int = 0) -> int:
        """Close idle connections until at most ``keep`` remain; return how many."""
        return self._close_longest_idle(lambda idle_since: len(self._idle) > keep)

    def _close_longest_idle(self, should_close: Callable[[float], bool]) -> int:
        """Close idle connections, longest idle first, while ``should_close(idle_since)``.

        ``should_close`` is called with the lock held and sees the pool as it
        shrinks; the connections are closed after the lock is released.
        """
        closed = []
        with self._lock:
            while self._idle and should_close(self._idle[0][1]):
                record = self._idle.popleft()[0]
                self._records.discard(record)
                closed.append(record)
            self._closing += len(closed)
        self._close_then_free(closed)
        return len(closed)

    def close(self) -> None:
        """Close idle connections now and every other one when it comes back."""
        self._closed = True
        self.close_idle()

    def dispose(self) -> None:
        closed = self.close_idle()
        self.logger.info("Pool disposed, %d idle connections closed. %s", closed, self.status())

    def recreate(self) -> FairQueuePool:
        self.logger.info("Pool recreating")
        return self.__class__(
            self._creator,
            pool_size=self._pool_size,
            max_overflow=self._max_overflow,
            timeout=self._timeout,
            use_lifo=self._use_lifo,
            on_wait=self._on_wait,
            reclaim=self._reclaim,
            recycle=self._recycle,
            echo=self.echo,
            logging_name=self._orig_logging_name,
            reset_on_return=self._reset_on_return,
            pre_ping=self._pre_ping,
            _dispatch=self.dispatch,
            dialect=self._dialect,
        )

    def status(self) -> str:
        return "Pool size: %d  Connections in pool: %d Current Overflow: %d Current Checked out connections: %d" % (
            self.size(),
            self.checkedin(),
            self.overflow(),
            self.checkedout(),
        )

    def size(self) -> int:
        return self._pool_size

    def timeout(self) -> float:
        return self._timeout

    def checkedin(self) -> int:
        return len(self._idle)

    def overflow(self) -> int:
        return max(0, len(self._records) - self._pool_size)

    def checkedout(self) -> int:
        return len(self._records) - len(self._idle)

    def waiting(self) -> int:
        return len(self._waiters)

    # ##### Housekeeping (called from the housekeeper thread, never on checkout) #####

    def close_idle_since(self, before: float, keep: int) -> int:
        """Close connections idle since before ``before`` (monotonic), keeping ``keep`` open in all."""
        return self._close_longest_idle(lambda idle_since: idle_since < before and len(self._records) > keep)

    def close_idle_older_than(self, deadline: Callable[[ConnectionPoolEntry], float]) -> int:
        """Close idle connections whose ``deadline(record)`` (wall clock) has passed."""
        now = time.time()
        closed = []
        with self._lock:
            kept = collections.deque(entry for entry in self._idle if deadline(entry[0]) > now)
            if len(kept) != len(self._idle):
                closed = [entry[0] for entry in self._idle if deadline(entry[0]) <= now]
                self._idle = kept
                for record in closed:
                    self._records.discard(record)
                self._closing += len(closed)
        self._close_then_free(closed)
        return len(closed)

    def open_idle(self, minimum: int) -> bool:
        """Open one connection into the pool if fewer than ``minimum`` exist; True if one was opened."""
        with self._lock:
            if self._closed or len(self._records) + self._opening >= minimum or not self._has_capacity():
                return False
            self._opening += 1
        record = self._open_record()
        self._do_return_conn(record)
        return True

    # ##### Fork safety #####

    def abandon_after_fork(self, detach: Callable[[Any], None]) -> None:
        """Forget every connection of this pool in a forked child.

        The connections belong to the parent: the child must neither use nor
        close them, since closing sends a termination message on the socket
        the parent still uses. ``detach`` is called with each open DB-API
        connection to cut the child's copy of its socket loose. The lock is
        not taken: a thread of the parent may have held it at the fork.
        """
        self._abandoned = True
        for record in list(self._records):
            dbapi_connection = record.dbapi_connection
            if dbapi_connection is not None:
                detach(dbapi_connection)
        self._idle = collections.deque()
        self._waiters = collections.deque()
        self._records = set()
        self._lock = threading.RLock()
