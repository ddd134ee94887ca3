"""End to end: a view behind gunicorn, loaded by wrk over loopback."""

from __future__ import annotations

import atexit
import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from djbench import variants
from djbench.servers import ConnectionMonitor
from djbench.workloads import Target

BENCH_DIR = Path(__file__).resolve().parent.parent

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


@functools.cache
def _bytecode_cache() -> str:
    """A directory of the run's own for the gunicorn processes' bytecode.

    With PYTHONDONTWRITEBYTECODE set (as on some machines), and an
    environment installed without bytecode, every gunicorn master and worker
    compiled Django, SQLAlchemy and the driver from source again: some 2 s of
    CPU each, most of a server's start. Cached here, only the first pays.
    """
    directory = tempfile.mkdtemp(prefix="djpool-bench-pycache-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return directory


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _seconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not match:
        return float("nan")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> dict[str, Any]:
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    done = re.search(r"^\s*(\d+) requests in", output, re.M)
    if done and int(done.group(1)) == 0:
        output = re.sub(r"^\s+\d+%\s+\S+$", "", output, flags=re.M)  # no request, no latency (wrk prints 0.00us)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    return {
        "rate": float(rate.group(1)) if rate else 0.0,
        "p50": _seconds(p50.group(1)) if p50 else float("nan"),
        "p99": _seconds(p99.group(1)) if p99 else float("nan"),
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": socket_errors.group(1).strip() if socket_errors else "",
    }


