"""Django's Oracle backend over the Oracle JDBC driver (ojdbc).

ENGINE ``djpool.backends.jdbc.oracle``. Driver ``oracle.jdbc.OracleDriver``,
URL ``jdbc:oracle:thin:@//HOST:PORT/NAME`` (NAME is the service name; port
1521); ``JDBC_DRIVER``/``JDBC_URL`` override them. Put ojdbc's jar on the
class path yourself (``CLASSPATH`` or ``JDBC_CLASSPATH``): it is not
redistributed here.

Django's Oracle modules import python-oracledb (``pip install
'djpool-jdbc[jpype,oracle]'``) for its constants; no connection goes through
it. Where Django's backend relies on python-oracledb, this one does the
JDBC equivalent:

* the server version comes from the driver's metadata
  (``getDatabaseMajorVersion()``), not ``connection.version``;
* inserted primary keys come from JDBC generated keys, not
  ``RETURNING … INTO`` out-binds (which JDBC does not have);
* NUMBER columns arrive as ``Decimal``; integer and float fields convert them
  back, as python-oracledb's output type handler does for Django;
* the session setup (``ALTER SESSION`` for date formats and time zone) can
  be replaced with ``JDBC_INIT_SQL``, a list of statements.

The Python side (pooling, parameters, types, errors, version probing) is
tested on H2 in Oracle mode; Oracle's own SQL needs the opt-in suite with a
real server (see the package README).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.oracle import base as oracle
from django.utils.functional import cached_property

from djpool.backends.jdbc import dbapi
from djpool.backends.jdbc.mixins import JDBCConnectionMixin, JDBCPoolMixin

ORACLE_DRIVER = "oracle.jdbc.OracleDriver"
ORACLE_URL = "jdbc:oracle:thin:@//{host}:{port}/{name}"
ORACLE_PORT = 1521

# OPTIONS that Django's Oracle backend reads itself; the rest go to the driver.
_DJANGO_OPTIONS = ("use_returning_into", "threaded", "pool")


def _to_int(value: Any, expression: Any, connection: Any) -> Any:
    return None if value is None else int(value)


def _to_float(value: Any, expression: Any, connection: Any) -> Any:
    return None if value is None else float(value)


class DatabaseOperations(oracle.DatabaseOperations):
    def get_db_converters(self, expression: Any) -> list[Callable[..., Any]]:
        converters = super().get_db_converters(expression)
        internal_type = expression.output_field.get_internal_type()
        if internal_type.endswith(("IntegerField", "AutoField")):
            converters.insert(0, _to_int)
        elif internal_type == "FloatField":
            converters.insert(0, _to_float)
        return converters  # type: ignore[no-any-return]

    def last_insert_id(self, cursor: Any, table_name: str, pk_name: str) -> Any:
        # JDBC generated keys: the identity value, or (Oracle's driver) the ROWID.
        key = getattr(cursor, "lastrowid", None)
        if isinstance(key, int):
            return key
        if key is not None:
            cursor.execute(f"SELECT {self.quote_name(pk_name)} FROM {table_name} WHERE ROWID = %s", [str(key)])
            return cursor.fetchone()[0]
        return super().last_insert_id(cursor, table_name, pk_name)


class OracleJDBCDatabaseWrapper(JDBCConnectionMixin, oracle.DatabaseWrapper):
    """Django's Oracle backend on a JDBC connection, unpooled."""

    display_name = "Oracle (JDBC)"
    jdbc_driver = ORACLE_DRIVER
    jdbc_url_template = ORACLE_URL
    jdbc_default_port = ORACLE_PORT
    jdbc_generated_keys = True

    ops_class = DatabaseOperations

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # RETURNING … INTO needs out-binds (python-oracledb's cursor.var()).
        self.features.can_return_columns_from_insert = False

    def jdbc_driver_properties(self) -> dict[str, Any]:
        options = dict(self.settings_dict.get("OPTIONS") or {})
        for key in _DJANGO_OPTIONS:
            options.pop(key, None)
        return options

    def jdbc_session_statements(self) -> list[str]:
        """Statements run once on each new connection: Django's, or ``JDBC_INIT_SQL``."""
        custom = self.settings_dict.get("JDBC_INIT_SQL")
        if custom is not None:
            if not isinstance(custom, (list, tuple)) or not all(isinstance(s, str) for s in custom):
                raise ImproperlyConfigured(
                    f"DATABASES[{self.alias!r}]['JDBC_INIT_SQL'] must be a list of SQL statements "
                    f"(strings), or None for Django's Oracle session setup; got {custom!r}."
                )
            return list(custom)
        return [
            "ALTER SESSION SET NLS_TERRITORY = 'AMERICA'",
            "ALTER SESSION SET NLS_DATE_FORMAT = 'YYYY-MM-DD HH24:MI:SS'"
            " NLS_TIMESTAMP_FORMAT = 'YYYY-MM-DD HH24:MI:SS.FF'" + (" TIME_ZONE = 'UTC'" if settings.USE_TZ else ""),
        ]

    def init_connection_state(self) -> None:
        # Django's Oracle version of this catches python-oracledb's errors
        # and sets oracledb-only attributes; this is the same setup in JDBC terms.
        BaseDatabaseWrapper.init_connection_state(self)
        with self.connection.cursor() as cursor:
            for statement in self.jdbc_session_statements():
                cursor.execute(statement)
        if "operators" not in self.__dict__:
            # Ticket #14149: can LIKE be used, or must it be LIKEC?
            with self.connection.cursor() as cursor:
                try:
                    cursor.execute("SELECT 1 FROM DUAL WHERE DUMMY %s" % self._standard_operators["contains"], ["X"])
                except dbapi.DatabaseError:
                    self.operators = self._likec_operators
                    self.pattern_ops = self._likec_pattern_ops
                else:
                    self.operators = self._standard_operators
                    self.pattern_ops = self._standard_pattern_ops
        if not self.get_autocommit():
            self.commit()

    @cached_property
    def oracle_version(self) -> tuple[int, ...]:
        with self.temporary_connection():
            return self.connection.database_version()  # type: ignore[no-any-return]


class DatabaseWrapper(JDBCPoolMixin, OracleJDBCDatabaseWrapper):
    # Set by init_connection_state() from the LIKE probe; restored on reuse.
    djpool_wrapper_state = ("operators", "pattern_ops")
