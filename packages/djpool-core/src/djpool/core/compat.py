"""Version checks shared by the vendor packages.

Each vendor package is released on its own and declares the djpool-core range
it works with. pip enforces that range at install time; this check catches
the installs pip did not resolve (``--no-deps``, a vendored copy, an editable
checkout) with a message that says what to install.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from djpool.core.__about__ import __version__ as core_version

__all__ = ["require_core"]


def _release(version: str) -> tuple[int, ...]:
    numbers = []
    for part in version.split("."):
        digits = ""
        for char in part:
            if not char.isdigit():
                break
            digits += char
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers)


def require_core(package: str, package_version: str, minimum: str, below: str) -> None:
    """Raise ImproperlyConfigured unless ``minimum <= djpool-core < below``.

    ``require_core("djpool-mysql", __version__, "0.1", "1")`` reads as
    "djpool-mysql needs djpool-core>=0.1,<1".
    """
    if not _release(minimum) <= _release(core_version) < _release(below):
        raise ImproperlyConfigured(
            f"{package} {package_version} requires djpool-core>={minimum},<{below}; "
            f"you have djpool-core {core_version}. "
            f"Install a compatible one: pip install 'djpool-core>={minimum},<{below}'"
        )
