"""Run every configuration side by side and check djpool's performance targets.

    python bench/run.py            # full run (about 15 minutes)
    python bench/run.py --smoke    # proves the benchmark works (about 90 seconds)
    python bench/run.py --json bench/results/latest.json   # and keep the results (bench/tables.py)

Configurations are interleaved round by round, so load from other processes
on the machine hits them alike; ratios are medians of per-round ratios.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import json
import math
import os
import platform
import random
import shutil
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from djbench import availability, budget, handover, report
from djbench.configs import CONFIGS, GRID, Sizing
from djbench.report import Check, fmt, ms, us
from djbench.servers import ConnectionMonitor, Server
from djbench.workloads import ORM, SELECT, Clients, Run, Target, Workload, count_statements, registered, run_threads

VENDORS = ("postgresql", "mysql")
#: Every phase, in the order they run (``--phases`` picks some).
PHASES = ("statements", "calls", "latency", "scaling", "workload", "availability", "memory", "end_to_end", "fixed_budget", "handover")
#: What a full run runs: every phase but the hand-over's A/B (djbench.handover).
FULL_RUN = PHASES[:-1]


@dataclass
class Plan:
    vendors: list[str]
    threads: list[int]
    latency_sessions: int
    latency_rounds: int
    latency_batch: int
    thread_rounds: int
    thread_duration: float
    statement_requests: int
    calls_warmup: int
    calls_requests: int
    sizing: Sizing
    workload_threads: int
    work: float
    small_pool: int
    large_pool: int
    workload_runs: int
    workload_rounds: int
    workload_duration: float
    budget_rounds: int
    budget_duration: float
    budget_warmup: float
    budget_connections: int
    phases: list[str]
    e2e_configs: list[str]
    e2e_kinds: list[str]
    e2e_duration: float
    e2e_rounds: int
    memory_connections: int
    growth_requests: int
    smoke: bool = False


def parse_args(argv: list[str] | None = None) -> tuple[Plan, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a short run that proves the benchmark works (<60 s)")
    parser.add_argument("--long", action="store_true", help="also check memory over 1,000,000 requests")
    parser.add_argument("--vendors", default=",".join(VENDORS), help="postgresql,mysql")
    parser.add_argument("--threads", default=None, help="thread counts of the scaling run (default 1,4,16,64)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds per measurement")
    parser.add_argument("--duration", type=float, default=None, help="seconds per configuration per round (thread runs)")
    parser.add_argument("--pool-size", type=int, default=10, help="POOL_SIZE (min_size for the native pool)")
    parser.add_argument("--max-overflow", type=int, default=10, help="MAX_OVERFLOW (max_size - min_size)")
    parser.add_argument("--workload-threads", type=int, default=32, help="threads of the workload (query, non-database work, query)")
    parser.add_argument("--work-ms", type=float, default=10.0, help="non-database work between its two queries")
    parser.add_argument("--small-pool", type=int, default=4, help="pool size of the transaction-mode runs")
    parser.add_argument("--large-pool", type=int, default=32, help="pool size of the session-mode runs")
    parser.add_argument("--workload-runs", type=int, default=None, help="consecutive runs of the workload (default 5), each checked on its own")
    parser.add_argument("--workload-rounds", type=int, default=None, help="interleaved rounds per workload run; a run's rate is its best round (default 2)")
    parser.add_argument("--calls-requests", type=int, default=None, help="profiled requests per configuration of the calls-per-request phase (default 2000)")
    parser.add_argument("--budget-duration", type=float, default=None, help="seconds of wrk per configuration per round of the fixed-budget phase (whole seconds; default 5)")
    parser.add_argument("--budget-rounds", type=int, default=None, help="interleaved rounds of the fixed-budget phase (default 3)")
    parser.add_argument("--budget-connections", type=int, default=128, help="wrk's concurrent connections in the fixed-budget phase")
    parser.add_argument("--phases", default=",".join(FULL_RUN), help="the phases to run, of: " + ", ".join(PHASES) + " (default: all but handover)")
    parser.add_argument("--no-e2e", action="store_true", help="skip the gunicorn + wrk runs (end_to_end and fixed_budget)")
    parser.add_argument("--json", help="also write the results to this file (bench/tables.py turns it into docs/performance.md's tables)")
    parser.add_argument("--strict", action="store_true", help="exit with 1 when a target fails")
    args = parser.parse_args(argv)
    smoke = args.smoke
    vendors = [v for v in args.vendors.split(",") if v]
    for vendor in vendors:
        if vendor not in VENDORS:
            parser.error(f"--vendors: {vendor!r} is not one of {', '.join(VENDORS)}")
    phases = [phase for phase in args.phases.split(",") if phase]
    for phase in phases:
        if phase not in PHASES:
            parser.error(f"--phases: {phase!r} is not one of {', '.join(PHASES)}")
    # The smoke run keeps unpooled configurations to 32 server connections on shared servers.
    threads = [int(t) for t in (args.threads or ("1,32" if smoke else "1,4,16,64")).split(",")]
    plan = Plan(
        vendors=vendors,
        threads=threads,
        latency_sessions=1 if smoke else 5,
        latency_rounds=4 if smoke else 40,
        latency_batch=20,
        thread_rounds=args.rounds or (1 if smoke else 2),
        thread_duration=args.duration or (0.2 if smoke else 1.0),
        statement_requests=30 if smoke else 200,
        calls_warmup=100 if smoke else 200,
        calls_requests=args.calls_requests or (200 if smoke else 2000),
        sizing=Sizing(args.pool_size, args.max_overflow),
        workload_threads=args.workload_threads,
        work=args.work_ms / 1000,
        small_pool=args.small_pool,
        large_pool=args.large_pool,
        workload_runs=args.workload_runs or (2 if smoke else 5),
        workload_rounds=args.workload_rounds or args.rounds or (1 if smoke else 3),
        workload_duration=args.duration or (0.5 if smoke else 4.0),
        budget_rounds=args.budget_rounds or args.rounds or (1 if smoke else 3),
        budget_duration=args.budget_duration or (1.0 if smoke else 5.0),
        budget_warmup=0.0 if smoke else 1.0,
        budget_connections=args.budget_connections,
        phases=[phase for phase in PHASES if phase in phases and not (args.no_e2e and phase in ("end_to_end", "fixed_budget"))],
        e2e_configs=["djpool"] if smoke else ["persistent", "unchecked", "native", "predecessor", "djpool"],
        e2e_kinds=["sync"] if smoke else ["sync", "gthread"],
        e2e_duration=1.0 if smoke else 3.0,
        e2e_rounds=1 if smoke else 6,
        memory_connections=20,
        growth_requests=1_000_000 if args.long else (500 if smoke else 20_000),
        smoke=smoke,
    )
    return plan, args


@dataclass
class Bench:
    plan: Plan
    servers: dict[str, Server] = field(default_factory=dict)
    targets: dict[str, Target] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    checks: list[tuple[str, Check]] = field(default_factory=list)

    # ##### Setup #####

    def add_target(self, vendor: str, config: str, suffix: str = "", sizing: Sizing | None = None) -> None:
        server = self.servers[vendor]
        why_not = CONFIGS[config].available(vendor)
        if why_not:
            if vendor in CONFIGS[config].vendors:
                self.note(f"{server.short}: {config} skipped: {why_not}")
            return
        key = f"{server.short}_{config}{suffix}"
        database = f"djpool_bench_{os.getpid()}_{key}"
        self.targets[key] = Target(key, CONFIGS[config], server, database, sizing or self.plan.sizing)

    def target(self, vendor: str, name: str) -> Target | None:
        return self.targets.get(f"{self.servers[vendor].short}_{name}")

    def setup(self) -> None:
        for vendor in self.plan.vendors:
            self.servers[vendor] = Server.from_env(vendor)
            for config in GRID:
                self.add_target(vendor, config)
            p = self.plan
            self.add_target(vendor, "djpool", f"_session{p.large_pool}", Sizing(p.large_pool, 0, "session"))
            self.add_target(vendor, "djpool", f"_transaction{p.small_pool}", Sizing(p.small_pool, 0, "transaction"))
            self.add_target(vendor, "native", str(p.large_pool), Sizing(p.large_pool, 0))
            self.add_target(vendor, "realpool", str(p.small_pool), Sizing(p.small_pool, 0))
            self.add_target(vendor, "predecessor", str(p.large_pool), Sizing(p.large_pool, 0))
            # Threads that end holding a connection (djbench.availability).
            small = (availability.POOL_SIZE, availability.MAX_OVERFLOW)
            for mode in ("session", "transaction"):
                self.add_target(vendor, "djpool", f"_ending_{mode}", Sizing(*small, mode, availability.TIMEOUT))
            self.add_target(vendor, "native", "_ending", Sizing(*small, "session", availability.TIMEOUT))
            self.add_target(vendor, "stock", "_ending")
            # The fixed-budget phase: a pool per gunicorn worker (djbench.budget).
            if "fixed_budget" in p.phases:
                for contender in budget.CONTENDERS:
                    self.add_target(vendor, contender.config, contender.suffix, contender.sizing())
            if "handover" in p.phases:
                handover.add_targets(self, vendor)
        for target in self.targets.values():
            target.server.create_database(target.database)
        self.configure_django()

    def configure_django(self) -> None:
        import django
        from django.conf import settings

        # Each target's alias joins DATABASES only while it runs (see djbench.workloads.registered).
        settings.configure(
            DEBUG=False,
            SECRET_KEY="djpool-bench-not-secret",
            USE_TZ=True,
            INSTALLED_APPS=["djbench"],
            DATABASES={"default": {}},
            LOGGING_CONFIG=None,
        )
        django.setup()
        from django.db import connections
        from django.db.utils import load_backend

        for target in self.targets.values():
            entry = target.databases_entry()
            if entry is not None:
                target.entry = connections.configure_settings({"default": {}, target.alias: entry})[target.alias]
                load_backend(target.entry["ENGINE"])  # import every backend now, not in racing threads

    def teardown(self) -> None:
        for target in self.targets.values():
            try:
                target.dispose()
            except Exception as error:
                self.note(f"{target.key}: dispose failed: {error}")
        time.sleep(0.2)
        for target in self.targets.values():
            try:
                target.server.drop_database(target.database)
            except Exception as error:
                self.note(f"{target.key}: could not drop {target.database}: {error}")
        for server in self.servers.values():
            server.close()

    def note(self, message: str) -> None:
        print(f"  note: {message}", flush=True)

    def error(self, where: str, errors: list[str]) -> None:
        if errors:
            message = f"{where}: {len(errors)} error(s), first: {errors[0]}"
            self.errors.append(message)
            print(f"  ERROR {message}", flush=True)

    def check(self, vendor: str, check: Check) -> None:
        self.checks.append((vendor, check))

    # ##### Phases #####

    def run(self) -> None:
        for phase in [getattr(self, name) for name in self.plan.phases]:
            started = time.monotonic()
            try:
                phase()
            except Exception as error:  # one broken phase must not hide the others' results
                self.error(phase.__name__, [f"{type(error).__name__}: {error}"])
            print(f"  ({phase.__name__}: {time.monotonic() - started:.0f} s)\n", flush=True)

    def grid(self, vendor: str, kinds: tuple[str, ...] = ("django", "driver", "sqlalchemy")) -> list[Target]:
        return [t for name in GRID if (t := self.target(vendor, name)) is not None and t.config.kind in kinds]

    def statements(self) -> None:
        print("== Statements per request (server counters; SELECT 1 through connection.cursor())", flush=True)
        targets = [t for vendor in self.plan.vendors for t in self.grid(vendor)]
        counts = count_statements(targets, self.plan.statement_requests)
        self.results["statements"] = counts
        for vendor in self.plan.vendors:
            rows = [[t.config.name, f"{counts[t.key]:.2f}"] for t in self.grid(vendor)]
            print(f"-- {vendor}\n" + report.table(["configuration", "statements/request"], rows), flush=True)
            djpool = self.target(vendor, "djpool")
            if djpool is not None:
                # 1.02: PostgreSQL backends that exit while counted can leave a stray count or two.
                self.check(vendor, Check("djpool statements per request on a busy connection", counts[djpool.key], 1.02, unit=""))

    def calls(self) -> None:
        from djbench.calls import count_calls

        p = self.plan
        print(
            f"== Python calls per request (cProfile, exact): SELECT 1 through connection.cursor(), 1 thread, busy connection"
            f" ({p.calls_warmup} requests of warm-up, {p.calls_requests} profiled, gc off)",
            flush=True,
        )
        tx = f"djpool_transaction{p.small_pool}"
        names = {"unchecked": "unchecked (the floor)", "native": "native", "predecessor": "predecessor", "djpool": "djpool session mode", tx: "djpool transaction mode"}
        self.results["calls"] = {}
        for vendor in p.vendors:
            counted = {}
            for name in names:
                target = self.target(vendor, name)
                if target is None:
                    continue
                try:
                    counted[name] = count_calls(target, p.calls_warmup, p.calls_requests)
                except RuntimeError as error:
                    self.error(f"{target.key} calls", [str(error)])
                    continue
                if not counted[name].steady:
                    self.note(f"{target.key}: calls per request differ between the two profiled halves: {counted[name].halves}")
            floor = counted["unchecked"].per_request if "unchecked" in counted else float("nan")
            summary = self.results["calls"][vendor] = {
                name: {"label": names[name], "calls": c.per_request, "over_floor": c.per_request - floor, "halves": list(c.halves), "requests": c.requests}
                for name, c in counted.items()
            }
            rows = [[s["label"], report.count(s["calls"]), "" if name == "unchecked" else report.count(s["over_floor"], sign=True)] for name, s in summary.items()]
            print(f"-- {vendor}\n" + report.table(["configuration", "calls/request", "minus floor"], rows), flush=True)
            if "unchecked" not in summary:
                continue
            for name, mode in (("djpool", "session"), (tx, "transaction")):
                if name in summary:
                    self.check(vendor, Check(f"djpool {mode} mode calls per request − floor (unchecked)", summary[name]["over_floor"], 25, unit=""))

    def latency(self) -> None:
        p = self.plan
        self.results["latency"] = {}
        for query in (SELECT, ORM):
            title = "SELECT 1 through connection.cursor()" if query == SELECT else "ORM read Item.objects.get(pk=1)"
            print(
                f"== Request latency, 1 thread, {title} ({p.latency_sessions} session(s) of {p.latency_rounds} rounds "
                f"of {p.latency_batch} requests, configurations taking turns)",
                flush=True,
            )
            for vendor in p.vendors:
                targets = self.grid(vendor) if query == SELECT else self.grid(vendor, ("django",))
                batch_means: dict[str, list[float]] = {t.key: [] for t in targets}
                latencies: dict[str, list[float]] = {t.key: [] for t in targets}
                try:
                    for session in range(p.latency_sessions):
                        self._latency_session(targets, query, session, batch_means, latencies)
                except RuntimeError as error:
                    self.error(f"{vendor} latency", [str(error)])
                    continue
                djpool = self.target(vendor, "djpool")
                rows = []
                summary = {}
                for target in targets:
                    s = summary[target.key] = {
                        "mean": report.mean(latencies[target.key]),
                        "p50": report.percentile(latencies[target.key], 0.5),
                        "p99": report.percentile(latencies[target.key], 0.99),
                        "requests": len(latencies[target.key]),
                        "djpool_ratio": report.ratio_of_rounds(batch_means[djpool.key], batch_means[target.key]) if djpool else float("nan"),
                    }
                    rows.append([target.config.name, us(s["mean"]), us(s["p50"]), us(s["p99"]), f"{1 / s['mean']:,.0f}", fmt(s["djpool_ratio"])])
                print(f"-- {vendor}\n" + report.table(["configuration", "mean µs", "p50 µs", "p99 µs", "req/s", "djpool ÷ this"], rows), flush=True)
                self.results["latency"][f"{vendor}:{query}"] = summary
                if djpool is None:
                    continue
                unchecked = self.target(vendor, "unchecked")
                for name, limit in latency_limits(vendor, query).items():
                    other = self.target(vendor, name)
                    if other is None:
                        continue
                    if name == "unchecked":
                        self.check(vendor, Check(f"{title}: djpool ÷ unchecked (the floor) latency", summary[other.key]["djpool_ratio"], limit))
                        continue
                    floor = report.ratio_of_rounds(batch_means[unchecked.key], batch_means[other.key]) if unchecked else None
                    self.check(vendor, Check(
                        f"{title}: djpool ÷ {name} latency", summary[other.key]["djpool_ratio"], limit,
                        floor=floor, floor_label="unchecked (no pool) ÷ " + name,
                    ))  # fmt: skip
                housekept = self.target(vendor, "djpool_housekept")
                if housekept is not None:
                    # Housekeeping runs off the request path: within noise of djpool alone.
                    ratio = summary[housekept.key]["djpool_ratio"]
                    self.check(vendor, Check(f"{title}: djpool with housekeeper ÷ djpool latency", 1 / ratio if ratio else float("nan"), 1.05))

    def _latency_session(
        self,
        targets: list[Target],
        query: str,
        session: int,
        batch_means: dict[str, list[float]],
        latencies: dict[str, list[float]],
    ) -> None:
        """One session of the latency run: a client thread and a server connection of its own per configuration.

        Where the kernel runs a client thread and its connection's server
        thread or process changes one configuration's round trip on this
        machine: two identical configurations measured side by side differed
        by up to 13 % (PostgreSQL) and 28 % (MariaDB), in either direction,
        from one run to the next.
        Each session opens new threads and connections, in a rotated order,
        so that this placement falls on every configuration alike over the
        sessions instead of on one for the whole run.
        """
        p = self.plan
        order = targets[session % len(targets):] + targets[: session % len(targets)]
        clients = Clients(order, Workload(query))
        try:
            clients.run(5 if p.smoke else 50)
            clients.reset()
            # Each round in its own order: a batch runs just after another
            # configuration's, whose code and data it partly evicts from the
            # CPU's caches, and a fixed rotation would always put the same
            # configuration before it (measured: djpool with the housekeeper,
            # which always followed djpool's own code, ran 2-4 % faster than
            # djpool, which always followed the predecessor's).
            shuffler = random.Random(session)
            for _ in range(p.latency_rounds):
                turns = list(order)
                shuffler.shuffle(turns)
                for target in turns:
                    done = len(clients.latencies[target.key])
                    clients.run_one(target.key, p.latency_batch)
                    batch_means[target.key].append(report.mean(clients.latencies[target.key][done:]))
            for key, measured in clients.latencies.items():
                latencies[key].extend(measured)
        finally:
            clients.close()
            for target in targets:
                target.dispose()

    def scaling(self) -> None:
        p = self.plan
        print(f"== Threads (SELECT 1 per request, pools {p.sizing.size}+{p.sizing.overflow}, {p.thread_rounds} round(s) of {p.thread_duration:g} s)", flush=True)
        self.results["scaling"] = {}
        for vendor in p.vendors:
            server = self.servers[vendor]
            targets = self.grid(vendor)
            rows = []
            for threads in p.threads:
                runs: dict[str, list[Run]] = {t.key: [] for t in targets}
                skipped: dict[str, str] = {}
                with ConnectionMonitor(server, [t.database for t in targets]) as monitor:
                    for r in range(p.thread_rounds):
                        order = targets[r % len(targets):] + targets[: r % len(targets)]
                        for target in order:
                            need = threads if not target.config.pooled else min(threads, target.sizing.max_connections)
                            free = server.free_connection_slots()
                            if free < need + 10:
                                skipped[target.key] = f"server has {free} free connection slots, needs {need} + 10 spare"
                                continue
                            run = run_threads(target, Workload(), threads, p.thread_duration)
                            target.dispose()
                            self.error(f"{target.key} {threads} threads", run.errors)
                            runs[target.key].append(run)
                for target in targets:
                    done = runs[target.key]
                    if not done:
                        rows.append([target.config.name, threads, "skipped", "", "", "", "", skipped.get(target.key, "")])
                        continue
                    latencies = [x for run in done for x in run.latencies]
                    rate = sum(run.requests for run in done) / sum(run.elapsed for run in done)
                    fairness = min(run.fairness for run in done)
                    p50, p99 = report.percentile(latencies, 0.5), report.percentile(latencies, 0.99)
                    peak = monitor.peak[target.database]
                    worst = max(latencies) if latencies else float("nan")
                    self.results["scaling"][f"{target.key}:{threads}"] = {
                        "rate": rate, "p50": p50, "p99": p99, "max": worst, "fairness": fairness,
                        "peak_connections": peak, "errors": sum(len(run.errors) for run in done),
                    }  # fmt: skip
                    rows.append([target.config.name, threads, f"{rate:,.0f}", ms(p50), ms(p99), ms(worst), f"{fairness:.2f}", peak])
                    if target.config.name == "djpool" and threads == max(p.threads) and threads > p.sizing.max_connections:
                        t = f"{threads} threads on a {p.sizing.size}+{p.sizing.overflow} pool"
                        self.check(vendor, Check(f"{t}: fairness (Jain)", fairness, 0.9, higher_is_better=True, unit=""))
                        self.check(vendor, Check(f"{t}: p99 ÷ p50", p99 / p50, 10.0))
                        self.check(vendor, Check(f"{t}: slowest request (s)", worst, p.sizing.timeout, unit=" s"))
                        self.check(vendor, Check(f"{t}: peak server connections", peak, p.sizing.max_connections, unit=""))
            print(f"-- {vendor}\n" + report.table(["configuration", "threads", "req/s", "p50 ms", "p99 ms", "max ms", "fairness", "server conns"], rows), flush=True)

    def workload(self) -> None:
        from djpool.core import stats

        p = self.plan
        print(
            f"== Workload (issue 12): {p.workload_threads} threads, request = query, {p.work * 1000:g} ms of non-DB work, query"
            f" ({p.workload_runs} runs, each {p.workload_rounds} round(s) of {p.workload_duration:g} s per configuration,"
            f" taking turns; a run's rate is its best round)",
            flush=True,
        )
        names = [f"djpool_session{p.large_pool}", f"djpool_transaction{p.small_pool}", f"native{p.large_pool}", f"realpool{p.small_pool}", f"predecessor{p.large_pool}"]
        self.results["workload"] = {}
        self.results["workload_runs"] = {}
        for vendor in p.vendors:
            server = self.servers[vendor]
            targets = [t for name in names if (t := self.target(vendor, name)) is not None]
            rounds: dict[str, list[Run]] = {t.key: [] for t in targets}
            # Each run's rate: the best of its rounds. Other load on the machine
            # only ever slows a round down, so the best is the least disturbed.
            run_rates: dict[str, list[float]] = {t.key: [] for t in targets}
            # djpool's own counters: how many checkouts waited for a connection, and how long.
            pool_stats: dict[str, dict[str, float]] = {}
            round_figures: dict[str, list[dict[str, float]]] = {}
            turn = 0
            with ConnectionMonitor(server, [t.database for t in targets]) as monitor:
                for _ in range(p.workload_runs):
                    best = {t.key: 0.0 for t in targets}
                    for _ in range(p.workload_rounds):
                        for target in targets[turn % len(targets):] + targets[: turn % len(targets)]:
                            run = run_threads(target, Workload(SELECT, p.work), p.workload_threads, p.workload_duration)
                            if target.config.name == "djpool":
                                figures = stats(target.alias)
                                totals = pool_stats.setdefault(target.key, dict.fromkeys(handover.HANDOVER_FIGURES, 0))
                                for name in handover.HANDOVER_FIGURES:
                                    totals[name] += figures[name]
                                # Each round's own figures: what the pool did in a fast round and in a slow one.
                                round_figures.setdefault(target.key, []).append({"rate": run.rate, **handover.handover_summary(figures)})
                            target.dispose()
                            self.error(f"{target.key} workload", run.errors)
                            rounds[target.key].append(run)
                            best[target.key] = max(best[target.key], run.rate)
                        turn += 1
                    for key, rate in best.items():
                        run_rates[key].append(rate)
            rows = []
            summary: dict[str, dict[str, Any]] = {}
            for target in targets:
                done = rounds[target.key]
                latencies = [x for run in done for x in run.latencies]
                s = summary[target.key] = {
                    "rate": sum(run.requests for run in done) / sum(run.elapsed for run in done),
                    "round_rates": [run.rate for run in done],
                    "run_rates": run_rates[target.key],
                    "p50": report.percentile(latencies, 0.5),
                    "p99": report.percentile(latencies, 0.99),
                    "peak_connections": monitor.peak[target.database],
                }
                waited = ["", "", "", "", ""]
                totals = pool_stats.get(target.key)
                if totals and totals["checkouts"]:
                    s.update(handover.handover_summary(totals))
                    s["rounds"] = round_figures[target.key]
                    waited = [
                        f"{s['waited_share']:.0%}", ms(s["mean_wait"]), ms(s["mean_handover"]), f"{s['barged_share']:.0%}",
                        f"{s['taken_back_share']:.0%}",
                    ]  # fmt: skip
                label = target.key.split("_", 1)[1]
                rows.append([label, f"{s['rate']:,.0f}", ms(s["p50"]), ms(s["p99"]), s["peak_connections"], *waited])
            headers = [
                "configuration", "req/s", "p50 ms", "p99 ms", "server conns",
                "checkouts waited", "mean wait ms", "wake to run ms", "barged", "taken back",
            ]  # fmt: skip
            print(f"-- {vendor}\n" + report.table(headers, rows), flush=True)
            self.results["workload"][vendor] = summary
            found = {name: summary.get(t.key) if (t := self.target(vendor, name)) else None for name in names}
            session, tx, native, real = (found[name] for name in names[:4])
            if tx is None:
                continue
            label = f"transaction mode on {p.small_pool}"
            # Transaction mode on 4 connections against each, run by run: (what, its rates, limit, how the runs are taken).
            versus = []
            if native:
                versus.append((f"native pool on {p.large_pool}", native, 0.9, "worst"))
            if real:
                versus.append((f"django-pg-real-pool on {p.small_pool}", real, 1.1, "worst"))
            if vendor == "mysql" and session:
                versus.append((f"session mode on {p.large_pool}", session, 0.9, "median"))
            comparisons = []
            for what, other, limit, measure in versus:
                ratios = [report.divide(a, b) for a, b in zip(tx["run_rates"], other["run_rates"])]
                value = report.worst(ratios) if measure == "worst" else report.median(ratios)
                comparisons.append({"versus": what, "ratios": ratios, "limit": limit, "measure": measure, "value": value})
                runs = f"{measure} of {len(ratios)} runs"
                self.check(vendor, Check(f"workload: djpool {label} ÷ {what} req/s, {runs}", value, limit, higher_is_better=True))
            if native:
                self.check(vendor, Check(f"workload: djpool {label} p99 ÷ native pool on {p.large_pool} p99", report.divide(tx["p99"], native["p99"]), 1.5))
            self.results["workload_runs"][vendor] = {"rates": tx["run_rates"], "comparisons": comparisons}
            if comparisons:
                # Beside each run's ratios, what the pool did in the round that gave the run its rate.
                rounds_of_run = [tx["rounds"][n * p.workload_rounds : (n + 1) * p.workload_rounds] for n in range(len(tx["run_rates"]))]
                best_rounds = [max(rounds, key=lambda r: r["rate"]) for rounds in rounds_of_run]
                rows = [
                    [n + 1, f"{rate:,.0f}", *(fmt(c["ratios"][n]) for c in comparisons),
                     f"{best['waited_share']:.0%}", ms(best["mean_wait"]), ms(best["mean_handover"]), f"{best['barged_share']:.0%}", f"{best['looked_share']:.0%}"]
                    for n, (rate, best) in enumerate(zip(tx["run_rates"], best_rounds))
                ]  # fmt: skip
                rows.append(["worst", fmt(report.worst(tx["run_rates"])), *(fmt(report.worst(c["ratios"])) for c in comparisons), "", "", "", "", ""])
                rows.append(["median", fmt(report.median(tx["run_rates"])), *(fmt(report.median(c["ratios"])) for c in comparisons), "", "", "", "", ""])
                headers = [
                    "run", f"transaction{p.small_pool} req/s", *(f"÷ {c['versus']}" for c in comparisons),
                    "waited", "mean wait ms", "wake to run ms", "barged", "waits past the window",
                ]  # fmt: skip
                print(f"  {vendor}: djpool {label}, run by run\n" + report.table(headers, rows), flush=True)

    def availability(self) -> None:
        p = self.plan
        duration = 1.0 if p.smoke else 10.0
        print(
            f"== Threads that end holding a connection (issue 19): {availability.CYCLE_THREADS} threads in request cycles, "
            f"{availability.SPAWN_THREADS} starting threads that query once and end without closing; pool "
            f"{availability.POOL_SIZE} + {availability.MAX_OVERFLOW}, TIMEOUT {availability.TIMEOUT:g} s, {duration:g} s each",
            flush=True,
        )
        names = ["djpool_ending_session", "djpool_ending_transaction", "native_ending", "stock_ending"]
        self.results["availability"] = {}
        for vendor in p.vendors:
            server = self.servers[vendor]
            targets = [t for name in names if (t := self.target(vendor, name)) is not None]
            rows = []
            results = self.results["availability"][vendor] = {}
            with ConnectionMonitor(server, [t.database for t in targets]) as monitor:
                for target in targets:
                    outcome = availability.run(target, duration)
                    target.dispose()
                    results[target.key] = {
                        "requests": outcome.requests,
                        "errors": len(outcome.errors),
                        "ended_threads": outcome.ended_threads,
                        "reclaimed": outcome.reclaimed,
                    }
                    label = target.key.split("_", 1)[1]
                    first = outcome.errors[0] if outcome.errors else ""
                    rows.append([label, f"{outcome.requests:,}", len(outcome.errors), outcome.ended_threads, "" if outcome.reclaimed is None else outcome.reclaimed, monitor.peak[target.database], first[:70]])
                    if target.config.name == "djpool":
                        self.check(vendor, Check(f"threads ending holding a connection: djpool {label.split('_')[-1]} mode errors", len(outcome.errors), 0, unit=""))
            headers = ["configuration", "requests", "errors", "threads ended", "reclaimed", "server conns", "first error"]
            print(f"-- {vendor}\n" + report.table(headers, rows), flush=True)

    def memory(self) -> None:
        from djbench import memory

        p = self.plan
        print("== Memory (Python allocations, tracemalloc)", flush=True)
        self.results["memory"] = {}
        rows = []
        for vendor in p.vendors:
            djpool = self.target(vendor, "djpool")
            if djpool is None:
                continue
            with registered([djpool]):
                cost = memory.idle_pool_cost(djpool, p.memory_connections)
                grown = memory.growth(djpool, p.growth_requests)
            self.results["memory"][vendor] = {**cost, **grown}
            added = cost["pool_bytes"] - cost["driver_bytes"]
            rows.append([vendor, f"{cost['driver_bytes'] / 1024:,.0f}", f"{cost['pool_bytes'] / 1024:,.0f}", f"{added / cost['connections']:,.0f}", f"{grown['requests']:,}", f"{grown['growth_bytes'] / 1024:,.1f}"])
            n = cost["connections"]
            self.check(vendor, Check(f"memory: pool of {n} idle connections ÷ {n} connections opened by the backend", cost["pool_bytes"] / cost["driver_bytes"], 2.0))
            self.check(vendor, Check(f"memory: growth over {grown['requests']:,} requests (KiB)", grown["growth_bytes"] / 1024, 64.0, unit=" KiB"))
        print(report.table(["vendor", "connections KiB", "idle pool KiB", "added bytes/conn", "requests", "growth KiB"], rows), flush=True)

    def end_to_end(self) -> None:
        from djbench import e2e

        p = self.plan
        if shutil.which("wrk") is None:
            self.note("gunicorn run skipped: wrk is not installed (apt install wrk)")
            return
        if importlib.util.find_spec("gunicorn") is None:
            self.note("gunicorn run skipped: gunicorn is not installed")
            return
        print(
            f"== gunicorn + wrk, ORM view, 2 workers (gthread: 4 threads each), pools 4+4,"
            f" {p.e2e_rounds} round(s) of {p.e2e_duration:g} s per configuration, taking turns",
            flush=True,
        )
        self.results["e2e"] = {}
        e2e_sizing = Sizing(4, 4)
        for vendor in p.vendors:
            targets = []
            for name in p.e2e_configs:
                t = self.target(vendor, name)
                if t is not None:
                    targets.append(Target(t.key, t.config, t.server, t.database, e2e_sizing))
            rows = []
            summary: dict[str, dict[str, Any]] = {}
            for kind in p.e2e_kinds:
                threads = 4 if kind == "gthread" else 1
                servers = {t.key: e2e.Gunicorn(t, kind, 2, threads) for t in targets}
                runs: dict[str, list[dict[str, Any]]] = {key: [] for key in servers}
                try:
                    for server in servers.values():
                        server.start()
                    for key, server in list(servers.items()):
                        try:
                            server.wait_until_serving()
                            server.load(1.0)  # warm-up: every worker opens its connections
                        except Exception as error:
                            self.error(f"{key} gunicorn {kind}", [f"{type(error).__name__}: {error}"])
                            server.stop()
                            del servers[key]
                    keys = list(servers)
                    for r in range(p.e2e_rounds):
                        for key in keys[r % len(keys):] + keys[: r % len(keys)] if keys else []:
                            result = servers[key].load(p.e2e_duration)
                            if result["non_2xx"] or result["socket_errors"]:
                                self.error(f"{key} gunicorn {kind}", [f"non-2xx: {result['non_2xx']}, socket errors: {result['socket_errors']}"])
                            runs[key].append(result)
                finally:
                    for server in servers.values():
                        server.stop()
                for target in targets:
                    done = runs[target.key]
                    if not done:
                        continue
                    result = {
                        "rate": report.mean([r["rate"] for r in done]),
                        "round_rates": [r["rate"] for r in done],
                        "p50": statistics.median(r["p50"] for r in done),
                        "p99": statistics.median(r["p99"] for r in done),
                        "peak_connections": max(r["peak_connections"] for r in done),
                    }
                    summary[f"{target.key}:{kind}"] = result
                    rows.append([target.config.name, kind, f"{result['rate']:,.0f}", ms(result["p50"]), ms(result["p99"]), result["peak_connections"]])
            print(f"-- {vendor}\n" + report.table(["configuration", "workers", "req/s", "p50 ms", "p99 ms", "server conns"], rows), flush=True)
            self.results["e2e"][vendor] = summary
            short = self.servers[vendor].short
            for kind in p.e2e_kinds:
                mine = summary.get(f"{short}_djpool:{kind}")
                if mine is None:
                    continue
                native = summary.get(f"{short}_native:{kind}")
                old = summary.get(f"{short}_predecessor:{kind}")
                # The floor (Django holding a connection per thread, checking
                # nothing) in the same rounds: a ratio it misses too is out of
                # reach for any pool on this machine.
                unchecked = summary.get(f"{short}_unchecked:{kind}")

                def floor(other: dict[str, Any], unchecked: dict[str, Any] | None = unchecked) -> float | None:
                    return report.ratio_of_rounds(unchecked["round_rates"], other["round_rates"]) if unchecked else None

                if native:
                    self.check(vendor, Check(
                        f"gunicorn {kind}: djpool ÷ native pool req/s", report.ratio_of_rounds(mine["round_rates"], native["round_rates"]), 1.0,
                        higher_is_better=True, floor=floor(native), floor_label="unchecked (no pool) ÷ native pool",
                    ))  # fmt: skip
                    self.check(vendor, Check(f"gunicorn {kind}: djpool − native pool peak server connections", mine["peak_connections"] - native["peak_connections"], -1, unit=""))
                if old:
                    self.check(vendor, Check(
                        f"gunicorn {kind}: djpool ÷ predecessor req/s", report.ratio_of_rounds(mine["round_rates"], old["round_rates"]), 1.2,
                        higher_is_better=True, floor=floor(old), floor_label="unchecked (no pool) ÷ predecessor",
                    ))  # fmt: skip

    def fixed_budget(self) -> None:
        p = self.plan
        if shutil.which("wrk") is None:
            self.note("fixed-budget run skipped: wrk is not installed (apt install wrk)")
            return
        if importlib.util.find_spec("gunicorn") is None:
            self.note("fixed-budget run skipped: gunicorn is not installed")
            return
        load = budget.Load(p.budget_rounds, p.budget_duration, p.budget_warmup, connections=p.budget_connections, settle=not p.smoke)
        print(
            f"== Fixed budget (issue 21): gunicorn, {load.workers} gthread workers x {load.threads} threads; request = query,"
            f" {load.work_ms:g} ms sleep (an external API call), query; wrk with {load.connections} connections,"
            f" {load.rounds} round(s) of {load.duration:g} s per configuration, taking turns, each on a fresh gunicorn",
            flush=True,
        )
        self.results["fixed_budget"] = {}
        for vendor in p.vendors:
            contenders = [(c, t) for c in budget.CONTENDERS if (t := self.target(vendor, c.name)) is not None]
            measured = budget.measure([t for _, t in contenders], load)
            rows = []
            summary: dict[str, dict[str, Any]] = {}
            for contender, target in contenders:
                m = measured[target.key]
                self.error(f"{target.key} fixed budget", m.errors)
                label = contender.label(load.workers)
                budget_connections = contender.per_worker * load.workers
                if not m.runs:
                    rows.append([label, budget_connections, "skipped" if m.skipped else "failed", "", "", ""])
                    if m.skipped:
                        self.note(f"{target.key}: {m.skipped}")
                    continue
                s = summary[contender.name] = {
                    **m.summary(),
                    "label": label,
                    "config": contender.config,
                    "mode": contender.mode,
                    "per_worker": contender.per_worker,
                    "connections": budget_connections,
                }
                rows.append([label, budget_connections, f"{s['rate']:,.0f}", ms(s["p50"]), ms(s["p99"]), s["peak_connections"]])
            headers = ["configuration", "connections", "req/s", "p50 ms", "p99 ms", "server conns"]
            print(f"-- {vendor}\n" + report.table(headers, rows), flush=True)
            self.results["fixed_budget"][vendor] = summary
            tx_contender = budget.CONTENDERS[0]
            tx = summary.get(tx_contender.name)
            if tx is None:
                continue
            mine = f"fixed budget: djpool transaction mode on {tx['connections']}"
            for contender in budget.CONTENDERS[1:]:
                other = summary.get(contender.name)
                if other is None:
                    continue
                pool = "djpool session mode" if contender.config == "djpool" else "native pool"
                theirs = f"{pool} on {other['connections']}"
                ratio = report.ratio_of_rounds(tx["round_rates"], other["round_rates"])
                if other["connections"] <= tx["connections"]:
                    self.check(vendor, Check(f"{mine} ÷ {theirs} req/s", ratio, 3.0, higher_is_better=True))
                else:
                    self.check(vendor, Check(f"{mine} ÷ {theirs} req/s", ratio, 0.9, higher_is_better=True))
                    self.check(vendor, Check(f"{mine} p99 ÷ {theirs} p99", report.divide(tx["p99"], other["p99"]), 1.5))
            self.check(vendor, Check(f"{mine}: peak server connections", tx["peak_connections"], tx["connections"], unit=""))

    def handover(self) -> None:
        if shutil.which("wrk") is None or importlib.util.find_spec("gunicorn") is None:
            self.note("hand-over A/B skipped: it needs wrk and gunicorn")
            return
        handover.phase(self)

    def summary(self) -> int:
        print("== Targets", flush=True)
        for vendor in self.plan.vendors:
            print(f"-- {vendor}")
            for v, check in self.checks:
                if v == vendor:
                    print(check.line())
        failed = sum(not c.passed for _, c in self.checks)
        out_of_reach = sum(c.out_of_reach for _, c in self.checks)
        print(f"\n  {len(self.checks) - failed} of {len(self.checks)} targets passed; {len(self.errors)} error(s).")
        if out_of_reach:
            print(
                f"  {out_of_reach} OUT OF REACH: Django holding one connection and checking nothing\n"
                f"  ('unchecked', the least any configuration can do per request) misses them too."
            )
        if self.plan.smoke:
            print("  (smoke run: too short for the figures to mean anything; it proves every configuration runs.)")
        self.results["checks"] = [
            {
                "vendor": v, "name": c.name, "value": c.value, "limit": c.limit, "higher_is_better": c.higher_is_better,
                "unit": c.unit, "floor": c.floor, "floor_label": c.floor_label, "passed": c.passed, "status": c.status,
            }
            for v, c in self.checks
        ]  # fmt: skip
        self.results["errors"] = self.errors
        return failed


def latency_limits(vendor: str, query: str) -> dict[str, float]:
    """The one-thread latency targets: the most djpool's latency may be, as a
    fraction of each configuration's.

    djpool within 10 % of the floor (Django holding one connection, checking
    nothing). Against configurations that do more, only targets the floor
    meets, since no pool can beat it: in the last full run (docs/performance.md)
    the floor was 0.63x persistent and 0.67x native on PostgreSQL, so 0.75x
    stays there; on MariaDB it was 0.81x persistent (a ping costs less than a
    PostgreSQL health check), and 0.54x the predecessor on PostgreSQL, so
    neither 0.75x persistent on MariaDB nor 0.5x the predecessor is a target.
    The ORM read: the floor was 0.75x persistent on PostgreSQL, so 0.9x
    stays; on MariaDB it was 0.89x (two full runs), which would leave djpool
    1 % for its own work where the floor target allows 10 %: not a target.
    """
    if query == SELECT:
        limits = {"unchecked": 1.10}
        if vendor == "postgresql":
            limits.update(persistent=0.75, native=0.75)
        return limits
    return {"persistent": 0.9} if vendor == "postgresql" else {}


def main(argv: list[str] | None = None) -> int:
    plan, args = parse_args(argv)
    started = time.monotonic()
    # A run stopped by SIGTERM (a CI timeout) still drops its databases.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    bench = Bench(plan)
    bench.results["meta"] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["python", "bench/run.py", *(sys.argv[1:] if argv is None else argv)]),
        "smoke": plan.smoke,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(terse=True),
        "cpus": os.cpu_count(),
    }
    bench.results["plan"] = dataclasses.asdict(plan)
    print(f"djpool benchmark ({'smoke' if plan.smoke else 'full'}): Python {sys.version.split()[0]}, vendors {', '.join(plan.vendors)}", flush=True)
    try:
        bench.setup()
        versions(bench)
        bench.run()
    finally:
        bench.teardown()
    failed = bench.summary()
    elapsed = time.monotonic() - started
    print(f"  total {elapsed:.0f} s")
    bench.results["meta"]["seconds"] = round(elapsed)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(_plain(bench.results), out, indent=1, allow_nan=False, ensure_ascii=False)
            out.write("\n")
    if bench.errors:
        return 2
    return 1 if args.strict and failed else 0


def _plain(value: Any) -> Any:
    """``value`` as strict JSON has it: NaN (a ratio with nothing to divide) as null."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


#: The distributions whose versions the report and the results JSON give.
DISTRIBUTIONS = (
    "django", "sqlalchemy", "psycopg", "psycopg-binary", "psycopg-pool", "mysqlclient",
    "django-db-connection-pool", "django-pg-real-pool", "gunicorn", "djpool-core", "djpool-postgresql", "djpool-mysql",
)  # fmt: skip


def versions(bench: Bench) -> None:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for dist in DISTRIBUTIONS:
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            pass
    servers = {vendor: server.version() for vendor, server in bench.servers.items()}
    bench.results["meta"].update(versions=found, servers=servers)
    print(
        f"  {'; '.join(f'{dist} {v}' for dist, v in found.items())}\n"
        f"  servers: {'; '.join(f'{vendor} {v}' for vendor, v in servers.items())}\n",
        flush=True,
    )
