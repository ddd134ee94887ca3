"""The ways of holding a database connection that the benchmark compares.

Each :class:`Config` turns a server, a database and a pool size into a
``DATABASES`` entry (or, for the raw baselines, into the driver or
SQLAlchemy objects a request uses). Pool sizes are comparable: ``size`` idle
connections kept, up to ``size + overflow`` open while busy.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Callable

from djbench.servers import Server


@dataclass(frozen=True)
class Sizing:
    size: int = 10
    overflow: int = 10
    mode: str = "session"
    timeout: float = 30.0

    @property
    def max_connections(self) -> int:
        return self.size + self.overflow


@dataclass(frozen=True)
class Config:
    name: str
    label: str
    kind: str  # "django", "driver" (one raw connection per thread) or "sqlalchemy" (raw QueuePool)
    vendors: tuple[str, ...]
    requires: str | None
    settings: Callable[[Server, str, Sizing], dict[str, Any]] | None = None
    pooled: bool = True
    #: A djpool variant (djbench.variants) applied while this configuration runs.
    variant: str | None = None

    def available(self, vendor: str) -> str | None:
        """None if the configuration runs on ``vendor``, else why not."""
        if vendor not in self.vendors:
            return f"not for {vendor}"
        if self.requires and importlib.util.find_spec(self.requires) is None:
            return f"{self.requires} is not installed"
        return None


_DJANGO = {"postgresql": "django.db.backends.postgresql", "mysql": "django.db.backends.mysql"}
_BOTH = ("postgresql", "mysql")


def _stock(server: Server, db: str, sizing: Sizing) -> dict[str, Any]:
    return server.settings(db, ENGINE=_DJANGO[server.vendor], CONN_MAX_AGE=0)


def _persistent(server: Server, db: str, sizing: Sizing) -> dict[str, Any]:
    return server.settings(db, ENGINE=_DJANGO[server.vendor], CONN_MAX_AGE=None, CONN_HEALTH_CHECKS=True)


def _unchecked(server: Server, db: str, sizing: Sizing) -> dict[str, Any]:
    # The floor for any pool: Django holding one connection and checking nothing.
    return server.settings(db, ENGINE=_DJANGO[server.vendor], CONN_MAX_AGE=None, CONN_HEALTH_CHECKS=False)


def _native_pool(server: Server, db: str, sizing: Sizing) -> dict[str, Any]:
    # Django's psycopg pool: min_size connections kept, max_size at most.
    pool = {"min_size": sizing.size, "max_size": sizing.max_connections, "timeout": sizing.timeout}
    return server.settings(db, ENGINE=_DJANGO[server.vendor], CONN_MAX_AGE=0, OPTIONS={"pool": pool})


def _real_pool(server: Server, db: str, sizing: Sizing) -> dict[str, Any]:
    pool = {"min_size": sizing.size, "max_size": sizing.max_connections, "timeout": sizing.timeout}
    return server.settings(db, ENGINE="django_pg_real_pool", CONN_MAX_AGE=0, OPTIONS={"pool": pool})


def _djpool(server: Server, db: str, sizing: Sizing) -> dict[str, Any]:
    options = {"POOL_SIZE": sizing.size, "MAX_OVERFLOW": sizing.overflow, "TIMEOUT": sizing.timeout, "POOL_MODE": sizing.mode}
    return server.settings(db, ENGINE=f"djpool.backends.{server.vendor}", CONN_MAX_AGE=0, POOL_OPTIONS=options)


def _djpool_housekept(server: Server, db: str, sizing: Sizing) -> dict[str, Any]:
    # The housekeeper thread running (MIN_IDLE, IDLE_TIMEOUT): it must cost nothing per request.
    settings = _djpool(server, db, sizing)
    settings["POOL_OPTIONS"].update(MIN_IDLE=min(2, sizing.size), IDLE_TIMEOUT=30)
    return settings


def _predecessor(server: Server, db: str, sizing: Sizing) -> dict[str, Any]:
    options = {"POOL_SIZE": sizing.size, "MAX_OVERFLOW": sizing.overflow, "TIMEOUT": sizing.timeout}
    return server.settings(db, ENGINE=f"dj_db_conn_pool.backends.{server.vendor}", CONN_MAX_AGE=0, POOL_OPTIONS=options)


CONFIGS: dict[str, Config] = {
    c.name: c
    for c in [
        Config("driver", "raw driver, one open connection per thread", "driver", _BOTH, None, pooled=False),
        Config("sqlalchemy", "raw SQLAlchemy QueuePool, checkout/query/checkin", "sqlalchemy", _BOTH, "sqlalchemy"),
        Config("stock", "Django default (CONN_MAX_AGE=0): a connection per request", "django", _BOTH, None, _stock, pooled=False),
        Config("persistent", "Django persistent (CONN_MAX_AGE=None, CONN_HEALTH_CHECKS)", "django", _BOTH, None, _persistent, pooled=False),
        Config("unchecked", "Django persistent without health checks: no pool, nothing checked (the floor)", "django", _BOTH, None, _unchecked, pooled=False),
        Config("native", "Django's native psycopg pool (OPTIONS['pool'])", "django", ("postgresql",), "psycopg_pool", _native_pool),
        Config("realpool", "django-pg-real-pool (native pool, released after each query)", "django", ("postgresql",), "django_pg_real_pool", _real_pool),
        Config("predecessor", "django-db-connection-pool", "django", _BOTH, "dj_db_conn_pool", _predecessor),
        Config("djpool", "djpool", "django", _BOTH, "djpool.core", _djpool),
        Config("djpool_fifo", "djpool without barging (the hand-over's A/B: djbench.variants)", "django", _BOTH, "djpool.core", _djpool, variant="fifo"),
        Config("djpool_housekept", "djpool with MIN_IDLE and IDLE_TIMEOUT (housekeeper running)", "django", _BOTH, "djpool.core", _djpool_housekept),
    ]
}

#: The configurations of the latency and thread-scaling runs, in report order.
GRID = ["driver", "sqlalchemy", "stock", "persistent", "unchecked", "native", "predecessor", "djpool", "djpool_housekept"]
