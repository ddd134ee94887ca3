from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from djpool.core import setup
from djpool.core.options import PoolOptions, parse_pool_options, reset_defaults


@pytest.fixture(autouse=True)
def _defaults():
    reset_defaults()
    yield
    reset_defaults()


def test_defaults_match_the_documented_ones():
    options = parse_pool_options("default", None)
    assert options == PoolOptions(
        pool_size=10, max_overflow=10, recycle=900.0, timeout=30.0, pre_ping=True,
        pre_ping_idle=1.0, echo=False, use_lifo=True, pool_mode="session", reset_on_return="rollback",
    )
    assert options.max_connections == 20


def test_pool_options_override_defaults():
    options = parse_pool_options("db", {"POOL_SIZE": 3, "RECYCLE": None, "TIMEOUT": 1})
    assert (options.pool_size, options.recycle, options.timeout) == (3, None, 1.0)


def test_unbounded_overflow():
    assert parse_pool_options("db", {"MAX_OVERFLOW": -1}).max_connections is None


def test_setup_changes_defaults_for_later_pools():
    setup(pool_size=4, max_overflow=0, pre_ping=False)
    options = parse_pool_options("db", {"MAX_OVERFLOW": 2})
    assert (options.pool_size, options.max_overflow, options.pre_ping) == (4, 2, False)


def test_setup_refuses_unknown_keywords_with_a_suggestion():
    with pytest.raises(ImproperlyConfigured) as info:
        setup(pool_sise=5)
    assert "unknown keyword 'pool_sise'. Did you mean 'pool_size'?" in str(info.value)


def test_setup_validates_values():
    with pytest.raises(ImproperlyConfigured) as info:
        setup(timeout=-1)
    assert str(info.value) == "djpool.core.setup()['TIMEOUT'] must be a number of seconds greater than 0; got -1 (int)."


def test_pool_options_must_be_a_dict():
    with pytest.raises(ImproperlyConfigured) as info:
        parse_pool_options("db", [("POOL_SIZE", 1)])
    assert str(info.value) == "DATABASES['db']['POOL_OPTIONS'] must be a dict; got [('POOL_SIZE', 1)] (list)."


def test_non_string_key():
    with pytest.raises(ImproperlyConfigured, match=r"unknown key 1\. Allowed keys: POOL_SIZE"):
        parse_pool_options("db", {1: 2})


def test_nan_is_not_a_number_of_seconds():
    with pytest.raises(ImproperlyConfigured, match=r"\['TIMEOUT'\] must be a number of seconds greater than 0; got nan"):
        parse_pool_options("db", {"TIMEOUT": float("nan")})
