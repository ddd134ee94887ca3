"""Servers, jars and settings for the JDBC suite.

The server handles are :class:`tests.servers.Server` (raw admin queries,
session ids, kill) on databases of this session's own.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.servers import HOST, Server

PID = os.getpid()
POSTGRESQL = Server(
    "postgresql", "djpool.backends.jdbc", 5432, "postgres", f"djpool_jdbc_{PID}", "SELECT pg_backend_pid()"
)
MARIADB = Server("mysql", "djpool.backends.jdbc", 3306, "root", f"djpool_jdbc_{PID}", "SELECT CONNECTION_ID()")

DRIVERS = {"postgresql": "org.postgresql.Driver", "mysql": "org.mariadb.jdbc.Driver"}

# Debian package → the unversioned jar it installs.
JARS = {
    "libpostgresql-jdbc-java": "postgresql.jar",
    "libmariadb-java": "mariadb-java-client.jar",
    "libh2-java": "h2.jar",
}


def class_path() -> str:
    """CLASSPATH for the suite: the jars of the Debian JDBC packages, found with ``dpkg -L``."""
    entries = []
    for package, jar in JARS.items():
        try:
            listing = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            raise RuntimeError(
                f"the JDBC suite needs the Debian package {package} (apt-get install {package})"
            ) from None
        found = [line for line in listing.splitlines() if line.endswith("/" + jar)]
        if not found:
            raise RuntimeError(f"{package} installs no {jar}")
        entries.append(found[0])
    # Vendor jars for the opt-in suites (never shipped or fetched here).
    for variable in ("ORACLE_JDBC_JAR", "OCEANBASE_JDBC_JAR"):
        if os.environ.get(variable):
            entries.append(os.environ[variable])
    existing = os.environ.get("CLASSPATH")
    return os.pathsep.join([*entries, existing] if existing else entries)


def jdbc_url(server: Server, database: str | None = None) -> str:
    scheme = "postgresql" if server.vendor == "postgresql" else "mariadb"
    return f"jdbc:{scheme}://{HOST}:{server.port}/{database or server.database}"


def jdbc_settings(server: Server, **extra: Any) -> dict[str, Any]:
    """A generic-ENGINE DATABASES entry for ``server``'s session database."""
    return {
        "ENGINE": "djpool.backends.jdbc",
        "JDBC_URL": jdbc_url(server),
        "JDBC_DRIVER": DRIVERS[server.vendor],
        "USER": server.user,
        "PASSWORD": "",
        **extra,
    }


def h2_url(name: str) -> str:
    return f"jdbc:h2:mem:{name};MODE=Oracle;DEFAULT_NULL_ORDERING=HIGH;DB_CLOSE_DELAY=-1"


def python_executable() -> str:
    return sys.executable


# ##### OceanBase seekdb #####

_seekdb: dict[str, Any] = {}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def seekdb_binary() -> Path | None:
    spec = importlib.util.find_spec("pylibseekdb")
    if spec is None or not spec.submodule_search_locations:
        return None
    binary = Path(next(iter(spec.submodule_search_locations))) / "seekdb"
    return binary if binary.exists() else None


def start_seekdb(timeout: float = 90) -> Server | None:
    """Start seekdb once for the session; None when pylibseekdb is not installed."""
    if "server" in _seekdb:
        return _seekdb["server"]  # type: ignore[no-any-return]
    binary = seekdb_binary()
    if binary is None:
        return None
    port = int(os.environ.get("DJPOOL_SEEKDB_PORT") or _free_port())
    base = Path(tempfile.mkdtemp(prefix=f"djpool_jdbc_seekdb_{PID}_"))
    log = open(base / "stdout.log", "wb")  # noqa: SIM115 - closed in stop_seekdb
    process = subprocess.Popen(
        [
            str(binary),
            "--nodaemon",
            "--port",
            str(port),
            "--base-dir",
            str(base),
            "--parameter",
            "datafile_size=1G",
            "--parameter",
            "log_disk_size=2G",
            "--parameter",
            "memory_limit=3G",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    _seekdb.update(process=process, base=base, log=log)
    server = Server(
        "mysql", "djpool.backends.jdbc.oceanbase.mysql", port, "root", f"djpool_jdbc_{PID}", "SELECT CONNECTION_ID()"
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            server.query("SELECT 1")
            break
        except Exception:
            if process.poll() is not None or time.monotonic() > deadline:
                stop_seekdb()
                raise RuntimeError(f"seekdb did not start on port {port}; see its log in {base}") from None
            time.sleep(0.5)
    server.create_database(server.database)
    _seekdb["server"] = server
    return server


def stop_seekdb() -> None:
    process = _seekdb.pop("process", None)
    if process is not None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    log = _seekdb.pop("log", None)
    if log is not None:
        log.close()
    base = _seekdb.pop("base", None)
    if base is not None:
        shutil.rmtree(base, ignore_errors=True)
    _seekdb.pop("server", None)
