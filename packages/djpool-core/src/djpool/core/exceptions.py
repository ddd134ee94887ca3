"""Errors raised by djpool."""

from __future__ import annotations

from django.db.utils import OperationalError

__all__ = ["PoolTimeout"]


class PoolTimeout(OperationalError):
    """No connection became free within the pool's TIMEOUT."""

    __module__ = "djpool.core"
