"""A Celery app whose tasks use the pooled database, for ``celery worker`` with -P prefork, threads or gevent.

Django comes in through Celery's own Django fixup (``DJANGO_SETTINGS_MODULE``),
which closes the task's connections before and after every task: with
djpool that gives them back to the pool. The broker, result backend and
queue come from ``DJPOOL_DEP_BROKER``, ``DJPOOL_DEP_RESULTS`` and
``DJPOOL_DEP_QUEUE``.

With ``DJPOOL_REL_REPORT`` set, the worker's main process touches the
database at import, before any fork, and writes the sessions it holds
(one checked out by its main thread, one idle in its pool) to that file.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.deployment.celery_settings")

from tests.deployment.work import make_psycopg2_green  # noqa: E402

make_psycopg2_green()

import django  # noqa: E402
from celery import Celery  # noqa: E402

app = Celery("djpool_deployment")
app.conf.update(
    broker_url=os.environ["DJPOOL_DEP_BROKER"],
    result_backend=os.environ["DJPOOL_DEP_RESULTS"],
    task_default_queue=os.environ["DJPOOL_DEP_QUEUE"],
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


def _touch_database_before_fork(report: str) -> None:
    from tests.deployment.work import session_id

    django.setup()
    held = session_id()  # stays checked out by the main thread's wrapper
    idle: list[int] = []

    def other_thread() -> None:
        from django.db import connections

        try:
            idle.append(session_id())
        finally:
            connections.close_all()

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join(30)
    with open(report, "a") as file:
        file.write(json.dumps({"process": os.getpid(), "held": held, "idle": idle[0]}) + "\n")


if os.environ.get("DJPOOL_REL_REPORT"):
    _touch_database_before_fork(os.environ["DJPOOL_REL_REPORT"])


@app.task(name="deployment.hold")
def hold(marker: str, ms: float = 20) -> dict[str, Any]:
    from tests.deployment.work import hold as hold_connection

    return hold_connection(marker, ms / 1000)


@app.task(name="deployment.stats")
def stats() -> dict[str, Any]:
    from tests.deployment.work import pool_stats

    return pool_stats()


@app.task(name="deployment.async_orm")
def async_orm(marker: str) -> dict[str, Any]:
    """``asyncio.run()`` inside a task: the async ORM and ``sync_to_async`` in a fresh event loop.

    With no outer event loop, asgiref runs the ORM calls in its one
    long-lived sync thread, whose connection Celery's fixup (which closes
    the task thread's connections) never sees: the coroutine closes it
    itself at the end, as the deployment guide says.
    """
    from asgiref.sync import sync_to_async
    from django.db import close_old_connections

    from tests.deployment.work import hold as hold_connection
    from tests.testapp.models import Item

    async def main() -> dict[str, Any]:
        try:
            name = f"celery-{marker}"
            item = await Item.objects.acreate(name=name)
            again = await Item.objects.aget(pk=item.pk)
            answer = await sync_to_async(hold_connection)(marker, 0.01)
            await Item.objects.filter(pk=item.pk).adelete()
            return {**answer, "name": again.name}
        finally:
            await sync_to_async(close_old_connections)()

    return asyncio.run(main())
