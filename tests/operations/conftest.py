"""Fixtures for the operations tests: the djpool app installed, logs captured."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.test.utils import override_settings


@pytest.fixture
def djpool_app() -> Iterator[None]:
    """Install the ``djpool.core`` app (checks, management command) for one test."""
    with override_settings(INSTALLED_APPS=[*settings.INSTALLED_APPS, "djpool.core"]):
        yield


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int = logging.DEBUG) -> list[str]:
        return [record.getMessage() for record in self.records if record.levelno >= level]


@pytest.fixture
def leak_log() -> Iterator[_Records]:
    """Records of the ``djpool.leaks`` logger (also from the detector's thread)."""
    handler = _Records()
    logger = logging.getLogger("djpool.leaks")
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
