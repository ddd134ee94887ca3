"""Fixtures for the packaging tests: every distribution built once per session.

These tests build wheels and create virtual environments, so they are
collected only when ``DJPOOL_PACKAGING_TESTS=1`` (set by ``hatch run
packaging:test``, which also installs what they import: uv, packaging,
trove-classifiers, Python 3.11+). Anywhere else, a plain ``pytest`` and the
``hatch test`` matrix included, this directory is ignored.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

ENABLED = os.environ.get("DJPOOL_PACKAGING_TESTS") == "1"

if ENABLED or TYPE_CHECKING:
    from tests.packaging.tools import Project, Venv, Wheel, build, projects

if not ENABLED:
    collect_ignore_glob = ["*.py"]


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
