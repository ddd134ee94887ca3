"""The benchmark's pool variants (bench/djbench/variants.py): applied while named, undone after."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from djbench import variants  # noqa: E402
from djpool.core import pool  # noqa: E402


def two_held_and_a_waiter():
    """A pool of 2, both connections held, and a thread in line for one."""
    import sqlite3

    fair = pool.FairQueuePool(lambda: sqlite3.connect(":memory:", check_same_thread=False), pool_size=2, max_overflow=0)
    held = [fair.connect(), fair.connect()]
    thread = threading.Thread(target=lambda: held.append(fair.connect()))
    thread.start()
    while fair.waiting() < 1:
        time.sleep(0.001)
    return fair, held, thread


def test_fifo_hands_every_return_to_the_oldest_waiter_and_is_undone_after():
    with variants.applied("fifo"):
        fair, held, thread = two_held_and_a_waiter()
    assert fair._barge_window_bounds == (0.0, 0.0)
    assert (pool.BARGE_WINDOW, pool.MAX_BARGE_WINDOW) == (0.01, 0.02)  # undone for pools opened after
    held[0].close()
    # Straight to the waiter: nothing left idle for a running thread.
    assert fair.checkedin() == 0
    thread.join(5)
    assert len(held) == 3
    for connection in held[1:]:
        connection.close()


def test_djpool_as_it_is_keeps_its_barging_window():
    with variants.applied(None):
        fair, held, thread = two_held_and_a_waiter()
    assert fair._barge_window_bounds == (pool.BARGE_WINDOW, pool.MAX_BARGE_WINDOW) != (0.0, 0.0)
    held[0].close()
    thread.join(5)  # handed at once or at the window's end
    for connection in held[1:]:
        connection.close()


def test_an_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="unknown pool variant 'lifo': one of fifo"):
        with variants.applied("lifo"):
            pass
