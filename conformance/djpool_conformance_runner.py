"""The TEST_RUNNER of the generated conformance settings: records every outcome.

``conformance/run.py`` points Django's ``tests/runtests.py`` at a settings
module whose ``TEST_RUNNER`` is :class:`RecordingRunner`. Parsing the text
output of ``runtests.py -v 2`` is brittle (docstrings, interleaved output of
threads and workers), so each outcome goes to a JSON-lines file instead, one
object per line, as it happens: a run that crashes half-way still leaves what
it saw. Under ``--parallel`` the workers record their own outcomes: Django
replays the workers' events on the parent's result, but by position in the
subsuite, and the replay can name the wrong test (seen on Django 5.2: a
traceback of one test reported under its neighbour's id).

After Django has torn the test databases down, the runner counts, on the
server, the sessions still open for the run's database user. The stock
backends close everything at that point; a pool must not keep sessions either.

This module is imported by the test process, with Django from the unpacked
source distribution, and needs only the driver of the server under test.
"""

from __future__ import annotations

import json
import os
import time
import unittest
from typing import Any

from django.test.runner import DiscoverRunner, ParallelTestSuite, RemoteTestResult, RemoteTestRunner

__all__ = ["RecordingRunner", "RecordingResult", "RecordingRemoteResult", "count_sessions"]

RESULTS_ENV = "DJPOOL_CONFORMANCE_RESULTS"
SERVER_ENV = "DJPOOL_CONFORMANCE_SERVER"


def _write(record: dict[str, Any]) -> None:
    path = os.environ.get(RESULTS_ENV)
    if not path:
        return
    # One write per record, opened in append mode: safe from several threads.
    with open(path, "a", encoding="utf-8") as stream:
        stream.write(json.dumps(record) + "\n")


def _tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


class _Recording:
    """Write each outcome to the results file, then do what the result class does."""

    #: False in the parent process while workers record (``--parallel``).
    recording = True

    def _record(self, test: Any, outcome: str, err: Any = None) -> None:
        if not type(self).recording:
            return
        record: dict[str, Any] = {"id": test.id(), "outcome": outcome}
        if err is not None:
            # unittest.TestResult's formatting (RemoteTestResult turns it off).
            record["detail"] = _tail(unittest.TestResult._exc_info_to_string(self, err, test))  # type: ignore[arg-type]
        _write(record)

    def addSuccess(self, test: Any) -> None:
        super().addSuccess(test)  # type: ignore[misc]
        self._record(test, "ok")

    def addError(self, test: Any, err: Any) -> None:
        self._record(test, "error", err)
        super().addError(test, err)  # type: ignore[misc]

    def addFailure(self, test: Any, err: Any) -> None:
        self._record(test, "fail", err)
        super().addFailure(test, err)  # type: ignore[misc]

    def addSkip(self, test: Any, reason: str) -> None:
        super().addSkip(test, reason)  # type: ignore[misc]
        self._record(test, "skip")

    def addExpectedFailure(self, test: Any, err: Any) -> None:
        super().addExpectedFailure(test, err)  # type: ignore[misc]
        self._record(test, "expected-failure")

    def addUnexpectedSuccess(self, test: Any) -> None:
        super().addUnexpectedSuccess(test)  # type: ignore[misc]
        self._record(test, "unexpected-success")

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        if err is not None:
            # A failing subtest fails its test: record it under the test's id
            # (subtest descriptions hold parameters that vary between runs).
            outcome = "fail" if issubclass(err[0], test.failureException) else "error"
            self._record(test, outcome, err)
        super().addSubTest(test, subtest, err)  # type: ignore[misc]


class RecordingResult(_Recording, unittest.TextTestResult):
    """The result of a serial run (and of the parent of a parallel one, silenced)."""


class RecordingRemoteResult(_Recording, RemoteTestResult):
    """The result of each ``--parallel`` worker."""

    recording = True


class RecordingRemoteRunner(RemoteTestRunner):
    resultclass = RecordingRemoteResult


class RecordingParallelTestSuite(ParallelTestSuite):
    runner_class = RecordingRemoteRunner


def postgres_rows(host: str, port: int, user: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement as ``user`` on the server's ``postgres`` database, in autocommit; its rows.

    With the driver Django itself picks: psycopg 3, else psycopg2 (a run
    of the pooled psycopg2 backend has no psycopg installed).
    """
    try:
        import psycopg as driver
    except ImportError:
        import psycopg2 as driver  # type: ignore[no-redef]
    connection = driver.connect(host=host, port=port, user=user, dbname="postgres")
    try:
        connection.autocommit = True
        cursor = connection.cursor()
        cursor.execute(sql, params or None)
        return list(cursor.fetchall()) if cursor.description else []
    finally:
        connection.close()


def count_sessions() -> list[dict[str, Any]]:
    """Sessions the server still has for this run's user or test databases."""
    spec = json.loads(os.environ[SERVER_ENV])
    like = spec["db_prefix"].replace("_", "\\_") + "%"  # "_" matches any character in LIKE
    if spec["backend"] == "postgresql":
        rows = postgres_rows(
            spec["host"],
            spec["port"],
            spec["admin_user"],
            "SELECT pid, usename, datname, state, left(query, 120) FROM pg_stat_activity"
            " WHERE pid <> pg_backend_pid() AND (usename = %s OR datname LIKE %s)",
            (spec["run_user"], like),
        )
    else:
        import MySQLdb

        admin = MySQLdb.connect(host=spec["host"], port=spec["port"], user=spec["admin_user"], passwd="")
        try:
            cursor = admin.cursor()
            cursor.execute(
                "SELECT ID, USER, DB, COMMAND, LEFT(COALESCE(INFO, ''), 120)"
                " FROM information_schema.PROCESSLIST"
                " WHERE ID <> CONNECTION_ID() AND (USER = %s OR DB LIKE %s)",
                (spec["run_user"], like),
            )
            rows = list(cursor.fetchall())
        finally:
            admin.close()
    return [dict(zip(("id", "user", "database", "state", "query"), row)) for row in rows]


class RecordingRunner(DiscoverRunner):
    """Django's DiscoverRunner with :class:`RecordingResult` and a session count at the end."""

    parallel_test_suite = RecordingParallelTestSuite

    def get_resultclass(self) -> Any:
        return super().get_resultclass() or RecordingResult

    def run_suite(self, suite: Any, **kwargs: Any) -> Any:
        RecordingResult.recording = not isinstance(suite, ParallelTestSuite)
        return super().run_suite(suite, **kwargs)

    def run_tests(self, test_labels: Any, **kwargs: Any) -> int:
        started = time.monotonic()
        try:
            return super().run_tests(test_labels, **kwargs)
        finally:
            # Django has destroyed the test databases and closed its
            # connections; whatever the server still shows was kept open.
            # The server takes a moment to notice a closed socket.
            sessions = count_sessions()
            for _ in range(20):
                if not sessions:
                    break
                time.sleep(0.1)
                sessions = count_sessions()
            from django.db import connections

            engines = {alias: type(connections[alias]).__module__ for alias in connections}
            _write(
                {
                    "leftover_sessions": sessions,
                    "engines": engines,
                    "duration": round(time.monotonic() - started, 1),
                }
            )
