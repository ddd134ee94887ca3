"""System checks (``manage.py check``) for pooled databases.

Registered when ``"djpool.core"`` is in ``INSTALLED_APPS``. A misconfigured
pool otherwise shows up only at the first request, or under load; these
report it at deploy time. Every message names the ``DATABASES`` alias and the
setting, and never shows a password or DSN.

Without a database connection (always):

========== ================================================================
id         problem
========== ================================================================
E001       ``POOL_OPTIONS`` is invalid (unknown key, wrong type, out of range)
E002       ``OPTIONS["pool"]`` (Django's own pool) set with a djpool ENGINE
E003       ``POOL_MODE = "transaction"`` with ``CONN_MAX_AGE`` other than 0
W001       ``CONN_MAX_AGE = None``: each thread pins a pooled connection
W002       ``CONN_MAX_AGE > 0``: threads keep pooled connections between requests
W003       ``POOL_OPTIONS`` set on an ENGINE that is not pooled (ignored)
========== ================================================================

With ``--database <alias>`` (reads the server's limit over a real connection):

========== ================================================================
id         problem
========== ================================================================
E004       ``DJPOOL_WORKER_PROCESSES`` (or ``WEB_CONCURRENCY``) is not a whole number
W004       this host's pools can open more connections than ``max_connections``
W005       ``MAX_OVERFLOW = -1``: the pool, and so this host, has no limit
W006       the server's ``max_connections`` could not be read
========== ================================================================

The host total is ``(POOL_SIZE + MAX_OVERFLOW) × worker processes``, added
up over the pooled aliases that point at the same server (ENGINE vendor,
HOST and PORT). The number of worker processes comes from the environment:
``DJPOOL_WORKER_PROCESSES``, else ``WEB_CONCURRENCY`` (gunicorn's), else 1.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.db.utils import load_backend

from djpool.core.mixins import PooledDatabaseWrapperMixin
from djpool.core.options import PoolOptions, parse_pool_options

__all__ = ["check_pool_settings", "check_server_capacity", "worker_processes", "server_max_connections"]

TAG = "djpool"
WORKER_PROCESSES_VARIABLES = ("DJPOOL_WORKER_PROCESSES", "WEB_CONCURRENCY")

# How each vendor reports its connection limit. A backend for another
# vendor can define ``djpool_server_max_connections(self) -> int | None``.
_MAX_CONNECTIONS_SQL = {
    "postgresql": "SHOW max_connections",
    "mysql": "SELECT @@max_connections",
}


def _wrapper_class(engine: Any) -> type | None:
    """The ENGINE's DatabaseWrapper class, or None if it cannot be imported."""
    if not isinstance(engine, str) or not engine:
        return None
    try:
        backend = load_backend(engine)
    except ImproperlyConfigured:
        return None  # Django reports a bad ENGINE (or a missing driver) itself
    wrapper_class = getattr(backend, "DatabaseWrapper", None)
    return wrapper_class if isinstance(wrapper_class, type) else None


def is_pooled_engine(engine: Any) -> bool:
    """True if ENGINE names a backend built on djpool's mixin."""
    wrapper_class = _wrapper_class(engine)
    return wrapper_class is not None and issubclass(wrapper_class, PooledDatabaseWrapperMixin)


def _databases() -> Iterable[tuple[str, dict[str, Any]]]:
    # connections.settings: DATABASES completed with Django's defaults.
    return connections.settings.items()


# ##### Settings (no database access) #####


