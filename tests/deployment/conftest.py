"""Helpers for the deployment tests: a real server or worker process, HTTP load, span checks.

``DJPOOL_DEPLOYMENT_TESTS`` picks what runs (each shape once per server in
CI): ``all`` (the default, unless ``DJPOOL_SLOW_TESTS=0``), ``gevent`` (only
the gevent workers: the psycopg2 and PyMySQL environments, for their green
drivers) or ``0`` (none; the default with ``DJPOOL_SLOW_TESTS=0``).

Servers are started in processes of their own on a free loopback port,
every wait is bounded, and each process is stopped (then killed if it does
not stop) by its PID. gevent's monkey-patching happens only in those
processes (gunicorn's gevent worker, ``celery -P gevent``), never here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.conftest import items  # noqa: F401 - the seeded Item table, for the ORM views
from tests.reliability.privateserver import free_port

REPO = Path(__file__).resolve().parents[2]
DRIVER = os.environ.get("DJPOOL_TEST_DRIVER", "")
SELECTIONS = ("all", "gevent", "0")
SELECTED = os.environ.get("DJPOOL_DEPLOYMENT_TESTS", "0" if os.environ.get("DJPOOL_SLOW_TESTS") == "0" else "all")
if SELECTED not in SELECTIONS:
    raise pytest.UsageError(f"DJPOOL_DEPLOYMENT_TESTS must be one of {', '.join(map(repr, SELECTIONS))}; got {SELECTED!r}")


@pytest.fixture(autouse=True)
def deployment_selection(request: pytest.FixtureRequest) -> None:
    """Skip what ``DJPOOL_DEPLOYMENT_TESTS`` leaves out, saying why."""
    if SELECTED == "0":
        pytest.skip("DJPOOL_DEPLOYMENT_TESTS=0 (or DJPOOL_SLOW_TESTS=0): deployment tests run in another environment")
    if SELECTED == "gevent" and request.node.get_closest_marker("gevent") is None:
        pytest.skip("DJPOOL_DEPLOYMENT_TESTS=gevent: only the gevent workers run in this environment")


def process_env(database: dict[str, Any], **extra: str) -> dict[str, str]:
    """The environment of a server process: the database under test, the repository importable."""
    return dict(
        os.environ,
        DJPOOL_REL_DATABASE=json.dumps(database),
        PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
        **extra,
    )


class ServedApp:
    """A running server process and its base URL."""

    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.base = f"http://127.0.0.1:{port}"
        self.stderr = b""

    def get(self, path: str, timeout: float = 30) -> tuple[int, Any]:
        """One request: (status, decoded JSON body). A 5xx with a JSON body is returned too."""
        try:
            with urllib.request.urlopen(self.base + path, timeout=timeout) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            body = error.read()
            try:
                return error.code, json.loads(body)
            except ValueError:
                return error.code, body.decode(errors="replace")

    def wait_up(self, path: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, "the server exited while starting"
            try:
                status, _ = self.get(path, timeout=5)
                if status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the server did not answer {path} within {timeout} s")
            time.sleep(0.2)


@contextmanager
def served(argv: list[str], database: dict[str, Any], up_path: str = "/stats", **env: str) -> Iterator[ServedApp]:
    """Start ``python -m <argv>`` on a free port (``{port}`` in argv), wait until it answers, stop it after.

    An ``argv`` starting with an absolute path runs that program instead (uWSGI).
    """
    port = free_port()
    prefix = [] if os.path.isabs(argv[0]) else [sys.executable, "-m"]
    process = subprocess.Popen(
        [*prefix, *[arg.format(port=port) for arg in argv]],
        cwd=REPO, env=process_env(database, **env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    app = ServedApp(process, port)
    try:
        app.wait_up(up_path)
        yield app
    finally:
        stop(process)
        app.stderr = process.stderr.read() if process.stderr else b""  # type: ignore[union-attr]
        print(app.stderr.decode(errors="replace")[-20000:])  # shown if the test fails


def stop(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM (graceful stop), SIGKILL after ``timeout`` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


def assert_sessions_never_shared(answers: list[dict[str, Any]]) -> int:
    """Each answer held one session throughout, with its own marker; no session served two at once.

    Returns the largest number of sessions held at one instant: above 1
    proves that requests really ran concurrently.
    """
    by_pid: dict[int, list[tuple[float, float]]] = {}
    events: list[tuple[float, int]] = []
    for answer in answers:
        first, second = answer["pids"]
        assert first == second, answer  # one connection for the whole transaction
        by_pid.setdefault(first, []).append(tuple(answer["held"]))
        events += [(answer["held"][0], 1), (answer["held"][1], -1)]
    for pid, spans in by_pid.items():
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert start >= end, f"two requests held session {pid} at once"
    concurrent = peak = 0
    for _, step in sorted(events, key=lambda event: (event[0], event[1])):
        concurrent += step
        peak = max(peak, concurrent)
    return peak


def server_side_limit(limit: int, figures: list[dict[str, Any]]) -> int:
    """The most sessions the server may list at one instant for pools allowed ``limit`` connections in all.

    A connection a pool closes (an overflow one given back) stays listed by
    the server until its backend has exited, a few milliseconds after the
    client closed it; a connection opened meanwhile makes one more. So each
    pool (``figures``: its ``stats()``) that closed connections during the
    run may add one. The exact bound on what the pools hand out is checked
    from the requests' hold spans (:func:`assert_sessions_never_shared`).
    """
    churned = sum(1 for stats in figures if stats["connects"] > stats["idle"] + stats["checked_out"])
    return limit + churned


def wait_until(condition: Any, timeout: float = 30, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting")
        time.sleep(interval)
