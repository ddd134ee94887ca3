"""``manage.py djpool``: the table, ``--json``, ``--connect``, and a real manage.py process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

pytestmark = pytest.mark.server_backed

SECRET = "s3cret-Passw0rd"


def run(*args: str) -> str:
    out = StringIO()
    call_command("djpool", *args, stdout=out)
    return out.getvalue()


def row(table: str, alias: str) -> dict[str, str]:
    """The table's row for ``alias`` as {heading: cell}."""
    lines = table.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("alias"))
    rule = lines[header + 1]
    # Columns are separated by two spaces; the rule line gives their extents.
    spans, start = [], 0
    for dashes in rule.split("  "):
        spans.append((start, start + len(dashes)))
        start += len(dashes) + 2
    headings = [lines[header][a:b].strip() for a, b in spans]
    for line in lines[header + 2 :]:
        if line.split(" ", 1)[0] == alias:
            return {heading: line[a:b].strip() for heading, (a, b) in zip(headings, spans)}
    raise AssertionError(f"no row for {alias!r} in:\n{table}")


def test_connect_opens_one_session_per_pool_and_the_table_shows_it(make_alias, server, djpool_app):
    alias = make_alias({"POOL_SIZE": 3, "MAX_OVERFLOW": 1})
    before = server.session_ids()
    table = run("--connect", "--database", alias)
    opened = server.session_ids() - before
    assert len(opened) == 1  # the pool's one connection, idle on the server now
    assert table.startswith(f"djpool pools of process {os.getpid()}")
    cells = row(table, alias)
    assert cells["size"] == "3"
    assert cells["max"] == "4"
    assert cells["mode"] == "session"
    assert (cells["in use"], cells["idle"], cells["connects"], cells["checkouts"]) == ("0", "1", "1", "1")
    assert "default" not in table.split("-\n", 1)[1]  # --database shows only that alias


def test_live_figures_of_this_process(make_alias, djpool_app):
    alias = make_alias({"POOL_SIZE": 2, "MAX_OVERFLOW": 0})
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        connections[alias].ensure_connection()
        held.set()
        release.wait(10)
        connections[alias].close()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert held.wait(5)
        data = json.loads(run("--json"))
    finally:
        release.set()
        thread.join(10)
    entry = data["databases"][alias]
    assert data["pid"] == os.getpid()
    assert entry["engine"].startswith("djpool.backends.")
    assert entry["options"]["POOL_SIZE"] == 2
    assert entry["options"]["MAX_OVERFLOW"] == 0
    assert entry["stats"]["checked_out"] == 1
    assert entry["stats"]["connects"] == 1
    after = json.loads(run("--json", "--database", alias))["databases"][alias]["stats"]
    assert (after["checked_out"], after["idle"]) == (0, 1)


def test_an_alias_without_a_pool_yet(make_alias, djpool_app):
    alias = make_alias({})
    table = run("--database", alias)
    assert row(table, alias)["connects"] == "-"
    assert f"{alias}: no pool in this process yet" in table


def test_connect_failure_names_the_alias_not_the_password(make_alias, djpool_app):
    alias = make_alias({}, PORT=1, PASSWORD=SECRET)
    out = StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("djpool", "--connect", "--database", alias, stdout=out)
    assert f"Could not use a pooled connection of {alias}: OperationalError" in str(raised.value)
    assert SECRET not in str(raised.value) + out.getvalue()


def test_unknown_alias(djpool_app):
    with pytest.raises(CommandError, match="Unknown database alias 'nope'; DATABASES has: default"):
        run("--database", "nope")


def test_invalid_options_are_shown_not_raised(make_alias, djpool_app):
    alias = make_alias({"POOL_SIZE": 0})
    table = run("--database", alias)
    assert f"{alias}: DATABASES[{alias!r}]['POOL_OPTIONS']['POOL_SIZE'] must be an integer of 1 or more" in table


def test_manage_py_in_its_own_process(server, tmp_path):
    """``python -m django djpool`` and ``check --database`` with the app in INSTALLED_APPS."""
    (tmp_path / "ops_settings.py").write_text(
        "DATABASES = {'default': %r}\n"
        "INSTALLED_APPS = ['djpool.core']\n"
        "USE_TZ = True\n"
        "SECRET_KEY = 'test'\n" % server.settings(POOL_OPTIONS={"POOL_SIZE": 1000, "MAX_OVERFLOW": 0})
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]),
        "DJANGO_SETTINGS_MODULE": "ops_settings",
        "DJPOOL_WORKER_PROCESSES": "2",
    }
    shown = subprocess.run(
        [sys.executable, "-m", "django", "djpool", "--connect", "--json"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    stats = json.loads(shown.stdout)["databases"]["default"]["stats"]
    assert (stats["connects"], stats["idle"]) == (1, 1)
    checked = subprocess.run(
        [sys.executable, "-m", "django", "check", "--database", "default"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert checked.returncode == 0, checked.stderr  # warnings do not fail the check
    assert "(djpool.W004)" in checked.stderr
    assert "up to 2000 connections" in checked.stderr


def test_server_counts_every_session_of_the_database(make_alias, server, djpool_app):
    """``--server``: what the server holds for the alias's database and user, by state."""
    alias = make_alias({"POOL_SIZE": 4, "MAX_OVERFLOW": 0})
    sleep_sql = "SELECT pg_sleep(2)" if server.vendor == "postgresql" else "SELECT SLEEP(2)"
    in_transaction, release = threading.Event(), threading.Event()

    def running_query() -> None:
        try:
            with connections[alias].cursor() as cursor:
                cursor.execute(sleep_sql)
        finally:
            connections[alias].close()

    def open_transaction() -> None:
        from django.db import transaction

        try:
            with transaction.atomic(using=alias):
                with connections[alias].cursor() as cursor:
                    cursor.execute("SELECT 1")
                in_transaction.set()
                release.wait(10)
        finally:
            connections[alias].close()

    threads = [threading.Thread(target=running_query), threading.Thread(target=open_transaction)]
    for thread in threads:
        thread.start()
    try:
        assert in_transaction.wait(10)
        deadline = time.monotonic() + 5
        while not running(server, sleep_sql) and time.monotonic() < deadline:
            time.sleep(0.02)
        # Nothing idle in the pool: the command opens a session of its own, left out of the count.
        expected = server.connection_count()
        counts = json.loads(run("--server", "--json", "--database", alias))["databases"][alias]["server"]
    finally:
        release.set()
        for thread in threads:
            thread.join(10)
    assert counts["sessions"] == expected
    assert counts["active"] >= 1  # the sleeping query
    if server.vendor == "postgresql":
        assert counts["idle_in_transaction"] == 1
    else:
        assert counts["idle_in_transaction"] is None
    assert counts["sessions"] == counts["active"] + counts["idle"] + (counts["idle_in_transaction"] or 0)


def running(server, sql: str) -> bool:
    if server.vendor == "postgresql":
        query = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = %s"
    else:
        query = "SELECT count(*) FROM information_schema.processlist WHERE command = 'Query' AND info = %s"
    return int(server.query(query, [sql])[0][0]) > 0
