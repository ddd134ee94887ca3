"""What djpool promises about its distributions, written down independently of the pyprojects.

The tests compare the built wheels with this, so a change to a pyproject that
breaks a promise (an extra renamed, a driver dropped from the meta-package, a
classifier forgotten) fails here instead of on a user's machine.
"""

from __future__ import annotations

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from tests.packaging.tools import Wheel

META = "djpool"
CORE = "djpool-core"

SUPPORTED_DJANGO = ("4.2", "5.2", "6.0", "6.1")
#: Distributions that support fewer Django versions than the others (Trove classifiers must say so).
DJANGO_VERSIONS = {"djpool-jdbc": ("5.2", "6.0", "6.1")}
SUPPORTED_PYTHON = ("3.10", "3.11", "3.12", "3.13")

#: Vendor distribution -> its driver extras -> the driver distribution each requests.
#: The first extra is the one ``djpool[<vendor>]`` uses.
DRIVER_EXTRAS: dict[str, dict[str, str]] = {
    "djpool-postgresql": {"psycopg": "psycopg", "psycopg2": "psycopg2-binary"},
    "djpool-mysql": {"mysqlclient": "mysqlclient", "pymysql": "pymysql"},
    "djpool-oracle": {"oracledb": "oracledb"},
    "djpool-jdbc": {"jpype": "jpype1", "jaydebeapi": "jaydebeapi"},
}

#: The predecessor's extras, each a one-command working install: extra -> (vendor, its driver extras).
META_EXTRAS: dict[str, tuple[str, frozenset[str]]] = {
    "postgresql": ("djpool-postgresql", frozenset({"psycopg"})),
    "mysql": ("djpool-mysql", frozenset({"mysqlclient"})),
    "oracle": ("djpool-oracle", frozenset({"oracledb"})),
    "jdbc": ("djpool-jdbc", frozenset({"jpype"})),
}

#: Vendors with a server on this machine: settings for a real query, and SQL to see sessions.
SERVERS: dict[str, dict[str, object]] = {
    "djpool-postgresql": {
        "ENGINE": "djpool.backends.postgresql",
        "PLAIN_ENGINE": "django.db.backends.postgresql",
        "PORT": 5432,
        "USER": "postgres",
        "SESSION_ID": "SELECT pg_backend_pid()",
        "SESSION_OPEN": "SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
    },
    "djpool-mysql": {
        "ENGINE": "djpool.backends.mysql",
        "PLAIN_ENGINE": "django.db.backends.mysql",
        "PORT": 3306,
        "USER": "root",
        "SESSION_ID": "SELECT CONNECTION_ID()",
        "SESSION_OPEN": "SELECT count(*) FROM information_schema.processlist WHERE id = %s",
    },
}

NAMESPACE_INITS = frozenset({"djpool/__init__.py", "djpool/backends/__init__.py"})


def vendor_of(distribution: str) -> str:
    return distribution.removeprefix("djpool-")


def vendors(names: list[str] | set[str]) -> list[str]:
    return sorted(name for name in names if name.startswith("djpool-") and name != CORE)


def engines(wheel: Wheel) -> list[str]:
    """The ENGINE values a vendor wheel provides: its ``djpool.backends.<vendor>`` if that has a
    ``base`` module, else the backends one level below it (``djpool.backends.jdbc.oracle``)."""
    root = f"djpool/backends/{vendor_of(wheel.name)}"
    if f"{root}/base.py" in wheel.payload:
        return [root.replace("/", ".")]
    below = {name.removesuffix("/base.py") for name in wheel.payload if name.endswith("/base.py")}
    return sorted(path.replace("/", ".") for path in below if path.rsplit("/", 1)[0] == root)


def bounds(specifier: SpecifierSet) -> tuple[str, str]:
    """``>=0.1,<1`` -> ("0.1", "1"): the floor and the first excluded version."""
    floors = [s.version for s in specifier if s.operator == ">="]
    caps = [s.version for s in specifier if s.operator == "<"]
    assert len(floors) == 1 and len(caps) == 1, f"expected a '>=X,<Y' range, got {specifier}"
    return floors[0], caps[0]


def just_below(version: str) -> str | None:
    """A release just below ``version`` (0.1 -> 0.0.99), or None below 0."""
    release = list(Version(version).release)
    for index in range(len(release) - 1, -1, -1):
        if release[index]:
            release[index] -= 1
            return ".".join(map(str, release[: index + 1])) + ".99"
    return None


def padded(version: str) -> str:
    """0.1 -> 0.1.0: how the release at a declared floor would be numbered."""
    release = list(Version(version).release) + [0, 0]
    return ".".join(map(str, release[: max(3, len(Version(version).release))]))


def next_minor(version: str) -> str:
    major, minor = (list(Version(version).release) + [0])[:2]
    return f"{major}.{minor + 1}.0"
