"""Settings written for django-db-connection-pool (1.2.6) keep working after the prefix swap.

The predecessor read six ``POOL_OPTIONS`` keys (upper-case in settings, the
lower-case forms in ``dj_db_conn_pool.setup()``) over these defaults, from its
``PoolContainer.pool_default_params``. docs/migrating-from-django-db-connection-pool.md
shows the same table; these tests keep the two in step.
"""

from __future__ import annotations

import importlib.util

import pytest
from django.core.exceptions import ImproperlyConfigured

from djpool.core import setup
from djpool.core.options import parse_pool_options, reset_defaults

PREDECESSOR_DEFAULTS = {
    "pre_ping": True,
    "echo": False,
    "timeout": 30,
    "recycle": 60 * 15,
    "pool_size": 10,
    "max_overflow": 10,
}

#: predecessor ENGINE suffix (after ``dj_db_conn_pool.backends.``) -> (djpool distribution, module) or None
ENGINES = {
    "postgresql": ("djpool-postgresql", "djpool.backends.postgresql.base"),
    "postgis": ("djpool-postgresql", "djpool.backends.postgis.base"),
    "postgresql.django_tenants": ("djpool-postgresql[tenants]", "djpool.backends.postgresql.django_tenants.base"),
    "mysql": ("djpool-mysql", "djpool.backends.mysql.base"),
    "oracle": ("djpool-oracle", "djpool.backends.oracle.base"),
    "jdbc.oracle": ("djpool-jdbc", "djpool.backends.jdbc.oracle.base"),
    "jdbc.oceanbase": ("djpool-jdbc", "djpool.backends.jdbc.oceanbase.base"),
    "jdbc.oceanbase.mysql": ("djpool-jdbc", "djpool.backends.jdbc.oceanbase.mysql.base"),
    "jdbc.oceanbase.oracle": ("djpool-jdbc", "djpool.backends.jdbc.oceanbase.oracle.base"),
    # Not carried over: the guide points its users to jdbc.oceanbase.oracle.
    "odbc.oceanbase.oracle": None,
}


@pytest.fixture(autouse=True)
def _defaults():
    reset_defaults()
    yield
    reset_defaults()


def test_defaults_are_the_predecessors():
    options = parse_pool_options("default", None)
    assert {name: getattr(options, name) for name in PREDECESSOR_DEFAULTS} == PREDECESSOR_DEFAULTS


def test_every_predecessor_key_is_accepted_in_pool_options():
    given = {"POOL_SIZE": 3, "MAX_OVERFLOW": 7, "RECYCLE": 120, "TIMEOUT": 5, "PRE_PING": False, "ECHO": True}
    options = parse_pool_options("default", given)
    assert (options.pool_size, options.max_overflow, options.recycle, options.timeout, options.pre_ping, options.echo) == (
        3, 7, 120.0, 5.0, False, True,
    )


def test_setup_takes_the_predecessors_keywords():
    # The predecessor's own defaults, passed the way its README showed.
    setup(**PREDECESSOR_DEFAULTS)
    setup(pool_size=20, max_overflow=5, recycle=300, timeout=10, pre_ping=False, echo=False)
    options = parse_pool_options("default", {})
    assert (options.pool_size, options.max_overflow, options.recycle, options.timeout, options.pre_ping) == (
        20, 5, 300.0, 10.0, False,
    )


def test_sqlalchemy_values_the_predecessor_passed_through_still_mean_the_same():
    # RECYCLE=-1 was SQLAlchemy's "never"; MAX_OVERFLOW=-1 its "no limit".
    options = parse_pool_options("default", {"RECYCLE": -1, "MAX_OVERFLOW": -1})
    assert options.recycle is None
    assert options.max_connections is None


def test_keys_the_predecessor_ignored_silently_are_errors():
    # Lower-case keys were dropped by the predecessor without a word.
    with pytest.raises(ImproperlyConfigured) as info:
        parse_pool_options("default", {"pool_size": 5})
    assert "POOL_OPTIONS keys are upper-case: use 'POOL_SIZE'" in str(info.value)
    with pytest.raises(ImproperlyConfigured) as info:
        parse_pool_options("default", {"MAX_OVERFLOWS": 5})
    assert "Did you mean 'MAX_OVERFLOW'?" in str(info.value)
    # So was an unknown setup() keyword.
    with pytest.raises(ImproperlyConfigured) as info:
        setup(pool_sise=5)
    assert "Did you mean 'pool_size'?" in str(info.value)


# Full ENGINE strings as ids: a bare "mysql" id would be taken for the server marker.
@pytest.mark.parametrize("suffix", sorted(ENGINES), ids=lambda suffix: f"dj_db_conn_pool.backends.{suffix}")
def test_engine_prefix_swap(suffix):
    """``dj_db_conn_pool.backends.X`` becomes ``djpool.backends.X``, same suffix."""
    target = ENGINES[suffix]
    if target is None:
        # Not shipped under the new prefix: a swapped ENGINE fails to load
        # with Django's "isn't an available database backend", not halfway.
        assert importlib.util.find_spec("djpool.backends.odbc") is None
        return
    distribution, module = target
    assert module == f"djpool.backends.{suffix}.base"
    vendor = ".".join(module.split(".")[:3])  # e.g. djpool.backends.jdbc
    if importlib.util.find_spec(vendor) is None:
        pytest.skip(f"{distribution} is not installed in this environment")
    # The distribution is installed: it must ship the predecessor's ENGINE.
    spec = importlib.util.find_spec(module)
    assert spec is not None, f"{distribution} does not ship ENGINE djpool.backends.{suffix}"
    assert spec.origin is not None and spec.origin.endswith("base.py")
