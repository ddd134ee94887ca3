"""A private PostgreSQL or MariaDB instance that the tests may stop and start.

The shared servers on 5432/3306 are never stopped: tests that restart a
server, or need password authentication (the shared PostgreSQL trusts every
local connection), start one of these on a free loopback port, in a
temporary directory, and stop it by PID at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any

from tests.servers import HOST, Server

PG_BIN = os.environ.get("DJPOOL_PG_BIN", "/usr/lib/postgresql/15/bin")

# A role that must give its password over TCP (scram), next to a trusted superuser.
PASSWORD_USER = "djpool_rel_pw"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _run_as_postgres(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--", *args]
    return subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs)


class PrivateServer(Server):
    """One throw-away server: ``start()``, ``stop()``, ``restart()``, ``query()``."""

    def __init__(self, vendor: str, password: str) -> None:
        # The password is made of letters and digits (it is written into SQL).
        assert password.isalnum(), password
        self.vendor = vendor
        self.password = password
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix=f"djpool_rel_{vendor}_")
        self.pid: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        if vendor == "postgresql":
            self.user, self.database = "postgres", "postgres"
            self.engine, self.pid_query = "djpool.backends.postgresql", "SELECT pg_backend_pid()"
            self._init_postgresql()
        else:
            self.user, self.database = "root", "djpool_rel"
            self.engine, self.pid_query = "djpool.backends.mysql", "SELECT CONNECTION_ID()"
            self._init_mariadb()

    # ##### Setup #####

    def _init_postgresql(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        data = os.path.join(self.dir, "data")
        _run_as_postgres([f"{PG_BIN}/initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"])
        with open(os.path.join(data, "pg_hba.conf"), "w") as hba:
            hba.write(
                "local all all trust\n"
                f"host all postgres {HOST}/32 trust\n"
                f"host all all {HOST}/32 scram-sha-256\n"
            )
        self.start()
        self.query(f"CREATE ROLE {PASSWORD_USER} LOGIN PASSWORD '{self.password}'")

    def _init_mariadb(self) -> None:
        subprocess.run(
            ["mariadb-install-db", "--no-defaults", f"--datadir={self.dir}/data", "--user=root",
             "--auth-root-authentication-method=normal", "--skip-test-db"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        self.start()
        self.query(f"CREATE DATABASE {self.database} CHARACTER SET utf8mb4")
        self.query(f"CREATE USER '{PASSWORD_USER}'@'%' IDENTIFIED BY '{self.password}'")
        self.query(f"GRANT ALL ON {self.database}.* TO '{PASSWORD_USER}'@'%'")

    # ##### Process control #####

    def start(self) -> None:
        if self.vendor == "postgresql":
            data = os.path.join(self.dir, "data")
            _run_as_postgres([
                f"{PG_BIN}/pg_ctl", "-D", data, "-l", os.path.join(self.dir, "log"), "-w", "start",
                "-o", f"-p {self.port} -k {self.dir} -c listen_addresses={HOST} -c fsync=off -c max_connections=60",
            ])
            with open(os.path.join(data, "postmaster.pid")) as pidfile:
                self.pid = int(pidfile.readline())
        else:
            self._process = subprocess.Popen(
                ["mariadbd", "--no-defaults", f"--datadir={self.dir}/data", f"--port={self.port}",
                 f"--socket={self.dir}/sock", f"--bind-address={HOST}", "--user=root", "--skip-log-bin",
                 "--innodb-buffer-pool-size=16M", f"--pid-file={self.dir}/pid", f"--log-error={self.dir}/err",
                 "--max-connections=60"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            self.pid = self._process.pid
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                self.query("SELECT 1")
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server (fast shutdown: sessions are cut) and wait for it to exit."""
        if self.pid is None:
            return
        if self.vendor == "postgresql":
            _run_as_postgres([f"{PG_BIN}/pg_ctl", "-D", os.path.join(self.dir, "data"), "-m", "fast", "-w", "stop"])
        else:
            assert self._process is not None
            self._process.send_signal(signal.SIGTERM)
            self._process.wait(60)
            self._process = None
        self.pid = None

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    # ##### Access #####

    # settings(), admin_connect(), query(), session_ids(): tests.servers.Server's.
