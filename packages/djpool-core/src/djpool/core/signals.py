"""Django signals for pool events, to feed metrics or tracing without patching djpool.

Every signal is sent with ``sender`` set to the backend's ``DatabaseWrapper``
class (as Django's own ``connection_created`` is) and these keyword arguments:

``alias``
    the ``DATABASES`` alias of the pool;
``pool``
    the :class:`djpool.core.container.ConnectionPool` (``pool.stats()`` gives
    its figures, ``pool.options`` its validated ``POOL_OPTIONS``);
``dbapi_connection``
    the driver connection concerned (absent from :data:`checkout_timed_out`
    and :data:`connection_leaked`; None at checkin if the connection was
    invalidated while checked out). Receivers must not use or close it: it
    belongs to the pool, or to the request that holds it.

The rest:

:data:`connection_opened`
    a new server connection was opened for the pool (by a request's
    checkout, or by warm-up). Django's per-connection setup has not run yet.
    ``connect_time``: seconds the driver took to open it.
:data:`connection_checked_out`
    a request took a connection (after the pre-ping, if one ran).
    ``wait_time``: seconds the checkout took, from asking the pool to
    having an open connection (waiting in line, opening a connection,
    pre-pinging), or None if no receiver was connected when it began;
    ``pinged``: whether a pre-ping ran.
:data:`connection_checked_in`
    a request gave its connection back (before the rollback on return).
    ``held_for``: seconds since its checkout, or None if that checkout
    happened before any receiver was connected (and without LEAK_DETECTION).
:data:`connection_reset`
    a connection given back was made ready for its next holder (after
    :data:`connection_checked_in`). ``rolled_back``: whether a ROLLBACK was
    sent; ``full_reset``: whether the session was wiped
    (``RESET_ON_RETURN = "full"``). Not sent when the reset failed (the
    connection is invalidated instead) or the connection was discarded.
:data:`connection_invalidated`
    the pool discarded a connection as broken (failed pre-ping, disconnect,
    failed reset). ``exception``: the error, or None.
:data:`checkout_timed_out`
    a request gave up after ``TIMEOUT`` seconds; ``timeout`` is that value.
    :class:`djpool.core.PoolTimeout` is raised right after.
:data:`connection_leaked`
    a connection stayed checked out longer than ``LEAK_DETECTION`` seconds
    (sent once per checkout, from the leak detector's thread). ``held_for``:
    seconds so far; ``thread_name``: the thread that took it;
    ``stack``: a :class:`traceback.StackSummary` of where.

Receivers run in the thread of the request (the pool's hot path), so they
should be quick. They are called with ``send_robust()``: an exception in a
receiver is logged by Django (``django.dispatch`` logger) and never stops a
connection from being handed out or given back. When no receiver is
connected, the pool builds no arguments and calls nothing: each event costs
one truth test of ``signal.receivers``.

Example, counting checkouts per alias with ``prometheus_client``::

    from prometheus_client import Counter
    from djpool.core import signals

    CHECKOUTS = Counter("app_db_checkouts", "Pooled checkouts", ["alias"])

    def count(sender, alias, **kwargs):
        CHECKOUTS.labels(alias).inc()

    signals.connection_checked_out.connect(count)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.dispatch import Signal

if TYPE_CHECKING:
    from djpool.core.container import ConnectionPool

__all__ = [
    "checkout_timed_out",
    "connection_checked_in",
    "connection_checked_out",
    "connection_invalidated",
    "connection_leaked",
    "connection_opened",
    "connection_reset",
]

connection_opened = Signal()
connection_checked_out = Signal()
connection_checked_in = Signal()
connection_reset = Signal()
connection_invalidated = Signal()
checkout_timed_out = Signal()
connection_leaked = Signal()


def send(signal: Signal, pool: ConnectionPool, **kwargs: Any) -> None:
    """Send ``signal`` for ``pool`` with the documented arguments (callers check receivers first)."""
    signal.send_robust(sender=pool._wrapper_class, alias=pool.alias, pool=pool, **kwargs)
