"""Installs as users do them: fresh virtual environments, ``uv pip install`` from built wheels.

Django, SQLAlchemy and the drivers come from PyPI (uv's cache makes repeat runs
fast); djpool's distributions come only from wheels built in this session.
Each check runs in the new environment's own interpreter, isolated from this
checkout, so a module that only imports here because of the source tree fails.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.packaging.contract import (
    CORE,
    DRIVER_EXTRAS,
    META,
    META_EXTRAS,
    SERVERS,
    bounds,
    engines,
    just_below,
    next_minor,
    padded,
    vendor_of,
    vendors,
)
from tests.packaging.tools import Project, Venv, Wheel, build, file_requirement, projects, released_source

DISTRIBUTIONS = sorted(projects())
VENDORS = vendors(DISTRIBUTIONS)
NOT_AVAILABLE = "isn't an available database backend or couldn't be imported"

# Two requests through Django on a pooled ENGINE, then a look from an unpooled
# connection at what the server has open.
_TWO_REQUESTS = """
import json, sys
from importlib import metadata
import django
from django.conf import settings

server, distribution = json.loads(sys.argv[1]), sys.argv[2]
common = {"NAME": "test", "USER": server["USER"], "PASSWORD": "", "HOST": "127.0.0.1", "PORT": server["PORT"]}
settings.configure(
    DATABASES={
        "default": {"ENGINE": server["ENGINE"], **common},
        "observer": {"ENGINE": server["PLAIN_ENGINE"], **common},
    },
    USE_TZ=True,
)
django.setup()
from django.db import connections

sessions = []
for request in range(2):
    with connections["default"].cursor() as cursor:
        cursor.execute(server["SESSION_ID"])
        sessions.append(cursor.fetchone()[0])
    connections["default"].close()  # end of request: back to the pool
with connections["observer"].cursor() as cursor:
    cursor.execute(server["SESSION_OPEN"], [sessions[0]])
    still_open = cursor.fetchone()[0]
print(json.dumps({
    "sessions": sessions,
    "still_open": still_open,
    "versions": {name: metadata.version(name) for name in ("djpool-core", distribution)},
}))
"""

_LOAD_ONE = """
import sys
import django
from django.conf import settings
from django.db.utils import load_backend

settings.configure(USE_TZ=True)
django.setup()
load_backend(sys.argv[1])
"""


def driver_extras(vendor: str) -> list[str]:
    """The default driver extra (the one ``djpool[<vendor>]`` picks), if the vendor has any."""
    return list(DRIVER_EXTRAS[vendor])[:1]


def assert_engines_load(env: Venv, wheels: dict[str, Wheel], installed: list[str]) -> None:
    """Each installed vendor's ENGINE loads through Django; every other one gets Django's error."""
    expected = {vendor: engines(wheels[vendor]) for vendor in VENDORS}
    loaded = env.load_backends(*[engine for names in expected.values() for engine in names])
    for vendor, names in expected.items():
        assert names, f"{vendor} provides no ENGINE"
        for engine in names:
            if vendor in installed:
                assert loaded[engine] == {"module": f"{engine}.base", "wrapper": f"{engine}.base"}, loaded[engine]
            else:
                assert NOT_AVAILABLE in loaded[engine].get("error", ""), loaded[engine]


@pytest.fixture(scope="session")
def core_at(
    sources: dict[str, Project], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str, bool], tuple[Wheel, str]]:
    """Build djpool-core as version ``v``: ``core_at(v, released)`` -> (wheel, where it came from).

    With ``released``, the oldest release at or above ``v`` is built from its git tag
    (``djpool-core-v<version>``); before the first such release, the checkout's core is
    built under the version ``v``, as a release of today's code would be.
    """
    built: dict[tuple[str, bool], tuple[Wheel, str]] = {}

    def make(version: str, released: bool) -> tuple[Wheel, str]:
        key = (version, released)
        if key not in built:
            work = tmp_path_factory.mktemp(f"core-{version}")
            export = released_source(CORE, version, work / "tags") if released else None
            if export is not None:
                project, origin = export
            else:
                project = sources[CORE].copy_with_version(work / "src", padded(version))
                origin = f"the checkout's djpool-core, numbered {padded(version)}"
            built[key] = (build(project, work / "dist"), origin)
        return built[key]

    return make


# ------------------------------------------------------------------ one vendor, nothing else


@pytest.mark.parametrize("vendor", VENDORS)
def test_one_vendor_installs_alone(
    vendor: str, wheels: dict[str, Wheel], wheelhouse: Path, venv: Callable[[], Venv]
) -> None:
    """``pip install djpool-<vendor>[<driver>]`` brings the core and that driver, nothing else of djpool's."""
    env = venv()
    extras = driver_extras(vendor)
    env.install(f"{vendor}[{','.join(extras)}]" if extras else vendor, find_links=[wheelhouse])

    assert env.djpool_distributions() == {CORE: wheels[CORE].version, vendor: wheels[vendor].version}
    installed = env.distributions()
    own_drivers = {DRIVER_EXTRAS[vendor][extra] for extra in extras}
    other_drivers = {driver for extras_ in DRIVER_EXTRAS.values() for driver in extras_.values()} - own_drivers
    assert own_drivers <= set(installed)
    assert not other_drivers & set(installed)
    assert_engines_load(env, wheels, installed=[vendor])


def test_meta_package_extra_is_a_working_install(
    wheels: dict[str, Wheel], wheelhouse: Path, venv: Callable[[], Venv]
) -> None:
    """``pip install djpool[postgresql]``: the meta-package, the core, the vendor and its driver."""
    env = venv()
    env.install(f"{META}[postgresql]", find_links=[wheelhouse])
    assert env.djpool_distributions() == {name: wheels[name].version for name in (META, CORE, "djpool-postgresql")}
    assert "psycopg" in env.distributions()
    assert_engines_load(env, wheels, installed=["djpool-postgresql"])


