"""Transaction mode: the connection goes back between transactions, not only between requests.

With ``POOL_MODE = "transaction"`` a wrapper holds a pooled connection only
while it needs one: inside ``atomic()`` or a manual transaction
(``set_autocommit(False)`` until autocommit is restored), while a cursor is
open, while constraint checks are off for the session (MySQL's
``foreign_key_checks``, which the following statements must share), and
while a raw ``BEGIN`` has not been ended. When the last of these ends, the
connection goes back and the wrapper is parked on its pool, as at a request
boundary; the next query takes one back (``mixins._djpool_take_back()``).
A session-level ``SET`` run outside a transaction is logged once, since it
may reach whichever request gets the connection next.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["TransactionModeMixin"]

logger = logging.getLogger("djpool.backends")

# The session-level SETs already warned about (each once per process).
_warned_statements: set[str] = set()


class TransactionModeMixin:
    """The wrapper's transaction-mode releases; inert in session mode.

    Part of :class:`djpool.core.mixins.PooledDatabaseWrapperMixin`, which
    sets the state read here in ``__init__``.
    """

    _djpool_transaction_mode: bool
    _djpool_open_cursors: int
    _djpool_pinned: bool
    _djpool_raw_transaction: bool
    _djpool_connecting: bool
    _djpool_lease: Any
    _djpool_parked_in: Any

    def set_autocommit(self, autocommit: bool, force_begin_transaction_with_broken_autocommit: bool = False) -> None:
        super().set_autocommit(autocommit, force_begin_transaction_with_broken_autocommit)  # type: ignore[misc]
        if autocommit and self._djpool_transaction_mode and self._djpool_open_cursors <= 0:
            self._djpool_release_between_transactions()

    def disable_constraint_checking(self) -> bool:
        # MySQL turns foreign_key_checks off for the session, outside any
        # transaction (e.g. migrations' schema editor, loaddata): the
        # statements until enable_constraint_checking() must share it.
        pin = self._djpool_transaction_mode and not self._djpool_pinned
        self._djpool_pinned = self._djpool_pinned or pin
        disabled = bool(super().disable_constraint_checking())  # type: ignore[misc]
        if pin and not disabled:
            self._djpool_pinned = False
            self._djpool_release_between_transactions()
        return disabled

    def enable_constraint_checking(self) -> None:
        try:
            super().enable_constraint_checking()  # type: ignore[misc]
        finally:
            if self._djpool_pinned:
                self._djpool_pinned = False
                if self._djpool_open_cursors <= 0:
                    self._djpool_release_between_transactions()

    def _djpool_warn_session_change(self, sql: str) -> None:
        """A session-level SET ran outside a transaction: it may outlive this request's use."""
        if self._djpool_pinned or self._djpool_raw_transaction or sql in _warned_statements:
            return
        _warned_statements.add(sql)
        logger.warning(
            "POOL_MODE='transaction' on database %r: %r changes the session outside a "
            "transaction, so it may reach whichever request gets this connection next. "
            "Run it inside atomic() with SET LOCAL, or use POOL_MODE='session'.",
            self.alias,  # type: ignore[attr-defined]
            sql[:200],
        )

    def _djpool_cursor_closed(self) -> None:
        self._djpool_open_cursors -= 1
        if self._djpool_open_cursors <= 0:
            self._djpool_release_between_transactions()

    def _djpool_release_between_transactions(self) -> None:
        """Give the connection back if no transaction or cursor needs it."""
        if (
            self._djpool_lease.record is not None
            and not self._djpool_connecting
            and self.autocommit  # type: ignore[attr-defined]
            and not self.in_atomic_block  # type: ignore[attr-defined]
            and not self.closed_in_transaction  # type: ignore[attr-defined]
            and not self._djpool_pinned
            and not self._djpool_raw_transaction
            and not self.djpool_transaction_open(self.connection)
        ):
            pool = self._djpool_lease.pool
            self._djpool_release(take_back=True)
            self._djpool_parked_in = pool
