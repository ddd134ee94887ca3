"""gunicorn settings for the ``--preload`` fork test: check the master's connections after a worker exits."""

from __future__ import annotations

from typing import Any


def child_exit(server: Any, worker: Any) -> None:
    """Runs in the master once a worker has exited: are the master's connections intact?"""
    from tests.reliability import gunicorn_app

    try:
        gunicorn_app.report(event="child_exit", worker=worker.pid, held=gunicorn_app.backend_pid(), idle=gunicorn_app.idle_pid())
    except Exception as error:  # noqa: BLE001 - the test reads the report
        gunicorn_app.report(event="child_exit", worker=worker.pid, error=repr(error))
