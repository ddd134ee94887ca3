"""Oracle test setup: Django configured on the oracle ENGINE, and the targets tests run against.

No Oracle server can run in CI, so with ``DJPOOL_TEST_BACKEND=oracle`` this
conftest configures Django itself (tests/conftest.py configures it only for
the PostgreSQL and MySQL servers). Every test that takes the ``oracle``
fixture runs twice:

* ``fake``: ``oracledb.connect`` replaced by :mod:`tests.oracle.fake_oracledb`;
  Django's Oracle backend, the real ``oracledb`` module and the pool on top.
* ``real``: a real Oracle from ``ORACLE_DSN``, ``ORACLE_USER`` and
  ``ORACLE_PASSWORD``; skipped, saying so, when ``ORACLE_DSN`` is unset. The
  user needs to read ``V$SESSION``/``V$SESSTAT``/``V$STATNAME`` and, for the
  kill test, ``ALTER SYSTEM`` (``system`` on Oracle Database Free has both).

Tests with any other DJPOOL_TEST_BACKEND skip everything here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import django
import pytest
from django.conf import settings

from tests.aliases import TemporaryAliases

BACKEND = os.environ.get("DJPOOL_TEST_BACKEND", "postgresql")
ORACLE_DSN = os.environ.get("ORACLE_DSN", "")
HERE = Path(__file__).parent

# Where the fake "server" lives; nothing ever resolves or connects to it.
FAKE_SETTINGS = {
    "ENGINE": "djpool.backends.oracle",
    "NAME": "FREEPDB1",
    "USER": "djpool",
    "PASSWORD": "fake-secret-9431",
    "HOST": "oracle.invalid",
    "PORT": 1521,
}


def pytest_configure(config: pytest.Config) -> None:
    if BACKEND != "oracle" or settings.configured:
        return
    settings.configure(
        DATABASES={"default": dict(FAKE_SETTINGS)},
        INSTALLED_APPS=["django.contrib.contenttypes", "tests.testapp"],
        ROOT_URLCONF="tests.testapp.urls",
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        LOGGING_CONFIG=None,
    )
    django.setup()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if BACKEND == "oracle":
        return
    skip = pytest.mark.skip(reason=f"Oracle tests run with DJPOOL_TEST_BACKEND=oracle; it is {BACKEND!r}")
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(skip)


# ##### Targets: what each test body asks "the server" #####


class FakeTarget:
    """The stand-in server; it knows everything exactly."""

    name = "fake"

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import oracledb

        from tests.oracle.fake_oracledb import FakeConnection, FakeServer

        self.server = FakeServer()
        self.connection_class = FakeConnection
        monkeypatch.setattr(oracledb, "connect", self.server.connect)

    def settings(self, **extra: Any) -> dict[str, Any]:
        return {**FAKE_SETTINGS, **extra}

    def session_ids(self) -> set[int]:
        return set(self.server.sessions)

    def kill(self, sid: int) -> None:
        self.server.kill(sid)

    def stat(self, sid: int, name: str) -> int:
        connection = self.server.sessions.get(sid)
        return connection.stats[name] if connection is not None else 0


class RealTarget:
    """A real Oracle server, observed through an administrative connection of its own."""

    name = "real"

    def __init__(self) -> None:
        import oracledb

        self.oracledb = oracledb
        self.user = os.environ.get("ORACLE_USER", "")
        self.password = os.environ.get("ORACLE_PASSWORD", "")
        self.connection_class = oracledb.Connection

    def settings(self, **extra: Any) -> dict[str, Any]:
        return {
            "ENGINE": "djpool.backends.oracle",
            "NAME": ORACLE_DSN,
            "USER": self.user,
            "PASSWORD": self.password,
            "HOST": "",
            "PORT": "",
            **extra,
        }

    def query(self, sql: str, **binds: Any) -> list[tuple[Any, ...]]:
        with self.oracledb.connect(user=self.user, password=self.password, dsn=ORACLE_DSN) as conn:
            with conn.cursor() as cursor:
                cursor.execute(sql, binds)
                return list(cursor.fetchall()) if cursor.description else []

    def session_ids(self) -> set[int]:
        rows = self.query(
            "SELECT sid FROM v$session WHERE username = UPPER(:username) "
            "AND sid <> SYS_CONTEXT('USERENV', 'SID')",
            username=self.user,
        )
        return {int(row[0]) for row in rows}

    def kill(self, sid: int) -> None:
        ((serial,),) = self.query("SELECT serial# FROM v$session WHERE sid = :sid", sid=sid)
        self.query(f"ALTER SYSTEM KILL SESSION '{int(sid)},{int(serial)}' IMMEDIATE")

    def stat(self, sid: int, name: str) -> int:
        rows = self.query(
            "SELECT st.value FROM v$sesstat st JOIN v$statname sn ON sn.statistic# = st.statistic# "
            "WHERE st.sid = :sid AND sn.name = :name",
            sid=sid,
            name=name,
        )
        return int(rows[0][0]) if rows else 0


_real_schema_ready = False


def _alias_maker(target: Any, aliases: TemporaryAliases) -> Callable[..., str]:
    def make(pool_options: dict[str, Any] | None = None, **extra: Any) -> str:
        return aliases.add(target.settings(POOL_OPTIONS=pool_options or {}, **extra))

    return make


def _ensure_real_schema(make_alias: Callable[..., str]) -> None:
    """Create the test model's table once per run on the real server (dropped at exit)."""
    global _real_schema_ready
    if _real_schema_ready:
        return
    from django.db import connections

    from tests.testapp.models import Item

    connection = connections[make_alias()]
    with connection.schema_editor() as editor:
        try:
            editor.delete_model(Item)  # left over from an interrupted run
        except Exception:
            pass
        editor.create_model(Item)
    connection.close()
    _real_schema_ready = True


@pytest.fixture(scope="session")
def _real_schema_cleanup() -> Iterator[None]:
    yield
    if _real_schema_ready:
        from django.db import connections

        from tests.testapp.models import Item

        aliases = TemporaryAliases("ora")
        connection = connections[_alias_maker(RealTarget(), aliases)()]
        with connection.schema_editor() as editor:
            editor.delete_model(Item)
        aliases.remove_all()


@pytest.fixture(params=["fake", "real"])
def oracle(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The target a shared test body runs against; ``oracle.make_alias(pool_options, **settings)``."""
    if request.param == "fake":
        target: Any = FakeTarget(monkeypatch)
    else:
        if not ORACLE_DSN:
            pytest.skip("set ORACLE_DSN (+ ORACLE_USER, ORACLE_PASSWORD) to run against a real Oracle")
        request.getfixturevalue("_real_schema_cleanup")
        target = RealTarget()
    aliases = TemporaryAliases("ora")
    target.make_alias = _alias_maker(target, aliases)
    if target.name == "real":
        _ensure_real_schema(target.make_alias)
    try:
        yield target
    finally:
        aliases.remove_all()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTarget]:
    """The stand-in only: for failures no real server can be asked to produce on cue."""
    target = FakeTarget(monkeypatch)
    aliases = TemporaryAliases("ora")
    target.make_alias = _alias_maker(target, aliases)  # type: ignore[attr-defined]
    try:
        yield target
    finally:
        aliases.remove_all()
