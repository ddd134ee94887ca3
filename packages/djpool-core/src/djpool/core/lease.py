"""What one Django connection wrapper holds from the pool, and its safety net.

The wrapper checks out a pool entry (SQLAlchemy's connection record) directly,
without SQLAlchemy's per-checkout proxy object: that proxy costs a few
microseconds on every checkout and checkin, most of a request's pool
overhead. Its one service that matters here is returning a connection whose
holder was garbage-collected without closing it (a thread that ended without
``close_old_connections()``). :class:`Lease` does the same once per wrapper
instead of once per checkout: a finalizer on the wrapper gives back whatever
the lease holds at that moment.
"""

from __future__ import annotations

import logging
import os
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.pool import ConnectionPoolEntry

    from djpool.core.container import ConnectionPool

__all__ = ["Lease"]

logger = logging.getLogger("djpool.pool")


class Lease:
    """The pool entry a wrapper holds (``record``) and the pool it came from.

    It must not refer to the wrapper: the finalizer keeps it alive after the
    wrapper is gone.
    """

    __slots__ = ("pool", "record")

    def __init__(self) -> None:
        self.pool: ConnectionPool | None = None
        self.record: ConnectionPoolEntry | None = None

    @classmethod
    def for_wrapper(cls, wrapper: Any) -> Lease:
        """A lease whose connection goes back to its pool if ``wrapper`` is collected while holding it."""
        lease = cls()
        finalizer = weakref.finalize(wrapper, lease.return_orphan)
        # At interpreter exit the registry closes every pool instead.
        finalizer.atexit = False
        return lease

    def take(self, pool: ConnectionPool, record: ConnectionPoolEntry) -> None:
        self.pool = pool
        self.record = record

    def give_up(self) -> tuple[ConnectionPool | None, ConnectionPoolEntry | None]:
        """Forget the checkout and return it, for the caller to check in."""
        pool, record = self.pool, self.record
        self.pool = None
        self.record = None
        return pool, record

    def return_orphan(self) -> None:
        """Check in a connection whose wrapper was garbage-collected while holding it.

        Its last request's outcome is unknown: it is rolled back whatever
        the driver reports (a raw transaction on MySQL is invisible to it),
        and marked suspect so that the next checkout pings it first.
        """
        pool, record = self.give_up()
        if pool is None or record is None or pool.pid != os.getpid():
            # Nothing held, or a forked child's copy of a parent's checkout.
            return
        logger.info(
            "A connection of database %r was returned to the pool by the garbage collector: "
            "the thread that held it ended without closing it (call "
            "django.db.close_old_connections() when a thread's work is done)",
            pool.alias,
        )
        try:
            pool.checkin(record, suspect=True, rollback=True)
        except Exception:  # noqa: BLE001 - a finalizer must not raise
            logger.warning("Returning a garbage-collected connection of database %r failed", pool.alias, exc_info=True)
