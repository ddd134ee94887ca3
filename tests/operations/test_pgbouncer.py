"""djpool behind a real PgBouncer in transaction pooling mode.

Each test run starts its own ``pgbouncer`` (Debian package ``pgbouncer``) on
a free loopback port with a generated ini, in front of a database of its
own, and stops it by PID afterwards.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connections, transaction
from django.db.models import Sum

from djpool.core import registry, stats
from tests.conftest import run_in_threads

pytestmark = pytest.mark.postgresql

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
SERVER_CONNECTIONS = 2  # PgBouncer's default_pool_size: the most server sessions it opens


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode(errors="replace") if process.stdout else ""
            raise RuntimeError(f"pgbouncer exited with {process.returncode}: {output}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"pgbouncer did not listen on port {port} within {timeout} s")


@pytest.fixture
def pgbouncer(server) -> Iterator[dict]:
    """A PgBouncer (transaction pooling) in front of a fresh database; yields its alias settings."""
    if not os.path.exists(PGBOUNCER):
        pytest.skip("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
    database = f"djpool_ops_pgb_{os.getpid()}"
    server.create_database(database)
    port = free_port()
    # Not pytest's tmp_path: its parents are private to the test user, and
    # PgBouncer may run as another one (below).
    directory = Path(tempfile.mkdtemp(prefix="djpool_ops_pgb_"))
    (directory / "userlist.txt").write_text(f'"{server.user}" ""\n')
    (directory / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"djpool_pgb = host=127.0.0.1 port={server.port} dbname={database}\n"
        "[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {port}\n"
        "unix_socket_dir =\n"
        "auth_type = trust\n"
        f"auth_file = {directory / 'userlist.txt'}\n"
        "pool_mode = transaction\n"
        "max_client_conn = 100\n"
        f"default_pool_size = {SERVER_CONNECTIONS}\n"
        f"max_db_connections = {SERVER_CONNECTIONS}\n"
        f"logfile = {directory / 'pgbouncer.log'}\n"
    )
    command = [PGBOUNCER]
    if os.geteuid() == 0:
        # PgBouncer refuses to run as root; let it switch to the server's user.
        user = pwd.getpwnam("postgres")
        for path in [directory, *directory.iterdir()]:
            os.chown(path, user.pw_uid, user.pw_gid)
        command += ["-u", "postgres"]
    process = subprocess.Popen([*command, str(directory / "pgbouncer.ini")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process)
        yield {"database": database, "port": port, "log": directory / "pgbouncer.log"}
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        server.drop_database(database)
        shutil.rmtree(directory, ignore_errors=True)


def test_requests_through_pgbouncer_stay_within_its_server_connections(pgbouncer, make_alias, server):
    from tests.testapp.models import Item

    # The table, created directly on the server (not through PgBouncer).
    direct = make_alias({"POOL_SIZE": 1}, NAME=pgbouncer["database"])
    with connections[direct].schema_editor() as editor:
        editor.create_model(Item)
    connections[direct].close()
    registry.close_all(direct)

    # What docs/backends/postgresql.md recommends behind PgBouncer in transaction mode.
    alias = make_alias(
        {"POOL_SIZE": 6, "MAX_OVERFLOW": 6, "TIMEOUT": 30},
        NAME="djpool_pgb",
        PORT=pgbouncer["port"],
        DISABLE_SERVER_SIDE_CURSORS=True,
    )
    threads, requests = 16, 6
    peaks = {"server": 0, "client": 0}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peaks["server"] = max(peaks["server"], server.connection_count(pgbouncer["database"]))
            peaks["client"] = max(peaks["client"], stats(alias).get("checked_out", 0))
            time.sleep(0.01)

    def request_loop(thread: int) -> int:
        conn = connections[alias]
        for number in range(requests):
            with transaction.atomic(using=alias):
                Item.objects.using(alias).create(name=f"t{thread}-{number}", value=number)
                with conn.cursor() as cursor:
                    cursor.execute("SELECT pg_sleep(0.01)")
            # Outside a transaction: a server-side cursor would be lost between
            # PgBouncer's server connections; DISABLE_SERVER_SIDE_CURSORS avoids it.
            names = [item.name for item in Item.objects.using(alias).filter(name__startswith=f"t{thread}-").iterator(chunk_size=2)]
            assert len(names) == number + 1
            conn.close()  # end of the request: back to djpool's pool
        return requests

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        done = run_in_threads(threads, request_loop)
    finally:
        stop.set()
        watcher.join()

    assert sum(done) == threads * requests
    assert Item.objects.using(alias).count() == threads * requests
    assert Item.objects.using(alias).aggregate(total=Sum("value"))["total"] == threads * sum(range(requests))
    connections[alias].close()
    # The server never saw more sessions than PgBouncer's pool, while djpool's
    # pool held more client connections (to PgBouncer) at once.
    assert 1 <= peaks["server"] <= SERVER_CONNECTIONS
    assert peaks["client"] > SERVER_CONNECTIONS
    assert stats(alias)["connects"] > SERVER_CONNECTIONS
    assert stats(alias)["timeouts"] == 0
