"""Python function calls per request, counted exactly by cProfile.

Wall-clock latency on a shared 2-core machine moves by 5-10 % between runs;
the number of Python calls a request makes does not. It is the figure to
watch while trimming the hot path: each configuration runs the very same
request cycle (:class:`djbench.workloads.DjangoClient`, ``SELECT 1``
through ``connection.cursor()``), so what differs between two configurations
is what their backend does to take and give back a connection.

The count is made deterministic: one fresh thread per configuration (so no
other alias has a connection in it, and ``close_old_connections()`` visits
only the target's), a warmed-up, busy connection (no first-use setup, no
idle-time health check), and the garbage collector disabled while the
profiler runs (a collection would run ``__del__`` methods and weakref
callbacks at unpredictable requests). cProfile counts built-in (C) calls as
well as Python ones. On Python 3.11, the bench environment's, cProfile sees
only the thread that enabled it, so a pool's own background threads
(psycopg_pool's workers, djpool's housekeeper) are not counted.
"""

from __future__ import annotations

import cProfile
import gc
import pstats
import threading
from dataclasses import dataclass

from djbench.workloads import SELECT, Target, Workload, registered


@dataclass
class CallCount:
    """Calls per request of one configuration, from two profiled halves of the run."""

    requests: int
    calls: int
    halves: tuple[float, float]

    @property
    def per_request(self) -> float:
        return self.calls / self.requests

    @property
    def steady(self) -> bool:
        """Both halves made the same number of calls per request."""
        return self.halves[0] == self.halves[1]


def _total_calls(profiler: cProfile.Profile) -> int:
    return int(pstats.Stats(profiler).total_calls)  # type: ignore[attr-defined]


def _profiled_nothing() -> int:
    """What enabling and disabling the profiler count by themselves (``disable()``: 1)."""
    profiler = cProfile.Profile()
    profiler.enable()
    profiler.disable()
    return _total_calls(profiler)


def count_calls(target: Target, warmup: int, requests: int) -> CallCount:
    """Profile ``requests`` requests on ``target`` after ``warmup`` unprofiled ones."""
    box: dict[str, object] = {}
    requests = max(2, requests)  # two halves of at least one request
    half = requests // 2

    def work() -> None:
        client = None
        try:
            client = target.client(Workload(SELECT))
            for _ in range(warmup):
                client.request()
            counts = []
            overhead = _profiled_nothing()
            gc.collect()
            was_enabled = gc.isenabled()
            gc.disable()
            try:
                for n in (half, requests - half):
                    profiler = cProfile.Profile()
                    profiler.enable()
                    for _ in range(n):
                        client.request()
                    profiler.disable()
                    counts.append((_total_calls(profiler) - overhead, n))
            finally:
                if was_enabled:
                    gc.enable()
            box["counts"] = counts
        except BaseException as error:  # reported in the caller's thread
            box["error"] = error
        finally:
            if client is not None:
                client.close()

    with registered([target]):
        thread = threading.Thread(target=work, name="djpool-bench-calls")
        thread.start()
        thread.join()
    target.dispose()
    if "error" in box:
        raise RuntimeError(f"{target.key}: {type(box['error']).__name__}: {box['error']}")
    counts: list[tuple[int, int]] = box["counts"]  # type: ignore[assignment]
    halves = tuple(calls / n for calls, n in counts)
    return CallCount(requests, sum(calls for calls, _ in counts), (halves[0], halves[1]))
