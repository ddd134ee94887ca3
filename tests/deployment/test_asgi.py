"""uvicorn and daphne serving async views: the async ORM (acreate, aget, acount, adelete), aiterator()
streaming, and sync_to_async around a transaction, at a concurrency above the pool size, in both pool modes.

The server sees at most ``POOL_SIZE + MAX_OVERFLOW`` sessions, no session
serves two transactions at once, and ``stats()`` says nothing is checked out
and nothing timed out once the load is over.
"""

from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.deployment.conftest import assert_sessions_never_shared, served, server_side_limit, wait_until
from tests.reliability.conftest import PeakWatcher

pytestmark = pytest.mark.server_backed

POOL_SIZE, MAX_OVERFLOW, TIMEOUT = 3, 1, 20
CLIENTS = 16  # above POOL_SIZE + MAX_OVERFLOW

SERVERS = {
    "uvicorn": ["uvicorn", "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warning",
                "tests.deployment.app:asgi_application"],
    "daphne": ["daphne", "-b", "127.0.0.1", "-p", "{port}", "-v", "0", "tests.deployment.app:asgi_application"],
}


@pytest.mark.parametrize("mode", ["session", "transaction"])
@pytest.mark.parametrize("server_name", list(SERVERS))
def test_async_views(server, items, server_name, mode):
    pytest.importorskip(server_name)
    database = server.settings(
        POOL_OPTIONS={"POOL_SIZE": POOL_SIZE, "MAX_OVERFLOW": MAX_OVERFLOW, "TIMEOUT": TIMEOUT, "POOL_MODE": mode}
    )
    baseline = server.connection_count()

    def request(number: int) -> tuple[str, Any]:
        kind = ("amarker", "aorm", "astream")[number % 3]
        if kind == "astream":
            with urllib.request.urlopen(f"{app.base}/astream", timeout=60) as response:
                return kind, json.loads(response.read())
        status, answer = app.get(f"/{kind}?m=r{number}", timeout=60)
        assert status == 200, answer
        return kind, answer

    with served(SERVERS[server_name], database, up_path="/astats") as app:
        with PeakWatcher(server.connection_count) as watcher, ThreadPoolExecutor(CLIENTS) as executor:
            results = list(executor.map(request, range(150)))
        status, figures = app.get("/astats")
        assert status == 200, figures
    assert b"Traceback" not in app.stderr, app.stderr.decode()[-3000:]

    markers = [answer for kind, answer in results if kind == "amarker"]
    for number, (kind, answer) in enumerate(results):
        if kind == "amarker":
            assert answer["marker"] == f"r{number}", answer  # nobody else wrote to its session
        elif kind == "aorm":
            assert answer["name"] == f"dep-r{number}" and answer["seeds"] == 3, answer
        else:
            assert answer == ["seed-0", "seed-1", "seed-2"], answer
    assert_sessions_never_shared(markers)
    # More than one session at once: the requests really ran concurrently.
    assert 2 <= watcher.peak - baseline <= server_side_limit(POOL_SIZE + MAX_OVERFLOW, [figures]), (watcher.peak, figures)
    assert figures["pools"] == 1, figures  # one pool for the alias in the process
    assert figures["checked_out"] == 0, figures  # nothing leaked once the requests are done
    assert figures["timeouts"] == 0, figures
    wait_until(lambda: server.connection_count() <= baseline, timeout=15)
    assert items.objects.filter(name__startswith="dep-").count() == 0
