"""Test session for the JDBC backends (``DJPOOL_TEST_BACKEND=jdbc``).

A JVM starts once per process and keeps the class path it started with, so
every JDBC test runs in this one pytest process with one ``CLASSPATH``,
built here from the Debian packages' file lists (libpostgresql-jdbc-java,
libmariadb-java, libh2-java). Servers: PostgreSQL and MariaDB on loopback
(a database ``djpool_jdbc_<pid>`` on each) and, for the OceanBase tests,
OceanBase seekdb from the ``pylibseekdb`` wheel, started on a free loopback
port when first needed and stopped (by PID) at the end.

With any other ``DJPOOL_TEST_BACKEND`` these tests are skipped.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import django
import pytest
from django.conf import settings

from tests.aliases import TemporaryAliases
from tests.jdbc import servers

ACTIVE = os.environ.get("DJPOOL_TEST_BACKEND") == "jdbc"
HERE = Path(__file__).parent


def pytest_configure(config: pytest.Config) -> None:
    if not ACTIVE or settings.configured:
        return
    os.environ["CLASSPATH"] = servers.class_path()
    servers.POSTGRESQL.create_database(servers.POSTGRESQL.database)
    servers.MARIADB.create_database(servers.MARIADB.database)
    settings.configure(
        DATABASES={"default": servers.jdbc_settings(servers.POSTGRESQL, POOL_OPTIONS={"POOL_SIZE": 2, "TIMEOUT": 5})},
        INSTALLED_APPS=["django.contrib.contenttypes", "tests.testapp"],
        ROOT_URLCONF="tests.testapp.urls",
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        LOGGING_CONFIG=None,
    )
    django.setup()


def pytest_unconfigure(config: pytest.Config) -> None:
    if not ACTIVE or not settings.configured:
        return
    from django.db import connections

    from djpool.core import registry

    connections.close_all()
    registry.close_all()
    servers.stop_seekdb()
    servers.POSTGRESQL.drop_database(servers.POSTGRESQL.database)
    servers.MARIADB.drop_database(servers.MARIADB.database)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if ACTIVE:
        return
    skip = pytest.mark.skip(reason="JDBC suite: run with DJPOOL_TEST_BACKEND=jdbc (one JVM per process)")
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(skip)


@pytest.fixture
def jdbc_alias() -> Iterator[Callable[..., str]]:
    """Add a DATABASES alias from a settings dict; close its pools afterwards."""
    aliases = TemporaryAliases("jdbc")
    yield aliases.add
    aliases.remove_all()


@pytest.fixture(scope="session")
def seekdb() -> servers.Server:
    """OceanBase seekdb on loopback, started for this session (skips if pylibseekdb is absent)."""
    server = servers.start_seekdb()
    if server is None:
        pytest.skip("OceanBase seekdb needs the pylibseekdb wheel (pip install pylibseekdb; Python 3.11+)")
    return server


def run_python(code: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (a JVM of its own) with this checkout importable."""
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(
        [
            str(HERE.parents[1]),
            *[str(p) for p in (HERE.parents[1] / "packages").glob("djpool-*/src")],
            full_env.get("PYTHONPATH", ""),
        ]
    )
    return subprocess.run(
        [servers.python_executable(), "-c", code],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
