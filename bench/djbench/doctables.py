"""docs/performance.md's tables, made from the results of one run.

``bench/run.py --json FILE`` writes everything the run measured; this module
turns it into the Markdown tables the Performance page shows, one per
marker pair (``<!-- bench:NAME -->`` ... ``<!-- /bench:NAME -->``). So every
figure on the page comes from one committed results file, none is copied by
hand, and ``bench/tables.py --check`` can tell when the page and the file
disagree. Nothing here needs Django or a database.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Callable
from typing import Any

from djbench.report import fmt

Results = dict[str, Any]

#: What each configuration is, as the page names it.
LABELS = {
    "driver": "raw driver, one open connection per thread",
    "sqlalchemy": "raw SQLAlchemy `QueuePool`",
    "stock": "Django default (`CONN_MAX_AGE = 0`)",
    "persistent": "Django persistent + `CONN_HEALTH_CHECKS`",
    "unchecked": "Django persistent, no health check (the floor)",
    "native": "Django's native psycopg pool",
    "realpool": "django-pg-real-pool",
    "predecessor": "django-db-connection-pool",
    "djpool": "**djpool**",
    "djpool_housekept": "djpool with `MIN_IDLE`, `IDLE_TIMEOUT`",
}
#: The latency and scaling runs' configurations, in the order the page lists them.
GRID = ["driver", "sqlalchemy", "stock", "persistent", "unchecked", "native", "predecessor", "djpool", "djpool_housekept"]
_SHORT = {"postgresql": "pg", "mysql": "my"}
_DASH = "–"


# ##### Formatting #####


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def number(value: Any, places: int = 0) -> str:
    """A count or a rate: thousands separated, ``places`` decimals."""
    return _DASH if _missing(value) else f"{value:,.{places}f}"


def whole_or_two(value: Any) -> str:
    """A per-request count: whole when it is (an exact count is), else to two places."""
    if _missing(value):
        return _DASH
    return f"{value:,.0f}" if abs(value - round(value)) < 0.005 else f"{value:,.2f}"


def signed(value: Any) -> str:
    """A difference, with its sign."""
    if _missing(value):
        return _DASH
    return ("+" if value >= 0 else "") + whole_or_two(value)


def ms(seconds: Any) -> str:
    if _missing(seconds):
        return _DASH
    value = seconds * 1e3
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def us(seconds: Any) -> str:
    return _DASH if _missing(seconds) else f"{seconds * 1e6:,.0f} µs"


def ratio(value: Any) -> str:
    return _DASH if _missing(value) else f"{value:.2f}"


def table(headers: list[str], rows: list[list[Any]], align: str | None = None) -> str:
    """A Markdown table; ``align``: one letter a column, ``l`` or ``r`` (default: first left, the rest right)."""
    align = align or "l" + "r" * (len(headers) - 1)
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" if a == "l" else "---:" for a in align) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def not_run(what: str) -> str:
    return f"_{what}: not in this run's results._"


# ##### The run #####


def vendors(results: Results) -> list[str]:
    return list(results.get("plan", {}).get("vendors", ["postgresql", "mysql"]))


def server_name(results: Results, vendor: str) -> str:
    """``PostgreSQL`` or ``MariaDB`` (or ``MySQL``), as the server said."""
    found = results.get("meta", {}).get("servers", {}).get(vendor)
    if found:
        return str(found).split()[0]
    return "PostgreSQL" if vendor == "postgresql" else "MySQL"


def key(vendor: str, name: str) -> str:
    """A configuration's key in the results: ``pg_djpool``, ``my_native32``, ..."""
    return f"{_SHORT[vendor]}_{name}"


def header(results: Results) -> str:
    meta = results.get("meta", {})
    versions = meta.get("versions", {})
    names = [
        ("django", "Django"), ("sqlalchemy", "SQLAlchemy"), ("psycopg", "psycopg"), ("psycopg-pool", "psycopg-pool"),
        ("mysqlclient", "mysqlclient"), ("django-db-connection-pool", "django-db-connection-pool"),
        ("django-pg-real-pool", "django-pg-real-pool"), ("gunicorn", "gunicorn"), ("djpool-core", "djpool-core"),
    ]  # fmt: skip
    stack = ", ".join(f"{label} {versions[dist]}" for dist, label in names if dist in versions)
    servers = " and ".join(str(v) for v in meta.get("servers", {}).values())
    cpus = meta.get("cpus")
    machine = f"on a {cpus}-core machine" if cpus else "on one machine"
    text = (
        f"Produced by `{meta.get('command', 'python bench/run.py')}` on {meta.get('date', 'an unknown date')},"
        f" in one run of {meta.get('seconds', '?')} s: Python {meta.get('python', '?')}, {stack};"
        f" {servers} on loopback, {machine}."
    )
    if meta.get("smoke"):
        text += (
            "\n\n**This is a smoke run** (`--smoke`): far too short for its figures to mean anything."
            " It shows the tables a full run (`hatch run bench:all --json bench/results/latest.json`) fills in."
        )
    return text


