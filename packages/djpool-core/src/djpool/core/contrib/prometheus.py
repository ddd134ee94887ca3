"""A Prometheus collector for this process's pools (needs ``prometheus_client``).

Usage, once per process (e.g. in ``AppConfig.ready()``)::

    from djpool.core.contrib.prometheus import register

    register()  # into prometheus_client's default REGISTRY

Each scrape reads :func:`djpool.core.stats`, so the figures cost nothing
between scrapes. Every metric has the label ``alias``:

==================================== ======= =============================================
metric                               type    meaning
==================================== ======= =============================================
``djpool_pool_size``                 gauge   ``POOL_SIZE``
``djpool_pool_max_connections``      gauge   ``POOL_SIZE + MAX_OVERFLOW`` (absent if no limit)
``djpool_connections_in_use``        gauge   connections checked out by requests
``djpool_connections_idle``          gauge   open connections waiting in the pool
``djpool_connections_overflow``      gauge   open connections beyond ``POOL_SIZE``
``djpool_requests_waiting``          gauge   requests waiting for a connection
``djpool_checkouts_total``           counter connections handed out
``djpool_connects_total``            counter server connections opened
``djpool_checkout_timeouts_total``   counter checkouts that gave up after ``TIMEOUT``
``djpool_invalidations_total``       counter connections discarded as broken
``djpool_waits_total``               counter checkouts that had to wait
``djpool_wait_seconds_total``        counter seconds spent waiting
``djpool_wait_seconds_max``          gauge   longest wait so far
==================================== ======= =============================================

Pools are per process. With several worker processes, scrape each one, or,
in ``prometheus_client``'s multiprocess mode (which ignores custom
collectors), count events through :mod:`djpool.core.signals` with
multiprocess-aware metrics instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

try:
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "djpool.core.contrib.prometheus needs prometheus_client.\nDid you install prometheus-client?"
    ) from error

from djpool.core import registry as pools_registry

__all__ = ["DjpoolCollector", "register"]

# (name, documentation, stats key) of the metrics read straight from stats().
_GAUGES = [
    ("djpool_pool_size", "POOL_SIZE: connections the pool keeps open while idle.", "size"),
    ("djpool_connections_in_use", "Connections checked out by requests.", "checked_out"),
    ("djpool_connections_idle", "Open connections waiting in the pool.", "idle"),
    ("djpool_connections_overflow", "Open connections beyond POOL_SIZE.", "overflow"),
    ("djpool_requests_waiting", "Requests waiting for a connection.", "waiting"),
    ("djpool_wait_seconds_max", "Longest time a checkout waited for a connection.", "wait_time_max"),
]
_COUNTERS = [
    ("djpool_checkouts", "Connections handed out to requests.", "checkouts"),
    ("djpool_connects", "Server connections opened.", "connects"),
    ("djpool_checkout_timeouts", "Checkouts that gave up after TIMEOUT.", "timeouts"),
    ("djpool_invalidations", "Connections discarded as broken.", "invalidations"),
    (
        "djpool_overflow_closed",
        "Overflow connections closed on return because POOL_SIZE were idle (churn).",
        "overflow_closed",
    ),
    ("djpool_waits", "Checkouts that had to wait for a connection.", "waits"),
    ("djpool_wait_seconds", "Seconds checkouts spent waiting for a connection.", "wait_time_total"),
]


class DjpoolCollector(Collector):
    """Expose :func:`djpool.core.stats` (this process's pools) as Prometheus metrics.

    :param stats: returns ``{alias: figures}``; defaults to
      :func:`djpool.core.stats`.
    """

    def __init__(self, stats: Callable[[], dict[str, dict[str, Any]]] | None = None) -> None:
        self._stats = stats or pools_registry.stats

    def describe(self) -> Iterator[Metric]:
        # Called once at registration: the metric names, without reading stats.
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        by_name = {family.name: family for family in families}
        for alias, figures in sorted(self._stats().items()):
            for name, _, key in _GAUGES:
                by_name[name].add_metric([alias], figures[key])
            for name, _, key in _COUNTERS:
                by_name[name].add_metric([alias], figures[key])
            limit = _max_connections(alias)
            if limit is not None:
                by_name["djpool_pool_max_connections"].add_metric([alias], limit)
        return iter(families)

    @staticmethod
    def _families() -> list[GaugeMetricFamily | CounterMetricFamily]:
        families: list[GaugeMetricFamily | CounterMetricFamily] = [
            GaugeMetricFamily(name, doc, labels=["alias"]) for name, doc, _ in _GAUGES
        ]
        families.append(
            GaugeMetricFamily(
                "djpool_pool_max_connections",
                "POOL_SIZE + MAX_OVERFLOW: the most connections the pool opens.",
                labels=["alias"],
            )
        )
        families.extend(CounterMetricFamily(name, doc, labels=["alias"]) for name, doc, _ in _COUNTERS)
        return families


def _max_connections(alias: str) -> int | None:
    limits = [pool.options.max_connections for pool in pools_registry.pools(alias)]
    if not limits or None in limits:
        return None
    return sum(limit for limit in limits if limit is not None)


def register(registry: CollectorRegistry = REGISTRY) -> DjpoolCollector:
    """Register a :class:`DjpoolCollector` with ``registry`` (default: the global one)."""
    collector = DjpoolCollector()
    registry.register(collector)
    return collector
