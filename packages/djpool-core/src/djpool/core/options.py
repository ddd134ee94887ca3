"""``POOL_OPTIONS``: defaults, :func:`setup`, and validation.

Every key is checked: an unknown or lower-case key, a value of the wrong type
or out of range raises ``ImproperlyConfigured`` naming the database alias, the
key, what was given and what is allowed. The predecessor package ignored such
keys silently, which is how a typo became a production pool of the wrong size.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import threading
from collections.abc import Callable, Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured

__all__ = ["PoolOptions", "setup", "parse_pool_options", "POOL_MODES", "RESET_MODES"]

POOL_MODES = ("session", "transaction")
# VALIDATION_TIMEOUT when not set: the smaller of this and TIMEOUT.
DEFAULT_VALIDATION_TIMEOUT = 5.0
RESET_MODES = ("rollback", "full")


@dataclasses.dataclass(frozen=True)
class PoolOptions:
    """The validated pool settings of one DATABASES entry.

    Field names are the lower-case forms of the ``POOL_OPTIONS`` keys.
    """

    pool_size: int = 10
    max_overflow: int = 10
    recycle: float | None = 900.0
    timeout: float = 30.0
    pre_ping: bool = True
    pre_ping_idle: float = 1.0
    echo: bool | str = False
    use_lifo: bool = True
    pool_mode: str = "session"
    reset_on_return: str = "rollback"
    leak_detection: float | None = None
    min_idle: int = 0
    idle_timeout: float | None = None
    validation_timeout: float | None = None

    @property
    def health_check_timeout(self) -> float:
        """Seconds a pre-ping or a reset on return may wait for the server.

        ``VALIDATION_TIMEOUT``, by default the smaller of ``TIMEOUT`` and 5 s
        (a checkout's pings never exceed what is left of its ``TIMEOUT``).
        """
        if self.validation_timeout is not None:
            return self.validation_timeout
        return min(self.timeout, DEFAULT_VALIDATION_TIMEOUT)

    @property
    def needs_housekeeping(self) -> bool:
        """True when a background thread must warm up or shrink this pool."""
        return self.min_idle > 0 or self.idle_timeout is not None

    @property
    def max_connections(self) -> int | None:
        """The most connections one pool opens, or None when unbounded."""
        if self.max_overflow < 0:
            return None
        return self.pool_size + self.max_overflow


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _int_at_least(minimum: int, allowed: str) -> Callable[[Any], tuple[bool, Any, str]]:
    def check(value: Any) -> tuple[bool, Any, str]:
        return _is_int(value) and value >= minimum, value, allowed

    return check


def _positive_number(value: Any) -> tuple[bool, Any, str]:
    return _is_number(value) and value > 0, float(value) if _is_number(value) else value, "a number of seconds greater than 0"


def _non_negative_number(value: Any) -> tuple[bool, Any, str]:
    return _is_number(value) and value >= 0, float(value) if _is_number(value) else value, "a number of seconds, 0 or more"


def _recycle(value: Any) -> tuple[bool, Any, str]:
    allowed = "a number of seconds greater than 0, or None (or -1) to never recycle"
    if value is None or (_is_int(value) and value == -1):
        return True, None, allowed
    return _is_number(value) and value > 0, float(value) if _is_number(value) else value, allowed


def _optional_positive_number(value: Any) -> tuple[bool, Any, str]:
    allowed = "a number of seconds greater than 0, or None (off)"
    if value is None:
        return True, None, allowed
    return _is_number(value) and value > 0, float(value) if _is_number(value) else value, allowed


def _validation_timeout(value: Any) -> tuple[bool, Any, str]:
    allowed = "a number of seconds greater than 0, or None for the smaller of TIMEOUT and 5"
    if value is None:
        return True, None, allowed
    return _is_number(value) and value > 0, float(value) if _is_number(value) else value, allowed


def _leak_detection(value: Any) -> tuple[bool, Any, str]:
    allowed = "a number of seconds greater than 0, or None (or 0) for off"
    if value is None or (_is_number(value) and value == 0):
        return True, None, allowed
    return _is_number(value) and value > 0, float(value) if _is_number(value) else value, allowed


def _bool(value: Any) -> tuple[bool, Any, str]:
    return isinstance(value, bool), value, "True or False"


def _echo(value: Any) -> tuple[bool, Any, str]:
    return isinstance(value, bool) or value == "debug", value, 'True, False or "debug"'


def _choice(choices: tuple[str, ...]) -> Callable[[Any], tuple[bool, Any, str]]:
    allowed = " or ".join(repr(c) for c in choices)

    def check(value: Any) -> tuple[bool, Any, str]:
        return value in choices, value, allowed

    return check


_VALIDATORS: dict[str, Callable[[Any], tuple[bool, Any, str]]] = {
    "POOL_SIZE": _int_at_least(1, "an integer of 1 or more"),
    "MAX_OVERFLOW": _int_at_least(-1, "an integer of 0 or more, or -1 for no limit"),
    "RECYCLE": _recycle,
    "TIMEOUT": _positive_number,
    "PRE_PING": _bool,
    "PRE_PING_IDLE": _non_negative_number,
    "ECHO": _echo,
    "USE_LIFO": _bool,
    "POOL_MODE": _choice(POOL_MODES),
    "RESET_ON_RETURN": _choice(RESET_MODES),
    "LEAK_DETECTION": _leak_detection,
    "MIN_IDLE": _int_at_least(0, "an integer of 0 or more, at most POOL_SIZE"),
    "IDLE_TIMEOUT": _optional_positive_number,
    "VALIDATION_TIMEOUT": _validation_timeout,
}

_defaults = PoolOptions()
_defaults_lock = threading.Lock()


def _suggestion(key: str, known: list[str]) -> str:
    matches = difflib.get_close_matches(key.upper(), known, n=1, cutoff=0.6)
    return f" Did you mean {matches[0]!r}?" if matches else ""


def _validate(where: str, options: Mapping[Any, Any]) -> dict[str, Any]:
    """Return ``{field_name: value}`` for ``options``, or raise ImproperlyConfigured."""
    known = list(_VALIDATORS)
    values: dict[str, Any] = {}
    for key, value in options.items():
        if not isinstance(key, str) or key not in _VALIDATORS:
            hint = ""
            if isinstance(key, str):
                if key.upper() in _VALIDATORS:
                    hint = f" POOL_OPTIONS keys are upper-case: use {key.upper()!r}."
                else:
                    hint = _suggestion(key, known)
            raise ImproperlyConfigured(
                f"{where}: unknown key {key!r}.{hint} Allowed keys: {', '.join(known)}."
            )
        ok, normalized, allowed = _VALIDATORS[key](value)
        if not ok:
            raise ImproperlyConfigured(
                f"{where}[{key!r}] must be {allowed}; got {value!r} ({type(value).__name__})."
            )
        values[key.lower()] = normalized
    return values


def parse_pool_options(alias: str, pool_options: Any) -> PoolOptions:
    """Validate a DATABASES entry's ``POOL_OPTIONS`` over the current defaults."""
    where = f"DATABASES[{alias!r}]['POOL_OPTIONS']"
    if pool_options is None:
        pool_options = {}
    if not isinstance(pool_options, Mapping):
        raise ImproperlyConfigured(
            f"{where} must be a dict; got {pool_options!r} ({type(pool_options).__name__})."
        )
    options = dataclasses.replace(_defaults, **_validate(where, pool_options))
    _check_consistency(where, options)
    return options


def _check_consistency(where: str, options: PoolOptions) -> None:
    if options.min_idle > options.pool_size:
        raise ImproperlyConfigured(
            f"{where}['MIN_IDLE'] must be at most POOL_SIZE ({options.pool_size}); "
            f"got {options.min_idle}. Connections above POOL_SIZE are closed when returned."
        )


def setup(**kwargs: Any) -> PoolOptions:
    """Change the defaults for pools created afterwards in this process.

    Takes the lower-case forms of the ``POOL_OPTIONS`` keys, as the
    predecessor's ``setup()`` did: ``setup(pool_size=20, max_overflow=5)``.
    Returns the new defaults. An unknown keyword raises ``ImproperlyConfigured``
    with the closest valid name.
    """
    global _defaults
    known = [key.lower() for key in _VALIDATORS]
    for name in kwargs:
        if name not in known:
            matches = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hint = f" Did you mean {matches[0]!r}?" if matches else ""
            raise ImproperlyConfigured(
                f"djpool.core.setup(): unknown keyword {name!r}.{hint} Allowed: {', '.join(known)}."
            )
    values = _validate("djpool.core.setup()", {name.upper(): value for name, value in kwargs.items()})
    with _defaults_lock:
        defaults = dataclasses.replace(_defaults, **values)
        _check_consistency("djpool.core.setup()", defaults)
        _defaults = defaults
        return _defaults


def reset_defaults() -> None:
    """Restore the built-in defaults (for tests)."""
    global _defaults
    with _defaults_lock:
        _defaults = PoolOptions()
