"""Direct, unpooled access to the test servers: what the server itself sees.

Tests assert pooling behaviour through the server (backend PIDs, connection
counts), so these helpers talk to it over a separate raw driver connection
that the pool under test never touches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

# MariaDB/MySQL: KILL of a session id that no longer exists.
ER_NO_SUCH_THREAD = 1094

BACKEND = os.environ.get("DJPOOL_TEST_BACKEND", "postgresql")
SERVER_BACKENDS = ("postgresql", "mysql")
HOST = "127.0.0.1"


@dataclass
class Server:
    """One database server and a database created for this test session."""

    vendor: str
    engine: str
    port: int
    user: str
    database: str
    pid_query: str

    def settings(self, **extra: Any) -> dict[str, Any]:
        return {
            "ENGINE": self.engine,
            "NAME": self.database,
            "USER": self.user,
            "PASSWORD": "",
            "HOST": HOST,
            "PORT": self.port,
            **extra,
        }

    def admin_connect(self, database: str | None = None) -> Any:
        if self.vendor == "postgresql":
            try:
                import psycopg

                return psycopg.connect(
                    host=HOST, port=self.port, user=self.user, dbname=database or "postgres", autocommit=True, connect_timeout=5
                )
            except ImportError:
                import psycopg2

                conn = psycopg2.connect(host=HOST, port=self.port, user=self.user, dbname=database or "postgres", connect_timeout=5)
                conn.autocommit = True
                return conn
        return _mysql_driver().connect(host=HOST, port=self.port, user=self.user, password="", autocommit=True, connect_timeout=5)

    def query(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        conn = self.admin_connect()
        try:
            cursor = conn.cursor()
            cursor.execute(sql, params)
            rows = list(cursor.fetchall()) if cursor.description else []
            cursor.close()
            return rows
        finally:
            conn.close()

    def connection_count(self, database: str | None = None) -> int:
        """Sessions the server has open on the database (default: this session's)."""
        database = database or self.database
        if self.vendor == "postgresql":
            sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
        else:
            sql = "SELECT count(*) FROM information_schema.processlist WHERE db = %s AND id <> CONNECTION_ID()"
        return int(self.query(sql, [database])[0][0])

    def session_ids(self, database: str | None = None) -> set[int]:
        conn = self.admin_connect()
        try:
            return self.session_ids_on(conn.cursor(), database)
        finally:
            conn.close()

    def session_ids_on(self, cursor: Any, database: str | None = None, live_only: bool = False) -> set[int]:
        """The database's sessions (default: this session's) but ``cursor``'s own,
        read on a connection the caller keeps; ``live_only`` leaves out those
        MariaDB lists as "Killed" until their thread notices."""
        if self.vendor == "postgresql":
            sql = "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
        else:
            sql = "SELECT id FROM information_schema.processlist WHERE db = %s AND id <> CONNECTION_ID()"
            if live_only:
                sql += " AND command <> 'Killed'"
        cursor.execute(sql, [database or self.database])
        return {int(row[0]) for row in cursor.fetchall()}

    def kill(self, session_id: int) -> None:
        """End a server session; one that ended meanwhile (listed, then closed) is fine."""
        conn = self.admin_connect()
        try:
            self.kill_on(conn.cursor(), session_id)
        finally:
            conn.close()

    def kill_on(self, cursor: Any, session_id: int) -> bool:
        """End a server session through ``cursor``; False if it had ended meanwhile (MariaDB)."""
        if self.vendor == "postgresql":
            cursor.execute("SELECT pg_terminate_backend(%s)", [session_id])
            cursor.fetchall()
            return True
        try:
            cursor.execute(f"KILL CONNECTION {int(session_id)}")
        except _mysql_driver().OperationalError as error:
            if error.args[0] != ER_NO_SUCH_THREAD:
                raise
            return False
        return True

    def create_database(self, name: str) -> None:
        self.drop_database(name)
        if self.vendor == "postgresql":
            self.query(f'CREATE DATABASE "{name}"')
        else:
            self.query(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")

    def drop_database(self, name: str) -> None:
        if self.vendor == "postgresql":
            self.query(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            self.query(f"DROP DATABASE IF EXISTS `{name}`")


def make_server(vendor: str = BACKEND) -> Server:
    database = f"djpool_t{os.getpid()}"
    if vendor == "postgresql":
        return Server("postgresql", "djpool.backends.postgresql", 5432, "postgres", database, "SELECT pg_backend_pid()")
    if vendor == "mysql":
        return Server("mysql", "djpool.backends.mysql", 3306, "root", database, "SELECT CONNECTION_ID()")
    raise ValueError(f"DJPOOL_TEST_BACKEND must be 'postgresql' or 'mysql'; got {vendor!r}")


def _mysql_driver() -> Any:
    """mysqlclient's MySQLdb, or PyMySQL where it is not installed (the PyMySQL environment's
    subprocesses, which tests/conftest.py's install_as_MySQLdb() does not reach)."""
    try:
        import MySQLdb
    except ImportError:
        import pymysql

        return pymysql
    return MySQLdb
