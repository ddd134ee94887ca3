"""System check ``djpool.W101``: RECYCLE must be below the server's wait_timeout.

MySQL and MariaDB close a connection that stayed idle longer than the
session's ``wait_timeout`` (MySQL 8.0.24+ then reports error 4031 on the next
use, older servers 2006 or 2013). The idle-threshold pre-ping replaces such a
connection at checkout, but only if ``PRE_PING`` is on, and at the price of a
round trip; a ``RECYCLE`` below the timeout retires connections before the
server drops them. ``wait_timeout`` can be set per server, per account and
per session (``OPTIONS["init_command"]``), so the check reads it from a real
connection of each alias: ``manage.py check --database ALIAS``.

It runs from the backend's ``validation_class``, where Django runs its own
MySQL database checks (``mysql.W002``). A function registered with
``django.core.checks.register()`` from this backend would be missed: Django
takes the list of checks before it loads the backends of the aliases given
with ``--database``, so the first ``check`` in a process would not see it.
"""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.db.backends.mysql.validation import DatabaseValidation as MySQLDatabaseValidation

__all__ = ["DatabaseValidation", "check_recycle_below_wait_timeout"]


def check_recycle_below_wait_timeout(connection: Any) -> list[checks.CheckMessage]:
    """Warn (djpool.W101) if this pooled MySQL alias's RECYCLE is not below its wait_timeout."""
    options = getattr(connection, "djpool_options", None)
    if options is None:
        return []
    alias = connection.alias
    was_connected = connection.connection is not None
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT @@SESSION.wait_timeout")
            (wait_timeout,) = cursor.fetchone()
    finally:
        if not was_connected:
            connection.close()  # back to the pool
    wait_timeout = int(wait_timeout)
    recycle = options.recycle
    if recycle is not None and recycle < wait_timeout:
        return []
    shown = "None (never)" if recycle is None else f"{recycle:g}"
    return [
        checks.Warning(
            f"DATABASES[{alias!r}]['POOL_OPTIONS']['RECYCLE'] is {shown} seconds, not below the "
            f"server's wait_timeout of {wait_timeout} seconds for this connection: the server "
            f"closes connections that stay idle in the pool that long.",
            hint=(
                f"Set RECYCLE to fewer than {wait_timeout} seconds, or raise wait_timeout. "
                f"Until then the pre-ping (PRE_PING) replaces such connections at checkout, "
                f"one round trip each."
            ),
            obj=alias,
            id="djpool.W101",
        )
    ]


class DatabaseValidation(MySQLDatabaseValidation):
    """Django's MySQL database checks, plus djpool.W101."""

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        issues = super().check(**kwargs)
        issues.extend(check_recycle_below_wait_timeout(self.connection))
        return issues
