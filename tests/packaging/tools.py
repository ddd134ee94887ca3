"""Build djpool's distributions and install them the way users do.

Everything here works on copies and temporary directories: the checkout is
only read. Builds go through ``uv build`` (an isolated hatchling, as on a
release machine), installs through ``uv pip install`` into fresh virtual
environments, and every check of an installed environment runs in that
environment's own interpreter, with nothing from this checkout on its path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import Message
from email.parser import Parser
from functools import cached_property
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ROOT / "packages"

#: Environment variables that would let a check see this checkout or another
#: environment instead of the one under test.
_LEAKY_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE", "CONDA_PREFIX")

_VERSION_LINE = re.compile(r'^__version__ = "([^"]+)"$', re.MULTILINE)


def clean_environ() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key not in _LEAKY_VARIABLES}


def run(command: list[str], *, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure, the error shows its output (not just its exit code)."""
    result = subprocess.run(command, cwd=cwd, env=clean_environ(), capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(
            f"command failed ({result.returncode}): {' '.join(command)}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
    return result


def uv() -> str:
    found = shutil.which("uv")
    if found is None:
        raise AssertionError("the packaging tests need uv on PATH (hatch run packaging:test installs it)")
    return found


# ------------------------------------------------------------------ sources


@dataclass(frozen=True)
class Project:
    """One distribution's source directory under packages/."""

    directory: Path

    @cached_property
    def pyproject(self) -> dict[str, Any]:
        return tomllib.loads((self.directory / "pyproject.toml").read_text())

    @property
    def name(self) -> str:
        return str(self.pyproject["project"]["name"])

    @property
    def version_file(self) -> Path | None:
        """The ``__about__.py`` hatch reads the version from (None: static version)."""
        path = self.pyproject.get("tool", {}).get("hatch", {}).get("version", {}).get("path")
        return self.directory / path if path else None

    @property
    def version(self) -> str:
        if self.version_file is None:
            return str(self.pyproject["project"]["version"])
        match = _VERSION_LINE.search(self.version_file.read_text())
        assert match, f"no __version__ line in {self.version_file}"
        return match.group(1)

    @property
    def source_files(self) -> set[str]:
        """Files under src/, as a wheel would name them (no caches)."""
        src = self.directory / "src"
        if not src.is_dir():
            return set()
        return {
            path.relative_to(src).as_posix()
            for path in src.rglob("*")
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo")
        }

    def copy_with_version(self, destination: Path, version: str) -> Project:
        """A copy of this project whose version is ``version``: what a release of it would build."""
        shutil.copytree(self.directory, destination, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "dist"))
        copy = Project(destination)
        if copy.version_file is None:
            pyproject = destination / "pyproject.toml"
            text, count = re.subn(r'(?m)^version = "[^"]+"$', f'version = "{version}"', pyproject.read_text(), count=1)
            assert count == 1, f"no static version line in {pyproject}"
            pyproject.write_text(text)
        else:
            text, count = _VERSION_LINE.subn(f'__version__ = "{version}"', copy.version_file.read_text(), count=1)
            assert count == 1
            copy.version_file.write_text(text)
        assert copy.version == version
        return copy


def projects() -> dict[str, Project]:
    """Every distribution in packages/, by name (a directory appears once it has a pyproject.toml)."""
    found = (Project(path.parent) for path in sorted(PACKAGES.glob("*/pyproject.toml")))
    return {project.name: project for project in found}


def released_source(name: str, minimum: str, destination: Path) -> tuple[Project, str] | None:
    """The oldest release of ``name`` at or above ``minimum``, exported from its git tag.

    Releases are tagged ``<distribution>-v<version>``. Returns the exported
    project and the tag, or None when no such release is tagged yet.
    """
    listed = run(["git", "-C", str(ROOT), "tag", "--list", f"{name}-v*"], check=False).stdout.split()
    releases = []
    for tag in listed:
        try:
            releases.append((Version(tag.removeprefix(f"{name}-v")), tag))
        except ValueError:
            continue
    candidates = sorted(release for release in releases if release[0] >= Version(minimum))
    if not candidates:
        return None
    tag = candidates[0][1]
    directory = f"packages/{name}"
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", tag, directory], capture_output=True, check=True
    )
    export = destination / tag
    export.mkdir(parents=True)
    tar_path = export / "source.tar"
    tar_path.write_bytes(archive.stdout)
    with tarfile.open(tar_path) as tar:
        tar.extractall(export, filter="data")
    return Project(export / directory), tag


# ------------------------------------------------------------------ built artifacts


