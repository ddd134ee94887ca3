"""djpool.core.contrib.debug_toolbar.PoolPanel through the toolbar itself.

Requests go through Django's test client and the toolbar's middleware; the
panel is rendered by the toolbar's own ``render_panel`` view from its store,
as the browser gets it. The session ids it shows are compared with what the
view and the server saw.
"""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.db import connections
from asgiref.sync import async_to_sync
from django.test import AsyncClient, Client

from djpool.core import registry, signals

pytest.importorskip("debug_toolbar", reason="needs django-debug-toolbar")
if not settings.configured:  # the toolbar reads settings on import; only the server suites configure them here
    pytest.skip("needs PostgreSQL or MySQL (Django is not configured)", allow_module_level=True)

from djpool.core.contrib import debug_toolbar as pool_panel  # noqa: E402
from tests.operations.toolbar_site import MARKED_QUERY, toolbar_installed, toolbar_settings  # noqa: E402
from tests.conftest import hold_in_thread

pytestmark = pytest.mark.server_backed

PANEL = "PoolPanel"


@pytest.fixture
def toolbar() -> Iterator[Client]:
    with toolbar_installed():
        yield Client()


class Page:
    """A page served with the toolbar, and the pool panel as the toolbar renders it.

    With ``asgi``, the page is served through Django's ASGI handler (the view,
    which is sync, runs in a thread of its own).
    """

    def __init__(self, client: Client, *aliases: str, times: int = 1, asgi: bool = False) -> None:
        query = {"alias": list(aliases), "times": times}
        if asgi:
            response = async_to_sync(AsyncClient().get)("/sessions/", query)
        else:
            response = client.get("/sessions/", query)
        assert response.status_code == 200, response.content[:2000]
        self.html = response.content.decode()
        self.sessions = [
            (alias, int(pid))
            for alias, pid in re.findall(r'<li class="session" data-alias="([^"]+)">(\d+)</li>', self.html)
        ]
        request_id = re.search(r'data-request-id="([0-9a-f]+)"', self.html)
        assert request_id, "the toolbar is not on the page"
        rendered = client.get("/__debug__/render_panel/", {"request_id": request_id.group(1), "panel_id": PANEL})
        assert rendered.status_code == 200
        self.panel = rendered.json()["content"]

    def alias_section(self, alias: str) -> str:
        start = self.panel.index(f'<h4 class="djpool-alias">{alias}</h4>')
        end = self.panel.find('<h4 class="djpool-alias">', start + 1)
        return self.panel[start : end if end != -1 else None]

    def rows(self, alias: str) -> list[str]:
        return re.findall(r'<tr class="djpool-checkout">(.*?)</tr>', self.alias_section(alias), re.S)

    @staticmethod
    def cell(row: str, name: str) -> str:
        match = re.search(rf'<td class="djpool-{name}">(.*?)</td>', row, re.S)
        assert match, (name, row)
        return html.unescape(match.group(1)).strip()


def test_session_mode_checkout_with_its_server_session(make_alias, toolbar, server):
    alias = make_alias({"POOL_SIZE": 2})
    page = Page(toolbar, alias)
    [(_, pid)] = page.sessions
    assert pid in server.session_ids()
    [row] = page.rows(alias)
    assert Page.cell(row, "session") == str(pid)
    assert re.fullmatch(r"\d+\.\d{3} ms", Page.cell(row, "wait"))
    # Session mode: the request holds it until request_finished, after the panel was recorded.
    assert "still held" in Page.cell(row, "held")
    section = page.alias_section(alias)
    assert re.search(r'<td class="djpool-in-use">1</td>', section)
    assert "1 checkout," in page.panel
    # The toolbar's side bar: subtitle and title with the wait.
    assert re.search(r"1 checkout, \d+\.\d\d ms waited", page.html)
    assert re.search(r'title="Database pools: \d+\.\d\d ms waited for connections"', page.html)
    # Recording ended with the request: no receiver left behind.
    assert not signals.connection_checked_out.receivers


def test_transaction_mode_each_take_back_is_a_checkout(make_alias, toolbar, server):
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "POOL_MODE": "transaction"})
    page = Page(toolbar, alias, times=3)
    pids = [pid for _, pid in page.sessions]
    rows = page.rows(alias)
    assert len(rows) == 3
    assert [int(Page.cell(row, "session")) for row in rows] == pids
    assert len(set(pids)) == 1 and pids[0] in server.session_ids()
    for row in rows:
        # Given back between statements: held time known, and the reset on return ran
        # with nothing to roll back (autocommit).
        assert "still held" not in Page.cell(row, "held")
        assert "nothing to roll back" in row
    assert registry.stats(alias)["checkouts"] == 3


def test_the_wait_for_a_busy_pool_is_shown_and_titled(make_alias, toolbar, server):
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "TIMEOUT": 10})
    release = threading.Event()
    holder = hold_in_thread(alias, release)
    timer = threading.Timer(0.2, release.set)
    timer.start()
    try:
        page = Page(toolbar, alias)
    finally:
        release.set()
        holder.join(10)
        timer.cancel()
    [row] = page.rows(alias)
    waited = float(Page.cell(row, "wait").split()[0])
    assert 150 <= waited < 5000
    title_wait = float(re.search(r'title="Database pools: (\d+\.\d\d) ms waited', page.html).group(1))
    assert abs(title_wait - waited) < 0.01
    assert registry.stats(alias)["waits"] == 1


