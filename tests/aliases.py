"""Temporary DATABASES aliases for tests: added with Django's defaults, removed with their pools."""

from __future__ import annotations

import itertools
from typing import Any

_numbers = itertools.count()


class TemporaryAliases:
    """Aliases added to ``connections.settings`` (which is ``settings.DATABASES``)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.created: list[str] = []

    def add(self, entry: dict[str, Any]) -> str:
        from django.db import connections

        alias = f"{self.prefix}{next(_numbers)}"
        # configure_settings() fills in Django's defaults; it wants a 'default'.
        connections.settings[alias] = connections.configure_settings({"default": {}, alias: entry})[alias]
        self.created.append(alias)
        return alias

    def remove_all(self) -> None:
        """Close this thread's connections and every pool of the aliases, then drop them."""
        from django.db import connections

        from djpool.core import registry

        for alias in self.created:
            try:
                connections[alias].close()
                del connections[alias]
            except Exception:  # noqa: BLE001 - the test may have made the alias unusable on purpose
                pass
            registry.close_all(alias)
            del connections.settings[alias]
        self.created.clear()