@checks.register(TAG)
def check_pool_settings(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[checks.CheckMessage]:
    messages: list[checks.CheckMessage] = []
    for alias, settings_dict in _databases():
        engine = settings_dict.get("ENGINE")
        where = f"DATABASES[{alias!r}]"
        wrapper_class = _wrapper_class(engine)
        if wrapper_class is None:
            continue
        if not issubclass(wrapper_class, PooledDatabaseWrapperMixin):
            if settings_dict.get("POOL_OPTIONS"):
                messages.append(
                    checks.Warning(
                        f"{where} has POOL_OPTIONS, but ENGINE {engine!r} is not a djpool backend: "
                        f"the options are ignored and connections are not pooled.",
                        hint="Use a djpool ENGINE such as 'djpool.backends.postgresql' or "
                        "'djpool.backends.mysql', or remove POOL_OPTIONS.",
                        id="djpool.W003",
                    )
                )
            continue
        messages.extend(_check_alias(alias, where, str(engine), settings_dict))
    return messages


def _check_alias(alias: str, where: str, engine: str, settings_dict: dict[str, Any]) -> list[checks.CheckMessage]:
    messages: list[checks.CheckMessage] = []
    options: PoolOptions | None = None
    try:
        options = parse_pool_options(alias, settings_dict.get("POOL_OPTIONS"))
    except ImproperlyConfigured as error:
        messages.append(
            checks.Error(
                str(error),
                hint="See djpool's configuration reference (docs/configuration.md) for every key and its allowed values.",
                id="djpool.E001",
            )
        )
    if (settings_dict.get("OPTIONS") or {}).get("pool"):
        messages.append(
            checks.Error(
                f"{where}['OPTIONS']['pool'] turns on Django's own connection pool, and ENGINE "
                f"{engine!r} is already a pool.",
                hint="Remove OPTIONS['pool'] and size the pool with POOL_OPTIONS, or use Django's "
                "stock ENGINE with its own pool.",
                id="djpool.E002",
            )
        )
    max_age = settings_dict.get("CONN_MAX_AGE", 0)
    if options is None or max_age == 0:
        return messages
    if options.pool_mode == "transaction":
        messages.append(
            checks.Error(
                f"{where}['CONN_MAX_AGE'] must be 0 with POOL_OPTIONS['POOL_MODE'] = 'transaction'; "
                f"got {max_age!r}.",
                hint="The pool already keeps connections open; a Django connection kept across "
                "requests defeats transaction pooling. Set CONN_MAX_AGE to 0.",
                id="djpool.E003",
            )
        )
        return messages
    leak_hint = (
        f" With LEAK_DETECTION = {options.leak_detection:g} s, connections kept this way are also "
        f"reported as leaks."
        if options.leak_detection is not None
        else ""
    )
    if max_age is None:
        messages.append(
            checks.Warning(
                f"{where}['CONN_MAX_AGE'] = None keeps each thread's pooled connection checked out "
                f"for the thread's life: a thread-based server with more threads than "
                f"POOL_SIZE + MAX_OVERFLOW ({_limit_text(options)}) has requests time out waiting "
                f"for a connection.",
                hint="Set CONN_MAX_AGE to 0: the pool already keeps connections open between "
                "requests, so each request gives its connection back." + leak_hint,
                id="djpool.W001",
            )
        )
    elif isinstance(max_age, (int, float)) and max_age > 0:
        messages.append(
            checks.Warning(
                f"{where}['CONN_MAX_AGE'] = {max_age!r} keeps a thread's pooled connection checked "
                f"out for up to {max_age!r} s after its request, where no other request can use it.",
                hint="Set CONN_MAX_AGE to 0: the pool already keeps connections open between "
                "requests, and RECYCLE in POOL_OPTIONS limits their age." + leak_hint,
                id="djpool.W002",
            )
        )
    return messages


def _limit_text(options: PoolOptions) -> str:
    limit = options.max_connections
    return "no limit" if limit is None else str(limit)


# ##### Capacity (with --database) #####


def worker_processes() -> tuple[int, str | None]:
    """The number of worker processes on this host, and the variable it came from.

    Raises ValueError naming the variable when its value is not a whole
    number of 1 or more.
    """
    for name in WORKER_PROCESSES_VARIABLES:
        raw = os.environ.get(name)
        if raw is None or not raw.strip():
            continue
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1:
            raise ValueError(f"The environment variable {name} must be a whole number of 1 or more; got {raw!r}.")
        return value, name
    return 1, None


def server_max_connections(alias: str) -> int | None:
    """Read the server's connection limit over a real connection of ``alias``.

    Returns None for a vendor djpool does not know how to ask. A connection
    the wrapper did not hold before is given back to the pool afterwards.
    """
    connection = connections[alias]
    hook = getattr(connection, "djpool_server_max_connections", None)
    sql = _MAX_CONNECTIONS_SQL.get(connection.vendor)
    if hook is None and sql is None:
        return None
    was_connected = connection.connection is not None
    try:
        if hook is not None:
            value = hook()
            return None if value is None else int(value)
        assert sql is not None
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return int(cursor.fetchone()[0])
    finally:
        if not was_connected and not connection.in_atomic_block:
            connection.close()


def _server(settings_dict: dict[str, Any]) -> tuple[str, str, str]:
    """What identifies a server: (vendor, HOST, PORT)."""
    vendor = load_backend(settings_dict["ENGINE"]).DatabaseWrapper.vendor
    return vendor, str(settings_dict.get("HOST") or ""), str(settings_dict.get("PORT") or "")


@checks.register(TAG, checks.Tags.database)
def check_server_capacity(
    app_configs: Sequence[Any] | None = None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    if not databases:
        return []
    try:
        processes, variable = worker_processes()
    except ValueError as error:
        return [
            checks.Error(
                str(error),
                hint="Set it to the number of worker processes (gunicorn --workers, uWSGI processes) "
                "that run this project on this host.",
                id="djpool.E004",
            )
        ]
    pooled: dict[str, tuple[dict[str, Any], PoolOptions]] = {}
    for alias, settings_dict in _databases():
        if is_pooled_engine(settings_dict.get("ENGINE")):
            try:
                pooled[alias] = (settings_dict, parse_pool_options(alias, settings_dict.get("POOL_OPTIONS")))
            except ImproperlyConfigured:
                continue  # djpool.E001 reports it
    messages: list[checks.CheckMessage] = []
    for alias in databases:
        if alias not in pooled:
            continue
        messages.extend(_check_capacity(alias, pooled, processes, variable))
    return messages


def _check_capacity(
    alias: str,
    pooled: dict[str, tuple[dict[str, Any], PoolOptions]],
    processes: int,
    variable: str | None,
) -> list[checks.CheckMessage]:
    where = f"DATABASES[{alias!r}]"
    settings_dict = pooled[alias][0]
    server = _server(settings_dict)
    vendor = server[0]
    sharing = {
        other: other_options
        for other, (other_settings, other_options) in pooled.items()
        if _server(other_settings) == server
    }
    unbounded = [other for other, other_options in sharing.items() if other_options.max_connections is None]
    if unbounded:
        return [
            checks.Warning(
                f"{where}: POOL_OPTIONS['MAX_OVERFLOW'] = -1 on {', '.join(map(repr, unbounded))} lets "
                f"this host open any number of connections to the server.",
                hint="Set MAX_OVERFLOW to a number so that (POOL_SIZE + MAX_OVERFLOW) × worker "
                "processes stays below the server's max_connections.",
                id="djpool.W005",
            )
        ]
    try:
        limit = server_max_connections(alias)
    except Exception as error:
        # The driver's message can quote connection parameters: show its class only.
        return [
            checks.Warning(
                f"{where}: could not read the server's max_connections ({type(error).__name__}), "
                f"so the pool sizes were not compared with it.",
                hint="Check that the database is reachable with this alias's settings, or run "
                "the check without --database.",
                id="djpool.W006",
            )
        ]
    if limit is None:
        return []
    per_process = sum(other_options.max_connections or 0 for other_options in sharing.values())
    total = per_process * processes
    if total <= limit:
        return []
    terms = " + ".join(
        f"{other!r}: {o.pool_size} + {o.max_overflow}" for other, o in sorted(sharing.items())
    )
    source = f"{variable}={processes}" if variable else "1, as neither DJPOOL_WORKER_PROCESSES nor WEB_CONCURRENCY is set"
    host = ":".join(part for part in server[1:] if part) or "the default host"
    return [
        checks.Warning(
            f"{where}: this host can open up to {total} connections to the {vendor} server at "
            f"{host} (POOL_SIZE + MAX_OVERFLOW per process, {terms}, × {processes} worker "
            f"processes), more than its max_connections ({limit}).",
            hint=f"Worker processes: {source}. Lower POOL_SIZE or MAX_OVERFLOW, run fewer worker "
            f"processes, raise max_connections on the server, or put PgBouncer in front. Leave "
            f"room for other hosts, administrators and the server's reserved connections.",
            id="djpool.W004",
        )
    ]
