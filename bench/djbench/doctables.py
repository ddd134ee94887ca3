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
from collections.abc import Callable, Sequence
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


# ##### Table shapes #####
#
# Most tables put the servers side by side: a label column, then one group of
# columns per vendor (or per vendor and query), the first header of a group
# naming the server. These helpers are that shape, so each table below only
# says which entries it shows and how one entry fills its group. A table of a
# fixed list (``GRID``, ``_ENDING``, ``_E2E``) leaves out what no vendor ran;
# one whose rows are what the run ``reported`` has nothing to leave out.

#: One vendor's entry in the results (a configuration's figures), or None.
Entry = dict[str, Any] | None
#: How one entry fills its group of cells.
Cells = Callable[[dict[str, Any]], list[Any]]


def group_headers(server: str, columns: Sequence[str]) -> list[str]:
    """One group's headers: the first names the server, so the rest can stay short."""
    return [f"{server} {column}" if i == 0 else column for i, column in enumerate(columns)]


def vendor_headers(results: Results, vs: Sequence[str], columns: Sequence[str]) -> list[str]:
    """The same group of headers for each vendor in turn."""
    return [header for v in vs for header in group_headers(server_name(results, v), columns)]


def blank_group(width: int) -> list[str]:
    """A group for a vendor without the entry: a dash, then blanks, so the columns stay in line."""
    return [_DASH, *[""] * (width - 1)]


def vendor_row(label: str, entries: Sequence[Entry], cells: Cells, blank: Sequence[Any]) -> list[Any]:
    """A table row: ``label``, then ``cells(entry)`` for each entry, or ``blank`` where the run has none."""
    filled: list[Any] = [label]
    for entry in entries:
        filled += cells(entry) if entry else blank
    return filled


def reported(found: Results, vs: Sequence[str], name: Callable[[str], str] = str) -> list[str]:
    """The ``name``s of what any vendor reported, in the order the run reported them first.

    Used where the results, not ``GRID``, decide which configurations a table
    lists (the run's plan chose them).
    """
    return list(dict.fromkeys(name(k) for v in vs for k in found.get(v, {})))


def _unprefixed(results_key: str) -> str:
    """``pg_native32`` -> ``native32``: the configuration, whichever vendor's key it was."""
    return results_key.split("_", 1)[1]


# ##### Tables #####


def statements(results: Results) -> str:
    """One figure per vendor, so no column groups; a configuration neither server ran is left out."""
    counts = results.get("statements")
    if not counts:
        return not_run("Statements per request")
    vs = vendors(results)
    rows = []
    for name in GRID:
        values = [counts.get(key(v, name)) for v in vs]
        if not all(_missing(x) for x in values):
            rows.append([LABELS[name], *(whole_or_two(x) for x in values)])
    return table(["configuration", *(server_name(results, v) for v in vs)], rows)


def _calls_label(name: str) -> str:
    """djpool is measured in both modes: the label says which (the calls phase names them ``djpool``, ``djpool_transaction4``)."""
    if name.startswith("djpool"):
        return f"**djpool, {'transaction' if 'transaction' in name else 'session'} mode**"
    return LABELS.get(name, name)


def _calls_cells(name: str) -> Cells:
    """Calls per request and the excess over the floor; the floor's own excess (zero by definition) is left blank."""
    return lambda entry: [whole_or_two(entry["calls"]), "" if name == "unchecked" else signed(entry["over_floor"])]


def calls(results: Results) -> str:
    found = results.get("calls")
    if not found:
        return not_run("Calls per request")
    vs = vendors(results)
    rows = []
    for name in reported(found, vs):
        entries = [found.get(v, {}).get(name) for v in vs]
        rows.append(vendor_row(_calls_label(name), entries, _calls_cells(name), blank_group(2)))
    return table(["configuration", *vendor_headers(results, vs, ["calls/request", "over the floor"])], rows)


_QUERIES = {"select": "`SELECT 1`", "orm": "ORM read"}


def _latency_cells(entry: dict[str, Any]) -> list[Any]:
    return [us(entry["mean"]), ratio(entry["djpool_ratio"])]


def latency(results: Results) -> str:
    """A group per vendor and query, each the mean and djpool's ratio to it; blank (not a dash) where not run."""
    found = results.get("latency")
    if not found:
        return not_run("Latency")
    columns = [(v, q) for v in vendors(results) for q in _QUERIES if f"{v}:{q}" in found]
    rows = []
    for name in GRID:
        entries = [found[f"{v}:{q}"].get(key(v, name)) for v, q in columns]
        if any(entries):
            rows.append(vendor_row(LABELS[name].replace("**", ""), entries, _latency_cells, ["", ""]))
    headers = ["configuration"]
    for v, q in columns:
        headers += group_headers(server_name(results, v), [_QUERIES[q], "djpool ÷"])
    return table(headers, rows)


