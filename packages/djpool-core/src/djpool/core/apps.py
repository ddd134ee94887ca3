"""The Django app ``djpool.core``: system checks and the ``djpool`` management command.

Pooling works without it; add ``"djpool.core"`` to ``INSTALLED_APPS`` for
``manage.py check`` to report pool misconfiguration and for
``manage.py djpool`` to show the pools.
"""

from __future__ import annotations

from django.apps import AppConfig

__all__ = ["DjpoolConfig"]


class DjpoolConfig(AppConfig):
    name = "djpool.core"
    # "core" would clash with any project app of that name.
    label = "djpool"
    verbose_name = "djpool connection pools"

    def ready(self) -> None:
        # Importing the module registers the checks.
        from djpool.core import checks  # noqa: F401
