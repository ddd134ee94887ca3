"""``manage.py djpool``: the pools of this process, as a table or as JSON.

Pools belong to a process, so the command shows the process it runs in:
run on its own, it lists each pooled database's settings and, with
``--connect``, opens a connection through each pool (a quick end-to-end
test of the settings). Inside a running server, ``call_command("djpool",
stdout=buffer)`` (from a staff-only view or a shell in that process)
shows that worker's live pools; ``djpool.core.stats()`` gives the same
figures as a dict. ``--server`` adds what no single process can see: the
sessions the server holds for each database and user, from every worker
process and host.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from djpool.core import registry
from djpool.core.checks import is_pooled_engine
from djpool.core.options import parse_pool_options

# (heading, stats key or callable); the table's columns after the alias.
_COLUMNS: list[tuple[str, Any]] = [
    ("mode", lambda row: row["options"].get("POOL_MODE", "-")),
    ("size", lambda row: row["options"].get("POOL_SIZE", "-")),
    ("max", lambda row: _max_connections(row["options"])),
    ("in use", "checked_out"),
    ("idle", "idle"),
    ("overflow", "overflow"),
    ("waiting", "waiting"),
    ("checkouts", "checkouts"),
    ("connects", "connects"),
    ("timeouts", "timeouts"),
    ("invalid", "invalidations"),
    ("waits", "waits"),
    ("wait avg", lambda row: _wait_average(row["stats"])),
    ("wait max", lambda row: _seconds(row["stats"]["wait_time_max"]) if row["stats"].get("waits") else "-"),
]


def _max_connections(options: dict[str, Any]) -> str:
    if "POOL_SIZE" not in options:
        return "-"
    if options["MAX_OVERFLOW"] < 0:
        return "no limit"
    return str(options["POOL_SIZE"] + options["MAX_OVERFLOW"])


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def _wait_average(figures: dict[str, Any]) -> str:
    if not figures.get("waits"):
        return "-"
    return _seconds(figures["wait_time_total"] / figures["waits"])


# Sessions on the connection's database for its user, by state, as the
# server sees them, leaving out the session that asks.
_SESSIONS_SQL = {
    "postgresql": (
        "SELECT state, count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND usename = current_user AND pid <> pg_backend_pid() GROUP BY state"
    ),
    "mysql": (
        "SELECT command, count(*) FROM information_schema.processlist WHERE db = DATABASE() "
        "AND user = SUBSTRING_INDEX(CURRENT_USER(), '@', 1) AND id <> CONNECTION_ID() GROUP BY command"
    ),
}
_IDLE_STATES = {"idle", "Sleep"}
_IDLE_IN_TRANSACTION_STATES = {"idle in transaction", "idle in transaction (aborted)"}


def server_sessions(alias: str) -> dict[str, Any]:
    """Count the server's sessions on ``alias``'s database for its user, over one pooled connection.

    Returns ``{"sessions", "active", "idle", "idle_in_transaction"}``; the last
    is None where the server does not say (MySQL). Raises for a vendor
    without a known query.
    """
    connection = connections[alias]
    sql = _SESSIONS_SQL.get(connection.vendor)
    if sql is None:
        raise NotImplementedError(f"no session query for vendor {connection.vendor!r}")
    was_connected = connection.connection is not None
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            rows = [(state, int(count)) for state, count in cursor.fetchall()]
    finally:
        if not was_connected and not connection.in_atomic_block:
            connection.close()
    counts: dict[str, Any] = {
        "sessions": sum(count for _, count in rows),
        "idle": sum(count for state, count in rows if state in _IDLE_STATES),
        "idle_in_transaction": (
            sum(count for state, count in rows if state in _IDLE_IN_TRANSACTION_STATES)
            if connection.vendor == "postgresql"
            else None
        ),
    }
    counts["active"] = counts["sessions"] - counts["idle"] - (counts["idle_in_transaction"] or 0)
    return counts


def collect(aliases: list[str] | None = None) -> dict[str, Any]:
    """What the command shows: every pooled database's options and this process's figures."""
    live = registry.stats()
    databases: dict[str, Any] = {}
    for alias, settings_dict in connections.settings.items():
        if (aliases and alias not in aliases) or not is_pooled_engine(settings_dict.get("ENGINE")):
            continue
        entry: dict[str, Any] = {"engine": settings_dict["ENGINE"], "options": {}, "stats": live.get(alias, {})}
        try:
            options = parse_pool_options(alias, settings_dict.get("POOL_OPTIONS"))
        except ImproperlyConfigured as error:
            entry["error"] = str(error)
        else:
            entry["options"] = {field.upper(): value for field, value in dataclasses.asdict(options).items()}
        databases[alias] = entry
    return {"pid": os.getpid(), "databases": databases}


def format_table(data: dict[str, Any]) -> str:
    """Render :func:`collect`'s result as a plain-text table."""
    headings = ["alias", *(heading for heading, _ in _COLUMNS)]
    rows = []
    notes = []
    for alias, row in data["databases"].items():
        cells = [alias]
        for _, source in _COLUMNS:
            if callable(source):
                cells.append(str(source(row)))
            else:
                value = row["stats"].get(source)
                cells.append("-" if value is None else str(value))
        rows.append(cells)
        if "error" in row:
            notes.append(f"{alias}: {row['error']}")
        elif not row["stats"]:
            notes.append(f"{alias}: no pool in this process yet (no connection made; try --connect)")
    widths = [max(len(line[i]) for line in [headings, *rows]) for i in range(len(headings))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(cell.rjust(width) for cell, width in zip(cells[1:], widths[1:]))]).rstrip()

    out = [f"djpool pools of process {data['pid']} (each process has its own pools)", ""]
    if not rows:
        out.append("No database uses a djpool ENGINE.")
        return "\n".join(out) + "\n"
    out.append(line(headings))
    out.append("  ".join("-" * width for width in widths))
    out.extend(line(cells) for cells in rows)
    if notes:
        out.append("")
        out.extend(notes)
    servers = [(alias, row["server"]) for alias, row in data["databases"].items() if "server" in row]
    if servers:
        out.extend(["", "Server sessions on each database for its user, from every process and host:", ""])
        out.extend(_server_table(servers))
    return "\n".join(out) + "\n"


