"""What every JDBC ENGINE adds to a Django ``DatabaseWrapper``.

Two mixins, because of where they sit in the method resolution order::

    class DatabaseWrapper(JDBCPoolMixin, JDBCConnectionMixin, <Django's wrapper>):

* :class:`JDBCConnectionMixin` is the *unpooled* JDBC backend: it opens a
  connection through :mod:`djpool.backends.jdbc.dbapi` where Django's backend
  would call its driver, and gives Django the autocommit switch, cursors and
  ``is_usable()`` in JDBC terms. The pool calls its ``get_new_connection()``
  to open connections.
* :class:`JDBCPoolMixin` is djpool's pool mixin with the JDBC answers to its
  vendor hooks (dialect, "is a transaction open?").
"""

from __future__ import annotations

from typing import Any, ClassVar

from djpool.backends.jdbc import dbapi
from djpool.backends.jdbc.dialect import JDBCDialect
from djpool.backends.jdbc.settings import jdbc_connection_params
from djpool.core.mixins import PooledDatabaseWrapperMixin

__all__ = ["JDBCConnectionMixin", "JDBCPoolMixin"]


class JDBCConnectionMixin:
    """Run a Django backend over a JDBC driver.

    Subclasses name the vendor's defaults: :attr:`jdbc_driver`,
    :attr:`jdbc_url_template` (``{host}``, ``{port}``, ``{name}``) and
    :attr:`jdbc_default_port`. The DATABASES entry can override driver and
    URL with ``JDBC_DRIVER`` and ``JDBC_URL``.
    """

    Database = dbapi

    jdbc_driver: ClassVar[str | None] = None
    jdbc_url_template: ClassVar[str | None] = None
    jdbc_default_port: ClassVar[int | None] = None
    #: The server reads backslash escapes in strings and ``#`` comments.
    jdbc_mysql_syntax: ClassVar[bool] = False
    #: Ask for generated keys on INSERT (sets ``cursor.lastrowid``).
    jdbc_generated_keys: ClassVar[bool] = False

    alias: str
    settings_dict: dict[str, Any]
    connection: Any

    def jdbc_driver_properties(self) -> dict[str, Any]:
        """OPTIONS passed to the driver; backends drop the keys Django reads itself."""
        return dict(self.settings_dict.get("OPTIONS") or {})

    def get_connection_params(self) -> dict[str, Any]:
        params = jdbc_connection_params(
            self.alias,
            self.settings_dict,
            engine=str(self.settings_dict.get("ENGINE")),
            default_driver=self.jdbc_driver,
            url_template=self.jdbc_url_template,
            default_port=self.jdbc_default_port,
            options=self.jdbc_driver_properties(),
        )
        params["mysql_syntax"] = self.jdbc_mysql_syntax
        params["generated_keys"] = self.jdbc_generated_keys
        return params

    def get_new_connection(self, conn_params: dict[str, Any]) -> dbapi.Connection:
        return dbapi.connect(**conn_params)

    def create_cursor(self, name: Any = None) -> dbapi.Cursor:
        return self.connection.cursor()

    def _set_autocommit(self, autocommit: bool) -> None:
        with self.wrap_database_errors:  # type: ignore[attr-defined]
            self.connection.autocommit = autocommit

    def is_usable(self) -> bool:
        try:
            return bool(self.connection.is_valid())
        except (dbapi.Error, AttributeError):
            # None, or a connection already given back to the pool.
            return False


class JDBCPoolMixin(PooledDatabaseWrapperMixin):
    """djpool's pool, with the JDBC answers to its vendor hooks."""

    def djpool_sqlalchemy_dialect(self) -> Any:
        return JDBCDialect()

    # Connection.isValid(seconds) for the pre-ping, setNetworkTimeout()
    # around the rollback of a returned connection.
    djpool_ping_within = staticmethod(lambda connection, timeout: connection.ping_within(timeout))
    djpool_rollback_within = staticmethod(lambda connection, timeout: connection.rollback_within(timeout))

    @staticmethod
    def djpool_in_transaction(dbapi_connection: Any) -> bool:
        # With JDBC autocommit on, every statement has been committed;
        # Django turns it off for atomic() and manual transactions.
        try:
            return not dbapi_connection.autocommit
        except dbapi.Error:
            return True
