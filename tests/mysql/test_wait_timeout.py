"""MySQL/MariaDB ``wait_timeout``: idle pooled connections the server closed, and check djpool.W101.

The server closes a session idle longer than its ``wait_timeout`` (MySQL 8.0.24+
reports error 4031 on the next use, MariaDB and older MySQL 2006 or 2013).
These tests set a session ``wait_timeout`` of 2 seconds through
``OPTIONS["init_command"]`` and let the server do it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest
from django.core import checks
from django.db import connections
from django.db.utils import OperationalError

from djpool.core import registry

pytestmark = pytest.mark.mysql

WAIT_TIMEOUT = 2
SHORT_WAIT = {"init_command": f"SET SESSION wait_timeout = {WAIT_TIMEOUT}"}


def session_id_and_wait_timeout(alias: str) -> tuple[int, int]:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT CONNECTION_ID(), @@SESSION.wait_timeout")
        session, wait_timeout = cursor.fetchone()
    return int(session), int(wait_timeout)


def wait_until_the_server_closes(server, session: int) -> None:
    deadline = time.monotonic() + WAIT_TIMEOUT + 10
    while session in server.session_ids():
        assert time.monotonic() < deadline, f"the server kept idle session {session} past wait_timeout"
        time.sleep(0.2)


def test_connection_idle_past_wait_timeout_is_replaced_transparently(make_alias, server):
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0}, OPTIONS=SHORT_WAIT)
    old_session, wait_timeout = session_id_and_wait_timeout(alias)
    connections[alias].close()
    assert wait_timeout == WAIT_TIMEOUT
    wait_until_the_server_closes(server, old_session)

    # The pre-ping (idle > PRE_PING_IDLE) finds it gone and opens another one,
    # which gets the init_command (and Django's setup) again.
    new_session, wait_timeout = session_id_and_wait_timeout(alias)
    connections[alias].close()
    assert new_session != old_session
    assert wait_timeout == WAIT_TIMEOUT
    # Sessions of other tests' pools may share the database: look at ours.
    sessions = server.session_ids()
    assert new_session in sessions and old_session not in sessions
    assert registry.stats(alias)["idle"] == 1
    assert registry.stats(alias)["connects"] == 2
    assert registry.stats(alias)["invalidations"] == 1


def test_without_pre_ping_the_closed_connection_reaches_the_request(make_alias, server):
    """The control for the test above: what the pre-ping saves a request from."""
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "PRE_PING": False}, OPTIONS=SHORT_WAIT)
    old_session, _ = session_id_and_wait_timeout(alias)
    connections[alias].close()
    wait_until_the_server_closes(server, old_session)

    with pytest.raises(OperationalError) as info:
        session_id_and_wait_timeout(alias)
    connections[alias].close()
    assert info.value.args[0] in (2006, 2013, 4031), info.value.args

    # Only that one request fails: the connection came back marked by the
    # error, so the next checkout checks it (even with PRE_PING off) and
    # replaces it, instead of failing every request until RECYCLE.
    new_session, _ = session_id_and_wait_timeout(alias)
    connections[alias].close()
    assert new_session != old_session


def w101(alias: str) -> list[checks.CheckMessage]:
    return [m for m in checks.run_checks(tags=[checks.Tags.database], databases=[alias]) if m.id == "djpool.W101"]


def test_check_warns_when_recycle_is_not_below_wait_timeout(make_alias, server):
    alias = make_alias({"RECYCLE": 900}, OPTIONS=SHORT_WAIT)
    (message,) = w101(alias)
    assert message.level == checks.WARNING
    assert message.obj == alias
    assert message.msg == (
        f"DATABASES[{alias!r}]['POOL_OPTIONS']['RECYCLE'] is 900 seconds, not below the server's "
        f"wait_timeout of 2 seconds for this connection: the server closes connections that stay "
        f"idle in the pool that long."
    )
    assert "fewer than 2 seconds" in message.hint
    # The check gave its connection back to the pool.
    assert connections[alias].connection is None
    assert registry.stats(alias)["checked_out"] == 0

    never = make_alias({"RECYCLE": None}, OPTIONS=SHORT_WAIT)
    (message,) = w101(never)
    assert "is None (never) seconds" in message.msg

    equal = make_alias({"RECYCLE": 2}, OPTIONS=SHORT_WAIT)
    assert len(w101(equal)) == 1


def test_check_is_quiet_when_recycle_is_below_wait_timeout(make_alias, server):
    assert w101(make_alias({"RECYCLE": 1.5}, OPTIONS=SHORT_WAIT)) == []
    # The server's default wait_timeout (8 hours) against the default RECYCLE (900 s).
    (global_wait_timeout,) = server.query("SELECT @@GLOBAL.wait_timeout")[0]
    assert int(global_wait_timeout) > 900
    assert w101(make_alias()) == []


def test_manage_py_check_database_reports_it(server):
    """In a fresh process, as ``manage.py check --database default`` runs it."""
    settings = server.settings(POOL_OPTIONS={"RECYCLE": 900}, OPTIONS=SHORT_WAIT)
    script = textwrap.dedent(
        f"""
        import sys
        import django
        from django.conf import settings
        settings.configure(DATABASES={{"default": {settings!r}}}, INSTALLED_APPS=[])
        django.setup()
        from django.core.management import execute_from_command_line
        execute_from_command_line(["manage.py", "check", "--database", "default"])
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "?: (djpool.W101) DATABASES['default']['POOL_OPTIONS']['RECYCLE'] is 900 seconds" not in result.stderr
    assert "default: (djpool.W101) DATABASES['default']['POOL_OPTIONS']['RECYCLE'] is 900 seconds" in result.stderr, result.stderr
    assert "wait_timeout of 2 seconds" in result.stderr
