"""OpenTelemetry metrics for this process's pools (needs ``opentelemetry-api``).

The database client connection-pool metrics of OpenTelemetry's semantic
conventions (``db.client.connection.*``, status Development), per pooled
alias::

    from djpool.core.contrib.opentelemetry import instrument

    instrument()  # the global MeterProvider; or instrument(meter_provider=provider)

========================================== ======================= ============== ================================
metric                                     instrument              unit           djpool source
========================================== ======================= ============== ================================
``db.client.connection.count``             async UpDownCounter     ``{connection}`` ``stats()`` ``checked_out``
                                                                                  (state ``used``), ``idle``
                                                                                  (state ``idle``)
``db.client.connection.idle.max``          async UpDownCounter     ``{connection}`` ``POOL_SIZE``
``db.client.connection.idle.min``          async UpDownCounter     ``{connection}`` ``MIN_IDLE``
``db.client.connection.max``               async UpDownCounter     ``{connection}`` ``POOL_SIZE + MAX_OVERFLOW``
                                                                                  (absent when ``MAX_OVERFLOW = -1``)
``db.client.connection.pending_requests``  async UpDownCounter     ``{request}``  ``stats()`` ``waiting``
``db.client.connection.timeouts``          async Counter           ``{timeout}``  ``stats()`` ``timeouts``
``db.client.connection.create_time``       Histogram               ``s``          each connect
``db.client.connection.wait_time``         Histogram               ``s``          each checkout
``db.client.connection.use_time``          Histogram               ``s``          each checkin
========================================== ======================= ============== ================================

Every point carries ``db.client.connection.pool.name``: the alias by
default, or with ``pool_name="address"`` the conventions' fallback form
``server.address:server.port/db.namespace`` (``HOST:PORT/NAME`` of the
alias's settings). ``db.client.connection.count`` also carries
``db.client.connection.state`` (``idle`` or ``used``). The conventions
recommend no other attribute for these metrics.

The gauges and the timeout count read :func:`djpool.core.stats` in the
SDK's collection callbacks, so they cost nothing between collections. The
histograms are recorded from :mod:`djpool.core.signals`: while nothing is
instrumented no receiver is connected and each pool event costs one truth
test. ``wait_time`` is the whole checkout (waiting in line, opening a
connection, the pre-ping); a checkout that timed out records no wait time
(it is counted in ``timeouts``). ``use_time`` is recorded only for
checkouts made while instrumented.

Pools are per process, and so are these metrics: with several worker
processes, each exports its own (give each its own ``service.instance.id``
resource attribute). Call :func:`instrument` in each process (e.g. in
``AppConfig.ready()``, or in gunicorn's ``post_fork``), after the
MeterProvider is set up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any, Literal

try:
    from opentelemetry import metrics
    from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "djpool.core.contrib.opentelemetry needs opentelemetry-api.\n"
        'Did you install djpool-core[opentelemetry] (or "opentelemetry-api")?'
    ) from error

from djpool.core import registry as pools_registry
from djpool.core import signals
from djpool.core.__about__ import __version__

__all__ = ["POOL_NAME", "STATE", "instrument", "is_instrumented", "uninstrument"]

POOL_NAME = "db.client.connection.pool.name"
STATE = "db.client.connection.state"

# Boundaries for the three duration histograms (seconds): from a fast
# checkout (microseconds) to a TIMEOUT-long wait.
DURATION_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0)

_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "oracle": 1521}

PoolNaming = Literal["alias", "address"]


class _Instruments:
    """The instruments made on one MeterProvider's meter.

    The OpenTelemetry API cannot unregister an instrument, and asking a
    meter for one it already has returns the first (with the first's
    callbacks), so they are made once per provider and stay; the callbacks
    report nothing while uninstrumented.
    """

    def __init__(self, meter: Meter) -> None:
        counter = meter.create_observable_up_down_counter
        counter(
            "db.client.connection.count",
            callbacks=[_counts],
            unit="{connection}",
            description="The number of connections that are currently in state described by the state attribute.",
        )
        counter(
            "db.client.connection.idle.max",
            callbacks=[_figure("pool_size")],
            unit="{connection}",
            description="The maximum number of idle open connections allowed (POOL_SIZE).",
        )
        counter(
            "db.client.connection.idle.min",
            callbacks=[_figure("min_idle")],
            unit="{connection}",
            description="The minimum number of idle open connections allowed (MIN_IDLE).",
        )
        counter(
            "db.client.connection.max",
            callbacks=[_figure("max_connections")],
            unit="{connection}",
            description="The maximum number of open connections allowed (POOL_SIZE + MAX_OVERFLOW).",
        )
        counter(
            "db.client.connection.pending_requests",
            callbacks=[_figure("waiting")],
            unit="{request}",
            description="The number of current pending requests for an open connection.",
        )
        meter.create_observable_counter(
            "db.client.connection.timeouts",
            callbacks=[_figure("timeouts")],
            unit="{timeout}",
            description=(
                "The number of connection timeouts that have occurred trying to obtain a connection from the pool."
            ),
        )
        self.create_time = _histogram(
            meter, "db.client.connection.create_time", "The time it took to create a new connection."
        )
        self.wait_time = _histogram(
            meter, "db.client.connection.wait_time", "The time it took to obtain an open connection from the pool."
        )
        self.use_time = _histogram(
            meter,
            "db.client.connection.use_time",
            "The time between borrowing a connection and returning it to the pool.",
        )


def _histogram(meter: Meter, name: str, description: str) -> Any:
    try:
        return meter.create_histogram(
            name, unit="s", description=description, explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS)
        )
    except TypeError:  # pragma: no cover - opentelemetry-api < 1.23 has no advisory parameter
        return meter.create_histogram(name, unit="s", description=description)


# ##### State (one per process) #####

_lock = threading.Lock()
_by_provider: dict[int, tuple[Any, _Instruments]] = {}
# While instrumented: the instruments the signals record into, and how pools are named.
_active: _Instruments | None = None
_naming: PoolNaming = "alias"
# Pool name per alias (settings do not change while the process runs), and
# the {pool.name: ...} attributes the histograms record with.
_names: dict[str, str] = {}
_attributes: dict[str, dict[str, str]] = {}


def instrument(meter_provider: MeterProvider | None = None, *, pool_name: PoolNaming = "alias") -> None:
    """Report this process's pools through OpenTelemetry (idempotent).

    :param meter_provider: where to make the instruments; defaults to the
      global one (``opentelemetry.metrics.get_meter_provider()``).
    :param pool_name: ``"alias"`` (default) names each pool by its
      ``DATABASES`` alias; ``"address"`` by the conventions' fallback form
      ``server.address:server.port/db.namespace``.
    """
    global _active, _naming
    if pool_name not in ("alias", "address"):
        raise ValueError(
            "djpool.core.contrib.opentelemetry.instrument(pool_name=...): "
            f"got {pool_name!r}; allowed: 'alias', 'address'"
        )
    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    with _lock:
        known = _by_provider.get(id(provider))
        if known is None:
            meter = metrics.get_meter(
                "djpool.core",
                __version__,
                meter_provider=provider,
                schema_url="https://opentelemetry.io/schemas/1.37.0",
            )
            known = (provider, _Instruments(meter))
            _by_provider[id(provider)] = known
        _names.clear()
        _attributes.clear()
        _naming = pool_name
        _active = known[1]
        signals.connection_opened.connect(_on_opened, dispatch_uid=__name__)
        signals.connection_checked_out.connect(_on_checked_out, dispatch_uid=__name__)
        signals.connection_checked_in.connect(_on_checked_in, dispatch_uid=__name__)


def uninstrument() -> None:
    """Stop reporting: the histograms' receivers are disconnected, the
    gauges report nothing (the instruments themselves stay with their
    MeterProvider, which cannot forget them)."""
    global _active
    with _lock:
        _active = None
        signals.connection_opened.disconnect(dispatch_uid=__name__)
        signals.connection_checked_out.disconnect(dispatch_uid=__name__)
        signals.connection_checked_in.disconnect(dispatch_uid=__name__)


def is_instrumented() -> bool:
    return _active is not None


# ##### Pool names #####


def pool_name(alias: str) -> str:
    """The ``db.client.connection.pool.name`` of ``alias``'s pools."""
    name = _names.get(alias)
    if name is None:
        name = alias if _naming == "alias" else _address(alias)
        _names[alias] = name
    return name


