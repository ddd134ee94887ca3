"""A TCP proxy on loopback that can stop forwarding without closing anything.

What a silent network failure looks like to a client: a partition, a
failover whose old address stops answering, a dropped NAT entry. No RST, no
FIN, the bytes just stop. Run as its own process (tests start and stop it by
PID)::

    python -m tests.reliability.freezeproxy UPSTREAM_PORT

It prints its listening port, then reads commands on stdin, answering each
with ``ok``: ``freeze`` (stop reading from and writing to every socket and
accepting new connections; the kernel still completes handshakes and
acknowledges what clients send) and ``thaw`` (go on as before).

The local kernel acknowledges every byte the client sends, so TCP-level
protections (keepalive, ``tcp_user_timeout``) never fire through it: only
application-level deadlines can be tested this way.
"""

from __future__ import annotations

import os
import selectors
import socket
import subprocess
import sys

HOST = "127.0.0.1"
CHUNK = 65536


class Proxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.selector = selectors.DefaultSelector()
        self.listener = socket.create_server((HOST, 0))
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.frozen = False
        # socket -> (peer socket, bytes waiting to be written to the peer)
        self.peers: dict[socket.socket, socket.socket] = {}
        self.pending: dict[socket.socket, bytearray] = {}

    def run(self) -> None:
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(sys.stdin.fileno(), selectors.EVENT_READ, "control")
        print(self.port, flush=True)
        while True:
            for key, _ in self.selector.select(timeout=1.0):
                if key.data == "control":
                    if not self.control():
                        return
                elif self.frozen:
                    continue
                elif key.data == "accept":
                    self.accept()
                else:
                    self.forward(key.fileobj)  # type: ignore[arg-type]

    def control(self) -> bool:
        line = os.read(sys.stdin.fileno(), 1024).decode().strip()
        if not line or line == "quit":
            return False
        for command in line.split():
            self.frozen = command == "freeze"
        if not self.frozen:
            self.flush_all()
        print("ok", flush=True)
        return True

    def accept(self) -> None:
        try:
            client, _ = self.listener.accept()
        except BlockingIOError:
            return
        upstream = socket.create_connection((HOST, self.upstream_port))
        for one, other in ((client, upstream), (upstream, client)):
            one.setblocking(False)
            self.peers[one] = other
            self.pending[one] = bytearray()
            self.selector.register(one, selectors.EVENT_READ, "data")

    def forward(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.drop(sock)
            return
        peer = self.peers[sock]
        self.pending[peer] += data
        self.flush(peer)

    def flush(self, sock: socket.socket) -> None:
        buffer = self.pending.get(sock)
        while buffer:
            try:
                sent = sock.send(buffer)
            except BlockingIOError:
                return  # the next select round tries again (small test traffic)
            except OSError:
                self.drop(sock)
                return
            del buffer[:sent]

    def flush_all(self) -> None:
        for sock in list(self.pending):
            self.flush(sock)

    def drop(self, sock: socket.socket) -> None:
        for one in (sock, self.peers.get(sock)):
            if one is None or one not in self.peers:
                continue
            self.peers.pop(one, None)
            self.pending.pop(one, None)
            try:
                self.selector.unregister(one)
            except (KeyError, ValueError):
                pass
            one.close()


class FreezeProxy:
    """``tests.reliability.freezeproxy`` in a process of its own."""

    def __init__(self, upstream_port: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.freezeproxy", str(upstream_port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())

    def _command(self, command: str) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline().strip() == "ok"

    def freeze(self) -> None:
        self._command("freeze")

    def thaw(self) -> None:
        self._command("thaw")

    def stop(self) -> None:
        try:
            self.process.terminate()
            self.process.wait(10)
        finally:
            if self.process.poll() is None:
                self.process.kill()


if __name__ == "__main__":
    Proxy(int(sys.argv[1])).run()
