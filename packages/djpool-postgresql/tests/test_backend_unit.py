from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

pytest.importorskip("django.db.backends.postgresql.base")


def make_wrapper(**settings):
    from django.db import connections

    from djpool.backends.postgresql.base import DatabaseWrapper

    entry = connections.configure_settings(
        {"default": {"ENGINE": "djpool.backends.postgresql", "NAME": "x", **settings}}
    )["default"]
    return DatabaseWrapper(entry, "default")


def test_dialect_follows_djangos_driver_choice():
    from django.db.backends.postgresql.base import is_psycopg3

    dialect = make_wrapper().djpool_sqlalchemy_dialect()
    assert dialect.driver == ("psycopg" if is_psycopg3 else "psycopg2")
    assert dialect.loaded_dbapi.__name__ == ("psycopg" if is_psycopg3 else "psycopg2")


def test_engine_loads_through_django():
    from django.db.utils import load_backend

    assert load_backend("djpool.backends.postgresql").DatabaseWrapper.vendor == "postgresql"


def test_incompatible_core_is_reported(monkeypatch):
    from djpool.core import compat

    monkeypatch.setattr(compat, "core_version", "9.0.0")
    with pytest.raises(ImproperlyConfigured) as info:
        compat.require_core("djpool-postgresql", "0.1.0", "0.1", "1")
    assert str(info.value) == (
        "djpool-postgresql 0.1.0 requires djpool-core>=0.1,<1; you have djpool-core 9.0.0. "
        "Install a compatible one: pip install 'djpool-core>=0.1,<1'"
    )
