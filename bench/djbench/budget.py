"""A fixed budget of server connections, behind gunicorn (issue 21).

The case transaction mode exists for: a site whose requests spend most of
their time away from the database (here a 50 ms ``time.sleep``, as an
external API call is, between two queries), served by gunicorn gthread
workers (4 processes x 16 threads), on a server that gives the site 16
connections. In session mode each of the 64 threads holds a connection for
its whole request, so 16 connections serve 16 requests at a time; in
transaction mode a connection is held only while a query runs, so 16 can
keep all 64 threads busy. The 64-connection configurations show what the
site would do with a connection for every thread.

Each configuration gets a freshly started gunicorn for each measurement
(warmed up by a short wrk run, loaded, stopped): two servers holding 64
connections each would not fit PostgreSQL's default ``max_connections`` of
100 at once.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from djbench import report
from djbench.configs import CONFIGS, Sizing
from djbench.e2e import Gunicorn
from djbench.workloads import Target

WORKERS, THREADS, WORK_MS = 4, 16, 50
#: Seconds a stopping worker gets before gunicorn kills it. wrk has finished
#: by then, and what is left (requests accepted when it ended, pools closing
#: at exit) once took 15 s: nothing here needs a worker's graceful end.
GRACEFUL_TIMEOUT = 2
#: A pool checkout waits this long before failing: session mode on 16
#: connections queues 64 threads, and must queue rather than fail.
TIMEOUT = 30.0


@dataclass(frozen=True)
class Contender:
    """One configuration of the phase: a pool and its size per worker process."""

    config: str  # "djpool", "djpool_fifo" (djbench.variants) or "native"
    mode: str  # djpool's POOL_MODE ("session" for the native pool)
    per_worker: int

    @property
    def suffix(self) -> str:
        """The target's key suffix (its database's name ends with it)."""
        return f"_budget_{self.mode}{self.per_worker}" if self.config.startswith("djpool") else f"_budget{self.per_worker}"

    @property
    def name(self) -> str:
        return self.config + self.suffix

    def sizing(self) -> Sizing:
        return Sizing(self.per_worker, 0, self.mode, TIMEOUT)

    def label(self, workers: int = WORKERS) -> str:
        if self.config.startswith("djpool"):
            pool = f"djpool {self.mode} mode" + (" without barging" if CONFIGS[self.config].variant else "")
        else:
            pool = "Django's native pool"
        return f"{pool}, {self.per_worker} per worker ({self.per_worker * workers})"


#: Transaction mode first: the configuration the phase is about.
CONTENDERS = [
    Contender("djpool", "transaction", 4),
    Contender("native", "session", 4),
    Contender("djpool", "session", 4),
    Contender("native", "session", 16),
    Contender("djpool", "session", 16),
]
#: The hand-over's A/B (``--phases handover``): transaction mode on 4 per
#: worker as it is, and without barging (djbench.variants).
HANDOVER_CONTENDERS = [CONTENDERS[0], Contender("djpool_fifo", "transaction", 4)]


@dataclass
class Measurement:
    """What wrk saw of one configuration over the rounds it ran."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: str = ""

    def summary(self) -> dict[str, Any]:
        return {
            "rate": report.mean([r["rate"] for r in self.runs]),
            "round_rates": [r["rate"] for r in self.runs],
            "p50": statistics.median(r["p50"] for r in self.runs),
            "p99": statistics.median(r["p99"] for r in self.runs),
            "round_p99s": [r["p99"] for r in self.runs],
            "peak_connections": max(r["peak_connections"] for r in self.runs),
        }


@dataclass(frozen=True)
class Load:
    """How each configuration is loaded."""

    rounds: int
    duration: float
    #: Seconds of unmeasured wrk before each measured run (0: none).
    warmup: float
    #: Whether a measurement waits for the previous configuration's gunicorn to be gone.
    settle: bool = True
    connections: int = 128
    workers: int = WORKERS
    threads: int = THREADS
    work_ms: float = WORK_MS

    @property
    def path(self) -> str:
        return f"/work?ms={self.work_ms:g}"


def measure(targets: list[Target], load: Load) -> dict[str, Measurement]:
    """Every target ``load.rounds`` times, configurations taking turns round by round.

    Each measurement has a gunicorn of its own (``--preload``: Django is
    imported once, before the workers fork), and a gunicorn serves one
    measurement only: two servers holding 64 connections each would not fit
    PostgreSQL's default ``max_connections`` of 100. A round's servers all
    start before the first measurement (idle, holding no server connection
    until their turn), and each is stopped when its turn is over. With
    ``load.settle`` the next measurement begins only once the previous
    server has gone (its workers first finish the requests they had
    accepted), so nothing else runs during it; without, only when the
    server lacks free connection slots for it (the smoke run).
    """
    measured = {t.key: Measurement() for t in targets}
    # Longer than any request can take (a pool wait of TIMEOUT plus the work),
    # and than the run itself: gthread workers must not be killed mid-run.
    gunicorn_timeout = int(max(TIMEOUT, load.duration) * 2 + 10)
    for r in range(load.rounds):
        order = targets[r % len(targets):] + targets[: r % len(targets)]
        servers = [
            Gunicorn(
                t, "gthread", load.workers, load.threads, load.path, gunicorn_timeout,
                worker_connections=load.threads, preload=True, graceful_timeout=GRACEFUL_TIMEOUT, ready_path="/ping",
            )
            for t in order
        ]  # fmt: skip
        try:
            # The first one alone: it fills the bytecode cache the others then
            # read (djbench.e2e). Then all are up before any is measured, idle
            # (answering /ping only, they hold no server connection).
            for group in (servers[:1], servers[1:]):
                for server in group:
                    server.start()
                for server in group:
                    try:
                        server.wait_until_serving()
                    except Exception:  # reported at its turn, by _measure_one
                        pass
            previous: Gunicorn | None = None
            for server in servers:
                if previous is not None:
                    previous.signal_stop(quick=True)
                    if load.settle:
                        previous.stop(quick=True)
                result = _measure_one(server, load, measured[server.target.key], previous)
                if result is not None:
                    measured[server.target.key].runs.append(result)
                previous = server
        finally:
            # Every one is stopped, even if stopping another failed.
            failures = []
            for server in servers:
                try:
                    server.stop(quick=True)
                except Exception as error:
                    failures.append(error)
            if failures:
                raise failures[0]
    return measured


def _measure_one(server: Gunicorn, load: Load, into: Measurement, previous: Gunicorn | None) -> dict[str, Any] | None:
    """Warm ``server`` up and load it, once it has answered; None if it could not run."""
    target = server.target
    need = load.workers * target.sizing.max_connections
    free = target.server.free_connection_slots()
    if free < need + 10 and previous is not None:
        previous.stop(quick=True)  # its connections may be what is missing
        free = target.server.free_connection_slots()
    if free < need + 10:
        into.skipped = f"server has {free} free connection slots, needs {need} + 10 spare"
        return None
    try:
        server.wait_until_serving()
        if load.warmup > 0:  # every worker opens its connections
            server.load(load.warmup, load.connections, timeout=TIMEOUT)
        result = server.load(load.duration, load.connections, timeout=TIMEOUT)
    except Exception as error:
        into.errors.append(f"{type(error).__name__}: {error}")
        return None
    if result["non_2xx"] or result["socket_errors"]:
        into.errors.append(f"non-2xx: {result['non_2xx']}, socket errors: {result['socket_errors']}")
    return result