def _address(alias: str) -> str:
    pools = pools_registry.pools(alias)
    if not pools:
        return alias
    pool = pools[0]
    settings = pool._settings_dict
    vendor = getattr(pool._wrapper_class, "vendor", "")
    host = settings.get("HOST") or "localhost"
    port = settings.get("PORT") or _DEFAULT_PORTS.get(vendor, "")
    return f"{host}:{port}/{settings.get('NAME') or ''}"


def _attributes_of(alias: str) -> dict[str, str]:
    attributes = _attributes.get(alias)
    if attributes is None:
        attributes = _attributes[alias] = {POOL_NAME: pool_name(alias)}
    return attributes


# ##### Observable callbacks: read stats() at collection #####


def _pool_figures() -> Iterable[tuple[dict[str, Any], dict[str, Any]]]:
    """(figures, attributes) per alias while instrumented: ``stats()`` plus
    the settings-derived ``pool_size``, ``min_idle``, ``max_connections``
    (summed over the alias's pools; ``max_connections`` None if unlimited)."""
    if _active is None:
        return
    for alias, figures in sorted(pools_registry.stats().items()):
        options = [pool.options for pool in pools_registry.pools(alias)]
        if not options:
            continue
        limits = [o.max_connections for o in options]
        yield (
            {
                **figures,
                "pool_size": sum(o.pool_size for o in options),
                "min_idle": sum(o.min_idle for o in options),
                "max_connections": None if None in limits else sum(limit or 0 for limit in limits),
            },
            {POOL_NAME: pool_name(alias)},
        )


def _counts(options: CallbackOptions) -> Iterable[Observation]:
    for figures, attributes in _pool_figures():
        yield Observation(figures["checked_out"], {**attributes, STATE: "used"})
        yield Observation(figures["idle"], {**attributes, STATE: "idle"})


def _figure(key: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def callback(options: CallbackOptions) -> Iterable[Observation]:
        for figures, attributes in _pool_figures():
            value = figures[key]
            if value is not None:
                yield Observation(value, attributes)

    return callback


# ##### Signal receivers: the histograms #####


def _on_opened(sender: Any, alias: str, connect_time: float | None = None, **kwargs: Any) -> None:
    active = _active
    if active is not None and connect_time is not None:
        active.create_time.record(connect_time, _attributes_of(alias))


def _on_checked_out(sender: Any, alias: str, wait_time: float | None = None, **kwargs: Any) -> None:
    active = _active
    if active is not None and wait_time is not None:
        active.wait_time.record(wait_time, _attributes_of(alias))


def _on_checked_in(sender: Any, alias: str, held_for: float | None = None, **kwargs: Any) -> None:
    active = _active
    if active is not None and held_for is not None:
        active.use_time.record(held_for, _attributes_of(alias))
