"""The hand-over's A/B (``--phases handover``, not part of a full run).

djpool's transaction mode as it is against the same pool without barging
(:mod:`djbench.variants`: every connection given back while threads wait
goes to the oldest waiter), in the two shapes where connections are scarce:
the workload phase's (threads of one process on 4 connections) and the
fixed-budget phase's (gunicorn gthread workers, 4 connections each). The two
take turns round by round, so that the machine's drift hits both alike; the
ratio of each pair of rounds is printed, not only their median.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from djbench import budget, report, variants
from djbench.report import ms
from djbench.workloads import SELECT, Workload, run_threads

if TYPE_CHECKING:
    from djbench.suite import Bench

#: The in-process pair's names (their suffix is the workload's small pool).
IN_PROCESS = ("djpool", "djpool_fifo")

#: The pool's counters the workload and hand-over phases add up (djpool.core.stats() keys).
HANDOVER_FIGURES = ("checkouts", "waits", "wait_time_total", "handovers", "handover_latency_total", "barged", "looked", "taken_back")


def handover_summary(figures: dict[str, float]) -> dict[str, float]:
    """From a pool's counters: the share of checkouts that waited, the mean wait,
    the mean time from a waiter's wake-up to its running again (the GIL,
    scheduling), the share of checkouts that took a returned connection ahead
    of a waiter, the share of waits that outlasted the barging window (the
    waiter then looked for an idle connection itself), and the
    share of checkouts that took back the connection their wrapper had just
    given back (no checkout: ConnectionPool.take_back())."""
    checkouts, waits, handovers = figures["checkouts"], figures["waits"], figures["handovers"]
    return {
        "waited_share": waits / checkouts if checkouts else 0.0,
        "mean_wait": figures["wait_time_total"] / waits if waits else 0.0,
        "mean_handover": figures["handover_latency_total"] / handovers if handovers else 0.0,
        "barged_share": figures["barged"] / checkouts if checkouts else 0.0,
        "looked_share": figures["looked"] / waits if waits else 0.0,
        "taken_back_share": figures["taken_back"] / checkouts if checkouts else 0.0,
    }


def add_targets(bench: Bench, vendor: str) -> None:
    from djbench.configs import Sizing

    small = bench.plan.small_pool
    for config in IN_PROCESS:
        bench.add_target(vendor, config, f"_transaction{small}", Sizing(small, 0, "transaction"))
    for contender in budget.HANDOVER_CONTENDERS:
        bench.add_target(vendor, contender.config, contender.suffix, contender.sizing())


def phase(bench: Bench) -> None:
    from djpool.core import stats

    p = bench.plan
    small = p.small_pool
    print(
        f"== Hand-over A/B: djpool transaction mode as it is, and without barging (every connection given back goes to"
        f" the oldest waiter);"
        f" in one process, {p.workload_threads} threads on {small} connections, {p.workload_runs} x {p.workload_rounds}"
        f" rounds of {p.workload_duration:g} s; behind gunicorn, the fixed budget's shape, {p.budget_rounds} rounds",
        flush=True,
    )
    results: dict[str, Any] = bench.results.setdefault("handover", {})
    for vendor in p.vendors:
        print(f"-- {vendor}", flush=True)
        pair = [t for name in IN_PROCESS if (t := bench.target(vendor, f"{name}_transaction{small}")) is not None]
        rates: dict[str, list[float]] = {t.key: [] for t in pair}
        figures: dict[str, dict[str, float]] = {t.key: dict.fromkeys(HANDOVER_FIGURES, 0) for t in pair}
        p99s: dict[str, list[float]] = {t.key: [] for t in pair}
        for turn in range(p.workload_runs * p.workload_rounds):
            for target in pair[turn % 2:] + pair[: turn % 2]:
                with variants.applied(target.config.variant):
                    run = run_threads(target, Workload(SELECT, p.work), p.workload_threads, p.workload_duration)
                    counters = stats(target.alias)
                    target.dispose()
                bench.error(f"{target.key} hand-over", run.errors)
                rates[target.key].append(run.rate)
                p99s[target.key].append(report.percentile(run.latencies, 0.99))
                for name in HANDOVER_FIGURES:
                    figures[target.key][name] += counters[name]
        rows = []
        for target in pair:
            s = handover_summary(figures[target.key])
            rows.append([
                f"djpool transaction mode{' without barging' if target.config.variant else ''}, {small} connections",
                f"{report.mean(rates[target.key]):,.0f}", ms(report.median(p99s[target.key])),
                f"{s['waited_share']:.0%}", ms(s["mean_wait"]), ms(s["mean_handover"]), f"{s['barged_share']:.0%}",
            ])  # fmt: skip
        print(report.table(["in one process", "req/s", "p99 ms", "waited", "mean wait ms", "wake to run ms", "barged"], rows))
        summary: dict[str, Any] = {}
        if len(pair) == 2:
            summary["in_process"] = {"rates": rates, **_compared(*(rates[t.key] for t in pair))}
        summary["fixed_budget"] = _behind_gunicorn(bench, vendor)
        results[vendor] = summary


def _behind_gunicorn(bench: Bench, vendor: str) -> dict[str, Any]:
    p = bench.plan
    contenders = [(c, t) for c in budget.HANDOVER_CONTENDERS if (t := bench.target(vendor, c.name)) is not None]
    load = budget.Load(p.budget_rounds, p.budget_duration, p.budget_warmup, connections=p.budget_connections, settle=not p.smoke)
    measured = budget.measure([t for _, t in contenders], load)
    rows, rates = [], {}
    for contender, target in contenders:
        m = measured[target.key]
        bench.error(f"{target.key} hand-over", m.errors)
        if not m.runs:
            rows.append([contender.label(load.workers), "skipped" if m.skipped else "failed", "", ""])
            continue
        s = m.summary()
        rates[contender.name] = s["round_rates"]
        rows.append([contender.label(load.workers), f"{s['rate']:,.0f}", ms(s["p50"]), ms(s["p99"])])
    print(report.table(["behind gunicorn", "req/s", "p50 ms", "p99 ms"], rows))
    if len(rates) < 2:
        return {"rates": rates}
    return {"rates": rates, **_compared(*(rates[c.name] for c in budget.HANDOVER_CONTENDERS))}


def _compared(mine: list[float], fifo: list[float]) -> dict[str, Any]:
    """Each pair of rounds' ratio, as it is ÷ without barging, printed and returned with their median."""
    ratios = [a / b for a, b in zip(mine, fifo) if b]
    print(f"  as it is ÷ without barging, round by round: {', '.join(f'{r:.2f}' for r in ratios)}"
          f" (median {report.median(ratios):.2f})", flush=True)  # fmt: skip
    return {"ratios": ratios, "median_ratio": report.median(ratios)}
