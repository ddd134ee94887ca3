"""djpool core: connection pooling for Django's database backends, on SQLAlchemy's pool.

Usage: set a pooled ENGINE and, optionally, ``POOL_OPTIONS``::

    DATABASES = {
        "default": {
            "ENGINE": "djpool.backends.postgresql",
            "NAME": "app",
            "POOL_OPTIONS": {"POOL_SIZE": 10, "MAX_OVERFLOW": 10},
        }
    }

Public API: :func:`setup` (process-wide defaults), :func:`stats` and
:func:`dispose`, :class:`PoolTimeout`, and for backend authors
:class:`djpool.core.mixins.PooledDatabaseWrapperMixin`.
"""

from __future__ import annotations

from djpool.core.__about__ import __version__
from djpool.core.exceptions import PoolTimeout
from djpool.core.options import PoolOptions, setup
from djpool.core.registry import dispose, stats

__all__ = ["__version__", "PoolOptions", "PoolTimeout", "dispose", "setup", "stats"]
