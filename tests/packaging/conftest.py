"""Fixtures for the packaging tests: every distribution built once per session.

These tests build wheels and create virtual environments, so they run only
when ``DJPOOL_PACKAGING_TESTS=1`` (set by ``hatch run packaging:test``); the
normal ``hatch test`` matrix skips them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.packaging.tools import Project, Venv, Wheel, build, projects

ENABLED = os.environ.get("DJPOOL_PACKAGING_TESTS") == "1"
HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if ENABLED:
        return
    skip = pytest.mark.skip(reason="packaging tests run with DJPOOL_PACKAGING_TESTS=1 (hatch run packaging:test)")
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def sources() -> dict[str, Project]:
    return projects()


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory to hold the checkout's wheels and sdists, as ``hatch build --all`` makes them."""
    return tmp_path_factory.mktemp("wheelhouse")


@pytest.fixture(scope="session")
def wheels(sources: dict[str, Project], wheelhouse: Path) -> dict[str, Wheel]:
    """Every distribution in packages/, built from the checkout: ``{name: wheel}``."""
    return {name: build(project, wheelhouse) for name, project in sources.items()}


@pytest.fixture
def venv(tmp_path: Path) -> Callable[[], Venv]:
    """Make fresh virtual environments (one per call) for this test."""
    count = 0

    def make() -> Venv:
        nonlocal count
        count += 1
        return Venv(tmp_path / f"venv{count}")

    return make