def _scaling_cells(entry: dict[str, Any]) -> list[Any]:
    latencies = f"{ms(entry['p50'])} / {ms(entry['p99'])} / {ms(entry['max'])}"
    return [number(entry["rate"]), latencies, ratio(entry["fairness"]), entry["peak_connections"]]


def scaling(results: Results) -> str:
    """The most threads the run tried: where pools differ most."""
    found = results.get("scaling")
    if not found:
        return not_run("Threads")
    threads = max(int(k.rsplit(":", 1)[1]) for k in found)
    vs = vendors(results)
    rows = []
    for name in GRID:
        entries = [found.get(f"{key(v, name)}:{threads}") for v in vs]
        if any(entries):
            rows.append(vendor_row(LABELS[name], entries, _scaling_cells, blank_group(4)))
    columns = ["req/s", "p50 / p99 / max ms", "fairness", "server conns"]
    return table([f"{threads} threads", *vendor_headers(results, vs, columns)], rows)


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


def _workload_cells(entry: dict[str, Any]) -> list[Any]:
    return [number(entry["rate"]), ms(entry["p99"]), entry["peak_connections"]]


def workload(results: Results) -> str:
    found = results.get("workload")
    if not found:
        return not_run("Workload")
    vs = vendors(results)
    rows = []
    for name in reported(found, vs, _unprefixed):
        entries = [found.get(v, {}).get(key(v, name)) for v in vs]
        rows.append(vendor_row(_workload_label(results, name), entries, _workload_cells, blank_group(3)))
    return table(["", *vendor_headers(results, vs, ["req/s", "p99 ms", "server conns"])], rows)


#: How the worst and the median of the runs are taken.
_SUMMARIES: dict[str, Callable[[list[Any]], Any]] = {"worst": min, "median": statistics.median}


def _nth(values: list[Any], n: int, show: Callable[[Any], str]) -> str:
    """Run ``n``'s figure, or a dash where this series had fewer runs."""
    return show(values[n]) if n < len(values) else _DASH


def _summary(values: list[Any], measure: str, show: Callable[[Any], str]) -> str:
    """The worst or the median of the runs; a run that measured nothing (null) makes it unknown, as in the check."""
    if not values or any(_missing(x) for x in values):
        return _DASH
    return show(_SUMMARIES[measure](values))


def _run_row(found: Results, vs: Sequence[str], n: int) -> list[Any]:
    """Run ``n`` (from 0): each vendor's rate, then its ratios to the others."""
    cells: list[Any] = [n + 1]
    for v in vs:
        cells.append(_nth(found[v]["rates"], n, number))
        cells += [_nth(c["ratios"], n, ratio) for c in found[v]["comparisons"]]
    return cells


def _summary_row(found: Results, vs: Sequence[str], measure: str) -> list[Any]:
    """The runs' worst or median; in bold where it is the figure the comparison's target checks."""
    cells: list[Any] = [f"**{measure}**"]
    for v in vs:
        cells.append(_summary(found[v]["rates"], measure, number))
        for c in found[v]["comparisons"]:
            value = _summary(c["ratios"], measure, ratio)
            cells.append(f"**{value}**" if measure == c["measure"] else value)
    return cells


def workload_runs(results: Results) -> str:
    """Run by run, because the targets are checked on the worst run (or the median), not on an average.

    Each vendor's transaction mode is compared with configurations of its own,
    so the groups of columns differ from vendor to vendor.
    """
    found = results.get("workload_runs")
    if not found:
        return not_run("Transaction mode, run by run")
    small = results.get("plan", {}).get("small_pool", 4)
    vs = [v for v in vendors(results) if v in found]
    headers = ["run"]
    for v in vs:
        versus = [f"÷ {c['versus']}" for c in found[v]["comparisons"]]
        headers += group_headers(server_name(results, v), [f"transaction mode on {small}, req/s", *versus])
    runs = max(len(found[v]["rates"]) for v in vs)
    rows = [_run_row(found, vs, n) for n in range(runs)]
    rows += [_summary_row(found, vs, measure) for measure in _SUMMARIES]
    return table(headers, rows)


def _budget_label(found: Results, vs: Sequence[str], name: str) -> str:
    """The label the run gave the configuration (the first vendor's); transaction mode, which the targets are about, in bold."""
    label = next(found[v][name]["label"] for v in vs if name in found.get(v, {}))
    return f"**{label}**" if name.startswith("djpool_budget_transaction") else label