def _server_table(servers: list[tuple[str, dict[str, Any]]]) -> list[str]:
    headings = ["alias", "sessions", "active", "idle", "idle in transaction"]
    keys = ["sessions", "active", "idle", "idle_in_transaction"]
    rows = []
    notes = []
    for alias, counts in servers:
        rows.append([alias, *("-" if counts.get(key) is None else str(counts[key]) for key in keys)])
        if "error" in counts:
            notes.append(f"{alias}: could not count sessions ({counts['error']})")
    widths = [max(len(row[i]) for row in [headings, *rows]) for i in range(len(headings))]
    lines = []
    for row in [headings, ["-" * width for width in widths], *rows]:
        lines.append("  ".join([row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:], widths[1:]))]).rstrip())
    if notes:
        lines.extend(["", *notes])
    return lines


def _describe(error: BaseException, password: Any) -> str:
    """The error's class and first line, with the password blanked should the driver quote it."""
    first_line = (str(error).strip().splitlines() or [""])[0]
    if isinstance(password, str) and password:
        first_line = first_line.replace(password, "********")
    return f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__


class Command(BaseCommand):
    help = (
        "Show the connection pools of this process: each pooled database's size and mode, "
        "connections in use and idle, waits and timeouts."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database",
            action="append",
            dest="databases",
            metavar="ALIAS",
            help="Show only this database alias (repeatable).",
        )
        parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
        parser.add_argument(
            "--connect",
            action="store_true",
            help="First take a connection from each pool, test it and give it back.",
        )
        parser.add_argument(
            "--server",
            action="store_true",
            help="Also count the server's sessions on each database for its user (every process and host).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        aliases: list[str] | None = options["databases"]
        if aliases:
            unknown = [alias for alias in aliases if alias not in connections.settings]
            if unknown:
                raise CommandError(
                    f"Unknown database alias {unknown[0]!r}; DATABASES has: {', '.join(connections.settings)}."
                )
        failures = []
        if options["connect"]:
            for alias in collect(aliases)["databases"]:
                error = self._try_connection(alias)
                if error:
                    failures.append(f"{alias}: {error}")
        sessions = {}
        if options["server"]:
            # Before collect(): the pool figures then include the connection used here.
            for alias, row in collect(aliases)["databases"].items():
                if "error" in row:
                    continue
                try:
                    sessions[alias] = server_sessions(alias)
                except Exception as error:
                    sessions[alias] = {"error": _describe(error, connections.settings[alias].get("PASSWORD"))}
        data = collect(aliases)
        for alias, counts in sessions.items():
            data["databases"][alias]["server"] = counts
        if options["json"]:
            self.stdout.write(json.dumps(data, indent=2, sort_keys=True))
        else:
            self.stdout.write(format_table(data), ending="")
        if failures:
            raise CommandError("Could not use a pooled connection of " + "; ".join(failures))

    @staticmethod
    def _try_connection(alias: str) -> str | None:
        connection = connections[alias]
        try:
            connection.ensure_connection()
            if not connection.is_usable():
                return "the connection did not answer"
        except Exception as error:
            return _describe(error, connection.settings_dict.get("PASSWORD"))
        finally:
            connection.close()
        return None
