"""Bounded round trips: what keeps a silent network from hanging a checkout or a return.

A partition (a failover, a dropped NAT entry) sends no RST and no FIN: a
driver waiting for the server's answer waits until the kernel gives up
retransmitting, many minutes. The pool's own round trips, the pre-ping and
the reset on return, must give up sooner. Vendors implement them with what
their driver offers (a non-blocking send and a wait on the socket here; a
per-call timeout, ``isValid(timeout)``) and raise :class:`NoAnswer` when the
time runs out; the pool then closes that connection without another round
trip and never hands it out again.
"""

from __future__ import annotations

import select
import time

__all__ = ["NoAnswer", "remaining", "wait_readable", "wait_writable"]


class NoAnswer(TimeoutError):
    """The server did not answer within the time allowed: treat the connection as lost."""


def remaining(deadline: float) -> float:
    """Seconds left until ``deadline`` (``time.monotonic()``), never negative."""
    return max(0.0, deadline - time.monotonic())


def wait_readable(fileno: int, timeout: float) -> bool:
    """Wait until the socket ``fileno`` has data (or was closed); False if ``timeout`` ran out."""
    return _wait(fileno, timeout, write=False)


def wait_writable(fileno: int, timeout: float) -> bool:
    """Wait until the socket ``fileno`` can take more data; False if ``timeout`` ran out."""
    return _wait(fileno, timeout, write=True)


def _wait(fileno: int, timeout: float, write: bool) -> bool:
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fileno, (select.POLLOUT if write else select.POLLIN) | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(max(0, int(timeout * 1000 + 0.999))))
    sockets = [fileno]
    readable, writable, broken = select.select([] if write else sockets, sockets if write else [], sockets, max(0.0, timeout))
    return bool(readable or writable or broken)