def _budget_cells(entry: dict[str, Any]) -> list[Any]:
    return [number(entry["rate"]), f"{ms(entry['p50'])} / {ms(entry['p99'])}", entry["peak_connections"]]


def fixed_budget(results: Results) -> str:
    found = results.get("fixed_budget")
    if not found:
        return not_run("Fixed budget")
    vs = vendors(results)
    rows = []
    for name in reported(found, vs):
        entries = [found.get(v, {}).get(name) for v in vs]
        rows.append(vendor_row(_budget_label(found, vs, name), entries, _budget_cells, blank_group(3)))
    return table(["", *vendor_headers(results, vs, ["req/s", "p50 / p99 ms", "server conns"])], rows)


_ENDING = {
    "djpool_ending_session": "djpool, session mode",
    "djpool_ending_transaction": "djpool, transaction mode",
    "native_ending": "Django's native pool",
    "stock_ending": "Django default (`CONN_MAX_AGE = 0`)",
}


def _ending_cells(entry: dict[str, Any]) -> list[Any]:
    """``reclaimed`` is None for configurations that take nothing back: blank, since no figure is missing."""
    reclaimed = "" if entry["reclaimed"] is None else number(entry["reclaimed"])
    return [number(entry["requests"]), entry["errors"], number(entry["ended_threads"]), reclaimed]


def availability(results: Results) -> str:
    found = results.get("availability")
    if not found:
        return not_run("Threads that end holding a connection")
    vs = vendors(results)
    rows = []
    for name, label in _ENDING.items():
        entries = [found.get(v, {}).get(key(v, name)) for v in vs]
        if any(entries):
            rows.append(vendor_row(label, entries, _ending_cells, blank_group(4)))
    columns = ["requests", "errors", "threads ended", "reclaimed"]
    return table(["", *vendor_headers(results, vs, columns)], rows)


def memory(results: Results) -> str:
    """A row per vendor, not a group of columns: one set of figures per server, not per configuration."""
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


_E2E = {"persistent": "Django persistent", "unchecked": "Django persistent, no health check (the floor)", "native": "Django's native pool", "predecessor": "django-db-connection-pool", "djpool": "djpool"}


def _e2e_cell(entry: dict[str, Any]) -> list[Any]:
    return [f"{number(entry['rate'])} ({entry['peak_connections']})"]


def gunicorn(results: Results) -> str:
    """A column per vendor and worker kind: req/s with the server's peak connections in brackets."""
    found = results.get("e2e")
    if not found:
        return not_run("gunicorn")
    kinds = list(results.get("plan", {}).get("e2e_kinds", ["sync", "gthread"]))
    vs = vendors(results)
    rows = []
    for name, label in _E2E.items():
        entries = [found.get(v, {}).get(f"{key(v, name)}:{kind}") for v in vs for kind in kinds]
        if any(entries):
            rows.append(vendor_row(label, entries, _e2e_cell, blank_group(1)))
    return table(["", *vendor_headers(results, vs, kinds)], rows)


_STATUS = {"PASS": "met", "FAIL": "missed", "OUT OF REACH": "out of reach"}


def _target_figure(value: Any, unit: str) -> str:
    """A count (statements, calls, connections: no unit) whole when it is; a ratio as the run's report shows it."""
    if _missing(value):
        return _DASH
    show = whole_or_two if unit == "" else fmt
    return f"{show(value)}{unit}"


def _target_row(results: Results, check: dict[str, Any]) -> list[Any]:
    unit = check.get("unit", "x")
    op = "≥" if check.get("higher_is_better") else "≤"
    floor = check.get("floor")
    return [
        server_name(results, check["vendor"]), check["name"], _target_figure(check["value"], unit),
        f"{op} {_target_figure(check['limit'], unit)}", "" if _missing(floor) else _target_figure(floor, unit),
        _STATUS.get(check["status"], check["status"]),
    ]  # fmt: skip


def targets(results: Results) -> str:
    checks = results.get("checks")
    if checks is None:
        return not_run("Targets")
    met = sum(c["status"] == "PASS" for c in checks)
    out = sum(c["status"] == "OUT OF REACH" for c in checks)
    intro = f"{met} of {len(checks)} targets were met in this run"
    intro += f", {out} {'is' if out == 1 else 'are'} out of reach here:" if out else ":"
    rows = [_target_row(results, c) for c in checks]
    text = intro + "\n\n" + table(["server", "target", "djpool", "limit", "floor", ""], rows, "llrrrl")
    errors = results.get("errors") or []
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

_MARKED = re.compile(r"(<!-- bench:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /bench:(?P=name) -->)", re.DOTALL)


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
