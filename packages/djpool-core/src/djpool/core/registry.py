"""The process's pools: keyed by what a connection points at, reset in forked children.

A pool is found by the database alias *and* the connection parameters the
backend computed, so a test run that switches ``NAME`` to ``test_<NAME>``, or
a settings override, gets a pool of its own instead of connections to the
old database. The key holds the password: it is never logged or shown.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from djpool.core.container import ConnectionPool
from djpool.core.options import PoolOptions

if TYPE_CHECKING:
    from djpool.core.mixins import PooledDatabaseWrapperMixin

__all__ = ["get_pool", "pools", "stats", "dispose", "close_all"]

logger = logging.getLogger("djpool.pool")

_pools: dict[Hashable, ConnectionPool] = {}
_lock = threading.Lock()
# Connections of a parent process that a forked child must never finalize
# (finalizing would say goodbye to the server on the parent's socket).
_inherited: list[Any] = []


def _freeze(value: Any) -> Hashable:
    if isinstance(value, dict):
        return tuple((key, _freeze(item)) for key, item in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return (type(value).__name__, *(_freeze(item) for item in value))
    try:
        hash(value)
    except TypeError:
        return ("unhashable", type(value).__qualname__, repr(value))
    return value  # type: ignore[no-any-return]


def get_pool(
    wrapper: PooledDatabaseWrapperMixin, options: PoolOptions, conn_params: dict[str, Any]
) -> ConnectionPool:
    """Return the pool for this wrapper's alias and connection parameters, creating it once."""
    key = (wrapper.alias, options, _freeze(conn_params), _freeze(wrapper.settings_dict.get("OPTIONS") or {}))
    pool = _pools.get(key)
    if pool is None:
        with _lock:
            pool = _pools.get(key)
            if pool is None:
                pool = ConnectionPool(wrapper.alias, options, wrapper, dict(conn_params))
                _pools[key] = pool
                logger.info(
                    "Created pool for database %r (POOL_SIZE=%d, MAX_OVERFLOW=%d, POOL_MODE=%s)",
                    wrapper.alias,
                    options.pool_size,
                    options.max_overflow,
                    options.pool_mode,
                )
    return pool


def pools(alias: str | None = None) -> list[ConnectionPool]:
    """This process's pools, optionally only those of one alias."""
    return [pool for pool in list(_pools.values()) if alias is None or pool.alias == alias]


def stats(alias: str | None = None) -> dict[str, Any]:
    """Pool figures for this process: ``{alias: {...}}``, or one alias's dict.

    An alias can have several pools (one per set of connection parameters,
    e.g. during tests); their figures are added up. Keys are documented in
    docs/operations.md ("Pool statistics").
    """
    totals: dict[str, dict[str, Any]] = {}
    for pool in pools(alias):
        figures = pool.stats()
        total = totals.get(pool.alias)
        if total is None:
            totals[pool.alias] = {**figures, "pools": 1}
            continue
        total["pools"] += 1
        for name, value in figures.items():
            total[name] = max(total[name], value) if name == "wait_time_max" else total[name] + value
    if alias is None:
        return totals
    return totals.get(alias, {})


def dispose(alias: str | None = None) -> int:
    """Close idle connections of every pool (or one alias's); return how many.

    Checked-out connections are left alone: they come back to their pool
    when the request that holds them ends.
    """
    return sum(pool.dispose() for pool in pools(alias))


def close_all(alias: str | None = None) -> None:
    """Retire pools: idle connections close now, checked-out ones when returned."""
    with _lock:
        for key, pool in list(_pools.items()):
            if alias is None or pool.alias == alias:
                del _pools[key]
                pool.retired = True
                pool.close()


def discard_if_never_connected(pool: ConnectionPool) -> None:
    """Retire a pool whose first connection attempt failed.

    Otherwise a wrong password or an unreachable host leaves a pool behind,
    keyed by (and holding) the settings that failed, next to the pool the
    corrected settings get. A pool that has connected before is kept: its
    server may only be restarting.
    """
    with _lock:
        if pool.connects or pool.pool.checkedout() or pool.pool.checkedin():
            return
        for key, candidate in list(_pools.items()):
            if candidate is pool:
                del _pools[key]
                pool.retired = True
                pool.close()


def _detach_socket(dbapi_connection: Any) -> None:
    """Point the child's copy of the connection's socket at /dev/null.

    The parent's socket stays open in the parent. Whatever the driver later
    writes on it in the child (a termination message when the object is
    finalized) goes nowhere, and any read fails at once instead of stealing
    the parent's replies.
    """
    _inherited.append(dbapi_connection)
    fileno = getattr(dbapi_connection, "fileno", None)
    if fileno is None:
        return
    try:
        fd = fileno()
    except Exception:
        return
    if not isinstance(fd, int) or fd < 0:
        return
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    inherited = list(_pools.values())
    _pools.clear()
    for pool in inherited:
        pool.retired = True
        pool.abandon_after_fork(_detach_socket)
    if inherited:
        _forget_django_connections()


def _forget_django_connections() -> None:
    """Make this thread's Django wrappers drop connections the parent checked out."""
    try:
        from django.db import connections

        wrappers = connections.all(initialized_only=True)
    except Exception:
        return
    for wrapper in wrappers:
        forget = getattr(wrapper, "djpool_forget_after_fork", None)
        if forget is not None:
            forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

# Graceful shutdown: say goodbye to the server on idle connections instead of
# dropping the sockets; connections still held by running threads are closed
# only when given back (close_all never touches a checked-out connection).
atexit.register(close_all)
