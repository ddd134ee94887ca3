"""Oracle database backend for Django, with djpool's connection pool.

Django's own Oracle backend runs unchanged; connections come from the pool.
Requires python-oracledb >= 1.3.2: https://oracle.github.io/python-oracledb/
It runs in thin mode unless the application calls
``oracledb.init_oracle_client()`` before the first connection (thick mode),
exactly as with Django's stock backend.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import django
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS
from django.utils.functional import cached_property

from djpool.backends.oracle.__about__ import __version__
from djpool.core.bounded import NoAnswer
from djpool.core.compat import require_core
from djpool.core.mixins import PooledDatabaseWrapperMixin

# Keep in step with the djpool-core range in this package's pyproject.toml.
require_core("djpool-oracle", __version__, minimum="0.1", below="1")

MINIMUM_ORACLEDB = (1, 3, 2)

# python-oracledb's errors for a round trip that outlived call_timeout: thin
# mode (DPY-4024) and thick mode (DPI-1067).
_CALL_TIMEOUT_ERRORS = ("DPY-4024", "DPI-1067")


def _oracledb_call_within(dbapi_connection: Any, call: str, timeout: float) -> None:
    """Run ``dbapi_connection.<call>()`` with python-oracledb's ``call_timeout`` set to ``timeout``.

    ``call_timeout`` bounds each round trip in both thin and thick mode; the
    connection's own value (Django leaves it at 0, no limit) is restored.
    """
    previous = dbapi_connection.call_timeout
    dbapi_connection.call_timeout = max(1, math.ceil(timeout * 1000))
    try:
        getattr(dbapi_connection, call)()
    except Exception as error:
        if any(code in str(error) for code in _CALL_TIMEOUT_ERRORS):
            raise NoAnswer(str(error)) from error
        raise
    finally:
        try:
            dbapi_connection.call_timeout = previous
        except Exception:  # noqa: BLE001 - a connection broken by the timeout is closed next
            pass


def _oracledb_ping_within(dbapi_connection: Any, timeout: float) -> None:
    _oracledb_call_within(dbapi_connection, "ping", timeout)


def _oracledb_rollback_within(dbapi_connection: Any, timeout: float) -> None:
    _oracledb_call_within(dbapi_connection, "rollback", timeout)


def _load_oracledb() -> Any:
    """Import python-oracledb, and make Django's Oracle backend use it."""
    try:
        import oracledb
    except ImportError as error:
        raise ImproperlyConfigured(
            f"Error loading oracledb module: {error}\nDid you install djpool-oracle[oracledb]?"
        ) from error
    version = tuple(int(part) for part in oracledb.__version__.split(".")[:3] if part.isdigit())
    if version < MINIMUM_ORACLEDB:
        raise ImproperlyConfigured(
            f"python-oracledb 1.3.2 or newer is required; you have {oracledb.__version__}."
        )
    if django.VERSION < (5, 0):
        # Django 4.2's Oracle backend imports cx_Oracle. python-oracledb is
        # cx_Oracle under its new name, and its documentation gives this very
        # alias for Django before 5.0. From python-oracledb 3.4 on, Binary is
        # a function, and Django 4.2's isinstance(param, Database.Binary)
        # fails with TypeError on every query with parameters.
        if not isinstance(oracledb.Binary, type):
            raise ImproperlyConfigured(
                f"Django {django.get_version()}'s Oracle backend needs python-oracledb older "
                f"than 3.4; you have {oracledb.__version__}. Install 'oracledb>=1.3.2,<3.4', "
                f"or use Django 5.2 or newer."
            )
        if sys.modules.setdefault("cx_Oracle", oracledb) is not oracledb:
            raise ImproperlyConfigured(
                "djpool-oracle runs on python-oracledb, but cx_Oracle was imported "
                "before Django's Oracle backend; uninstall cx_Oracle or import "
                "djpool.backends.oracle.base first."
            )
    return oracledb


_oracledb = _load_oracledb()

from django.db.backends.oracle import base  # noqa: E402  (needs the alias above on Django 4.2)
from django.db.backends.oracle.utils import dsn  # noqa: E402

if base.Database is not _oracledb:
    # Django 5.x falls back to cx_Oracle when oracledb cannot be imported;
    # we imported it above, so this means something replaced the module.
    raise ImproperlyConfigured(
        f"djpool-oracle runs on python-oracledb; Django's Oracle backend loaded {base.Database.__name__!r}."
    )


