"""One pool of DB-API connections for one Django database, in one process.

:class:`ConnectionPool` wraps a :class:`~djpool.core.pool.FairQueuePool` with
what Django needs around it: opening connections through the backend's own
``get_new_connection()``, the idle-threshold pre-ping, the error Django shows
on exhaustion, and the counters behind :func:`djpool.core.stats`.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import random
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import ConnectionPoolEntry

from djpool.core import leaks, maintenance, signals
from djpool.core.bounded import NoAnswer, remaining
from djpool.core.lease import reclaim_from_ended_threads
from djpool.core.dialect import PoolDialect
from djpool.core.exceptions import PoolTimeout
from djpool.core.options import PoolOptions
from djpool.core.pool import FairQueuePool

if TYPE_CHECKING:
    from djpool.core.mixins import PooledDatabaseWrapperMixin

__all__ = ["ConnectionPool"]

logger = logging.getLogger("djpool.pool")

# Key in a pooled connection's info dict: time.monotonic() when it was last
# given back, or SUSPECT when the request that used it saw a database error.
LAST_USED = "djpool.last_used"
SUSPECT = float("-inf")

# Each connection's RECYCLE age is shortened by a random fraction up to this,
# so connections opened in one burst do not all expire in the same second.
RECYCLE_JITTER = 0.1

_creating = threading.local()


class ConnectionPool:
    """The pool behind one (alias, connection parameters) pair.

    ``conn_params`` are what the backend's ``get_connection_params()``
    returned; they include the password, so this object never shows them.
    """

    def __init__(
        self,
        alias: str,
        options: PoolOptions,
        wrapper: PooledDatabaseWrapperMixin,
        conn_params: dict[str, Any],
    ) -> None:
        self.alias = alias
        self.options = options
        self.pid = os.getpid()
        # Set when the pool leaves the registry (closed, or inherited by a forked child).
        self.retired = False
        self._conn_params = conn_params
        self._wrapper_class = type(wrapper)
        self._settings_dict = wrapper.settings_dict
        self.dialect = PoolDialect(
            wrapper.djpool_sqlalchemy_dialect(),
            in_transaction=wrapper.djpool_in_transaction,
            full_reset=(
                (lambda connection: wrapper.djpool_full_reset(connection, conn_params))
                if options.reset_on_return == "full"
                else None
            ),
            rollback=wrapper.djpool_rollback,
            ping_within=wrapper.djpool_ping_within,
            rollback_within=wrapper.djpool_rollback_within,
            autocommit_within=(
                (bool(wrapper.settings_dict.get("AUTOCOMMIT", True)), wrapper.djpool_autocommit_within)
                if wrapper.djpool_autocommit_within is not None
                else None
            ),
        )
        # The driver option that bounds opening a connection (seconds).
        self._connect_timeout_option = wrapper.djpool_connect_timeout_option
        if wrapper.djpool_ping_within is None or wrapper.djpool_rollback_within is None:
            logger.info(
                "Database %r: the driver cannot bound the pool's %s, so a silent network failure can hold "
                "them past VALIDATION_TIMEOUT; set the driver's socket timeouts (see the docs, "
                "'When the network fails silently')",
                alias,
                "pre-ping and reset on return"
                if wrapper.djpool_ping_within is None and wrapper.djpool_rollback_within is None
                else ("pre-ping" if wrapper.djpool_ping_within is None else "reset on return"),
            )
        # VALIDATION_TIMEOUT in force (read on every return: computed once).
        self.validation_timeout = options.health_check_timeout
        # PRE_PING's idle bound (never reached without PRE_PING), read on
        # every checkout and take-back (_due_for_ping()).
        self._ping_idle = options.pre_ping_idle if options.pre_ping else math.inf
        self.checkouts = 0
        self.connects = 0
        self.timeouts = 0
        # Pre-pings and resets on return that got no answer within VALIDATION_TIMEOUT.
        self.validation_timeouts = 0
        self._no_answer_at = -math.inf
        self.invalidations = 0
        # When a request last gave a connection back after a database error.
        self._last_error = SUSPECT
        self.waits = 0
        self.wait_time_total = 0.0
        self.wait_time_max = 0.0
        self.idle_closed = 0
        self.recycled = 0
        self.warmup_connects = 0
        self.reclaimed = 0
        # Checkouts that took back the connection their wrapper had given
        # back, untouched since (take_back()); counted in checkouts too.
        self.taken_back = 0
        # Connections whose holder went away without giving them back (its
        # thread ended, its wrapper was collected), with that thread's name:
        # queued by finalizers, checked in by the maintenance thread or by a
        # checkout that would otherwise wait.
        self._orphans: collections.deque[tuple[ConnectionPoolEntry, str | None]] = collections.deque()
        self.pool = FairQueuePool(
            self._create_dbapi_connection,
            pool_size=options.pool_size,
            max_overflow=options.max_overflow,
            timeout=options.timeout,
            use_lifo=options.use_lifo,
            on_wait=self._record_wait,
            reclaim=self._reclaim,
            recycle=-1 if options.recycle is None else options.recycle,
            echo=options.echo,
            logging_name=alias,
            reset_on_return="rollback",
            dialect=self.dialect,  # type: ignore[arg-type]
            pre_ping=False,
        )
        event.listen(self.pool, "invalidate", self._record_invalidation)
        # ECHO="debug": log each checkout and checkin as SQLAlchemy's proxy would.
        self._echo_debug = options.echo == "debug"
        # LEAK_DETECTION: None unless on; see djpool.core.leaks.
        self.leaks = leaks.LeakDetector(self, options.leak_detection) if options.leak_detection else None
        # Whether a return whose driver reports no transaction needs nothing
        # but to go back idle (checkin()'s short way): nothing logs or
        # watches returns, no full reset, and no autocommit mode to restore
        # (AUTOCOMMIT on, or a driver that sets the mode locally).
        autocommit_within = self.dialect.autocommit_within
        self._plain_returns = (
            self.leaks is None
            and not self._echo_debug
            and options.reset_on_return == "rollback"
            and (autocommit_within is None or autocommit_within[0])
        )
        if options.needs_housekeeping:
            maintenance.housekeep(self)

    def __repr__(self) -> str:
        return f"<ConnectionPool alias={self.alias!r} {self.pool.status()}>"

    # ##### Checkout and checkin #####
    #
    # Checkouts take SQLAlchemy's connection record itself, not the proxy
    # (_ConnectionFairy) that Pool.connect() wraps around it: the proxy's
    # bookkeeping cost more than the rest of a checkout, and the wrapper's
    # Lease already covers its garbage-collection safety net.

    def checkout(self, wrapper: PooledDatabaseWrapperMixin) -> ConnectionPoolEntry:
        """Take a connection for ``wrapper``; open one through it if needed.

        One deadline, ``TIMEOUT`` from now, bounds the whole checkout: the
        wait for a connection, its pre-ping (and the sweep for dead ones)
        and opening a new one.
        """
        started = time.monotonic()
        deadline = started + self.options.timeout
        # Read by _create_dbapi_connection() if this checkout opens one.
        _creating.checkout = (wrapper, deadline)
        pinged = False
        try:
            # _take(), inline: one call fewer per request.
            record = self.pool._do_get(False, deadline)
            try:
                record.get_connection()  # type: ignore[attr-defined]
            except BaseException:
                self._free_unopened(record)
                raise
            if self._echo_debug:
                self._log_checkout(record)
            last_used = record.info.get(LAST_USED)
            # The idle time as of the start of the checkout: one that waited
            # was handed a connection just returned.
            if last_used is not None and self._due_for_ping(last_used, started):
                pinged = True
                record = self._replace_if_dead(record, deadline)
        except sa_exc.TimeoutError:
            self.timeouts += 1
            if signals.checkout_timed_out.receivers:
                signals.send(signals.checkout_timed_out, self, timeout=self.options.timeout)
            raise PoolTimeout(self._timeout_message()) from None
        finally:
            _creating.checkout = None
        self.checkouts += 1
        if self.leaks is not None or signals.connection_checked_out.receivers or signals.connection_checked_in.receivers:
            # The signal's wait_time: from the deadline, no extra clock read.
            leaks.on_checkout(self, record, started, pinged)
        return record

    def _due_for_ping(self, last_used: float, now: float) -> bool:
        """Whether a connection idle since ``last_used`` (its LAST_USED) is pinged before use at ``now``.

        A connection whose last request saw a database error is checked even
        with PRE_PING off: the driver may not know the server closed it
        (MySQL), and nothing else would ever take it out of the pool.
        Otherwise, with PRE_PING: idle long enough, or idle when another
        request saw an error.
        """
        # SUSPECT is minus infinity: its idle time exceeds any bound, the
        # infinite one of PRE_PING off included.
        return now - last_used >= self._ping_idle or (self.options.pre_ping and last_used <= self._last_error)

    def _take(self, longest_idle: bool = False, deadline: float | None = None) -> ConnectionPoolEntry:
        """A record from the pool whose connection is open (reopened if it was
        invalidated or is past RECYCLE), waiting at most until ``deadline``."""
        record = self.pool._do_get(longest_idle, deadline)
        try:
            record.get_connection()  # type: ignore[attr-defined]
        except BaseException:
            self._free_unopened(record)
            raise
        if self._echo_debug:
            self._log_checkout(record)
        return record

    def _free_unopened(self, record: ConnectionPoolEntry) -> None:
        """A record taken whose connection could not be (re)opened: its slot goes back empty."""
        try:
            record.invalidate(sys.exc_info()[1])
        finally:
            self.pool._do_return_conn(record)

    def _log_checkout(self, record: ConnectionPoolEntry) -> None:
        if self.pool.logger.isEnabledFor(logging.DEBUG):
            self.pool.logger.debug("Connection %r checked out from pool", record.dbapi_connection)

    def checkin(
        self, record: ConnectionPoolEntry, suspect: bool = False, discard: bool = False, rollback: bool = False
    ) -> tuple[ConnectionPoolEntry, float] | None:
        """Give a connection back: rolled back if needed, then idle or to a waiter.

        ``suspect`` marks a connection whose last use raised a database
        error; the next checkout pings it whatever its idle time. ``discard``
        closes it instead (Django found it unusable); its slot opens a new
        connection when next needed. ``rollback`` rolls it back even if the
        driver reports no transaction (one opened with raw SQL on MySQL).

        Returns the connection's idle entry if it stayed idle, for the
        holder to take that one back (:meth:`take_back`); None if a waiter
        got it, it was closed, it is suspect (its next use pings it), or a
        full reset means the next holder must set it up again.
        """
        dbapi_connection = record.dbapi_connection
        returned_at = time.monotonic()
        if dbapi_connection is not None:
            record.info[LAST_USED] = SUSPECT if suspect else returned_at
        if (
            self._plain_returns
            and not (suspect or discard or rollback)
            and dbapi_connection is not None
            and not signals.connection_checked_in.receivers
            and not signals.connection_reset.receivers
        ):
            # Most returns: nothing to roll back and nobody to tell, so one
            # test of the driver's state instead of the reset. A transaction
            # it reports is rolled back below without asking again; where
            # the driver cannot answer, the reset asks again and closes the
            # connection on the error.
            try:
                rollback = self.dialect.in_transaction(dbapi_connection)
            except Exception:
                pass
            else:
                if not rollback:
                    return self.pool._do_return_conn(record, returned_at)
        if suspect:
            # If the server dropped this connection it may have dropped them
            # all (a restart): check every one that was idle meanwhile before
            # handing it out, instead of failing one request per connection.
            self._last_error = returned_at
        if self.leaks is not None or signals.connection_checked_in.receivers:
            leaks.on_checkin(self, record)
        try:
            if dbapi_connection is None:
                pass
            elif discard:
                logger.info("Discarding a connection of pool %r that Django found unusable", self.alias)
                record.invalidate()
            else:
                if self._echo_debug and self.pool.logger.isEnabledFor(logging.DEBUG):
                    self.pool.logger.debug("Connection %r being returned to pool", dbapi_connection)
                try:
                    rolled_back = self.dialect.reset(dbapi_connection, record.info, rollback, self.validation_timeout)
                except BaseException as error:
                    self._reset_failed(record, error)
                    if not isinstance(error, Exception):
                        raise
                else:
                    if signals.connection_reset.receivers:
                        signals.send(
                            signals.connection_reset,
                            self,
                            dbapi_connection=dbapi_connection,
                            rolled_back=rolled_back,
                            full_reset=self.options.reset_on_return == "full",
                        )
        finally:
            # An invalidated record frees its slot there.
            entry = self.pool._do_return_conn(record, returned_at)
        return None if suspect or self.options.reset_on_return == "full" else entry

    def take_back(self, entry: tuple[ConnectionPoolEntry, float]) -> ConnectionPoolEntry | None:
        """The connection of ``entry`` (from :meth:`checkin`), checked out again if nobody took it since.

        Then no other request used it since its reset, and only what
        :meth:`checkout` does for a connection that needs no pre-ping is
        done. None (the caller checks out as usual): it was taken, closed,
        or is due for a pre-ping or RECYCLE.
        """
        record, returned_at = entry
        recycle = self.options.recycle
        now = time.monotonic()
        if (
            # Closed meanwhile (and not yet out of the idle records).
            record.dbapi_connection is None
            # The entry's time is the record's LAST_USED.
            or self._due_for_ping(returned_at, now)
            or (recycle is not None and time.time() - record.starttime > recycle)
            or not self.pool.take_back(entry)
        ):
            return None
        self.checkouts += 1
        self.taken_back += 1
        if self.leaks is not None or signals.connection_checked_out.receivers or signals.connection_checked_in.receivers:
            leaks.on_checkout(self, record, now)
        return record

    def saw_no_answer(self, what: str | None = None) -> None:
        """A round trip of the pool's own (ping, reset, a vendor's setup) got no answer within VALIDATION_TIMEOUT.

        Counted in ``validation_timeouts``; every connection idle since
        before now is pinged at its next checkout, and a checkout with less
        than a second left does not try to connect meanwhile. With ``what``
        (the round trip, as the warning names it), the caller closes that
        connection without raising, so the warning is the operator's only
        word of it; a checkout's health check raises its own error instead.
        """
        self.validation_timeouts += 1
        self._last_error = self._no_answer_at = time.monotonic()
        if what is not None:
            logger.warning(
                "Database %r did not answer %s within %g s (VALIDATION_TIMEOUT); closing that connection",
                self.alias,
                what,
                self.validation_timeout,
            )

    def _reset_failed(self, record: ConnectionPoolEntry, error: BaseException) -> None:
        """Close a returned connection whose rollback (or full reset) failed or got no answer."""
        if isinstance(error, NoAnswer):
            # Closed without a round trip: request_finished must not wait
            # for a server that does not answer.
            self.saw_no_answer("the reset of a returned connection")
            record.invalidate(error)
            return
        # Most often the server closed it during the request; a connection
        # that cannot be rolled back is never handed out again.
        logger.info("Resetting a returned connection of pool %r failed; closing it: %r", self.alias, error)
        record.invalidate(error)

    # ##### Connections whose holder went away #####

    def return_orphan(self, record: ConnectionPoolEntry, thread_name: str | None) -> None:
        """Queue a connection whose holder went away without giving it back.

        Called from finalizers (djpool.core.lease), which may run inside this
        pool's lock or a thread's teardown: the check-in, a round trip, is
        left to the maintenance thread or to the next checkout that would wait.
        """
        self._orphans.append((record, thread_name))
        maintenance.return_soon(self)

    def take_back_orphans(self) -> int:
        """Check in the queued orphans, rolled back whatever the driver reports; return how many."""
        taken = 0
        while True:
            try:
                record, thread_name = self._orphans.popleft()
            except IndexError:
                return taken
            checkout = record.record_info.get(leaks.CHECKOUT) if record.record_info is not None else None
            stack = checkout.stack if checkout is not None else None
            # Its last request's outcome is unknown: a raw transaction on
            # MySQL is invisible to the driver, so roll back whatever it says.
            self.checkin(record, rollback=True)
            self.reclaimed += 1
            taken += 1
            leaks.logger.warning(
                "A connection of database %r was given back to the pool because thread %r ended (or "
                "dropped its connection) without closing it: call django.db.close_old_connections() "
                "when a thread's database work is done.%s",
                self.alias,
                thread_name or "?",
                " It was checked out at (most recent call last):\n" + "".join(stack.format())
                if stack is not None
                else " LEAK_DETECTION in POOL_OPTIONS shows where it was checked out.",
            )

    def _reclaim(self) -> int:
        """Before a checkout waits: take back what ended threads still hold."""
        reclaim_from_ended_threads()
        return self.take_back_orphans() if self._orphans else 0

    def _replace_if_dead(self, record: ConnectionPoolEntry, deadline: float) -> ConnectionPoolEntry:
        # One dead connection suggests the server restarted: the sweep goes on
        # through the longest-idle ones (which USE_LIFO would otherwise leave
        # dead in the pool, counted by MIN_IDLE), each closed in its own slot,
        # until a live or new connection turns up. Bounded, so a database
        # that accepts connections but fails pings cannot loop us. A ping
        # that gets no answer ends the sweep: a partition is not a restart,
        # and pinging the other connections would only wait again.
        for _ in range(self.options.pool_size + 1):
            left = remaining(deadline)
            if left <= 0:
                # The wait (or the sweep) used up TIMEOUT: no time to check it.
                self.pool._do_return_conn(record)  # unchecked, as it was
                self.timeouts += 1
                raise PoolTimeout(
                    f"djpool: the {self.options.timeout:g} s TIMEOUT of a checkout from database "
                    f"{self.alias!r} ran out before its connection could be health-checked (waiting "
                    f"for it and replacing dead connections took it all)."
                )
            timeout = min(self.validation_timeout, left)
            try:
                alive = self.dialect.ping(record.dbapi_connection, timeout)
            except NoAnswer as error:
                self.saw_no_answer()
                record.invalidate(error)
                self.pool._do_return_conn(record)
                if timeout < self.validation_timeout:
                    raise PoolTimeout(self._no_answer_message(self.options.timeout, "TIMEOUT")) from None
                raise PoolTimeout(
                    self._no_answer_message(self.validation_timeout, "VALIDATION_TIMEOUT")
                ) from None
            if alive:
                return record
            logger.info("Pre-ping found a dead connection in pool %r; replacing it", self.alias)
            record.invalidate()
            self.pool._do_return_conn(record)
            record = self._take(longest_idle=True, deadline=deadline)
            if LAST_USED not in record.info:
                return record
        return record

    def _no_answer_message(self, seconds: float, setting: str) -> str:
        return (
            f"djpool: database {self.alias!r} did not answer a health check of a pooled connection "
            f"within {seconds:g} s ({setting}); the connection was closed. The server or the "
            f"network path to it is not answering: this request fails now rather than wait for it."
        )

    def _create_dbapi_connection(self, record: Any) -> Any:
        wrapper, deadline = getattr(_creating, "checkout", None) or (None, None)
        warming_up = wrapper is None
        if warming_up:
            # Opened by the housekeeper, outside any request: use a private wrapper.
            wrapper = self._wrapper_class(self._settings_dict, self.alias)
        conn_params = self._conn_params
        if deadline is not None and self._connect_timeout_option is not None:
            conn_params = self._bounded_connect_params(deadline)
        started = time.monotonic()
        try:
            dbapi_connection = wrapper.djpool_open_dbapi_connection(conn_params)
        except Exception as error:
            if hasattr(error, "add_note"):
                error.add_note(f"djpool: while opening a new connection for database {self.alias!r}")
            raise
        connect_time = time.monotonic() - started
        if self.options.recycle is not None:
            # SQLAlchemy set starttime just before calling us; backdating it
            # makes this connection's recycle age come up to 10% early.
            record.starttime -= random.uniform(0, RECYCLE_JITTER * self.options.recycle)
        if warming_up:
            # It will wait idle: let the idle-threshold pre-ping apply to it.
            record.info[LAST_USED] = time.monotonic()
            self.warmup_connects += 1
        self.connects += 1
        if signals.connection_opened.receivers:
            signals.send(signals.connection_opened, self, dbapi_connection=dbapi_connection, connect_time=connect_time)
        logger.debug("Opened a new connection for pool %r (%d opened so far)", self.alias, self.connects)
        return dbapi_connection

    def _bounded_connect_params(self, deadline: float) -> dict[str, Any]:
        """The connection parameters with the driver's connect timeout cut to what is left of TIMEOUT.

        Whole seconds, at least 2 (libpq's minimum); a smaller value the
        user set in OPTIONS is kept.
        """
        option = self._connect_timeout_option
        assert option is not None
        left = remaining(deadline)
        if left < 1 and time.monotonic() - self._no_answer_at < self.options.timeout:
            # The drivers wait at least 2 s to connect; with the server not
            # answering moments ago, that would only overrun TIMEOUT.
            raise PoolTimeout(self._no_answer_message(self.options.timeout, "TIMEOUT"))
        left = max(2, math.ceil(left))
        given = self._conn_params.get(option)
        try:
            if given is not None and 0 < float(given) <= left:
                return self._conn_params
        except (TypeError, ValueError):
            return self._conn_params  # Django or the driver reports it
        return {**self._conn_params, option: left}

    # ##### Bookkeeping #####

    def _record_wait(self, seconds: float) -> None:
        self.waits += 1
        self.wait_time_total += seconds
        if seconds > self.wait_time_max:
            self.wait_time_max = seconds

    def _record_invalidation(self, dbapi_connection: Any, record: Any, exception: Any) -> None:
        self.invalidations += 1
        if signals.connection_invalidated.receivers:
            signals.send(signals.connection_invalidated, self, dbapi_connection=dbapi_connection, exception=exception)

    def _timeout_message(self) -> str:
        o = self.options
        return (
            f"djpool: no connection available for database {self.alias!r}: all "
            f"{o.pool_size} (POOL_SIZE) + {o.max_overflow} (MAX_OVERFLOW) connections "
            f"were checked out for {o.timeout:g} s (TIMEOUT). Raise POOL_SIZE or "
            f"MAX_OVERFLOW in DATABASES[{self.alias!r}]['POOL_OPTIONS'] (and the server's "
            f"connection limit), raise TIMEOUT, or release connections sooner "
            f"(POOL_MODE='transaction', shorter requests)."
        )

    def stats(self) -> dict[str, Any]:
        pool = self.pool
        return {
            "size": pool.size(),
            "checked_out": pool.checkedout(),
            "idle": pool.checkedin(),
            "overflow": pool.overflow(),
            "waiting": pool.waiting(),
            "checkouts": self.checkouts,
            "connects": self.connects,
            "timeouts": self.timeouts,
            "validation_timeouts": self.validation_timeouts,
            "invalidations": self.invalidations,
            "waits": self.waits,
            "wait_time_total": self.wait_time_total,
            "wait_time_max": self.wait_time_max,
            "idle_closed": self.idle_closed,
            "recycled": self.recycled,
            "warmup_connects": self.warmup_connects,
            "reclaimed": self.reclaimed,
            "taken_back": self.taken_back,
            "handovers": pool.handovers,
            "handover_latency_total": pool.handover_latency_total,
            "barged": pool.barged,
            "looked": pool.looked,
            "overflow_closed": pool.overflow_closed,
        }

    def dispose(self) -> int:
        """Close idle connections; checked-out ones stay in use and come back."""
        return self.pool.close_idle()

    def close(self) -> None:
        """Close idle connections now and the checked-out ones when they come back."""
        maintenance.stop_housekeeping(self)
        self.pool.close()

    def housekeep(self) -> None:
        """One round of background maintenance (the housekeeper thread calls this).

        Only idle connections are touched: checked-out ones belong to requests.
        """
        options = self.options
        if options.idle_timeout is not None:
            closed = self.pool.close_idle_since(time.monotonic() - options.idle_timeout, keep=options.min_idle)
            if closed:
                self.idle_closed += closed
                logger.debug("Closed %d connections idle over %g s in pool %r", closed, options.idle_timeout, self.alias)
        if options.recycle is not None:
            recycle = options.recycle
            self.recycled += self.pool.close_idle_older_than(lambda record: record.starttime + recycle)
        while options.min_idle and self.pool.open_idle(options.min_idle):
            pass

    def abandon_after_fork(self, detach: Any) -> None:
        self.dialect.abandoned = True
        self._plain_returns = False
        self.pool.abandon_after_fork(detach)
