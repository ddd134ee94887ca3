"""Whether a MySQL connection has a transaction open, as the server last said.

The server tells the client in the status flags of its answers
(``SERVER_STATUS_IN_TRANS``), a raw ``BEGIN`` included, whatever the
statement's text: the same flags that both drivers' ``get_autocommit()``
reads. PyMySQL keeps them as ``server_status``; mysqlclient does not expose
them, but MariaDB Connector/C (the client library Debian's and most Linux
distributions' mysqlclient is built on) gives them through
``mariadb_get_info()``, which takes the connection's ``MYSQL`` handle and
does no I/O. Where neither is there (mysqlclient built on Oracle's
libmysqlclient), :data:`mysqlclient_transaction_open` is None and djpool reads
the statements instead (``djpool_watch_transaction_statements``).

Reading the flags at a connection's return costs one call; watching the
statements costs one on every ``execute()``.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any, Callable

__all__ = ["SERVER_STATUS_IN_TRANS", "mysqlclient_transaction_open", "pymysql_transaction_open"]

logger = logging.getLogger("djpool.backends.mysql")

#: mariadb_com.h: a transaction has started (and not ended).
SERVER_STATUS_IN_TRANS = 0x0001
#: mysql.h, enum mariadb_value: MARIADB_CONNECTION_SERVER_STATUS.
_MARIADB_CONNECTION_SERVER_STATUS = 30
#: The name mysqlclient gives the capsule of its MYSQL handle.
_CAPSULE_NAME = b"_mysql.connection.native_connection"


def pymysql_transaction_open(dbapi_connection: Any) -> bool:
    """PyMySQL: the flags of the last OK packet (BEGIN, COMMIT and ROLLBACK all answer with one)."""
    return bool((dbapi_connection.server_status or 0) & SERVER_STATUS_IN_TRANS)


class _ServerStatus:
    """One connection's ``mariadb_get_info()`` call, with its own result buffer.

    Kept on the driver connection (a connection is used by one thread at a
    time, so the buffer is never shared); the handle is the ``MYSQL`` struct
    inside mysqlclient's connection object, valid as long as that object.
    """

    __slots__ = ("handle", "pointer", "value")

    def __init__(self, handle: int) -> None:
        self.handle = ctypes.c_void_p(handle)
        self.value = ctypes.c_uint(0)
        self.pointer = ctypes.pointer(self.value)


def _mysqlclient_reader() -> Callable[[Any], bool] | None:
    """``(connection) -> bool`` through ``mariadb_get_info()`` of the library mysqlclient is linked with, or None."""
    try:
        from MySQLdb import _mysql

        # PyDLL: the call keeps the GIL (it only reads a field), and dlsym on
        # the extension's handle finds the symbol in the library it links to.
        get_info = ctypes.PyDLL(_mysql.__file__).mariadb_get_info
    except (ImportError, OSError, AttributeError):
        return None
    get_info.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_uint))
    get_info.restype = ctypes.c_char  # my_bool: 0 on success
    # A function object of its own: ctypes.pythonapi's is shared with any other user.
    capsule_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
        ("PyCapsule_GetPointer", ctypes.pythonapi)
    )
    failed = b"\x01"
    warned: list[bool] = []
    item = _MARIADB_CONNECTION_SERVER_STATUS

    def transaction_open(dbapi_connection: Any) -> bool:
        try:
            status = dbapi_connection._djpool_server_status
        except AttributeError:
            status = _ServerStatus(capsule_pointer(dbapi_connection._get_native_connection(), _CAPSULE_NAME))
            dbapi_connection._djpool_server_status = status
        if get_info(status.handle, item, status.pointer) == failed:
            # A client library too old to report the status: say a
            # transaction may be open, so that the return rolls back.
            if not warned:
                warned.append(True)
                logger.warning(
                    "mysqlclient's client library does not report the server status "
                    "(mariadb_get_info(MARIADB_CONNECTION_SERVER_STATUS) failed): every "
                    "connection returned to the pool is rolled back, a round trip each"
                )
            return True
        return bool(status.value.value & SERVER_STATUS_IN_TRANS)

    return transaction_open


#: mysqlclient's reading, or None where its client library cannot tell.
mysqlclient_transaction_open: Callable[[Any], bool] | None = _mysqlclient_reader()
