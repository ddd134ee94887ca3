"""The database servers as the benchmark sees them: through their own counters.

Every figure the report gives about the database (statements per request,
server connections) comes from the server, over an admin connection of its
own, never from the client code under test. Each configuration gets a
database of its own, so PostgreSQL's per-database counters and both servers'
per-database session lists count that configuration and nothing else.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

HOST = "127.0.0.1"


@dataclass
class Server:
    """One local server; ``vendor`` is ``"postgresql"`` or ``"mysql"``."""

    vendor: str
    port: int
    user: str
    password: str = ""
    _admin: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_env(cls, vendor: str) -> Server:
        if vendor == "postgresql":
            return cls(vendor, int(os.environ.get("DJPOOL_BENCH_PG_PORT", "5432")), os.environ.get("DJPOOL_BENCH_PG_USER", "postgres"))
        return cls(vendor, int(os.environ.get("DJPOOL_BENCH_MYSQL_PORT", "3306")), os.environ.get("DJPOOL_BENCH_MYSQL_USER", "root"))

    @property
    def short(self) -> str:
        return "pg" if self.vendor == "postgresql" else "my"

    def settings(self, database: str, **extra: Any) -> dict[str, Any]:
        return {"NAME": database, "USER": self.user, "PASSWORD": self.password, "HOST": HOST, "PORT": self.port, **extra}

    def connect(self, database: str | None = None) -> Any:
        """A raw autocommit driver connection (the "raw driver" configuration uses it too)."""
        if self.vendor == "postgresql":
            import psycopg

            return psycopg.connect(host=HOST, port=self.port, user=self.user, password=self.password, dbname=database or "postgres", autocommit=True)
        import MySQLdb

        kwargs: dict[str, Any] = {"db": database} if database else {}
        return MySQLdb.connect(host=HOST, port=self.port, user=self.user, passwd=self.password, autocommit=True, **kwargs)

    def query(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self._lock:
            if self._admin is None:
                self._admin = self.connect()
            cursor = self._admin.cursor()
            try:
                cursor.execute(sql, params)
                return list(cursor.fetchall()) if cursor.description else []
            finally:
                cursor.close()

    def version(self) -> str:
        """The server's version, as ``PostgreSQL 15.20`` or ``MariaDB 10.11.19``."""
        if self.vendor == "postgresql":
            return "PostgreSQL " + str(self.query("SHOW server_version")[0][0]).split()[0]
        text = str(self.query("SELECT version()")[0][0])
        name = "MariaDB" if "mariadb" in text.lower() else "MySQL"
        return f"{name} {text.split('-')[0]}"

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None

    # ##### Databases #####

    def create_database(self, name: str) -> None:
        self.query(f"CREATE DATABASE {name}")
        conn = self.connect(name)
        try:
            cursor = conn.cursor()
            cursor.execute("CREATE TABLE bench_item (id integer PRIMARY KEY, name varchar(100) NOT NULL)")
            cursor.execute("INSERT INTO bench_item (id, name) VALUES (1, 'one'), (2, 'two')")
            cursor.close()
        finally:
            conn.close()

    def drop_database(self, name: str) -> None:
        if self.vendor == "postgresql":
            self.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name])
        self.query(f"DROP DATABASE IF EXISTS {name}")

    # ##### Counters #####

    def connection_counts(self) -> dict[str, int]:
        """Sessions open per database (the admin connection is on none of ours)."""
        if self.vendor == "postgresql":
            sql = "SELECT datname, count(*) FROM pg_stat_activity WHERE datname IS NOT NULL GROUP BY datname"
        else:
            sql = "SELECT db, count(*) FROM information_schema.processlist WHERE db IS NOT NULL GROUP BY db"
        return {name: int(count) for name, count in self.query(sql)}

    def free_connection_slots(self) -> int:
        if self.vendor == "postgresql":
            rows = self.query(
                "SELECT current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int"
                " - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
            )
        else:
            rows = self.query("SELECT @@max_connections - (SELECT count(*) FROM information_schema.processlist)")
        return int(rows[0][0])

    def statement_counter(self, database: str) -> int:
        """A server counter that grows by one per statement (round trip) on ``database``.

        PostgreSQL: transactions committed or rolled back in the database
        (``pg_stat_database``); Django runs in autocommit, where each
        statement, ping or ROLLBACK is one. A backend may hold its counts for
        up to ten seconds but publishes them when it exits, so read this
        with no session open on the database. MySQL/MariaDB: the server-wide ``Questions``
        (statements) plus ``Com_admin_commands`` (pings), minus this read;
        server-wide, so other clients can only add: take the smallest of
        several samples.
        """
        if self.vendor == "postgresql":
            self.query("SELECT pg_stat_clear_snapshot()")
            rows = self.query("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", [database])
            return int(rows[0][0]) if rows else 0
        rows = self.query("SHOW GLOBAL STATUS WHERE Variable_name IN ('Questions', 'Com_admin_commands')")
        return sum(int(value) for _, value in rows)

    @property
    def counter_is_global(self) -> bool:
        return self.vendor != "postgresql"


class ConnectionMonitor:
    """Samples the server's session count on some databases every ``interval`` seconds."""

    def __init__(self, server: Server, databases: list[str], interval: float = 0.05) -> None:
        self.server = server
        self.databases = databases
        self.interval = interval
        self.peak: dict[str, int] = {name: 0 for name in databases}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="djpool-bench-monitor", daemon=True)

    def __enter__(self) -> ConnectionMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _sample(self) -> None:
        counts = self.server.connection_counts()
        for name in self.databases:
            self.peak[name] = max(self.peak[name], counts.get(name, 0))

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self._sample()
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))