@dataclass(frozen=True)
class Wheel:
    path: Path

    @cached_property
    def names(self) -> set[str]:
        with zipfile.ZipFile(self.path) as archive:
            return set(archive.namelist())

    @property
    def dist_info(self) -> str:
        (name,) = {entry.split("/", 1)[0] for entry in self.names if entry.split("/", 1)[0].endswith(".dist-info")}
        return name

    @property
    def payload(self) -> set[str]:
        """The files the wheel installs into site-packages (not its metadata)."""
        return {entry for entry in self.names if not entry.startswith(self.dist_info + "/")}

    @cached_property
    def metadata(self) -> Message:
        with zipfile.ZipFile(self.path) as archive:
            return Parser().parsestr(archive.read(f"{self.dist_info}/METADATA").decode())

    @property
    def name(self) -> str:
        return str(self.metadata["Name"])

    @property
    def version(self) -> str:
        return str(self.metadata["Version"])

    def field(self, name: str) -> list[str]:
        """Every value of a METADATA field that may repeat (Classifier, Requires-Dist, ...)."""
        return [str(value) for value in self.metadata.get_all(name) or []]

    @property
    def description(self) -> str:
        """The long description: the body of METADATA."""
        return str(self.metadata.get_payload())

    def requirements(self) -> list[Requirement]:
        return [Requirement(line) for line in self.field("Requires-Dist")]

    def unconditional(self) -> dict[str, Requirement]:
        return {canonicalize_name(r.name): r for r in self.requirements() if r.marker is None}

    def extra(self, extra: str) -> dict[str, Requirement]:
        """Requirements the extra adds (as pip sees them: markers evaluated for that extra)."""
        added: dict[str, Requirement] = {}
        for requirement in self.requirements():
            marker = requirement.marker
            if marker is not None and marker.evaluate({"extra": extra}) and not marker.evaluate({"extra": ""}):
                added[canonicalize_name(requirement.name)] = requirement
        return added


def build(project: Project, out_dir: Path) -> Wheel:
    """Build the project's sdist and wheel into ``out_dir``, as a release does; return the wheel."""
    before = set(out_dir.glob("*.whl"))
    run([uv(), "build", "--quiet", "--sdist", "--wheel", "--out-dir", str(out_dir), str(project.directory)])
    (wheel,) = set(out_dir.glob("*.whl")) - before
    return Wheel(wheel)


def file_requirement(wheel: Wheel, extras: Iterable[str] = ()) -> str:
    """A requirement for exactly this wheel file (never a same-named one from an index)."""
    extras = sorted(extras)
    suffix = f"[{','.join(extras)}]" if extras else ""
    return f"{wheel.name}{suffix} @ {wheel.path.as_uri()}"


# ------------------------------------------------------------------ environments

_DISTRIBUTIONS = """
import json
from importlib import metadata
print(json.dumps({d.metadata["Name"].lower().replace("_", "-"): d.version for d in metadata.distributions()}))
"""

_LOAD_BACKENDS = """
import json, sys
import django
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.utils import load_backend

settings.configure(USE_TZ=True)
django.setup()
result = {}
for engine in sys.argv[1:]:
    try:
        module = load_backend(engine)
    except ImproperlyConfigured as error:
        result[engine] = {"error": str(error)}
    else:
        result[engine] = {"module": module.__name__, "wrapper": module.DatabaseWrapper.__module__}
print(json.dumps(result))
"""


class Venv:
    """A fresh virtual environment, filled only through ``uv pip install``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        run([uv(), "venv", "--quiet", "--python", sys.executable, str(path)])
        self.python = path / "bin" / "python"

    def install(self, *requirements: str, find_links: Iterable[Path] = (), options: Iterable[str] = ()) -> str:
        command = [uv(), "pip", "install", "--python", str(self.python), *options]
        for directory in find_links:
            command += ["--find-links", str(directory)]
        return run([*command, *requirements]).stderr

    def try_install(self, *requirements: str, options: Iterable[str] = ()) -> subprocess.CompletedProcess[str]:
        return run([uv(), "pip", "install", "--python", str(self.python), *options, *requirements], check=False)

    def python_json(self, code: str, *args: str) -> Any:
        """Run ``code`` in this environment's interpreter (outside the checkout); parse what it prints."""
        result = run([str(self.python), "-I", "-c", code, *args], cwd=self.path)
        return json.loads(result.stdout.strip().splitlines()[-1])

    def python_error(self, code: str, *args: str) -> str:
        """Run ``code``, which must fail; return its stderr."""
        result = run([str(self.python), "-I", "-c", code, *args], cwd=self.path, check=False)
        assert result.returncode != 0, f"expected a failure, got:\n{result.stdout}"
        return result.stderr

    def distributions(self) -> dict[str, str]:
        return dict(self.python_json(_DISTRIBUTIONS))

    def djpool_distributions(self) -> dict[str, str]:
        return {name: version for name, version in self.distributions().items() if name.startswith("djpool")}

    def load_backends(self, *engines: str) -> dict[str, dict[str, str]]:
        return dict(self.python_json(_LOAD_BACKENDS, *engines))