def test_no_query_reaches_the_request_session_for_the_panel(make_alias, toolbar, server):
    """The driver knows the session id: nothing is sent to get it (on PostgreSQL, the
    server's last statement of the session is the view's own)."""
    alias = make_alias({"POOL_SIZE": 1})
    page = Page(toolbar, alias)
    [(_, pid)] = page.sessions
    # The test client leaves the request's connection open: it is the one the panel saw.
    assert pool_panel.driver_session_id(connections[alias].connection) == pid
    assert [int(Page.cell(row, "session")) for row in page.rows(alias)] == [pid]
    if server.vendor == "postgresql":
        [(query,)] = server.query("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid])
        assert query == MARKED_QUERY["postgresql"]


class WithoutSessionId:
    """A driver connection that does not tell its session id (as some drivers do not):
    everything else goes to the real one. Counts cursors opened."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.cursors = 0

    def cursor(self) -> Any:
        self.cursors += 1
        return self._real.cursor()

    def rollback(self) -> None:
        self._real.rollback()

    def __getattr__(self, name: str) -> Any:
        if name in ("get_backend_pid", "thread_id"):
            raise AttributeError(name)
        if name == "pgconn":
            return WithoutSessionId(self._real.pgconn)
        if name == "backend_pid":
            raise AttributeError(name)
        return getattr(self._real, name)


def test_without_a_driver_id_one_query_per_connection_once(make_alias, server):
    alias = make_alias({"POOL_SIZE": 1})
    connection = connections[alias]
    connection.ensure_connection()
    pool = registry.pools(alias)[0]
    # A fresh driver connection, as the pool hands it out before Django's setup (autocommit off).
    real = connection.get_new_connection(connection.get_connection_params())
    try:
        real_pid = pool_panel.driver_session_id(real)
        stand_in = WithoutSessionId(real)
        assert pool_panel.driver_session_id(stand_in) is None
        assert int(pool_panel.server_session_id(pool, stand_in)) == real_pid
        assert int(pool_panel.server_session_id(pool, stand_in)) == real_pid
        assert stand_in.cursors == 1
        # The query left no transaction open on a driver that reports one.
        assert not type(connection).djpool_transaction_open(real)
        if server.vendor == "postgresql":
            [(state,)] = server.query("SELECT state FROM pg_stat_activity WHERE pid = %s", [real_pid])
            assert state == "idle"
    finally:
        connection.close()
        # get_new_connection() checked a second connection out of the alias's pool: give it back.
        while registry.stats(alias)["checked_out"]:
            record = next(iter(pool.pool._records - {entry for entry, _ in pool.pool._idle}))
            pool.checkin(record)


def test_driver_session_id_of_a_closed_connection_is_none(server):
    """psycopg, psycopg2 and mysqlclient raise when asked a closed connection's
    session id; djpool's reader says "not known" (pool listeners call it as
    connections close, after the server closed them)."""
    real = server.admin_connect()  # this environment's driver
    try:
        cursor = real.cursor()
        cursor.execute(server.pid_query)
        [(session,)] = cursor.fetchall()
        cursor.close()
        assert int(pool_panel.driver_session_id(real)) == int(session)
    finally:
        real.close()
    assert pool_panel.driver_session_id(real) is None


def test_disabled_panel_connects_nothing(make_alias, server):
    alias = make_alias({"POOL_SIZE": 1})
    config = {
        **toolbar_settings()["DEBUG_TOOLBAR_CONFIG"],
        "DISABLE_PANELS": {"djpool.core.contrib.debug_toolbar.PoolPanel"},
    }
    seen: list[int] = []

    def spy(sender: Any, **kwargs: Any) -> None:
        seen.append(len(signals.connection_checked_out.receivers))  # this spy alone

    signals.connection_checked_out.connect(spy, weak=False)
    try:
        with toolbar_installed(DEBUG_TOOLBAR_CONFIG=config):
            response = Client().get("/sessions/", {"alias": alias})
            assert response.status_code == 200
    finally:
        signals.connection_checked_out.disconnect(spy)
        connections[alias].close()
    assert seen == [1]


def test_check_asks_for_the_app_that_holds_the_template(djpool_app):
    assert pool_panel.PoolPanel.run_checks() == []


def test_check_without_the_app():
    from django.apps import apps

    assert not apps.is_installed("djpool.core")
    [error] = pool_panel.PoolPanel.run_checks()
    assert error.id == "djpool.E101" and "INSTALLED_APPS" in error.hint


def test_under_asgi_the_view_thread_is_recorded(make_alias, toolbar, server):
    """Under ASGI the toolbar runs in the event loop and the sync view in another
    thread: the recording follows the request's context there."""
    alias = make_alias({"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "POOL_MODE": "transaction"})
    page = Page(toolbar, alias, times=2, asgi=True)
    pids = [pid for _, pid in page.sessions]
    rows = page.rows(alias)
    assert [int(Page.cell(row, "session")) for row in rows] == pids
    assert len(rows) == 2 and pids[0] in server.session_ids()
    assert not signals.connection_checked_out.receivers