class DatabaseWrapper(PooledDatabaseWrapperMixin, base.DatabaseWrapper):
    # Django's init_connection_state() probes once per wrapper which LIKE
    # syntax the database accepts and stores the answer on the wrapper. A
    # wrapper that gets an already initialised connection needs them too.
    djpool_wrapper_state = ("operators", "pattern_ops")
    # With Django's autocommit on, the driver commits after every statement:
    # no raw transaction outlives one (and BEGIN starts a PL/SQL block).
    djpool_watch_transaction_statements = False

    if django.VERSION < (5, 0):

        @cached_property
        def cx_oracle_version(self) -> tuple[int, ...]:
            # Django 4.2 reads it only to pick the introspection type map;
            # python-oracledb has cx_Oracle 8.3's API whatever its own version
            # number (1.x-3.x would otherwise select the pre-8 map).
            return (8, 3, 0)

    def __init__(self, settings_dict: dict[str, Any], alias: str = DEFAULT_DB_ALIAS, *args: Any, **kwargs: Any) -> None:
        super().__init__(settings_dict, alias, *args, **kwargs)
        # Refused here, not when the first connection comes back: the pool
        # runs the reset while returning a connection and can only log a
        # failure there, never show it.
        if self.djpool_options is not None and self.djpool_options.reset_on_return == "full":
            raise ImproperlyConfigured(self._djpool_full_reset_refusal())

    # ##### Connection parameters #####

    def get_connection_params(self) -> dict[str, Any]:
        params: dict[str, Any] = super().get_connection_params()
        if self.djpool_options is None:
            return params
        # Django's Oracle backend reads USER, PASSWORD and the DSN from the
        # settings in get_new_connection(), so they are missing from these
        # parameters, which key the pool. Django's test runner switches USER
        # to the test user on the same alias (and keeps a wrapper for the main
        # user beside it): each must get connections of its own.
        return {
            **params,
            "user": self.settings_dict["USER"],
            "password": self.settings_dict["PASSWORD"],
            "dsn": dsn(self.settings_dict),
        }

    def djpool_open_dbapi_connection(self, conn_params: dict[str, Any]) -> Any:
        # The call Django's get_new_connection() makes, with the target taken
        # from the pool's key rather than from a settings dict that may have
        # changed since the pool was created.
        params = dict(conn_params)
        return base.Database.connect(
            user=params.pop("user"),
            password=params.pop("password"),
            dsn=params.pop("dsn"),
            **params,
        )

    # ##### djpool vendor hooks #####

    djpool_ping_within = staticmethod(_oracledb_ping_within)
    djpool_rollback_within = staticmethod(_oracledb_rollback_within)
    # Opening a connection is left to python-oracledb's tcp_connect_timeout
    # (20 s unless OPTIONS sets it), so connect() gets what the stock
    # backend passes.

    def djpool_sqlalchemy_dialect(self) -> Any:
        # The python-oracledb dialect, not SQLAlchemy's generic Oracle one: its
        # is_disconnect() knows DPY-1001, DPY-4011 and ORA-00028/03113/03114/…,
        # so a session the server closed is replaced instead of reaching Django.
        from sqlalchemy.dialects.oracle.oracledb import OracleDialect_oracledb

        return OracleDialect_oracledb(dbapi=base.Database)

    @staticmethod
    def djpool_in_transaction(dbapi_connection: Any) -> bool:
        # python-oracledb 2.0+ reports whether the server has a transaction
        # open; with older versions assume it may have one.
        in_progress = getattr(dbapi_connection, "transaction_in_progress", None)
        return True if in_progress is None else bool(in_progress)

    def djpool_full_reset(self, dbapi_connection: Any, conn_params: dict[str, Any]) -> None:
        raise ImproperlyConfigured(self._djpool_full_reset_refusal())

    def _djpool_full_reset_refusal(self) -> str:
        return (
            f"DATABASES[{self.alias!r}]['POOL_OPTIONS']['RESET_ON_RETURN'] = 'full' is not "
            f"supported by ENGINE {self.settings_dict.get('ENGINE')!r}: Oracle has no statement "
            f"that resets a session (ALTER SESSION settings, package state and temporary "
            f"table rows would survive). Use 'rollback' (the default), and lower RECYCLE to "
            f"bound how long a session's state lives."
        )
