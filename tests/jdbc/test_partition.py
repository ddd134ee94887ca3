"""A silent network on JDBC (issue 20): isValid(timeout) and setNetworkTimeout() bound the pool's round trips.

pgjdbc and MariaDB Connector/J, each behind the freezing TCP proxy of
tests/reliability/freezeproxy.py, which stops forwarding without closing.
"""

from __future__ import annotations

import time

import pytest
from django.db import OperationalError, connections

from djpool.core import stats
from tests.jdbc import servers
from tests.reliability.freezeproxy import FreezeProxy

SERVERS = {"pgjdbc": servers.POSTGRESQL, "mariadb-connector-j": servers.MARIADB}
TIMEOUT = 5


@pytest.fixture(params=sorted(SERVERS))
def frozen_alias(request, jdbc_alias):
    server = SERVERS[request.param]
    proxy = FreezeProxy(server.port)
    scheme = "postgresql" if server.vendor == "postgresql" else "mariadb"
    # The drivers' own connect timeouts bound a new connection (seconds for
    # pgjdbc, milliseconds for Connector/J).
    timeout = "connectTimeout=3" if scheme == "postgresql" else "connectTimeout=3000"
    settings = servers.jdbc_settings(
        server,
        JDBC_URL=f"jdbc:{scheme}://{servers.HOST}:{proxy.port}/{server.database}?{timeout}",
        POOL_OPTIONS={"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "TIMEOUT": TIMEOUT, "PRE_PING_IDLE": 0, "VALIDATION_TIMEOUT": 2},
    )
    try:
        yield jdbc_alias(settings), proxy
    finally:
        proxy.stop()


def session_id(connection) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()" if "postgres" in connection.settings_dict["JDBC_URL"] else "SELECT CONNECTION_ID()")
        return int(cursor.fetchone()[0])


def test_a_pre_ping_during_a_partition_fails_within_timeout(frozen_alias):
    alias, proxy = frozen_alias
    conn = connections[alias]
    first = session_id(conn)
    conn.close()
    proxy.freeze()
    try:
        started = time.monotonic()
        with pytest.raises(OperationalError, match="did not answer a health check"):
            session_id(conn)
        assert time.monotonic() - started <= TIMEOUT + 1
        conn.close()
    finally:
        proxy.thaw()
    started = time.monotonic()
    assert session_id(conn) != first
    assert time.monotonic() - started < 2
    conn.close()
    assert stats(alias)["validation_timeouts"] == 1 and stats(alias)["checked_out"] == 0


def test_a_request_ending_in_a_transaction_during_a_partition_returns_within_validation_timeout(frozen_alias):
    alias, proxy = frozen_alias
    conn = connections[alias]
    with conn.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS djpool_partition (n integer)")
    conn.set_autocommit(False)
    with conn.cursor() as cursor:  # a write: the driver knows a transaction is open
        cursor.execute("INSERT INTO djpool_partition VALUES (1)")
    first = session_id(conn)
    proxy.freeze()
    try:
        started = time.monotonic()
        conn.close()  # what request_finished does
        assert time.monotonic() - started <= 2 + 1
        assert stats(alias)["validation_timeouts"] == 1
    finally:
        proxy.thaw()
    assert session_id(conn) != first
    conn.close()
