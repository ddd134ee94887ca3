"""A session killer that runs as a process of its own.

Chaos tests kill the pool's server sessions while many request threads run.
A killer thread inside the test process competes with those threads for the
GIL: each of its round trips waits for the GIL again, and on a slow machine
it managed 8 kills in 30 seconds. Run here, it kills at the rate asked for,
as a real operator or failover would, whatever the process under test does.

Run as ``python -m tests.reliability.chaos SPEC``, with SPEC a JSON object:
the :class:`tests.servers.Server` fields, ``spare`` (session ids never to
kill) and ``interval`` (seconds between kills). It prints the id of each
session it killed, one per line, and stops when its standard input closes.
"""

from __future__ import annotations

import json
import os
import random
import select
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from tests.servers import Server

ROOT = Path(__file__).resolve().parents[2]


class SessionKiller:
    """The killer process for ``server``, run while in a ``with`` block.

    :attr:`killed` fills as the process reports; leaving the block stops the
    process and waits for its last reports.
    """

    def __init__(self, server: Server, spare: set[int], interval: float = 0.02) -> None:
        self.killed: list[int] = []
        self._spec = {
            "server": {name: getattr(server, name) for name in Server.__dataclass_fields__},
            "spare": sorted(spare),
            "interval": interval,
        }
        self._process: subprocess.Popen[str] | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            self.killed.append(int(line))

    def __enter__(self) -> SessionKiller:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.chaos", json.dumps(self._spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        self._reader.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.close()
        try:
            code = self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
            raise AssertionError("the session killer did not stop within 10 s of its input closing") from None
        self._reader.join(10)
        assert code == 0, f"the session killer exited with {code}"


def run(server: Server, spare: set[int], interval: float) -> None:
    """Kill a random session of ``server``'s database every ``interval`` until stdin closes."""
    connection = server.admin_connect()
    cursor = connection.cursor()
    try:
        while not select.select([sys.stdin], [], [], interval)[0]:
            victims = sorted(server.session_ids_on(cursor, live_only=True) - spare)
            if victims:
                victim = random.choice(victims)
                if server.kill_on(cursor, victim):
                    print(victim, flush=True)
    finally:
        connection.close()

if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    run(Server(**spec["server"]), set(spec["spare"]), float(spec["interval"]))
