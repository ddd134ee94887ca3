"""A django-debug-toolbar panel: what the pools did for one request.

Setup (with django-debug-toolbar installed and working)::

    INSTALLED_APPS = [..., "debug_toolbar", "djpool.core"]   # djpool.core: the panel's template
    DEBUG_TOOLBAR_PANELS = [
        *debug_toolbar.settings.PANELS_DEFAULTS,
        "djpool.core.contrib.debug_toolbar.PoolPanel",
    ]

For each pooled alias it lists every checkout the request made (in
transaction mode each take-back between transactions is one), with the
time it waited, the server session that served it (PostgreSQL backend PID,
MySQL/MariaDB connection id), whether a pre-ping ran, the connect time if
a connection was opened for it, what the reset on return did, and how long
the request held it; then the pool's figures when the response was ready.
The title shows the request's total wait.

It measures through :mod:`djpool.core.signals`, connected only while a
toolbar request runs, and sends nothing to the database: the session id
comes from the driver (psycopg ``pgconn.backend_pid``, psycopg2
``get_backend_pid()``, mysqlclient ``thread_id()``, all read client-side).
Only for a driver that does not know it does the panel ask the server, once
per connection, when the connection is first handed out
(:func:`server_session_id`). Signals are sent in the thread (or, under ASGI,
the context) of the request, so concurrent requests do not mix.

The connection a request holds in session mode goes back to the pool when
Django's ``request_finished`` signal closes it, after the toolbar has
recorded the panel: such a checkout shows as still held, with the time
held until then.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
import weakref
from typing import Any

from django.apps import apps
from django.core import checks
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

try:
    from debug_toolbar.panels import Panel
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "djpool.core.contrib.debug_toolbar needs django-debug-toolbar.\nDid you install django-debug-toolbar?"
    ) from error

from djpool.core import registry as pools_registry
from djpool.core import signals

__all__ = ["PoolPanel", "server_session_id"]

logger = logging.getLogger("djpool.debug_toolbar")

# Asked of the server only when the driver does not know its session id.
SESSION_ID_SQL = {
    "postgresql": "SELECT pg_backend_pid()",
    "mysql": "SELECT CONNECTION_ID()",
    "oracle": "SELECT SYS_CONTEXT('USERENV', 'SID') FROM DUAL",
}

_queried_ids: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def driver_session_id(dbapi_connection: Any) -> Any:
    """The server session id the driver knows without a round trip, or None
    (also for a connection the driver knows is closed: psycopg, psycopg2 and
    mysqlclient then raise rather than say, PyMySQL still gives the old id)."""
    # psycopg and psycopg2 say ``closed``; mysqlclient and PyMySQL say ``open``.
    if getattr(dbapi_connection, "closed", False) or not getattr(dbapi_connection, "open", True):
        return None
    try:
        pid = getattr(getattr(dbapi_connection, "pgconn", None), "backend_pid", None)  # psycopg 3
        if pid is not None:
            return pid
        for method in ("get_backend_pid", "thread_id"):  # psycopg2, mysqlclient
            read = getattr(dbapi_connection, method, None)
            if callable(read):
                return read()
    except Exception:
        return None
    return None


def server_session_id(pool: Any, dbapi_connection: Any) -> Any:
    """The server session behind ``dbapi_connection``: from the driver, else one query, once.

    The query runs on a connection just handed out, before the request uses
    it; a transaction it opened on a driver that reports one (psycopg with
    autocommit off) is rolled back so the request starts as it would have.
    Its answer is kept for the connection's life. None if unknown.
    """
    known = driver_session_id(dbapi_connection)
    if known is not None:
        return known
    try:
        return _queried_ids[dbapi_connection]
    except KeyError:
        pass
    except TypeError:  # a driver connection that takes no weak reference: never cached, never asked
        return None
    wrapper_class = pool._wrapper_class
    sql = SESSION_ID_SQL.get(getattr(wrapper_class, "vendor", ""))
    session_id = None
    if sql is not None:
        try:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(sql)
                row = cursor.fetchone()
                session_id = row[0] if row else None
            finally:
                cursor.close()
        except Exception as error:  # noqa: BLE001 - the panel must not fail the request
            logger.debug("Could not read the server session id of a %r connection: %r", pool.alias, error)
            opened = True
        else:
            try:
                opened = wrapper_class.djpool_transaction_open(dbapi_connection)
            except Exception:  # noqa: BLE001 - a driver the vendor hook does not know: roll back to be sure
                opened = True
        if opened:
            dbapi_connection.rollback()
    _queried_ids[dbapi_connection] = session_id
    return session_id


# ##### Recording: one recorder per toolbar request, found through a context variable #####


class _Recorder:
    def __init__(self) -> None:
        self.checkouts: list[dict[str, Any]] = []
        # id(dbapi_connection) -> the entry of its open checkout / its connect time.
        self.open: dict[int, dict[str, Any]] = {}
        self.returned: dict[int, dict[str, Any]] = {}
        self.connects: dict[int, float] = {}
        self.timeouts: list[dict[str, Any]] = []
        self.invalidations: dict[str, int] = {}


_recording: contextvars.ContextVar[_Recorder | None] = contextvars.ContextVar("djpool_toolbar_recording", default=None)
_receivers_lock = threading.Lock()
_active_recordings = 0


def _on_opened(
    sender: Any, alias: str, dbapi_connection: Any = None, connect_time: float | None = None, **kwargs: Any
) -> None:
    recorder = _recording.get()
    if recorder is not None and connect_time is not None:
        recorder.connects[id(dbapi_connection)] = connect_time


def _on_checked_out(
    sender: Any,
    alias: str,
    pool: Any,
    dbapi_connection: Any = None,
    wait_time: float | None = None,
    pinged: bool = False,
    **kwargs: Any,
) -> None:
    recorder = _recording.get()
    if recorder is None:
        return
    started = time.monotonic()
    entry = {
        "alias": alias,
        "wait": wait_time,
        "pinged": pinged,
        "connect_time": recorder.connects.pop(id(dbapi_connection), None),
        "session_id": None,
        "held": None,
        "still_held": True,
        "rolled_back": None,
        "full_reset": None,
        "_started": started,
    }
    recorder.checkouts.append(entry)
    recorder.open[id(dbapi_connection)] = entry
    session_id = server_session_id(pool, dbapi_connection)
    entry["session_id"] = None if session_id is None else str(session_id)


def _on_checked_in(
    sender: Any, alias: str, dbapi_connection: Any = None, held_for: float | None = None, **kwargs: Any
) -> None:
    recorder = _recording.get()
    if recorder is None:
        return
    entry = recorder.open.pop(id(dbapi_connection), None)
    if entry is None:
        # Invalidated while checked out (no connection any more): the oldest open checkout of the alias.
        entry = next((e for e in recorder.open.values() if e["alias"] == alias), None)
        if entry is None:
            return
        recorder.open = {key: value for key, value in recorder.open.items() if value is not entry}
    entry["held"] = held_for if held_for is not None else time.monotonic() - entry["_started"]
    entry["still_held"] = False
    recorder.returned[id(dbapi_connection)] = entry


def _on_reset(
    sender: Any,
    alias: str,
    dbapi_connection: Any = None,
    rolled_back: bool = False,
    full_reset: bool = False,
    **kwargs: Any,
) -> None:
    recorder = _recording.get()
    if recorder is None:
        return
    entry = recorder.returned.pop(id(dbapi_connection), None)
    if entry is not None:
        entry["rolled_back"] = rolled_back
        entry["full_reset"] = full_reset


def _on_timed_out(sender: Any, alias: str, timeout: float | None = None, **kwargs: Any) -> None:
    recorder = _recording.get()
    if recorder is not None:
        recorder.timeouts.append({"alias": alias, "timeout": timeout})


def _on_invalidated(sender: Any, alias: str, **kwargs: Any) -> None:
    recorder = _recording.get()
    if recorder is not None:
        recorder.invalidations[alias] = recorder.invalidations.get(alias, 0) + 1


_RECEIVERS = (
    (signals.connection_opened, _on_opened),
    (signals.connection_checked_out, _on_checked_out),
    (signals.connection_checked_in, _on_checked_in),
    (signals.connection_reset, _on_reset),
    (signals.checkout_timed_out, _on_timed_out),
    (signals.connection_invalidated, _on_invalidated),
)


def _connect_receivers() -> None:
    global _active_recordings
    with _receivers_lock:
        _active_recordings += 1
        if _active_recordings == 1:
            for signal, receiver in _RECEIVERS:
                signal.connect(receiver, dispatch_uid=__name__)


def _disconnect_receivers() -> None:
    global _active_recordings
    with _receivers_lock:
        _active_recordings -= 1
        if _active_recordings == 0:
            for signal, _receiver in _RECEIVERS:
                signal.disconnect(dispatch_uid=__name__)


# ##### The panel #####


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


class PoolPanel(Panel):
    """Checkouts, waits, server sessions and pool figures for the current request."""

    is_async = True
    template = "djpool/debug_toolbar/pool_panel.html"
    nav_title = _("Pools")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._recorder: _Recorder | None = None
        self._token: contextvars.Token[_Recorder | None] | None = None
        self._receiving = False

    @property
    def nav_subtitle(self) -> str:
        stats = self.get_stats()
        count = stats.get("checkout_count", 0)
        return ngettext(
            "%(count)d checkout, %(wait).2f ms waited", "%(count)d checkouts, %(wait).2f ms waited", count
        ) % {
            "count": count,
            "wait": stats.get("total_wait_ms", 0),
        }

    @property
    def title(self) -> str:
        stats = self.get_stats()
        return f"Database pools: {stats.get('total_wait_ms', 0):.2f} ms waited for connections"

    def enable_instrumentation(self) -> None:
        if self._recorder is not None:
            return
        self._recorder = _Recorder()
        self._token = _recording.set(self._recorder)
        self._receiving = True
        _connect_receivers()

    def disable_instrumentation(self) -> None:
        # Idempotent, as the toolbar asks: the receivers are counted per recording request.
        if not self._receiving:
            return
        self._receiving = False
        if self._token is not None:
            try:
                _recording.reset(self._token)
            except ValueError:  # set in another context (ASGI): leave that context to end
                pass
            self._token = None
        _disconnect_receivers()

    def generate_stats(self, request: Any, response: Any) -> None:
        recorder = self._recorder or _Recorder()
        now = time.monotonic()
        pooled = pools_registry.stats()
        aliases = sorted(set(pooled) | {entry["alias"] for entry in recorder.checkouts})
        rows = []
        total_wait = 0.0
        for alias in aliases:
            checkouts = []
            for entry in recorder.checkouts:
                if entry["alias"] != alias:
                    continue
                held = entry["held"] if not entry["still_held"] else now - entry["_started"]
                total_wait += entry["wait"] or 0.0
                checkouts.append(
                    {
                        "wait_ms": _ms(entry["wait"]),
                        "session_id": entry["session_id"],
                        "pinged": entry["pinged"],
                        "connect_ms": _ms(entry["connect_time"]),
                        "held_ms": _ms(held),
                        "still_held": entry["still_held"],
                        "rolled_back": entry["rolled_back"],
                        "full_reset": entry["full_reset"],
                    }
                )
            figures = pooled.get(alias, {})
            rows.append(
                {
                    "alias": alias,
                    "checkouts": checkouts,
                    "wait_ms": round(sum(c["wait_ms"] or 0.0 for c in checkouts), 3),
                    "timeouts_in_request": sum(1 for t in recorder.timeouts if t["alias"] == alias),
                    "invalidations_in_request": recorder.invalidations.get(alias, 0),
                    "figures": {
                        key: figures.get(key)
                        for key in (
                            "size",
                            "checked_out",
                            "idle",
                            "overflow",
                            "waiting",
                            "timeouts",
                            "checkouts",
                            "connects",
                        )
                    },
                }
            )
        self.record_stats(
            {
                "aliases": rows,
                "checkout_count": len(recorder.checkouts),
                "total_wait_ms": _ms(total_wait) or 0.0,
            }
        )

    @classmethod
    def run_checks(cls) -> list[checks.CheckMessage]:
        if apps.is_installed("djpool.core"):
            return []
        return [
            checks.Error(
                "djpool.core.contrib.debug_toolbar.PoolPanel needs the djpool.core app for its template.",
                hint='Add "djpool.core" to INSTALLED_APPS.',
                id="djpool.E101",
            )
        ]
