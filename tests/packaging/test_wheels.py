"""The built wheels and sdists: contents, metadata and the version ranges they declare.

Built from the checkout with ``uv build`` (what ``hatch build --all`` does per
package), then read as archives: nothing is installed here.
"""

from __future__ import annotations

import ast
import tarfile
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from trove_classifiers import classifiers as known_classifiers

from tests.packaging.contract import (
    CORE,
    DJANGO_VERSIONS,
    DRIVER_EXTRAS,
    META,
    META_EXTRAS,
    NAMESPACE_INITS,
    SUPPORTED_DJANGO,
    SUPPORTED_PYTHON,
    bounds,
    vendor_of,
    vendors,
)
from tests.packaging.tools import Project, Wheel, projects

DISTRIBUTIONS = sorted(projects())
VENDORS = vendors(DISTRIBUTIONS)


def package_roots(wheel: Wheel) -> set[str]:
    """The regular packages a wheel ships: ``djpool/core``, ``djpool/backends/<name>``."""
    roots = set()
    for name in wheel.payload:
        parts = name.split("/")
        depth = 3 if parts[1] == "backends" else 2
        roots.add("/".join(parts[:depth]))
    return roots


def require_core_calls(project: Project) -> list[tuple[str, str]]:
    """The (minimum, below) of every ``require_core(...)`` call in the project's sources."""
    calls = []
    for path in sorted((project.directory / "src").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "require_core":
                # require_core(package, package_version, minimum, below), by position or keyword
                arguments: dict[str | None, ast.expr] = dict(
                    zip(("package", "package_version", "minimum", "below"), node.args, strict=False)
                )
                arguments.update((keyword.arg, keyword.value) for keyword in node.keywords)
                calls.append((ast.literal_eval(arguments["minimum"]), ast.literal_eval(arguments["below"])))
    return calls


def test_every_package_is_built(sources: dict[str, Project], wheels: dict[str, Wheel]) -> None:
    assert {META, CORE} <= set(wheels)
    for name, wheel in wheels.items():
        assert (wheel.name, wheel.version) == (name, sources[name].version)


def test_no_distribution_ships_the_namespace_packages(wheels: dict[str, Wheel], wheelhouse: Path) -> None:
    """A ``djpool/__init__.py`` in any distribution turns the namespace into a regular package
    and hides every other distribution's modules."""
    for wheel in wheels.values():
        assert not wheel.payload & NAMESPACE_INITS, wheel.path.name
    sdists = sorted(wheelhouse.glob("*.tar.gz"))
    assert len(sdists) == len(wheels)
    for sdist in sdists:
        with tarfile.open(sdist) as archive:
            names = archive.getnames()
        assert not [
            name for name in names if name.endswith(("src/djpool/__init__.py", "src/djpool/backends/__init__.py"))
        ]
        for required in ("pyproject.toml", "README.md", "CHANGELOG.md", "LICENSE", "PKG-INFO"):
            assert any(name.split("/", 1)[-1] == required for name in names), (sdist.name, required)


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_wheel_ships_exactly_its_sources(name: str, sources: dict[str, Project], wheels: dict[str, Wheel]) -> None:
    assert wheels[name].payload == sources[name].source_files


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_wheel_ships_only_its_own_subtree(name: str, wheels: dict[str, Wheel]) -> None:
    payload = wheels[name].payload
    if name == META:
        assert payload == set()  # metadata only: pulls in the others
    elif name == CORE:
        assert payload and all(path.startswith("djpool/core/") for path in payload)
    else:
        assert all(path.startswith("djpool/backends/") for path in payload)
        assert f"djpool/backends/{vendor_of(name)}" in package_roots(wheels[name])


def test_no_two_distributions_share_a_package(wheels: dict[str, Wheel]) -> None:
    owners: dict[str, str] = {}
    for name, wheel in sorted(wheels.items()):
        for root in package_roots(wheel):
            assert root not in owners, f"{root} is shipped by both {owners[root]} and {name}"
            owners[root] = name


@pytest.mark.parametrize("name", [name for name in DISTRIBUTIONS if name != META])
def test_code_wheels_are_typed(name: str, wheels: dict[str, Wheel]) -> None:
    wheel = wheels[name]
    for root in package_roots(wheel):
        assert f"{root}/py.typed" in wheel.payload
    assert "Typing :: Typed" in wheel.field("Classifier")


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_metadata_is_complete(name: str, sources: dict[str, Project], wheels: dict[str, Wheel]) -> None:
    wheel, project = wheels[name], sources[name]
    metadata = wheel.metadata
    assert metadata["Summary"]
    assert metadata["License-Expression"] == "MIT"
    assert wheel.field("License-File") == ["LICENSE"]
    assert f"{wheel.dist_info}/licenses/LICENSE" in wheel.names
    assert metadata["Requires-Python"] == ">=3.10"
    # README as the long description (what PyPI shows).
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert wheel.description.strip() == (project.directory / "README.md").read_text().strip()

    classifiers = wheel.field("Classifier")
    assert not set(classifiers) - known_classifiers
    assert "Framework :: Django" in classifiers
    django_versions = {c.rsplit(" :: ", 1)[1] for c in classifiers if c.startswith("Framework :: Django :: ")}
    assert django_versions == set(DJANGO_VERSIONS.get(name, SUPPORTED_DJANGO))
    for version in SUPPORTED_PYTHON:
        assert f"Programming Language :: Python :: {version}" in classifiers

    urls = dict(line.split(", ", 1) for line in wheel.field("Project-URL"))
    assert set(urls) >= {"Documentation", "Source", "Changelog", "Issues"}
    assert urls["Changelog"].endswith(f"/packages/{project.directory.name}/CHANGELOG.md")

    # Every version has its changelog entry.
    changelog = (project.directory / "CHANGELOG.md").read_text()
    assert f"## {project.version} " in changelog or f"## {project.version}\n" in changelog


@pytest.mark.parametrize("name", VENDORS)
def test_vendor_requires_the_core_range_it_checks_at_runtime(
    name: str, sources: dict[str, Project], wheels: dict[str, Wheel]
) -> None:
    """pip enforces Requires-Dist; ``require_core()`` catches installs pip did not resolve. They
    must state the same range, and the in-repo core must be in it."""
    requirements = wheels[name].unconditional()
    assert CORE in requirements
    assert not [other for other in requirements if other.startswith("djpool") and other != CORE]
    drivers = {driver for extras in DRIVER_EXTRAS.values() for driver in extras.values()}
    assert not set(requirements) & drivers, "drivers belong in extras: one install, one driver"
    assert set(requirements) == {CORE}

    specifier = requirements[CORE].specifier
    minimum, below = bounds(specifier)
    assert Version(sources[CORE].version) in specifier
    calls = require_core_calls(sources[name])
    assert calls, f"{name} never calls require_core()"
    for call in calls:
        assert SpecifierSet(f">={call[0]},<{call[1]}") == specifier, (call, str(specifier))


@pytest.mark.parametrize("name", VENDORS)
def test_vendor_offers_its_driver_extras(name: str, wheels: dict[str, Wheel]) -> None:
    wheel = wheels[name]
    provided = set(wheel.field("Provides-Extra"))
    for extra, driver in DRIVER_EXTRAS[name].items():
        assert extra in provided
        added = wheel.extra(extra)
        assert driver in added, (extra, sorted(added))
        assert not [other for other in added if other.startswith("djpool")]


def test_meta_package_reproduces_the_predecessor_extras(sources: dict[str, Project], wheels: dict[str, Wheel]) -> None:
    meta = wheels[META]
    assert set(meta.unconditional()) == {CORE}
    assert Version(sources[CORE].version) in meta.unconditional()[CORE].specifier
    assert set(meta.field("Provides-Extra")) == {"all", *META_EXTRAS}

    everything = meta.extra("all")
    assert set(everything) == {vendor for vendor, _ in META_EXTRAS.values()}
    for extra, (vendor, driver_extras) in META_EXTRAS.items():
        added = meta.extra(extra)
        assert set(added) == {vendor}
        requirement = added[vendor]
        assert requirement.extras == set(driver_extras)  # the driver comes with it: one command installs
        assert driver_extras <= set(DRIVER_EXTRAS[vendor])
        minimum, below = bounds(requirement.specifier)  # a floor and a cap: never an incompatible major
        if vendor in sources:
            assert Version(sources[vendor].version) in requirement.specifier
            assert Version(sources[vendor].version).major == Version(minimum).major
        in_all = everything[vendor]
        assert (in_all.extras, in_all.specifier) == (requirement.extras, requirement.specifier)
