#!/usr/bin/env python3
"""Check a release tag against the package it names, before anything is built.

    python .ci/release_check.py djpool-postgresql-v0.2.0     # or refs/tags/djpool-postgresql-v0.2.0

A tag is ``<distribution>-v<version>`` (packages/*/CHANGELOG.md says so). The
release workflow (.github/workflows/release.yml) runs this on every pushed tag
and publishes only if it passes, so a tag can never publish a version other
than the one the package declares, or a release its changelog does not
describe. It refuses, each with one line saying what to fix:

* a tag not of that form, or naming no distribution in packages/;
* a version other than the package's own (``__about__.py`` through
  ``[tool.hatch.version] path``, or the meta-package's static
  ``[project] version``);
* a CHANGELOG.md with no ``## <version>`` entry, or one still marked
  "unreleased".

On success it prints ``distribution=…``, ``directory=…`` (relative to the
repository root) and ``version=…``, and appends the same lines to
``$GITHUB_OUTPUT`` when that is set (the workflow's step outputs).
Standard library only, Python 3.11+ (tomllib).
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The distribution is everything before the last "-v" that is followed by a digit.
TAG = re.compile(r"^(?P<distribution>[a-z0-9][a-z0-9._-]*?)-v(?P<version>[0-9][0-9A-Za-z.+!-]*)$")
ABOUT_VERSION = re.compile(r"""^__version__\s*=\s*["']([^"']+)["']""", re.MULTILINE)


class ReleaseError(Exception):
    """The tag cannot be released; ``problems`` says why, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclasses.dataclass(frozen=True)
class Release:
    distribution: str
    directory: str  # relative to the repository root, with "/"
    version: str

    def outputs(self) -> str:
        return f"distribution={self.distribution}\ndirectory={self.directory}\nversion={self.version}\n"


def parse_tag(tag: str) -> tuple[str, str]:
    """``(distribution, version)`` from ``<distribution>-v<version>`` (a ``refs/tags/`` prefix is dropped)."""
    tag = tag.removeprefix("refs/tags/")
    match = TAG.match(tag)
    if match is None:
        raise ReleaseError(
            [f"tag {tag!r} is not <distribution>-v<version>, e.g. djpool-postgresql-v0.2.0"]
        )
    return match["distribution"], match["version"]


def distributions(root: Path) -> dict[str, Path]:
    """``{project name: directory}`` for every packages/*/pyproject.toml."""
    found = {}
    for pyproject in sorted((root / "packages").glob("*/pyproject.toml")):
        name = tomllib.loads(pyproject.read_text())["project"]["name"]
        found[name] = pyproject.parent
    return found


def package_version(directory: Path) -> str:
    """The version the package declares: static ``[project] version`` or hatch's version file."""
    pyproject = tomllib.loads((directory / "pyproject.toml").read_text())
    project = pyproject["project"]
    if "version" in project:
        return str(project["version"])
    path = pyproject.get("tool", {}).get("hatch", {}).get("version", {}).get("path")
    if "version" not in project.get("dynamic", []) or not path:
        raise ReleaseError([f"{directory.name}/pyproject.toml declares no version and no [tool.hatch.version] path"])
    match = ABOUT_VERSION.search((directory / path).read_text())
    if match is None:
        raise ReleaseError([f"{directory.name}/{path} has no __version__ = \"...\" line"])
    return match[1]


def changelog_problem(directory: Path, version: str) -> str | None:
    """Why the package's CHANGELOG.md does not describe ``version`` as released, or None."""
    changelog = directory / "CHANGELOG.md"
    if not changelog.is_file():
        return f"{directory.name} has no CHANGELOG.md"
    heading = re.compile(rf"^##\s+\[?v?{re.escape(version)}\]?(?=\s|$)(?P<rest>.*)$", re.MULTILINE)
    match = heading.search(changelog.read_text())
    if match is None:
        return f"{directory.name}/CHANGELOG.md has no entry for {version}: add a '## {version}' section"
    if "unreleased" in match["rest"].lower():
        return (
            f"{directory.name}/CHANGELOG.md's entry for {version} is marked unreleased: "
            f"replace '{match[0].strip()}' with '## {version} (<release date>)'"
        )
    return None


def check(tag: str, root: Path = ROOT) -> Release:
    """The release ``tag`` stands for, or :class:`ReleaseError` with every problem found."""
    distribution, version = parse_tag(tag)
    known = distributions(root)
    if distribution not in known:
        raise ReleaseError([f"tag names {distribution!r}, which is not a distribution in packages/ ({', '.join(known)})"])
    directory = known[distribution]
    problems = []
    declared = package_version(directory)
    if declared != version:
        problems.append(
            f"tag version {version} is not {distribution}'s version {declared}: "
            f"bump it (hatch version, in {directory.relative_to(root).as_posix()}) or tag {distribution}-v{declared}"
        )
    if (problem := changelog_problem(directory, version)) is not None:
        problems.append(problem)
    if problems:
        raise ReleaseError(problems)
    return Release(distribution, directory.relative_to(root).as_posix(), version)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: release_check.py <distribution>-v<version>", file=sys.stderr)
        return 2
    try:
        release = check(argv[0])
    except ReleaseError as error:
        for problem in error.problems:
            print(f"release refused: {problem}", file=sys.stderr)
        return 1
    print(release.outputs(), end="")
    if output := os.environ.get("GITHUB_OUTPUT"):
        with open(output, "a", encoding="utf-8") as file:
            file.write(release.outputs())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
