"""Profile djpool's request cycle (checkout, query, checkin) in one thread.

    python bench/profile_hotpath.py [postgresql|mysql] [orm|select] [requests]

Prints cProfile's top functions by own time, then the same cycle's mean
wall time for djpool and Django's persistent connections, interleaved
(``PROFILE_VERSUS=unchecked``: against the floor instead).
"""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from djbench.configs import CONFIGS, Sizing  # noqa: E402
from djbench.servers import Server  # noqa: E402
from djbench.workloads import ORM, SELECT, Target, Workload  # noqa: E402


def main() -> None:
    vendor = sys.argv[1] if len(sys.argv) > 1 else "postgresql"
    query = ORM if (sys.argv[2] if len(sys.argv) > 2 else "orm") == "orm" else SELECT
    requests = int(sys.argv[3]) if len(sys.argv) > 3 else 5000
    versus = os.environ.get("PROFILE_VERSUS", "persistent")
    server = Server.from_env(vendor)
    database = f"djpool_bench_{os.getpid()}_profile"
    server.create_database(database)
    try:
        targets = {name: Target(name, CONFIGS[name], server, database, Sizing()) for name in ("djpool", versus)}
        import django
        from django.conf import settings

        settings.configure(
            USE_TZ=True, INSTALLED_APPS=["djbench"], LOGGING_CONFIG=None,
            DATABASES={"default": {}, **{name: t.databases_entry() for name, t in targets.items()}},
        )  # fmt: skip
        django.setup()
        clients = {name: t.client(Workload(query)) for name, t in targets.items()}
        for client in clients.values():
            for _ in range(200):
                client.request()
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(requests):
            clients["djpool"].request()
        profiler.disable()
        stats = pstats.Stats(profiler).sort_stats(os.environ.get("PROFILE_SORT", "tottime"))
        stats.print_stats(os.environ.get("PROFILE_FILTER", ""), 40)
        if os.environ.get("PROFILE_CALLEES"):
            stats.print_callees(os.environ["PROFILE_CALLEES"])
        totals = {name: 0.0 for name in clients}
        for _ in range(20):
            for name, client in clients.items():
                started = time.perf_counter()
                for _ in range(requests // 20):
                    client.request()
                totals[name] += time.perf_counter() - started
        for name, total in totals.items():
            print(f"{name}: {total / requests * 1e6:.0f} µs per request")
        print(f"djpool ÷ {versus}: {totals['djpool'] / totals[versus]:.2f}")
        for client in clients.values():
            client.close()
        targets["djpool"].dispose()
    finally:
        server.drop_database(database)


if __name__ == "__main__":
    main()
