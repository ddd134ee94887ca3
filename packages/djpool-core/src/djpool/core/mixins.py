"""The DatabaseWrapper mixin every pooled backend is built from.

A pooled backend is Django's own backend with this mixin in front::

    class DatabaseWrapper(PooledDatabaseWrapperMixin, postgresql.DatabaseWrapper):
        ...

Django keeps calling its usual methods; the mixin changes where a connection
comes from and where it goes:

* ``get_new_connection()`` takes a connection from the pool. ``self.connection``
  is the real driver connection, as with the stock backend, so every Django
  feature that touches it works unchanged. The pool's handle is kept beside it.
* ``init_connection_state()`` runs Django's per-connection setup once per
  driver connection, not once per checkout, and restores the wrapper
  attributes that setup produced when another wrapper reuses the connection.
* ``_close()`` gives the connection back (rolled back if a transaction is
  open) instead of closing it.
* At a request boundary (``close_old_connections()``), where stock Django
  closes the connection, it goes back to the pool and the wrapper stays
  *parked* on its pool: the next request's first cursor takes a connection
  from that pool without Django's ``connect()`` (settings read, state resets,
  per-connection setup), which costs more than the rest of a request's
  pooling; if no other request took the connection it gave back, that one,
  without even a checkout. ``connection_created`` is still sent then, once per request.
  Changed settings, an explicit ``close()`` or ``connect()`` end the parking:
  the next use connects as stock.
* With ``POOL_MODE = "transaction"``, the connection also goes back as soon as
  the last cursor is closed outside a transaction, parked the same way
  within the request (:mod:`djpool.core.transaction_mode`).

What the cursors read of the statements they run is in
:mod:`djpool.core.statements`; what stands in for a connection given back,
in :mod:`djpool.core.released`.
"""

from __future__ import annotations

import time
import weakref
from _thread import get_ident as _get_ident
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import DEFAULT_DB_ALIAS
from django.db.backends.base.base import NO_DB_ALIAS, BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.db.backends.utils import CursorWrapper

from djpool.core import registry
from djpool.core.bounded import NoAnswer
from djpool.core.container import ConnectionPool
from djpool.core.dialect import INITIALIZED_STATE
from djpool.core.exceptions import PoolTimeout
from djpool.core.lease import Lease
from djpool.core.options import PoolOptions, parse_pool_options
from djpool.core.released import ReleasedConnection
from djpool.core.statements import ReleasingCursor, StatementWatchingCursor, watching_class
from djpool.core.transaction_mode import TransactionModeMixin

__all__ = ["PooledDatabaseWrapperMixin"]


