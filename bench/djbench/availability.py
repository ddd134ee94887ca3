"""Availability under threads that end without closing their connection (issue 19).

Django without a pool gives each thread its own connection, so a thread
that ends without ``close_old_connections()`` (a job in a ThreadPoolExecutor
that exits, a background thread, a management command's worker) costs a
server session and nothing else. A pool must not do worse: here 4 threads
run request cycles on a pool of 3 + 1 (``TIMEOUT`` 3 s) while 2 others keep
starting threads that run one query and end holding their connection.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from djbench.workloads import Target, registered

#: The pool of the scenario (as issue 19 measured it) and its TIMEOUT.
POOL_SIZE, MAX_OVERFLOW, TIMEOUT = 3, 1, 3.0
CYCLE_THREADS, SPAWN_THREADS = 4, 2


@dataclass
class Outcome:
    requests: int = 0
    ended_threads: int = 0
    errors: list[str] = field(default_factory=list)
    reclaimed: int | None = None

    def failed(self, error: BaseException) -> None:
        self.errors.append(f"{type(error).__name__}: {str(error).splitlines()[0][:160]}")


def run(target: Target, duration: float) -> Outcome:
    """The scenario on ``target`` for ``duration`` seconds."""
    from django.db import close_old_connections, connections

    outcome = Outcome()
    lock = threading.Lock()
    deadline = time.monotonic() + duration
    alias = target.alias

    def request() -> None:
        """One query, counted as a request or an error."""
        try:
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
            with lock:
                outcome.requests += 1
        except Exception as error:  # noqa: BLE001 - counted
            with lock:
                outcome.failed(error)

    def cycles() -> None:
        while time.monotonic() < deadline:
            request()
            close_old_connections()
            connections[alias].close()

    def spawn() -> None:
        while time.monotonic() < deadline:
            thread = threading.Thread(target=request)  # ends without closing its connection
            thread.start()
            thread.join(TIMEOUT + 10)
            with lock:
                outcome.ended_threads += 1

    # djpool logs a WARNING per reclaimed connection: thousands here, on purpose.
    reclaim_log = logging.getLogger("djpool.leaks")
    disabled, reclaim_log.disabled = reclaim_log.disabled, True
    with registered([target]):
        threads = [threading.Thread(target=cycles) for _ in range(CYCLE_THREADS)]
        threads += [threading.Thread(target=spawn) for _ in range(SPAWN_THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(duration + TIMEOUT + 30)
        if target.config.name == "djpool":
            from djpool.core import stats

            outcome.reclaimed = stats(alias).get("reclaimed", 0)
    reclaim_log.disabled = disabled
    return outcome
