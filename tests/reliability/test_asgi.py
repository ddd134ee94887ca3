"""Async views under a real ASGI server (uvicorn): no leak, no connection shared across requests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.conftest import PeakWatcher
from tests.reliability.privateserver import free_port

pytestmark = pytest.mark.server_backed

REPO = Path(__file__).resolve().parents[2]


def _get(url: str, deadline: float, process: subprocess.Popen[bytes]) -> dict[str, Any]:
    while True:
        assert process.poll() is None, "the ASGI server exited"
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                assert response.status == 200
                return json.loads(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.slow
def test_async_views_under_uvicorn(server):
    pytest.importorskip("uvicorn")
    pool_size, max_overflow, requests, concurrency = 3, 2, 400, 24
    port = free_port()
    database = server.settings(POOL_OPTIONS={"POOL_SIZE": pool_size, "MAX_OVERFLOW": max_overflow, "TIMEOUT": 30})
    env = dict(
        os.environ,
        DJPOOL_REL_DATABASE=json.dumps(database),
        PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    baseline = server.connection_count()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
         "tests.reliability.asgi_app:application"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _get(f"{base}/stats", time.monotonic() + 30, process)  # up
        deadline = time.monotonic() + 120
        with PeakWatcher(server.connection_count) as watcher, ThreadPoolExecutor(concurrency) as executor:
            answers = list(executor.map(lambda n: (n, _get(f"{base}/marker?m=r{n}", deadline, process)), range(requests)))
        figures = _get(f"{base}/stats", deadline, process)
    except BaseException:
        process.send_signal(signal.SIGUSR1)  # stacks of every thread to stderr
        time.sleep(1)
        raise
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
        print(stderr.decode()[-20000:])  # shown if the test fails
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it (exit -15).
    assert process.returncode in (0, -signal.SIGTERM), stderr.decode()[-2000:]
    assert b"Traceback" not in stderr, stderr.decode()[-2000:]

    for n, answer in answers:
        first, second = answer["pids"]
        assert first == second, answer  # one connection for the whole request
        assert answer["marker"] == f"r{n}", answer  # nobody else wrote to its session
    by_pid: dict[int, list[tuple[float, float]]] = {}
    for _, answer in answers:
        by_pid.setdefault(answer["pids"][0], []).append(tuple(answer["held"]))
    for pid, spans in by_pid.items():
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert start >= end, f"two requests held backend {pid} at once"
    assert len(by_pid) > 1, "requests never ran concurrently: the test proves nothing"

    assert figures["checked_out"] == 0, figures  # no leak once the requests are done
    assert figures["checkouts"] == requests, figures
    assert figures["timeouts"] == 0
    assert watcher.peak - baseline <= pool_size + max_overflow