# ##### Tables #####


def statements(results: Results) -> str:
    counts = results.get("statements")
    if not counts:
        return not_run("Statements per request")
    vs = vendors(results)
    rows = []
    for name in GRID:
        values = [counts.get(key(v, name)) for v in vs]
        if all(_missing(x) for x in values):
            continue
        rows.append([LABELS[name], *(whole_or_two(x) for x in values)])
    return table(["configuration", *(server_name(results, v) for v in vs)], rows)


def calls(results: Results) -> str:
    found = results.get("calls")
    if not found:
        return not_run("Calls per request")
    vs = vendors(results)
    names: list[str] = []
    for v in vs:
        names += [n for n in found.get(v, {}) if n not in names]
    rows = []
    for name in names:
        if name.startswith("djpool"):
            label = f"**djpool, {'transaction' if 'transaction' in name else 'session'} mode**"
        else:
            label = LABELS.get(name, name)
        cells = []
        for v in vs:
            entry = found.get(v, {}).get(name)
            if entry is None:
                cells += [_DASH, ""]
            else:
                cells += [whole_or_two(entry["calls"]), "" if name == "unchecked" else signed(entry["over_floor"])]
        rows.append([label, *cells])
    headers = ["configuration"]
    for v in vs:
        headers += [f"{server_name(results, v)} calls/request", "over the floor"]
    return table(headers, rows)


def latency(results: Results) -> str:
    found = results.get("latency")
    if not found:
        return not_run("Latency")
    columns = [(v, q) for v in vendors(results) for q in ("select", "orm") if f"{v}:{q}" in found]
    rows = []
    for name in GRID:
        cells = []
        for v, q in columns:
            entry = found[f"{v}:{q}"].get(key(v, name))
            cells += [us(entry["mean"]), ratio(entry["djpool_ratio"])] if entry else ["", ""]
        if any(cells):
            label = LABELS[name].replace("**", "")
            rows.append([label, *cells])
    headers = ["configuration"]
    for v, q in columns:
        headers += [f"{server_name(results, v)} {'`SELECT 1`' if q == 'select' else 'ORM read'}", "djpool ÷"]
    return table(headers, rows)


def scaling(results: Results) -> str:
    found = results.get("scaling")
    if not found:
        return not_run("Threads")
    threads = max(int(k.rsplit(":", 1)[1]) for k in found)
    vs = vendors(results)
    rows = []
    for name in GRID:
        cells = []
        for v in vs:
            s = found.get(f"{key(v, name)}:{threads}")
            if s is None:
                cells += [_DASH, "", "", ""]
            else:
                cells += [number(s["rate"]), f"{ms(s['p50'])} / {ms(s['p99'])} / {ms(s['max'])}", ratio(s["fairness"]), s["peak_connections"]]
        if any(c not in ("", _DASH) for c in cells):
            rows.append([LABELS[name], *cells])
    headers = [f"{threads} threads"]
    for v in vs:
        headers += [f"{server_name(results, v)} req/s", "p50 / p99 / max ms", "fairness", "server conns"]
    return table(headers, rows)


def _workload_label(results: Results, name: str) -> str:
    plan = results.get("plan", {})
    small, large = plan.get("small_pool", 4), plan.get("large_pool", 32)
    return {
        f"djpool_session{large}": f"djpool, session mode, {large} connections",
        f"djpool_transaction{small}": f"**djpool, transaction mode, {small} connections**",
        f"native{large}": f"Django's native pool, {large}",
        f"realpool{small}": f"django-pg-real-pool, {small}",
        f"predecessor{large}": f"django-db-connection-pool, {large}",
    }.get(name, name)


