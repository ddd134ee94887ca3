"""Django's MySQL backend over JDBC, for OceanBase's MySQL mode.

ENGINE ``djpool.backends.jdbc.oceanbase.mysql``. Django's own MySQL backend
(SQL compiler, schema editor, operations) runs over a JDBC connection
instead of mysqlclient; the defaults are OceanBase's driver and URL, and any
MySQL-protocol JDBC driver works with ``JDBC_DRIVER``/``JDBC_URL`` (MariaDB
Connector/J: ``org.mariadb.jdbc.Driver``, ``jdbc:mariadb://HOST:PORT/NAME``;
OceanBase's driver was ported from it).

Django's MySQL modules import mysqlclient, so it must be installed
(``pip install 'djpool-jdbc[jpype,mysql]'``) although no connection goes
through it. What differs from mysqlclient, each found by running Django's
ORM over JDBC on MariaDB and on OceanBase seekdb:

* ``fetchmany()`` returns ``[]`` when done, not ``()``: Django's
  ``empty_fetchmany_value`` must match or every queryset iteration spins;
* Connector/J already sends ``bytes`` as ``_binary'…'``, so Django's
  ``_binary %s`` placeholder is a syntax error;
* autocommit is a JDBC property, the ping is ``isValid()``, the last insert
  id comes from generated keys, and the statement text Django shows in
  ``connection.queries`` is the cursor's ``_executed``;
* OceanBase reports MySQL 5.7 (``5.7.25-OceanBase…``), below Django's
  minimum for MySQL, and has no ``INSERT … RETURNING`` or UUID type.
"""

from __future__ import annotations

import datetime
import decimal
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.base.operations import BaseDatabaseOperations
from django.db.backends.mysql import base as mysql

from djpool.backends.jdbc.mixins import JDBCConnectionMixin, JDBCPoolMixin
from djpool.backends.jdbc.oceanbase.base import OCEANBASE_DRIVER, OCEANBASE_PORT, OCEANBASE_URL


class DatabaseFeatures(mysql.DatabaseFeatures):
    empty_fetchmany_value: list[Any] = []
    # OceanBase answers VERSION() with 5.7.25-OceanBase…; Django's MySQL
    # backend otherwise asks for 8.0.11 (or MariaDB 10.5).
    minimum_database_version = (5, 7)
    # Django would use INSERT … RETURNING on a MariaDB stand-in; OceanBase has none.
    can_return_columns_from_insert = False
    can_return_rows_from_bulk_insert = False
    has_native_uuid_field = False


class DatabaseOperations(mysql.DatabaseOperations):
    # Plain %s, without MySQL's "_binary" prefix. Django's base version, whose
    # signature changed in 6.1 ((value) -> sql; (value, compiler) -> (sql, params)).
    binary_placeholder_sql = BaseDatabaseOperations.binary_placeholder_sql


class DatabaseSchemaEditor(mysql.DatabaseSchemaEditor):
    def quote_value(self, value: Any) -> str:
        # Django's MySQL schema editor asks mysqlclient to escape literals
        # (defaults in DDL); there is no mysqlclient connection here.
        if value is None:
            return "NULL"
        if isinstance(value, bool):
            return "1" if value else "0"
        if isinstance(value, (int, float, decimal.Decimal)):
            return str(value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return "X'%s'" % bytes(value).hex()
        if isinstance(value, (datetime.date, datetime.time)):
            value = value.isoformat(" ") if isinstance(value, datetime.datetime) else value.isoformat()
        text = str(value).replace("\\", "\\\\").replace("'", "''")
        return f"'{text}'"


class OceanBaseMySQLDatabaseWrapper(JDBCConnectionMixin, mysql.DatabaseWrapper):
    """Django's MySQL backend on a JDBC connection, unpooled."""

    display_name = "OceanBase (MySQL mode, JDBC)"
    jdbc_driver = OCEANBASE_DRIVER
    jdbc_url_template = OCEANBASE_URL
    jdbc_default_port = OCEANBASE_PORT
    jdbc_mysql_syntax = True
    jdbc_generated_keys = True
    jdbc_init_command: str | None = None

    features_class = DatabaseFeatures
    ops_class = DatabaseOperations
    SchemaEditorClass = DatabaseSchemaEditor

    def jdbc_driver_properties(self) -> dict[str, Any]:
        options = dict(self.settings_dict.get("OPTIONS") or {})
        # Read by Django's init_connection_state(), as with mysqlclient.
        isolation_level = options.pop("isolation_level", "read committed")
        if isolation_level:
            isolation_level = isolation_level.lower()
            if isolation_level not in self.isolation_levels:
                raise ImproperlyConfigured(
                    f"DATABASES[{self.alias!r}]['OPTIONS']['isolation_level'] must be one of "
                    f"{', '.join(repr(level) for level in sorted(self.isolation_levels))} or None; "
                    f"got {isolation_level!r}."
                )
        self.isolation_level = isolation_level
        # mysqlclient options with no JDBC property of the same meaning:
        # init_command runs in init_connection_state(); Connector/J talks utf8mb4.
        self.jdbc_init_command = options.pop("init_command", None)
        options.pop("charset", None)
        return options

    def init_connection_state(self) -> None:
        # Django joins its SET statements with "; " for mysqlclient; a JDBC
        # statement holds one (unless the driver allows multi-queries).
        super(mysql.DatabaseWrapper, self).init_connection_state()
        statements = [self.jdbc_init_command] if self.jdbc_init_command else []
        if self.features.is_sql_auto_is_null_enabled:
            statements.append("SET SQL_AUTO_IS_NULL = 0")
        if self.isolation_level:
            statements.append(f"SET SESSION TRANSACTION ISOLATION LEVEL {self.isolation_level.upper()}")
        if statements:
            with self.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)


class DatabaseWrapper(JDBCPoolMixin, OceanBaseMySQLDatabaseWrapper):
    pass
