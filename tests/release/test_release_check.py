""".ci/release_check.py: the gate the release workflow runs on every tag.

Run with ``hatch run ci:test`` (standard library and pytest only; no Django,
no database). Each refusal is checked on a small packages/ tree written here,
and the checker is also run on this repository's own packages.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "release_check.py"
spec = importlib.util.spec_from_file_location("release_check", SCRIPT)
release_check = importlib.util.module_from_spec(spec)
sys.modules["release_check"] = release_check  # dataclasses looks the module up by name
spec.loader.exec_module(release_check)

Release, ReleaseError, check = release_check.Release, release_check.ReleaseError, release_check.check


def write_package(root: Path, name: str, version: str, changelog: str, *, static: bool = False) -> Path:
    """packages/<name> with a pyproject.toml, a version and a CHANGELOG.md."""
    directory = root / "packages" / name
    directory.mkdir(parents=True)
    if static:
        (directory / "pyproject.toml").write_text(f'[project]\nname = "{name}"\nversion = "{version}"\n')
    else:
        about = directory / "src" / name.replace("-", "_") / "__about__.py"
        about.parent.mkdir(parents=True)
        about.write_text(f'__version__ = "{version}"\n')
        (directory / "pyproject.toml").write_text(
            f'[project]\nname = "{name}"\ndynamic = ["version"]\n\n'
            f'[tool.hatch.version]\npath = "{about.relative_to(directory).as_posix()}"\n'
        )
    (directory / "CHANGELOG.md").write_text(f"# Changelog: {name}\n\n{changelog}")
    return directory


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    write_package(tmp_path, "djpool-core", "0.2.0", "## 0.2.0 (2026-12-03)\n\n- Things.\n\n## 0.1.0 (2026-11-01)\n")
    write_package(tmp_path, "djpool", "1.0.0", "## 1.0.0 - 2026-12-03\n", static=True)
    return tmp_path


def refusal(tag: str, root: Path) -> list[str]:
    with pytest.raises(ReleaseError) as caught:
        check(tag, root)
    return caught.value.problems


def test_a_matching_tag_is_released(repo: Path):
    assert check("djpool-core-v0.2.0", repo) == Release("djpool-core", "packages/djpool-core", "0.2.0")
    # The meta-package's version is static in pyproject.toml; refs/tags/ as GITHUB_REF gives it.
    assert check("refs/tags/djpool-v1.0.0", repo) == Release("djpool", "packages/djpool", "1.0.0")


def test_a_version_other_than_the_package_s_is_refused(repo: Path):
    assert refusal("djpool-core-v0.1.0", repo) == [
        "tag version 0.1.0 is not djpool-core's version 0.2.0: bump it (hatch version, in packages/djpool-core) "
        "or tag djpool-core-v0.2.0"
    ]


def test_a_release_without_a_changelog_entry_is_refused(repo: Path):
    (repo / "packages/djpool-core/CHANGELOG.md").write_text("# Changelog\n\n## 0.2.0rc1\n\n## 0.1.0\n")
    assert refusal("djpool-core-v0.2.0", repo) == [
        "djpool-core/CHANGELOG.md has no entry for 0.2.0: add a '## 0.2.0' section"
    ]


def test_an_entry_still_marked_unreleased_is_refused(repo: Path):
    (repo / "packages/djpool-core/CHANGELOG.md").write_text("# Changelog\n\n## 0.2.0 (unreleased)\n")
    (problem,) = refusal("djpool-core-v0.2.0", repo)
    assert "marked unreleased" in problem and "'## 0.2.0 (<release date>)'" in problem


def test_both_problems_are_reported_at_once(repo: Path):
    (repo / "packages/djpool/CHANGELOG.md").unlink()
    assert refusal("djpool-v1.1.0", repo) == [
        "tag version 1.1.0 is not djpool's version 1.0.0: bump it (hatch version, in packages/djpool) or tag djpool-v1.0.0",
        "djpool has no CHANGELOG.md",
    ]


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("djpool-core-0.2.0", "is not <distribution>-v<version>"),
        ("v0.2.0", "is not <distribution>-v<version>"),
        ("djpool-mysql-v0.2.0", "'djpool-mysql', which is not a distribution in packages/ (djpool, djpool-core)"),
    ],
)
def test_a_tag_naming_no_package_is_refused(repo: Path, tag: str, expected: str):
    (problem,) = refusal(tag, repo)
    assert expected in problem


def test_command_line_exit_status_and_step_outputs(tmp_path: Path):
    """Run as the workflow does, on this repository: a refusal exits 1; outputs go to GITHUB_OUTPUT."""
    refused = subprocess.run(
        [sys.executable, str(SCRIPT), "djpool-core-v999.0.0"], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 1, refused
    assert refused.stdout == ""
    assert "release refused: tag version 999.0.0 is not djpool-core's version" in refused.stderr

    # What the current version's tag would do depends on its CHANGELOG; the version read must be the package's.
    version = release_check.package_version(SCRIPT.parents[1] / "packages" / "djpool-core")
    output = tmp_path / "github_output"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), f"djpool-core-v{version}"],
        capture_output=True, text=True, timeout=60, env={"GITHUB_OUTPUT": str(output), "PATH": "/usr/bin:/bin"},
    )
    if result.returncode == 0:
        expected = f"distribution=djpool-core\ndirectory=packages/djpool-core\nversion={version}\n"
        assert result.stdout == expected and output.read_text() == expected
    else:
        assert result.returncode == 1 and "CHANGELOG.md" in result.stderr and not output.exists(), result


def test_every_package_of_this_repository_is_found_with_its_version():
    found = release_check.distributions(SCRIPT.parents[1])
    assert set(found) == {"djpool", "djpool-core", "djpool-postgresql", "djpool-mysql", "djpool-oracle", "djpool-jdbc"}
    for directory in found.values():
        assert release_check.package_version(directory)[0].isdigit()
