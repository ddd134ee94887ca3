"""FairQueuePool's hand-over rules, on real DB-API connections (sqlite3)."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from sqlalchemy import exc

from djpool.core.pool import BARGE_WINDOW, MAX_BARGE_WINDOW, FairQueuePool


def make_pool(**kw):
    opened = []

    def creator():
        conn = sqlite3.connect(":memory:", check_same_thread=False)
        opened.append(conn)
        return conn

    kw.setdefault("reset_on_return", None)
    return FairQueuePool(creator, **kw), opened


def pin_window(pool, barge_window):
    """Fix the pool's barging window (it follows the waits otherwise)."""
    pool._barge_window = barge_window
    pool._barge_window_bounds = (barge_window, barge_window)


def hold_with_a_waiter(pool, barge_window, wait):
    """The pool's one connection held here, and a thread running ``wait`` in line for it."""
    pin_window(pool, barge_window)
    held = pool.connect()
    thread = threading.Thread(target=wait)
    thread.start()
    while pool.waiting() < 1:
        time.sleep(0.001)
    return held, thread


def test_idle_connections_are_reused():
    pool, opened = make_pool(pool_size=2, max_overflow=0)
    first = pool.connect()
    raw = first.dbapi_connection
    first.close()
    second = pool.connect()
    assert second.dbapi_connection is raw
    second.close()
    assert len(opened) == 1


def test_limit_and_timeout():
    pool, opened = make_pool(pool_size=1, max_overflow=1, timeout=0.1)
    held = [pool.connect(), pool.connect()]
    with pytest.raises(exc.TimeoutError, match="limit of size 1 overflow 1 reached"):
        pool.connect()
    assert len(opened) == 2
    for conn in held:
        conn.close()
    # The overflow connection is closed on return; one stays idle.
    assert (pool.checkedin(), pool.checkedout(), pool.overflow()) == (1, 0, 0)
    assert pool.overflow_closed == 1
    assert [conn for conn in opened if _is_closed(conn)] == [opened[1]]


def _is_closed(conn):
    try:
        conn.execute("SELECT 1")
    except sqlite3.ProgrammingError:
        return True
    return False


def test_connections_returned_to_a_closed_pool_are_not_counted_as_overflow():
    pool, opened = make_pool(pool_size=1, max_overflow=1)
    held = [pool.connect(), pool.connect()]
    pool.close()
    for conn in held:
        conn.close()
    assert all(_is_closed(conn) for conn in opened)
    assert pool.overflow_closed == 0


def test_returned_connection_goes_to_the_oldest_waiter():
    pool, _ = make_pool(pool_size=1, max_overflow=0, timeout=5)
    held = pool.connect()
    order = []

    def wait(name):
        conn = pool.connect()
        order.append(name)
        time.sleep(0.01)
        conn.close()

    threads = []
    for name in ("first", "second", "third"):
        thread = threading.Thread(target=wait, args=(name,))
        thread.start()
        threads.append(thread)
        while pool.waiting() < len(threads):
            time.sleep(0.001)
    # The returning thread asks again at once; the waiters have waited longer
    # than the barging window, so it must queue behind them.
    time.sleep(BARGE_WINDOW * 2)
    held.close()
    again = pool.connect()
    order.append("returner")
    again.close()
    for thread in threads:
        thread.join()
    assert order == ["first", "second", "third", "returner"]


def _two_held_and_a_waiter(barge_window, timeout=5.0):
    """A pool of 2 with both connections held here, and a thread in line
    for one that records when it got it (and keeps it)."""
    pool, _ = make_pool(pool_size=2, max_overflow=0, timeout=timeout)
    pin_window(pool, barge_window)
    held = [pool.connect(), pool.connect()]
    got = []

    def wait():
        started = time.monotonic()
        conn = pool.connect()
        got.append((conn, time.monotonic() - started))

    thread = threading.Thread(target=wait)
    thread.start()
    while pool.waiting() < 1:
        time.sleep(0.001)
    return pool, held, got, thread


def test_a_connection_returned_beside_a_recent_waiter_is_left_for_a_running_thread():
    """Bounded barging: within the window, a return with none idle wakes no
    waiter; a running thread takes it. A return beside one still idle goes
    to the waiter."""
    pool, (first, second), got, thread = _two_held_and_a_waiter(60.0)
    first.close()
    time.sleep(0.05)
    assert (pool.checkedin(), pool.waiting(), got) == (1, 1, [])  # nobody woken for it
    again = pool.connect()
    assert pool.barged == 1 and pool.waiting() == 1
    raw = second.dbapi_connection
    second.close()  # none idle: left again
    assert (pool.checkedin(), pool.waiting()) == (1, 1)
    again.close()  # one still idle (nobody running came): the waiter is handed this one
    thread.join(5)
    assert got and pool.checkedin() == 1 and pool.looked == 0
    assert pool._idle[0][0].dbapi_connection is raw
    got[0][0].close()


