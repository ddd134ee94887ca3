"""Test session setup: a fresh database on the real server, Django configured on it.

``DJPOOL_TEST_BACKEND`` (postgresql or mysql) picks the server. Each pytest
process works in a database of its own (``djpool_t<pid>``), so server-side
connection counts see only this run's sessions. Backends with no server here
(oracle, jdbc) configure Django in their own ``tests/<backend>/conftest.py``;
the server-backed suites (tests/core, …) are then skipped.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import django
import pytest
from django.conf import settings

from tests.aliases import TemporaryAliases

# The PyMySQL environment: PyMySQL as MySQLdb, the way Django's docs (and
# users' settings modules) set it up, before anything imports MySQLdb.
if os.environ.get("DJPOOL_TEST_DRIVER") == "pymysql":
    import pymysql

    pymysql.install_as_MySQLdb()

from tests.servers import BACKEND, SERVER_BACKENDS, Server, make_server

SERVER = make_server() if BACKEND in SERVER_BACKENDS else None


def pytest_configure(config: pytest.Config) -> None:
    if settings.configured or SERVER is None:
        return
    SERVER.create_database(SERVER.database)
    settings.configure(
        DATABASES={"default": SERVER.settings(POOL_OPTIONS={"POOL_SIZE": 2, "MAX_OVERFLOW": 2, "TIMEOUT": 5})},
        INSTALLED_APPS=["django.contrib.contenttypes", "tests.testapp"],
        ROOT_URLCONF="tests.testapp.urls",
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        LOGGING_CONFIG=None,
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", run_syncdb=True, verbosity=0)
    from django.db import connections

    from djpool.core import registry

    connections.close_all()
    registry.close_all()


def pytest_unconfigure(config: pytest.Config) -> None:
    if not settings.configured or SERVER is None:
        return
    from django.db import connections

    from djpool.core import registry

    connections.close_all()
    registry.close_all()
    SERVER.drop_database(SERVER.database)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason=f"needs another server; DJPOOL_TEST_BACKEND={BACKEND}")
    skip_slow = pytest.mark.skip(reason="DJPOOL_SLOW_TESTS=0: load and fault tests run in another environment")
    slow_off = os.environ.get("DJPOOL_SLOW_TESTS") == "0"
    for item in items:
        if slow_off and "slow" in item.keywords:
            item.add_marker(skip_slow)
        for vendor in SERVER_BACKENDS:
            if vendor != BACKEND and vendor in item.keywords:
                item.add_marker(skip)
        if SERVER is None and "server_backed" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=f"needs PostgreSQL or MySQL; DJPOOL_TEST_BACKEND={BACKEND}"))


@pytest.fixture
def server() -> Server:
    assert SERVER is not None
    return SERVER


@pytest.fixture
def make_alias() -> Iterator[Callable[..., str]]:
    """Add a database alias with the given POOL_OPTIONS (and other settings); clean up after."""
    aliases = TemporaryAliases("pool")

    def make(pool_options: dict[str, Any] | None = None, **extra: Any) -> str:
        assert SERVER is not None
        return aliases.add(SERVER.settings(POOL_OPTIONS=pool_options or {}, **extra))

    yield make
    aliases.remove_all()


def run_in_threads(count: int, target: Callable[[int], Any]) -> list[Any]:
    """Run ``target(i)`` in ``count`` threads; close their Django connections; re-raise errors."""
    from django.db import connections

    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = target(index)
        except BaseException as error:  # noqa: BLE001 - reported to the test below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if errors:
        raise errors[0]
    return results


def hold_in_thread(alias: str, release: threading.Event) -> threading.Thread:
    """Start a thread that takes a connection of ``alias`` (one query) and holds it until ``release``.

    Returns once the connection is held; the thread closes its connections when released.
    """
    from django.db import connections

    holding = threading.Event()

    def run() -> None:
        try:
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT 1")
            holding.set()
            release.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    assert holding.wait(10), "the thread never got its connection"
    return thread