class PooledDatabaseWrapperMixin(TransactionModeMixin):
    """Pool the connections of a Django ``DatabaseWrapper``.

    Vendor backends set :attr:`djpool_wrapper_state` and implement
    :meth:`djpool_sqlalchemy_dialect`, :meth:`djpool_in_transaction` and
    :meth:`djpool_full_reset`.
    """

    #: Wrapper attributes that Django's ``get_new_connection()`` or
    #: ``init_connection_state()`` set as a side effect for one driver
    #: connection (e.g. PostgreSQL's ``isolation_level``). They are saved with
    #: the connection and restored on every wrapper that reuses it.
    djpool_wrapper_state: tuple[str, ...] = ()

    # Set by Django's BaseDatabaseWrapper; declared for type checkers.
    alias: str
    settings_dict: dict[str, Any]
    connection: Any

    #: Whether the backend overrides djpool_connection_taken() and
    #: djpool_refresh_connection_state(): where it does not, a request pays
    #: no call for them. Set per class by __init_subclass__().
    _djpool_taken_hook = False
    _djpool_refresh_hook = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._djpool_taken_hook = cls.djpool_connection_taken is not PooledDatabaseWrapperMixin.djpool_connection_taken
        cls._djpool_refresh_hook = (
            cls.djpool_refresh_connection_state is not PooledDatabaseWrapperMixin.djpool_refresh_connection_state
        )

    def __init__(self, settings_dict: dict[str, Any], alias: str = DEFAULT_DB_ALIAS, *args: Any, **kwargs: Any) -> None:
        super().__init__(settings_dict, alias, *args, **kwargs)  # type: ignore[call-arg]
        # The pool entry this wrapper holds, and the pool it came from.
        self._djpool_lease = Lease.for_wrapper(self)
        # (conn_params, OPTIONS, pool) of the last connect(): the same
        # settings find the same pool without a registry lookup.
        self._djpool_cached_pool: tuple[dict[str, Any], dict[str, Any], ConnectionPool] | None = None
        # Set while Django runs a health check: a close() then means the
        # connection failed it and must not go back to the pool.
        self._djpool_health_checking = False
        self._djpool_errors_checking = False
        self._djpool_open_cursors = 0
        # Cursors of iterator() (server-side on PostgreSQL), closed on release.
        self._djpool_chunked_cursors: weakref.WeakSet[Any] = weakref.WeakSet()
        self._djpool_connecting = False
        # Transaction mode: the pool this wrapper handed its connection back to
        # between transactions. Django still sees the wrapper connected (its
        # settings, signals and per-connection setup were done), so the next
        # use takes a connection straight from this pool. None once Django
        # closes the wrapper or connects it again.
        self._djpool_parked_in: ConnectionPool | None = None
        # The idle entry of the connection it gave back when it parked
        # (ConnectionPool.checkin()), read only while parked: while nobody
        # else took that connection, taking it back skips the checkout.
        self._djpool_parked_entry: tuple[Any, float] | None = None
        # Parked at a request boundary: the next take-back starts a request,
        # doing what connect() would that the connection does not carry.
        self._djpool_new_request = False
        # The settings of the last connect() (nested dicts copied), and the
        # count of setting_changed signals then: parking never outlives a
        # change of either.
        self._djpool_settings_seen: dict[str, Any] | None = None
        self._djpool_settings_generation = -1
        # Transaction mode: held between disable_constraint_checking() and
        # enable_constraint_checking() (MySQL's session-level foreign_key_checks).
        self._djpool_pinned = False
        # A raw BEGIN / START TRANSACTION (outside Django's transaction API)
        # ran and its COMMIT or ROLLBACK has not, where the driver cannot tell
        # (djpool_watch_transaction_statements): transaction mode holds the
        # connection meanwhile, and it goes back rolled back.
        self._djpool_raw_transaction = False
        # Django opens "maintenance" connections (to create or drop test
        # databases) under NO_DB_ALIAS; pooling them would keep a session on
        # the database being dropped or cloned.
        self.djpool_options: PoolOptions | None = None
        # Bad settings are raised when the connection is first used, as
        # Django does for its own pool options: Django 6 creates every alias's
        # wrapper while running system checks, which must be able to report
        # djpool.E001 instead of crashing.
        self._djpool_settings_error: ImproperlyConfigured | None = None
        if alias != NO_DB_ALIAS:
            try:
                self.djpool_options = self._djpool_validate_settings()
            except ImproperlyConfigured as error:
                self._djpool_settings_error = error
        self._djpool_transaction_mode = (
            self.djpool_options is not None and self.djpool_options.pool_mode == "transaction"
        )
        # What a pooled connection's cursors are given (see _djpool_watch()).
        self._djpool_cursor_watcher: type | None = (
            ReleasingCursor
            if self._djpool_transaction_mode
            else StatementWatchingCursor
            if self.djpool_watch_transaction_statements
            else None
        )
        # The class make_cursor() builds for a pooled connection, where the
        # vendor keeps Django's make_cursor(): Django's CursorWrapper, with
        # the watcher's execute() if there is one. None: the vendor builds
        # its own wrapper, which _djpool_watch() then gives the watcher.
        self._djpool_cursor_class: type | None = None
        if getattr(super().make_cursor, "__func__", None) is BaseDatabaseWrapper.make_cursor:
            watcher = self._djpool_cursor_watcher
            self._djpool_cursor_class = CursorWrapper if watcher is None else watching_class(watcher, CursorWrapper)

    def _djpool_validate_settings(self) -> PoolOptions:
        options = parse_pool_options(self.alias, self.settings_dict.get("POOL_OPTIONS"))
        if (self.settings_dict.get("OPTIONS") or {}).get("pool"):
            raise ImproperlyConfigured(
                f"DATABASES[{self.alias!r}]: OPTIONS['pool'] turns on Django's own "
                f"connection pool, and ENGINE {self.settings_dict.get('ENGINE')!r} is "
                f"already a pool. Remove OPTIONS['pool'] and size the pool with "
                f"POOL_OPTIONS, or use Django's stock ENGINE with its own pool."
            )
        if options.pool_mode == "transaction" and self.settings_dict.get("CONN_MAX_AGE", 0) != 0:
            raise ImproperlyConfigured(
                f"DATABASES[{self.alias!r}]: CONN_MAX_AGE must be 0 with "
                f"POOL_OPTIONS['POOL_MODE'] = 'transaction'; got "
                f"{self.settings_dict.get('CONN_MAX_AGE')!r}. The pool already keeps "
                f"connections open; a wrapper holding one across requests defeats "
                f"transaction pooling."
            )
        return options

    # ##### Vendor hooks #####

    def djpool_sqlalchemy_dialect(self) -> Any:
        """Return the vendor's SQLAlchemy dialect instance with its DB-API module loaded."""
        raise NotImplementedError(
            "subclasses of PooledDatabaseWrapperMixin must provide a djpool_sqlalchemy_dialect() method"
        )

    @staticmethod
    def djpool_in_transaction(dbapi_connection: Any) -> bool:
        """True when the connection may have a transaction to roll back."""
        return True

    #: ``(dbapi_connection) -> None`` rolling back the server's transaction on
    #: return to the pool, where the driver's ``rollback()`` may not; None for
    #: the SQLAlchemy dialect's.
    djpool_rollback: Callable[[Any], None] | None = None

    #: Whether the statement text is watched for a raw ``BEGIN`` … ``COMMIT``:
    #: needed where the driver cannot report a transaction opened with SQL
    #: while Django's autocommit is on (JDBC; mysqlclient built on Oracle's
    #: libmysqlclient), so that the connection
    #: goes back rolled back if the request ends inside one (in both modes)
    #: and stays held until it ends (transaction mode).
    djpool_watch_transaction_statements = True

    @staticmethod
    def djpool_transaction_open(dbapi_connection: Any) -> bool:
        """True only if the driver knows that the server has a transaction open.

        Transaction mode keeps a connection whose transaction was opened with
        raw SQL. Drivers that cannot tell (False here) rely on the statement
        text instead (:attr:`djpool_watch_transaction_statements`).
        """
        return False

    #: ``(dbapi_connection, timeout) -> None``: a round trip proving the
    #: connection alive that gives up after ``timeout`` seconds, raising
    #: :class:`djpool.core.bounded.NoAnswer` (the driver's error if it is
    #: dead). None where the driver cannot bound it: the pre-ping then runs
    #: unbounded, and the pool logs so when it is created.
    djpool_ping_within: Callable[[Any, float], None] | None = None

    #: The same for the rollback of a returned connection.
    djpool_rollback_within: Callable[[Any, float], None] | None = None

    #: ``(dbapi_connection, autocommit, timeout) -> None``: put the driver
    #: connection in that autocommit mode if it is not (read locally), where
    #: setting it is a round trip (MySQL's SET autocommit), giving up after
    #: ``timeout`` seconds like the rollback. With it, a
    #: connection given back in another mode (closed inside a transaction
    #: Django opened) is put back in the mode of AUTOCOMMIT on its return,
    #: under VALIDATION_TIMEOUT, rather than when the next request takes it,
    #: without a bound. None where the mode is set locally (psycopg, oracledb).
    djpool_autocommit_within: Callable[[Any, bool, float], None] | None = None

    #: The driver's connect option (whole seconds) that bounds opening a
    #: connection; a checkout lowers it to what is left of its TIMEOUT.
    djpool_connect_timeout_option: str | None = None

    def djpool_full_reset(self, dbapi_connection: Any, conn_params: dict[str, Any]) -> None:
        """Clear all session state (RESET_ON_RETURN = "full")."""
        raise ImproperlyConfigured(
            f"DATABASES[{self.alias!r}]['POOL_OPTIONS']['RESET_ON_RETURN'] = 'full' is "
            f"not supported by ENGINE {self.settings_dict.get('ENGINE')!r}; use 'rollback'."
        )

    def djpool_refresh_connection_state(self) -> None:
        """Re-apply, on a reused connection, setup that depends on settings which can change.

        ``init_connection_state()`` runs Django's setup once per driver
        connection; a vendor whose setup reads settings that tests or code may
        override afterwards (PostgreSQL's TIME_ZONE) re-checks them here,
        without a round trip when nothing changed.
        """

    def djpool_open_dbapi_connection(self, conn_params: dict[str, Any]) -> Any:
        """Open a new driver connection the way the stock backend does."""
        return super().get_new_connection(conn_params)  # type: ignore[misc]

    def djpool_connection_taken(self) -> None:
        """Called each time the wrapper takes a connection from the pool.

        That is in ``connect()``, and in transaction mode also when a query
        takes one back between transactions without ``connect()``. A backend
        that remembers on the wrapper what it did to the previous connection
        (django-tenants' ``search_path``) forgets it here.
        """

    def djpool_driver_autocommit(self, dbapi_connection: Any) -> bool | None:
        """The driver connection's autocommit mode, read locally; None if unknown.

        A pooled connection normally comes back in the mode Django wants, so
        ``connect()`` skips setting it again when this says so.
        """
        return None

    # ##### Connection lifecycle (Django's BaseDatabaseWrapper API) #####

    def connect(self) -> None:
        # Before Django's own checks of the same settings (with psycopg2,
        # OPTIONS['pool'] would otherwise be refused for another reason).
        self._djpool_raise_settings_error()
        self._djpool_parked_in = None
        self._djpool_new_request = False
        self._djpool_raw_transaction = False
        self._djpool_settings_seen = {
            name: dict(value) if type(value) is dict else value for name, value in self.settings_dict.items()
        }
        self._djpool_settings_generation = _settings_generation
        self._djpool_connecting = True
        try:
            super().connect()  # type: ignore[misc]
        finally:
            self._djpool_connecting = False

    def get_autocommit(self) -> bool:
        # atomic() asks first thing: a parked wrapper takes its connection back.
        if self.connection is None:
            self._djpool_take_back()
        return super().get_autocommit()  # type: ignore[no-any-return, misc]

    def _djpool_take_back(self) -> None:
        """Give a parked wrapper a connection again, without Django's ``connect()``.

        ``connect()`` resets the wrapper's transaction state, reads the
        settings, runs the per-connection setup and sends
        ``connection_created``. A parked wrapper has done all that and not
        been closed since: only what belongs to the driver connection is
        redone (its autocommit mode when it differs, the setup state that
        ``init_connection_state()`` restores from the connection) and, first
        thing in a request, what ``connect()`` does per request (the
        CONN_MAX_AGE clock, the health-check and error flags,
        ``connection_created``). If the settings changed since the wrapper
        connected, it is not taken back: Django's ``connect()`` runs.

        Called where Django is about to use the connection (before a cursor;
        ``atomic()``), not from ``ensure_connection()``, which Django's own
        tests replace with mocks that call the saved original. Elsewhere a
        parked wrapper connects anew, which is only slower.
        """
        pool = self._djpool_parked_in
        if pool is None:
            return
        self._djpool_parked_in = None
        entry = self._djpool_parked_entry
        new_request = self._djpool_new_request
        if pool.retired or (
            new_request
            and (
                self._djpool_settings_generation != _settings_generation
                or self.settings_dict != self._djpool_settings_seen
            )
        ):
            return
        # The connection it gave back when it parked, if nobody took it
        # since: it is in the autocommit mode and has the setup that this
        # wrapper left, and it needs no checkout.
        record = pool.take_back(entry) if entry is not None else None
        same = record is not None
        self._djpool_connecting = True
        try:
            if record is None:
                record = pool.checkout(self)
            self._djpool_lease.take(pool, record)
            self._djpool_open_cursors = 0
            connection = self.connection = record.dbapi_connection
            if self._djpool_taken_hook:
                self.djpool_connection_taken()
            self.errors_occurred = False
            self.health_check_done = True
            if same:
                if self._djpool_refresh_hook:
                    self.djpool_refresh_connection_state()
            else:
                autocommit = self.autocommit  # type: ignore[attr-defined]
                if self.djpool_driver_autocommit(connection) != autocommit:
                    super()._set_autocommit(autocommit)  # type: ignore[misc]
                state = record.info.get(INITIALIZED_STATE)
                if state is None:
                    self.init_connection_state()
                else:
                    if state:
                        self.__dict__.update(state)
                    if self._djpool_refresh_hook:
                        self.djpool_refresh_connection_state()
        except Exception:
            # Driver errors become Django's, as within connect() (entering
            # wrap_database_errors only then saves two calls per request).
            with self.wrap_database_errors:  # type: ignore[attr-defined]
                raise
        finally:
            self._djpool_connecting = False
        if new_request:
            self._djpool_new_request = False
            max_age = self.settings_dict["CONN_MAX_AGE"]
            if max_age:
                self.close_at = time.monotonic() + max_age
            if connection_created.receivers:  # send() itself checks too, in a call
                connection_created.send(sender=self.__class__, connection=self)

    def close(self) -> None:
        # A wrapper parked between transactions has no driver connection, so
        # Django's close() does nothing: it is closed all the same, and its
        # next use connects as a new one.
        self._djpool_parked_in = None
        super().close()  # type: ignore[misc]

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        if self.djpool_options is None:
            self._djpool_raise_settings_error()
            return super().get_new_connection(conn_params)  # type: ignore[misc]
        if self._djpool_lease.record is not None:
            # connect() called on an open connection: give the old one back first.
            self._djpool_release()
        pool = self._djpool_pool_for(conn_params)
        try:
            record = pool.checkout(self)
        except PoolTimeout:
            raise
        except Exception:
            # A wrong password or unreachable host must not leave a pool behind.
            registry.discard_if_never_connected(pool)
            raise
        self._djpool_lease.take(pool, record)
        self._djpool_open_cursors = 0
        if self._djpool_taken_hook:
            self.djpool_connection_taken()
        return record.dbapi_connection

    def _djpool_raise_settings_error(self) -> None:
        if self._djpool_settings_error is not None:
            raise ImproperlyConfigured(*self._djpool_settings_error.args)

    def _djpool_pool_for(self, conn_params: dict[str, Any]) -> ConnectionPool:
        # OPTIONS keys that Django's get_new_connection() reads but leaves out
        # of conn_params (PostgreSQL's isolation_level) shape the connection
        # too: wrappers with different OPTIONS never share connections.
        options = self.settings_dict.get("OPTIONS") or {}
        cached = self._djpool_cached_pool
        if cached is not None and not cached[2].retired and cached[0] == conn_params and cached[1] == options:
            return cached[2]
        assert self.djpool_options is not None
        pool = registry.get_pool(self, self.djpool_options, conn_params)
        self._djpool_cached_pool = (dict(conn_params), dict(options), pool)
        return pool

    def init_connection_state(self) -> None:
        record = self._djpool_lease.record
        if record is None:
            super().init_connection_state()  # type: ignore[misc]
            return
        info = record.info
        state = info.get(INITIALIZED_STATE)
        # Within connect(), a reused connection skips the setup it already
        # had; called explicitly, Django's setup runs again, as it would stock.
        if state is not None and self._djpool_connecting:
            self.__dict__.update(state)
            if self._djpool_refresh_hook:
                self.djpool_refresh_connection_state()
            return
        super().init_connection_state()  # type: ignore[misc]
        info[INITIALIZED_STATE] = {
            name: self.__dict__[name] for name in self.djpool_wrapper_state if name in self.__dict__
        }

    def _djpool_pool_holding(self, dbapi_connection: Any) -> ConnectionPool | None:
        """The pool whose connection ``dbapi_connection`` is, if this wrapper holds it from there:
        then the pool's VALIDATION_TIMEOUT bounds the round trips made on it. None otherwise."""
        record = self._djpool_lease.record
        if record is None or dbapi_connection is not record.dbapi_connection:
            return None
        return self._djpool_lease.pool

    def _djpool_setup_unanswered(self, statement: str, error: NoAnswer) -> Exception:
        """Close this wrapper's pooled connection, whose setup got no answer within VALIDATION_TIMEOUT;
        return the driver's OperationalError to raise, naming ``statement`` and the bound.

        For vendors that bound the statements of Django's setup of a
        connection (:meth:`init_connection_state` and what it calls). Counted
        like the pool's own round trips that got no answer (every connection
        idle meanwhile is pinged before its next use). The connection is
        closed now, without a round trip: the statement is still unanswered,
        and whatever came next on it (Django's ``is_usable()`` at the end of
        the request) would wait for the server as long. The wrapper keeps a
        stand-in until its ``close()``, which gives the emptied slot back.
        """
        pool, record = self._djpool_lease.pool, self._djpool_lease.record
        assert pool is not None and record is not None  # only on a connection taken from the pool
        pool.saw_no_answer(f"{statement} (Django's setup of a pooled connection)")
        record.invalidate(error)
        self.connection = ReleasedConnection.for_database(self.Database)  # type: ignore[attr-defined]
        return self.Database.OperationalError(  # type: ignore[attr-defined, no-any-return]
            f"djpool: database {self.alias!r} did not answer {statement} (Django's setup of the "
            f"connection) within {pool.validation_timeout:g} s (VALIDATION_TIMEOUT)"
        )

    def _set_autocommit(self, autocommit: bool) -> None:
        # connect() sets autocommit on every checkout, and a pooled connection
        # is nearly always in that mode already: skip the driver call then.
        if self._djpool_connecting and self.djpool_driver_autocommit(self.connection) == autocommit:
            return
        super()._set_autocommit(autocommit)  # type: ignore[misc]

    def _close(self) -> None:
        if self._djpool_lease.record is None:
            super()._close()  # type: ignore[misc]
            return
        try:
            self._djpool_release()
        finally:
            # Stock _close() leaves a closed driver connection behind, which
            # Django's close() then drops (unless in atomic()). Code that uses
            # it in between (is_usable(), a query in the atomic block) gets the
            # driver's InterfaceError, as it would stock: never the connection
            # that another thread may hold now, nor a new one.
            self.connection = ReleasedConnection.for_database(self.Database)  # type: ignore[attr-defined]

    def _djpool_release(self, take_back: bool = False) -> None:
        """Give the connection back to its pool.

        ``take_back``: the wrapper parks, and may take the same connection
        back if nobody takes it meanwhile (:attr:`_djpool_parked_entry`).
        """
        self._djpool_parked_entry = None
        pool, record = self._djpool_lease.give_up()
        self._djpool_open_cursors = 0
        # A raw BEGIN without its COMMIT, where the driver does not see that
        # transaction, so the reset on return is told to roll it back.
        rollback = self._djpool_raw_transaction
        self._djpool_raw_transaction = False
        # Like Django's own pooled PostgreSQL backend: the wrapper can no
        # longer use a connection that another thread may now hold.
        self.connection = None
        if record is None or pool is None:
            return
        if self._djpool_chunked_cursors.data:  # the WeakSet's own set: no call when empty
            self._djpool_close_chunked_cursors()
        try:
            entry = pool.checkin(
                record,
                rollback=rollback,
                suspect=self.errors_occurred,  # type: ignore[attr-defined]
                discard=self._djpool_health_checking
                or (self._djpool_errors_checking and self.errors_occurred),  # type: ignore[attr-defined]
            )
        except Exception:
            # Driver errors become Django's (entered only then: two calls
            # fewer per request).
            with self.wrap_database_errors:  # type: ignore[attr-defined]
                raise
        if take_back:
            self._djpool_parked_entry = entry

    def close_if_health_check_failed(self) -> None:
        # Django runs this before every cursor, just before ensure_connection().
        if self.connection is None:
            self._djpool_take_back()
            return
        # Django closes the connection here only when is_usable() said no: a
        # stock backend then opens a new one, so the pool must not hand the
        # same one back. The common case returns at once.
        if not self.health_check_enabled or self.health_check_done:  # type: ignore[attr-defined]
            return
        self._djpool_health_checking = True
        try:
            super().close_if_health_check_failed()  # type: ignore[misc]
        finally:
            self._djpool_health_checking = False

    def is_usable(self) -> bool:
        """Django's check of a connection (at the end of a request that saw a database error; before
        a query with CONN_HEALTH_CHECKS), on a pooled one the pool's own ping.

        Django's round trip waits for the server without a limit, where
        stock Django with ``CONN_MAX_AGE = 0`` would just close the
        connection; the pool's gives up after VALIDATION_TIMEOUT. Nor does it
        reconnect: PyMySQL's ``ping()``, which Django's MySQL backend calls,
        opens a new session behind the pool's back, without Django's setup.
        Inside a transaction (a test's, a raw ``BEGIN``) Django's own check
        runs: it also says no to a transaction that failed (PostgreSQL
        refuses queries then), which a ping does not notice.
        """
        ping_within = self.djpool_ping_within
        pool = self._djpool_pool_holding(self.connection)
        if ping_within is None or pool is None:
            return super().is_usable()  # type: ignore[misc, no-any-return]
        try:
            if self.djpool_in_transaction(self.connection):
                return super().is_usable()  # type: ignore[misc, no-any-return]
            ping_within(self.connection, pool.validation_timeout)
        except NoAnswer:
            pool.saw_no_answer("Django's check of a pooled connection")
            return False
        except self.Database.Error:  # type: ignore[attr-defined]
            return False
        return True

    def close_if_unusable_or_obsolete(self) -> None:
        # Django calls this at both ends of a request (close_old_connections()).
        if self.connection is None:
            if self._djpool_parked_in is not None:
                self._djpool_new_request = True
            return
        # Where stock Django would close a connection it finds usable and
        # obsolete (always, with CONN_MAX_AGE = 0): give it back and park
        # instead. The same tests as Django's, without a call each.
        close_at = self.close_at  # type: ignore[attr-defined]
        if (
            close_at is not None
            and self._djpool_lease.record is not None
            and not self.errors_occurred  # type: ignore[attr-defined]
            and not self.in_atomic_block  # type: ignore[attr-defined]
            and self.autocommit == self.settings_dict["AUTOCOMMIT"]  # type: ignore[attr-defined]
            and time.monotonic() >= close_at
        ):
            if self._thread_ident != _get_ident():  # type: ignore[attr-defined]
                self.validate_thread_sharing()  # type: ignore[attr-defined]
            self.run_on_commit = []
            pool = self._djpool_lease.pool
            self._djpool_release(take_back=True)
            self._djpool_parked_in = pool
            self._djpool_new_request = True
            return
        # A connection that had errors is closed here when is_usable() says no
        # (Django resets errors_occurred when it says yes); an obsolete
        # connection without errors goes back as usual.
        self._djpool_errors_checking = True
        try:
            super().close_if_unusable_or_obsolete()  # type: ignore[misc]
        finally:
            self._djpool_errors_checking = False

    def djpool_connection_reclaimed(self) -> None:
        """The thread of this wrapper ended holding a connection, which goes back to the pool.

        Called by :mod:`djpool.core.lease` during the thread's teardown, just
        before the connection is queued for its return. The wrapper is
        unreachable for Django by then, but a half-read ``iterator()``'s
        generator may still be collected later in another thread: its
        cursor is closed now, on the connection nobody else holds yet, and
        the wrapper keeps only a stand-in, never the connection.
        """
        self._djpool_close_chunked_cursors()
        self._djpool_open_cursors = 0
        self._djpool_parked_in = None
        self._djpool_raw_transaction = False
        self.connection = ReleasedConnection.for_database(self.Database)  # type: ignore[attr-defined]

    def _djpool_close_chunked_cursors(self) -> None:
        # An iterator() left half-read by an error is finalized whenever its
        # traceback is collected, in any thread: its cursor must not send
        # CLOSE then on a connection another request holds (that aborts the
        # other request's transaction), nor stay open in this session.
        if self._djpool_chunked_cursors:
            for cursor in list(self._djpool_chunked_cursors):
                try:
                    cursor.close()
                except Exception:  # noqa: BLE001 - the connection goes back anyway
                    pass
            self._djpool_chunked_cursors.clear()

    def djpool_forget_after_fork(self) -> None:
        """Drop, without any I/O, a connection this wrapper held when the process forked."""
        if self._djpool_lease.record is not None:
            self._djpool_lease.give_up()
            self._djpool_open_cursors = 0
            self.connection = None
        self._djpool_chunked_cursors.clear()
        self._djpool_cached_pool = None
        self._djpool_parked_in = None
        self._djpool_raw_transaction = False

    def close_pool(self) -> None:
        """Close idle connections of this alias's pools (Django 5.1+ test runner hook)."""
        registry.dispose(self.alias)
        parent_close_pool = getattr(super(), "close_pool", None)
        if parent_close_pool is not None:
            parent_close_pool()

    @contextmanager
    def _nodb_cursor(self) -> Iterator[Any]:
        # Django opens this to create, clone or drop a (test) database, which
        # the server refuses while sessions are open on it: close idle pooled
        # connections first, whichever alias they belong to.
        registry.dispose()
        with super()._nodb_cursor() as cursor:  # type: ignore[misc]
            yield cursor

    def chunked_cursor(self) -> Any:
        cursor = super().chunked_cursor()  # type: ignore[misc]
        if self._djpool_lease.record is not None:
            self._djpool_chunked_cursors.add(cursor)
        return cursor

    def make_cursor(self, cursor: Any) -> CursorWrapper:
        cursor_class = self._djpool_cursor_class
        if cursor_class is not None:
            # Django's make_cursor() with the watcher's class built in: two
            # calls and a class swap fewer per cursor.
            if self._djpool_lease.record is None:
                return CursorWrapper(cursor, self)
            if self._djpool_transaction_mode:
                self._djpool_open_cursors += 1
            return cursor_class(cursor, self)  # type: ignore[no-any-return]
        wrapper = super().make_cursor(cursor)  # type: ignore[misc]
        if self._djpool_cursor_watcher is not None and self._djpool_lease.record is not None:
            self._djpool_watch(wrapper)
        return wrapper  # type: ignore[no-any-return]

    def make_debug_cursor(self, cursor: Any) -> CursorWrapper:
        # The vendor's own wrapper class is kept (PostgreSQL's debug wrapper
        # logs copy()): djpool only adds to execute() and close().
        wrapper = super().make_debug_cursor(cursor)  # type: ignore[misc]
        if self._djpool_cursor_watcher is not None and self._djpool_lease.record is not None:
            self._djpool_watch(wrapper)
        return wrapper  # type: ignore[no-any-return]

    def _djpool_watch(self, wrapper: CursorWrapper) -> None:
        """Give a pooled connection's cursor what djpool must see of it.

        Transaction mode counts open cursors, to release when the last
        closes, and reads statements run outside a transaction (raw
        transactions, session-level SET); session mode reads them only where
        the driver cannot see a raw transaction.
        """
        watcher = self._djpool_cursor_watcher
        if self._djpool_transaction_mode:
            self._djpool_open_cursors += 1
        wrapper.__class__ = watching_class(watcher, type(wrapper))  # type: ignore[arg-type]

    def _djpool_saw_raw_statement(self, kind: str, sql: str) -> None:
        """A raw transaction statement or session-level SET ran outside atomic()."""
        if kind != "set":
            # Where the driver reports the transaction, it alone says (libpq
            # also sees a COMMIT the pattern misses). An ended one is given
            # back when this statement's cursor closes.
            if self.djpool_watch_transaction_statements:
                self._djpool_raw_transaction = kind == "begin"
        elif self._djpool_transaction_mode:
            self._djpool_warn_session_change(sql)



# How many times a setting changed (override_settings() in tests): a wrapper
# parked before a change connects anew, as stock, instead of being taken back.
_settings_generation = 0


def _count_setting_change(**kwargs: Any) -> None:
    global _settings_generation
    _settings_generation += 1


setting_changed.connect(_count_setting_change, dispatch_uid="djpool.core.mixins.settings_generation")