def test_a_waiter_takes_a_connection_left_idle_at_the_end_of_its_window():
    pool, (first, second), got, thread = _two_held_and_a_waiter(0.2)
    first.close()  # left idle for a running thread; none comes
    thread.join(5)
    assert got and pool.looked == 1 and pool.barged == 0
    assert pool.handovers == 0  # it took the connection itself: not a hand-over
    assert 0.2 <= got[0][1] < 2
    assert pool.checkedin() == 0
    got[0][0].close()
    second.close()


def test_a_waiter_whose_deadline_comes_within_its_window_takes_an_idle_connection():
    pool, (first, second), got, thread = _two_held_and_a_waiter(60.0, timeout=0.5)
    first.close()
    thread.join(10)
    # Its window (60 s) outlasts its deadline (0.5 s): then it takes the idle
    # one (not a look past its window).
    assert got and 0.4 <= got[0][1] < 3 and pool.looked == 0
    got[0][0].close()
    second.close()


def test_a_deadline_within_the_window_does_not_end_the_window_of_the_waiters_ahead():
    """The waiter whose deadline came takes the idle connection as a running
    thread would; the older waiter, still within its window, is not handed
    it as if its window had ended."""
    pool, _ = make_pool(pool_size=2, max_overflow=0, timeout=1.5)
    pin_window(pool, 60.0)
    first, second = pool.connect(), pool.connect()
    outcome = {}

    def wait(name):
        try:
            outcome[name] = pool.connect()
        except exc.TimeoutError as error:
            outcome[name] = error

    older = threading.Thread(target=wait, args=("older",))
    older.start()
    while pool.waiting() < 1:
        time.sleep(0.001)
    pool._timeout = 0.5  # the younger waiter's deadline comes first
    younger = threading.Thread(target=wait, args=("younger",))
    younger.start()
    while pool.waiting() < 2:
        time.sleep(0.001)
    first.close()  # left idle for a running thread
    younger.join(5)
    assert "older" not in outcome and pool.waiting() == 1
    older.join(5)
    assert isinstance(outcome["older"], exc.TimeoutError), outcome
    assert not isinstance(outcome["younger"], exc.TimeoutError), outcome
    assert pool.looked == 0
    outcome["younger"].close()
    second.close()


def test_the_window_follows_the_waits_within_its_bounds():
    pool, _ = make_pool(pool_size=1, max_overflow=0)
    assert pool._barge_window == BARGE_WINDOW
    for _ in range(200):
        pool._follow_waits(0.008)
    assert pool._barge_window == pytest.approx(0.016, rel=0.01)  # twice the mean wait
    for _ in range(200):
        pool._follow_waits(5.0)
    assert pool._barge_window == MAX_BARGE_WINDOW
    for _ in range(400):
        pool._follow_waits(0.0)
    assert pool._barge_window == BARGE_WINDOW


def test_a_waiter_whose_window_grew_looks_at_its_new_end():
    pool, (first, second), got, thread = _two_held_and_a_waiter(0.1)
    pool._barge_window_bounds = (0.1, 1.0)
    pool._barge_window = 0.4  # as if the waits had grown since it joined the line
    first.close()
    thread.join(5)
    assert got and 0.4 <= got[0][1] < 2 and pool.looked == 1
    got[0][0].close()
    second.close()


@pytest.mark.parametrize(
    "barge_window",
    [
        pytest.param(0.0, id="the waiter is past its window"),
        # Left idle, it would wait for the waiter's window: no other return is coming.
        pytest.param(60.0, id="no other connection is out"),
    ],
)
def test_a_return_is_handed_to_the_waiter(barge_window):
    pool, _ = make_pool(pool_size=1, max_overflow=0, timeout=5)
    got = []
    held, thread = hold_with_a_waiter(pool, barge_window, lambda: got.append(pool.connect()))
    with pool._lock:
        held.close()
        # Handed to the waiter: nothing idle for this thread to take.
        assert pool.checkedin() == 0 and pool.waiting() == 0
    thread.join(5)
    assert got and pool.barged == 0 and pool.handovers == 1
    got[0].close()


def test_a_freed_slot_lets_a_waiter_open_a_connection():
    pool, opened = make_pool(pool_size=1, max_overflow=0, timeout=5)
    held = pool.connect()
    got = []
    thread = threading.Thread(target=lambda: got.append(pool.connect()))
    thread.start()
    while pool.waiting() < 1:
        time.sleep(0.001)
    held.invalidate()  # the connection is closed, not returned: the record comes back empty
    thread.join(5)
    assert got and got[0].dbapi_connection is not None
    got[0].close()