def workload(results: Results) -> str:
    found = results.get("workload")
    if not found:
        return not_run("Workload")
    vs = vendors(results)
    names: list[str] = []
    for v in vs:
        names += [k.split("_", 1)[1] for k in found.get(v, {}) if k.split("_", 1)[1] not in names]
    rows = []
    for name in names:
        cells = []
        for v in vs:
            s = found.get(v, {}).get(key(v, name))
            cells += [number(s["rate"]), ms(s["p99"]), s["peak_connections"]] if s else [_DASH, "", ""]
        rows.append([_workload_label(results, name), *cells])
    headers = [""]
    for v in vs:
        headers += [f"{server_name(results, v)} req/s", "p99 ms", "server conns"]
    return table(headers, rows)


def workload_runs(results: Results) -> str:
    found = results.get("workload_runs")
    if not found:
        return not_run("Transaction mode, run by run")
    plan = results.get("plan", {})
    small = plan.get("small_pool", 4)
    vs = [v for v in vendors(results) if v in found]
    runs = max(len(found[v]["rates"]) for v in vs)
    headers = ["run"]
    for v in vs:
        headers.append(f"{server_name(results, v)} transaction mode on {small}, req/s")
        headers += [f"÷ {c['versus']}" for c in found[v]["comparisons"]]
    rows = []
    for n in range(runs):
        cells: list[Any] = [n + 1]
        for v in vs:
            rates = found[v]["rates"]
            cells.append(number(rates[n]) if n < len(rates) else _DASH)
            cells += [ratio(c["ratios"][n]) if n < len(c["ratios"]) else _DASH for c in found[v]["comparisons"]]
        rows.append(cells)
    for measure in ("worst", "median"):
        take = min if measure == "worst" else statistics.median
        cells = [f"**{measure}**"]
        for v in vs:
            # A run that measured nothing (null) makes the worst and the median unknown, as in the check.
            rates = found[v]["rates"]
            cells.append(_DASH if not rates or any(_missing(r) for r in rates) else number(take(rates)))
            for c in found[v]["comparisons"]:
                ratios = c["ratios"]
                value = _DASH if not ratios or any(_missing(r) for r in ratios) else ratio(take(ratios))
                cells.append(f"**{value}**" if measure == c["measure"] else value)
        rows.append(cells)
    return table(headers, rows)


def fixed_budget(results: Results) -> str:
    found = results.get("fixed_budget")
    if not found:
        return not_run("Fixed budget")
    vs = vendors(results)
    names: list[str] = []
    for v in vs:
        names += [n for n in found.get(v, {}) if n not in names]
    rows = []
    for name in names:
        label = next(found[v][name]["label"] for v in vs if name in found.get(v, {}))
        if name.startswith("djpool_budget_transaction"):
            label = f"**{label}**"
        cells = []
        for v in vs:
            s = found.get(v, {}).get(name)
            cells += [number(s["rate"]), f"{ms(s['p50'])} / {ms(s['p99'])}", s["peak_connections"]] if s else [_DASH, "", ""]
        rows.append([label, *cells])
    headers = [""]
    for v in vs:
        headers += [f"{server_name(results, v)} req/s", "p50 / p99 ms", "server conns"]
    return table(headers, rows)


_ENDING = {
    "djpool_ending_session": "djpool, session mode",
    "djpool_ending_transaction": "djpool, transaction mode",
    "native_ending": "Django's native pool",
    "stock_ending": "Django default (`CONN_MAX_AGE = 0`)",
}


def availability(results: Results) -> str:
    found = results.get("availability")
    if not found:
        return not_run("Threads that end holding a connection")
    vs = vendors(results)
    rows = []
    for name, label in _ENDING.items():
        cells = []
        for v in vs:
            s = found.get(v, {}).get(key(v, name))
            if s is None:
                cells += [_DASH, "", "", ""]
            else:
                reclaimed = "" if s["reclaimed"] is None else number(s["reclaimed"])
                cells += [number(s["requests"]), s["errors"], number(s["ended_threads"]), reclaimed]
        if any(c not in ("", _DASH) for c in cells):
            rows.append([label, *cells])
    headers = [""]
    for v in vs:
        headers += [f"{server_name(results, v)} requests", "errors", "threads ended", "reclaimed"]
    return table(headers, rows)


