"""PRE_PING_IDLE: a checkout pings only a connection idle for that long (PostgreSQL's own view).

pg_stat_activity.query is the last statement a session ran, so it tells
whether anything was sent between the previous request and a checkout.
"""

from __future__ import annotations

import time

import pytest
from django.db import connections

pytestmark = pytest.mark.postgresql

MARKER = "SELECT 'djpool-health-marker'"


def last_statement(server, pid: int) -> str:
    return str(server.query("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid])[0][0])


def request(conn) -> int:
    with conn.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = int(cursor.fetchone()[0])
        cursor.execute(MARKER)
    conn.close()
    return pid


def test_pre_ping_runs_only_after_pre_ping_idle(make_alias, server):
    conn = connections[make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "PRE_PING_IDLE": 0.5})]
    pid = request(conn)
    conn.ensure_connection()  # checkout right away: no round trip
    assert last_statement(server, pid) == MARKER
    conn.close()
    time.sleep(0.6)
    conn.ensure_connection()  # idle past PRE_PING_IDLE: pinged first
    assert last_statement(server, pid) != MARKER
    conn.close()
    assert request(conn) == pid  # the ping found it alive: same session


def test_no_ping_at_all_with_pre_ping_off(make_alias, server):
    conn = connections[make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "PRE_PING": False, "PRE_PING_IDLE": 0})]
    pid = request(conn)
    time.sleep(0.2)
    conn.ensure_connection()
    assert last_statement(server, pid) == MARKER
    conn.close()