def test_lifo_hands_out_the_most_recent():
    pool, _ = make_pool(pool_size=2, max_overflow=0, use_lifo=True)
    a, b = pool.connect(), pool.connect()
    raw_a, raw_b = a.dbapi_connection, b.dbapi_connection
    a.close()
    b.close()
    c = pool.connect()
    assert c.dbapi_connection is raw_b
    c.close()
    assert raw_a is not raw_b


def test_close_idle_keeps_checked_out_connections():
    pool, _ = make_pool(pool_size=3, max_overflow=0)
    conns = [pool.connect() for _ in range(3)]
    conns[0].close()
    conns[1].close()
    assert pool.close_idle() == 2
    assert pool.checkedout() == 1
    conns[2].close()
    assert pool.checkedin() == 1


def test_close_idle_since_keeps_the_minimum_in_one_round():
    pool, _ = make_pool(pool_size=10, max_overflow=0)
    conns = [pool.connect() for _ in range(10)]
    for conn in conns:
        conn.close()
    assert pool.close_idle_since(time.monotonic() + 1, keep=2) == 8
    assert (pool.checkedin(), pool.checkedout()) == (2, 0)
    # Nothing idle long enough: nothing closed.
    assert pool.close_idle_since(time.monotonic() - 60, keep=0) == 0


class SlowClosing:
    """A sqlite3 connection whose close() takes a while, and that counts the connections open at once."""

    open_now = 0
    peak = 0
    lock = threading.Lock()

    def __init__(self) -> None:
        self._conn = sqlite3.connect(":memory:", check_same_thread=False)
        with SlowClosing.lock:
            SlowClosing.open_now += 1
            SlowClosing.peak = max(SlowClosing.peak, SlowClosing.open_now)

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def close(self) -> None:
        time.sleep(0.05)  # a driver saying goodbye to the server
        self._conn.close()
        with SlowClosing.lock:
            SlowClosing.open_now -= 1


@pytest.mark.parametrize("how", ["overflow returned", "idle closed"])
def test_a_slot_is_free_only_once_its_connection_is_closed(how):
    """Never more than pool_size + max_overflow connections open at once, closing ones included."""
    SlowClosing.open_now = SlowClosing.peak = 0
    pool = FairQueuePool(SlowClosing, pool_size=1, max_overflow=1, timeout=5, reset_on_return=None)
    first, second = pool.connect(), pool.connect()
    first.close()  # idle
    if how == "overflow returned":
        closer = threading.Thread(target=second.close)  # no room among the idle: it is closed
    else:
        second.close()  # closed now (overflow); the first stays idle
        closer = threading.Thread(target=pool.close_idle)
    closer.start()
    time.sleep(0.01)  # the close is under way
    taken = [pool.connect(), pool.connect()]  # both slots: one must wait for the close
    closer.join(5)
    for conn in taken:
        conn.close()
    pool.dispose()
    assert SlowClosing.peak <= 2


def take(pool):
    """A record as djpool's ConnectionPool.checkout() takes it (no proxy)."""
    record = pool._do_get()
    record.get_connection()
    return record


def test_a_returned_connection_is_idle_until_taken_back():
    pool, opened = make_pool(pool_size=2, max_overflow=0)
    record = take(pool)
    entry = pool._do_return_conn(record, time.monotonic())
    assert entry is not None and entry[0] is record
    # Idle like any returned connection: counted so, and any checkout may take it.
    assert (pool.checkedin(), pool.checkedout()) == (1, 0)
    assert pool.take_back(entry)
    assert (pool.checkedin(), pool.checkedout()) == (0, 1)
    assert not pool.take_back(entry)  # once
    pool._do_return_conn(record)
    assert len(opened) == 1


def test_a_connection_another_checkout_took_is_not_taken_back():
    pool, _ = make_pool(pool_size=2, max_overflow=0)
    record = take(pool)
    entry = pool._do_return_conn(record, time.monotonic())
    assert take(pool) is record  # another thread's checkout
    assert not pool.take_back(entry)
    # Returned again by that thread: a new entry, still not the old one's.
    pool._do_return_conn(record)
    assert not pool.take_back(entry)
    assert pool.checkedin() == 1


def test_only_the_last_returned_connection_is_taken_back():
    pool, _ = make_pool(pool_size=2, max_overflow=0)
    first, second = take(pool), take(pool)
    entry = pool._do_return_conn(first, time.monotonic())
    pool._do_return_conn(second)
    assert not pool.take_back(entry)
    assert pool.checkedin() == 2


def test_a_waiter_gets_a_returned_connection_and_no_entry_is_given():
    pool, _ = make_pool(pool_size=1, max_overflow=0, timeout=5)
    pin_window(pool, 0)
    record = take(pool)
    got = []
    thread = threading.Thread(target=lambda: got.append(take(pool)))
    thread.start()
    while pool.waiting() < 1:
        time.sleep(0.001)
    assert pool._do_return_conn(record, time.monotonic()) is None
    thread.join(5)
    assert got == [record]