class Gunicorn:
    """A gunicorn server on ``target``'s settings, between :meth:`start` and :meth:`stop`."""

    def __init__(
        self, target: Target, worker_class: str, workers: int, threads: int,
        path: str = "/orm", timeout: int = 60, worker_connections: int | None = None, preload: bool = False,
        graceful_timeout: int | None = None, ready_path: str | None = None,
    ) -> None:  # fmt: skip
        self.target = target
        self.worker_class = worker_class
        self.workers = workers
        self.threads = threads
        #: gunicorn's --worker-connections (None: its default, 1000). A gthread
        #: worker accepts connections while it has fewer than this many, and
        #: queues them for its threads: at the default one worker can take all
        #: of wrk's while the others idle. Set to ``threads``, a worker takes
        #: only what its threads can serve, and the rest wait in the listen
        #: queue for whichever worker has a thread free.
        self.worker_connections = worker_connections
        #: --preload: Django is imported once, in the master, before the
        #: workers fork (about a second sooner serving on 2 cores).
        self.preload = preload
        #: --graceful-timeout: how long a stopping worker may take before it is
        #: killed (gunicorn's default, 30 s, when None).
        self.graceful_timeout = graceful_timeout
        #: gunicorn's --timeout: a worker silent for longer is killed, so it must outlast any request.
        self.timeout = timeout
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}{path}"
        #: What wait_until_serving() asks for (default: the loaded view itself).
        self.ready_url = f"http://127.0.0.1:{self.port}{ready_path or path}"
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = False
        self._log: Any = None

    def start(self) -> None:
        env = dict(os.environ)
        env["DJPOOL_BENCH_DATABASE"] = json.dumps(self.target.databases_entry())
        env["DJANGO_SETTINGS_MODULE"] = "djbench.settings"
        env.pop(variants.ENVIRONMENT, None)
        if self.target.config.variant:
            env[variants.ENVIRONMENT] = self.target.config.variant
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = _bytecode_cache()
        # gunicorn runs in bench/: entries of a relative PYTHONPATH must keep pointing where they did.
        inherited = [os.path.abspath(entry) for entry in env.get("PYTHONPATH", "").split(os.pathsep) if entry]
        env["PYTHONPATH"] = os.pathsep.join([str(BENCH_DIR), *inherited])
        command = [
            sys.executable, "-m", "gunicorn", "djbench.wsgi:application",
            "--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers),
            "--worker-class", self.worker_class, "--threads", str(self.threads),
            "--log-level", "warning", "--timeout", str(self.timeout),
        ]  # fmt: skip
        if self.preload:
            command.append("--preload")
        if self.graceful_timeout is not None:
            command += ["--graceful-timeout", str(self.graceful_timeout)]
        if self.worker_connections is not None:
            # No keep-alive: every request comes on a connection of its own (see load()).
            command += ["--worker-connections", str(self.worker_connections), "--keep-alive", "0"]
        self._log = tempfile.TemporaryFile()
        # A process group of its own: stop() can end workers their master left behind.
        self._process = subprocess.Popen(command, env=env, cwd=BENCH_DIR, stdout=subprocess.DEVNULL, stderr=self._log, start_new_session=True)

    def wait_until_serving(self) -> None:
        assert self._process is not None
        _wait_until_serving(self.ready_url, self._process, self._log)

    def signal_stop(self, quick: bool = False) -> None:
        """Tell gunicorn to stop, without waiting: gracefully (SIGTERM; a
        worker notices within a second), or with ``quick``, at once (SIGQUIT).
        Either way a worker's requests already accepted still run to their end."""
        if self._process is not None and not self._stopping:
            self._process.send_signal(signal.SIGQUIT if quick else signal.SIGTERM)
            self._stopping = True

    def stop(self, quick: bool = False) -> None:
        """Stop gunicorn and wait until it has gone (with its server connections).

        Whatever of its process group is left once the master has gone, or
        after 15 s, is killed: a gthread worker stopped with SIGQUIT was seen
        to hang for good, every thread waiting on a lock, after its master had
        been killed before its graceful timeout.
        """
        if self._process is not None:
            self.signal_stop(quick)
            pid = self._process.pid
            deadline = time.monotonic() + 15
            # Wait for the master's exit without reaping it: while it is a
            # zombie its process group id cannot name anyone else's processes.
            while time.monotonic() < deadline and not _has_exited(self._process):
                time.sleep(0.05)
            if self._process.returncode is None:  # not reaped, so the group id is still its own
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self._process.wait()
            self._process = None
            self._stopping = False
        if self._log is not None:
            self._log.close()
            self._log = None

    def load(self, duration: float, connections: int | None = None, timeout: float | None = None) -> dict[str, Any]:
        """Run wrk against the view; req/s, latency percentiles, peak server connections.

        ``connections``: wrk's concurrent connections (default twice the
        server's threads, so none of them idles); ``timeout``: wrk's, past
        which a request counts as a socket error (wrk's default is 2 s).
        """
        connections = connections or max(4, self.workers * self.threads * 2)
        # wrk reads whole seconds only ("1.5s" is not a duration to it).
        command = ["wrk", "-t", "2", "-c", str(connections), "-d", f"{max(1, round(duration))}s", "--latency", self.url]
        if timeout is not None:
            command[-1:-1] = ["--timeout", f"{max(1, round(timeout))}s"]
        if self.worker_class == "gthread":
            # Kept-alive connections stay with the worker that accepted them,
            # and one gthread worker often accepts all of wrk's at once: whole
            # rounds then ran on one worker at half the rate. A connection per
            # request, as sync workers have anyway, spreads the load.
            command[1:1] = ["-H", "Connection: close"]
        with ConnectionMonitor(self.target.server, [self.target.database], interval=0.1) as monitor:
            done = subprocess.run(command, check=True, capture_output=True, text=True)
        result = parse_wrk(done.stdout)
        result["peak_connections"] = monitor.peak[self.target.database]
        return result


def _has_exited(process: subprocess.Popen[bytes]) -> bool:
    """Whether ``process`` has exited, without reaping it (see Gunicorn.stop()).

    ``poll()`` would reap it, after which its process group id may name
    another process's group, and stop() could no longer kill the workers
    left in it.
    """
    if process.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None
    except ChildProcessError:
        # Reaped elsewhere: poll() records it (returncode 0), and stop() then
        # leaves the group id alone.
        process.poll()
        return True


def _wait_until_serving(url: str, server: subprocess.Popen[bytes], log: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _has_exited(server):
            log.seek(0)
            raise RuntimeError(f"gunicorn exited: {log.read().decode(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as error:
            time.sleep(0.5)  # let the worker's traceback reach the log
            log.seek(0)
            raise RuntimeError(f"gunicorn answered {error.code}: {log.read().decode(errors='replace')[-1500:]}") from None
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer {url} within {timeout:g} s")
