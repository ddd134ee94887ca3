"""djpool with one of its mechanisms changed, for A/B runs (``--phases handover``).

A variant is never a setting users have: the benchmark applies it to the
pool module, in its own process around a variant's turn (each turn opens a
new pool) or, for gunicorn, in the workers, told by ``DJPOOL_BENCH_VARIANT``.

``fifo``: no barging. The barging window is 0, so every connection given
back while a thread waits goes to the oldest waiter, which must be scheduled
before it runs (the hand-over djpool had before its bounded barging, less
its 2 ms window).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

#: The variants, with what each changes.
VARIANTS = {"fifo": "no barging: every connection given back goes to the oldest waiter (barging window 0)"}
#: The environment variable that names a gunicorn worker's variant.
ENVIRONMENT = "DJPOOL_BENCH_VARIANT"


def _set(variant: str) -> tuple[float, float]:
    """Apply ``variant`` to pools opened from now on; return what it replaced."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown pool variant {variant!r}: one of {', '.join(VARIANTS)}")
    from djpool.core import pool

    replaced = pool.BARGE_WINDOW, pool.MAX_BARGE_WINDOW
    pool.BARGE_WINDOW = pool.MAX_BARGE_WINDOW = 0.0
    return replaced


@contextmanager
def applied(variant: str | None) -> Iterator[None]:
    """``variant`` in force for pools opened inside (none: djpool as it is)."""
    if variant is None:
        yield
        return
    replaced = _set(variant)
    try:
        yield
    finally:
        from djpool.core import pool

        pool.BARGE_WINDOW, pool.MAX_BARGE_WINDOW = replaced


def apply_from_environment() -> None:
    """In a gunicorn process: apply the variant ``DJPOOL_BENCH_VARIANT`` names, if any."""
    variant = os.environ.get(ENVIRONMENT)
    if variant:
        _set(variant)
