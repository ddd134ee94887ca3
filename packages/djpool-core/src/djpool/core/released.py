"""What a wrapper holds after giving its connection back to the pool."""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = ["ReleasedConnection"]


class ReleasedConnection:
    """Stands in for a driver connection that ``_close()`` gave back to the pool."""

    # One (stateless) instance per DB-API module: _close() runs on every checkin.
    _instances: ClassVar[dict[Any, ReleasedConnection]] = {}

    def __init__(self, database: Any) -> None:
        # An AttributeError too, so hasattr() and getattr(default) work.
        try:
            error = type("ConnectionReleased", (database.InterfaceError, AttributeError), {})
        except TypeError:
            # psycopg2's errors are C types that cannot also be AttributeErrors
            # ("multiple bases have instance lay-out conflict").
            error = type("ConnectionReleased", (database.InterfaceError,), {})
        self.__dict__["_error"] = error

    @classmethod
    def for_database(cls, database: Any) -> ReleasedConnection:
        instance = cls._instances.get(database)
        if instance is None:
            instance = cls._instances.setdefault(database, cls(database))
        return instance

    def __getattr__(self, name: str) -> Any:
        raise self.__dict__["_error"]("connection already closed (djpool gave it back to the pool)")

    def close(self) -> None:
        """Closing again is harmless, as with a driver connection."""

    def __repr__(self) -> str:
        return "<ReleasedConnection: given back to the pool>"