@pytest.mark.parametrize("extras", ["all", "mysql,oracle"])
def test_meta_package_installs_several_vendors(
    extras: str, wheels: dict[str, Wheel], wheelhouse: Path, venv: Callable[[], Venv]
) -> None:
    requested = list(META_EXTRAS) if extras == "all" else extras.split(",")
    wanted = [META_EXTRAS[extra][0] for extra in requested]
    missing = [vendor for vendor in wanted if vendor not in wheels]
    if missing:
        pytest.skip(f"not in this checkout yet: {', '.join(missing)}")
    env = venv()
    env.install(f"{META}[{extras}]", find_links=[wheelhouse])

    assert env.djpool_distributions() == {name: wheels[name].version for name in (META, CORE, *wanted)}
    installed = env.distributions()
    for vendor in wanted:
        for extra in META_EXTRAS[vendor_of(vendor)][1]:
            assert DRIVER_EXTRAS[vendor][extra] in installed
    assert_engines_load(env, wheels, installed=wanted)


# ------------------------------------------------------------------ independent versions


def test_one_vendor_pinned_while_the_others_upgrade(
    sources: dict[str, Project], wheels: dict[str, Wheel], wheelhouse: Path, venv: Callable[[], Venv], tmp_path: Path
) -> None:
    """Next releases of both vendors are available; the user pins PostgreSQL's current one.
    Both versions install side by side in the shared namespace and both ENGINEs load."""
    pinned, upgraded = "djpool-postgresql", "djpool-mysql"
    releases = tmp_path / "next-releases"
    next_versions = {}
    for vendor in (pinned, upgraded):
        next_versions[vendor] = next_minor(sources[vendor].version)
        copy = sources[vendor].copy_with_version(tmp_path / f"{vendor}-next", next_versions[vendor])
        assert build(copy, releases).version == next_versions[vendor]

    env = venv()
    env.install(f"{META}[postgresql,mysql]", f"{pinned}=={wheels[pinned].version}", find_links=[wheelhouse, releases])

    assert env.djpool_distributions() == {
        META: wheels[META].version,
        CORE: wheels[CORE].version,
        pinned: wheels[pinned].version,
        upgraded: next_versions[upgraded],
    }
    assert wheels[pinned].version != next_versions[upgraded]
    reported = env.python_json(
        "import json\n"
        "from djpool.backends.postgresql.__about__ import __version__ as postgresql\n"
        "from djpool.backends.mysql.__about__ import __version__ as mysql\n"
        "print(json.dumps([postgresql, mysql]))"
    )
    assert reported == [wheels[pinned].version, next_versions[upgraded]]
    assert_engines_load(env, wheels, installed=[pinned, upgraded])


# ------------------------------------------------------------------ core version range


@pytest.mark.parametrize("vendor", sorted(SERVERS))
def test_vendor_works_on_the_oldest_core_it_declares(
    vendor: str, wheels: dict[str, Wheel], core_at: Callable[[str, bool], tuple[Wheel, str]], venv: Callable[[], Venv]
) -> None:
    """The vendor wheel with the oldest djpool-core its range admits, serving real queries.

    A vendor released against core X.Y must not start using what only a later core has;
    this catches that before a user who pinned the old core does.
    """
    minimum, _ = bounds(wheels[vendor].unconditional()[CORE].specifier)
    oldest, origin = core_at(minimum, True)
    print(f"{vendor}: djpool-core {oldest.version} built from {origin}")
    env = venv()
    env.install(file_requirement(oldest), file_requirement(wheels[vendor], driver_extras(vendor)))

    result = env.python_json(_TWO_REQUESTS, json.dumps(SERVERS[vendor]), vendor)
    assert result["versions"] == {CORE: oldest.version, vendor: wheels[vendor].version}
    first, second = result["sessions"]
    assert first == second, "the second request should have reused the first one's server session"
    assert result["still_open"] == 1, "Django's close() should have returned the session to the pool, not closed it"


@pytest.mark.parametrize("vendor", VENDORS)
def test_core_outside_the_declared_range_is_refused(
    vendor: str,
    wheels: dict[str, Wheel],
    wheelhouse: Path,
    core_at: Callable[[str, bool], tuple[Wheel, str]],
    venv: Callable[[], Venv],
) -> None:
    """The installer refuses a core outside the vendor's range; forced in with ``--no-deps``,
    the backend refuses it on import with ImproperlyConfigured saying what to install."""
    wheel = wheels[vendor]
    minimum, below = bounds(wheel.unconditional()[CORE].specifier)
    env = venv()
    env.install(file_requirement(wheel, driver_extras(vendor)), find_links=[wheelhouse])
    engine = engines(wheel)[0]
    assert env.load_backends(engine)[engine] == {"module": f"{engine}.base", "wrapper": f"{engine}.base"}

    outside = [version for version in (just_below(minimum), padded(below)) if version is not None]
    for version in outside:
        core, _ = core_at(version, False)
        refused = env.try_install(file_requirement(core), file_requirement(wheel))
        assert refused.returncode != 0
        assert "No solution found" in refused.stderr and f"djpool-core>={minimum}" in refused.stderr.replace(", ", ",")

        env.install(file_requirement(core), options=["--no-deps"])
        assert env.djpool_distributions()[CORE] == version
        error = env.python_error(_LOAD_ONE, engine)
        assert (
            f"django.core.exceptions.ImproperlyConfigured: {vendor} {wheel.version} requires "
            f"djpool-core>={minimum},<{below}; you have djpool-core {version}. "
            f"Install a compatible one: pip install 'djpool-core>={minimum},<{below}'"
        ) in error, error