def memory(results: Results) -> str:
    found = results.get("memory")
    if not found:
        return not_run("Memory")
    rows = []
    for v in vendors(results):
        s = found.get(v)
        if s is None:
            continue
        n = s["connections"]
        rows.append([
            server_name(results, v), f"{n} connections, {number(s['driver_bytes'] / 1024)} KiB",
            f"{number(s['pool_bytes'] / 1024)} KiB", number(s["requests"]), f"{s['growth_bytes'] / 1024:,.1f} KiB",
        ])  # fmt: skip
    return table(["", "opened by the backend", "pool holding them idle", "requests", "growth"], rows)


_E2E = {"persistent": "Django persistent", "native": "Django's native pool", "predecessor": "django-db-connection-pool", "djpool": "djpool"}


def gunicorn(results: Results) -> str:
    found = results.get("e2e")
    if not found:
        return not_run("gunicorn")
    kinds = list(results.get("plan", {}).get("e2e_kinds", ["sync", "gthread"]))
    vs = vendors(results)
    rows = []
    for name, label in _E2E.items():
        cells = []
        for v in vs:
            for kind in kinds:
                s = found.get(v, {}).get(f"{key(v, name)}:{kind}")
                cells.append(f"{number(s['rate'])} ({s['peak_connections']})" if s else _DASH)
        if any(c != _DASH for c in cells):
            rows.append([label, *cells])
    headers = [""]
    for v in vs:
        headers += [f"{server_name(results, v)} {kind}" if i == 0 else kind for i, kind in enumerate(kinds)]
    return table(headers, rows)


_STATUS = {"PASS": "met", "FAIL": "missed", "OUT OF REACH": "out of reach"}


def targets(results: Results) -> str:
    checks = results.get("checks")
    if checks is None:
        return not_run("Targets")
    met = sum(c["status"] == "PASS" for c in checks)
    out = sum(c["status"] == "OUT OF REACH" for c in checks)
    intro = f"{met} of {len(checks)} targets were met in this run"
    intro += f", {out} {'is' if out == 1 else 'are'} out of reach here:" if out else ":"
    rows = []
    for c in checks:
        op = "≥" if c.get("higher_is_better") else "≤"
        unit = c.get("unit", "x")
        show = whole_or_two if unit == "" else fmt  # a count (statements, calls, connections) or a ratio

        def value(x: Any, unit: str = unit, show: Callable[[Any], str] = show) -> str:
            return _DASH if _missing(x) else f"{show(x)}{unit}"

        floor = c.get("floor")
        rows.append([
            server_name(results, c["vendor"]), c["name"], value(c["value"]), f"{op} {value(c['limit'])}",
            "" if _missing(floor) else value(floor), _STATUS.get(c["status"], c["status"]),
        ])  # fmt: skip
    errors = results.get("errors") or []
    text = intro + "\n\n" + table(["server", "target", "djpool", "limit", "floor", ""], rows, "llrrrl")
    if errors:
        text += f"\n\nThe run reported {len(errors)} error(s); the first: `{errors[0]}`"
    return text


#: Marker name -> what fills it.
SECTIONS: dict[str, Callable[[Results], str]] = {
    "run": header,
    "statements": statements,
    "calls": calls,
    "latency": latency,
    "scaling": scaling,
    "workload": workload,
    "workload-runs": workload_runs,
    "fixed-budget": fixed_budget,
    "availability": availability,
    "memory": memory,
    "gunicorn": gunicorn,
    "targets": targets,
}


# ##### The page #####

_MARKED = re.compile(r"(<!-- bench:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /bench:(?P=name) -->)", re.S)


class MarkerError(ValueError):
    """The page's markers and the tables disagree: one without the other, or unpaired."""


def splice(document: str, results: Results) -> str:
    """``document`` with each marked section replaced by its table from ``results``."""
    seen = []

    def fill(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in SECTIONS:
            raise MarkerError(f"<!-- bench:{name} --> names no table (known: {', '.join(SECTIONS)})")
        seen.append(name)
        return f"{match.group(1)}\n{SECTIONS[name](results)}\n\n{match.group(4)}"

    spliced = _MARKED.sub(fill, document)
    opened = re.findall(r"<!-- bench:([\w-]+) -->", document)
    if sorted(opened) != sorted(seen):
        unpaired = sorted(set(opened) - set(seen))
        raise MarkerError(f"markers without their closing <!-- /bench:NAME -->: {', '.join(unpaired)}")
    missing = [name for name in SECTIONS if name not in seen]
    if missing:
        raise MarkerError(f"the page has no markers for: {', '.join(missing)}")
    return spliced
